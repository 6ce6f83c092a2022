"""Cryptarithm equations: parsing, the joint mapping/operation search, traces, the generator.

Puzzles come from the family's own generator (seeded) or are written by hand; the dev
CSV is only read by the slow accuracy test, which skips when it is absent.
"""

from __future__ import annotations

import random
import time

import pytest

from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles.base import PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.equations import cryptarithm
from reasonlab.puzzles.equations.cryptarithm_search import SIGN, SearchLimits, search, shape
from reasonlab.puzzles.equations.ops import BY_NAME, NORMAL, Setting, apply
from reasonlab.puzzles.equations.prompt import format_equation_prompt, parse_equation_prompt
from reasonlab.puzzles.registry import classify, solve_prompt


def _prompt(examples: list[tuple[str, str]], query: str) -> str:
    return format_equation_prompt(examples, query)


def _encode(text: str, symbols: str) -> str:
    """Digits to symbols with digit d -> symbols[d]; anything else kept."""
    return "".join(symbols[int(ch)] if ch.isdigit() else ch for ch in text)


# A fixed mapping 0..9 -> these symbols, used by the hand-written puzzles below.
SYMBOLS = "!\"#$%&'()/"


def _crypt(examples: list[tuple[str, str]], query: str) -> str:
    """A prompt whose numeric examples are written with SYMBOLS (operators kept)."""
    return _prompt(
        [(_encode(lhs, SYMBOLS), _encode(rhs, SYMBOLS)) for lhs, rhs in examples],
        _encode(query, SYMBOLS),
    )


# ---------------------------------------------------------------- parse: malformed input

GOOD = _crypt([("12+34", "46"), ("56+17", "73"), ("23*45", "1035")], "31+25")


@pytest.mark.parametrize(
    "prompt, message",
    [
        # numeric rows belong to equation_numeric
        (_prompt([("12+34", "46")], "31+25"), "not a cryptarithm"),
        # no query line
        (GOOD.rsplit("\n", 1)[0], "not an equation prompt"),
        # an example without ' = '
        (GOOD.replace(" = ", " : ", 1), "without ' = '"),
        # a 4-character left side
        (GOOD.replace(_encode("12+34", SYMBOLS), _encode("12+3", SYMBOLS)), "5-character"),
        # an empty result
        (_prompt([(_encode("12+34", SYMBOLS), "")], _encode("31+25", SYMBOLS)), "empty"),
    ],
)
def test_parse_rejects_malformed(prompt: str, message: str) -> None:
    with pytest.raises(PuzzleFormatError, match=message):
        cryptarithm.parse(prompt)


def test_malformed_rows_never_crash_the_registry() -> None:
    for prompt in (GOOD.rsplit("\n", 1)[0], GOOD.replace(" = ", " : ", 1), GOOD + "\nextra line"):
        assert isinstance(solve_prompt(prompt, cryptarithm.NAME), Unsolved)


# ---------------------------------------------------------------- shape index


@pytest.mark.parametrize(
    "text, expected",
    [
        # repeated characters point at their first occurrence; the last entry is SIGN's place
        ("1234 46", (0, 1, 2, 3, 4, 3, 6, -1)),
        ("1213 11", (0, 1, 0, 3, 4, 0, 0, -1)),
        (f"ab|c {SIGN}a", (0, 1, 2, 3, 4, 5, 0, 5)),
    ],
)
def test_shape(text: str, expected: tuple[int, ...]) -> None:
    assert shape(text) == expected


def test_sign_only_matches_sign() -> None:
    # `12 -3` and `12 93` repeat nothing, but only the first can stand for a negative result
    assert shape(f"1234 {SIGN}5") != shape("1234 65")


# ---------------------------------------------------------------- search and solve


def test_search_recovers_a_hand_written_mapping() -> None:
    # normal setting, '+' = a + b, '*' = a * b; digits 0..9 -> SYMBOLS
    puzzle = cryptarithm.parse(
        _crypt([("12+34", "46"), ("56+17", "73"), ("23*45", "1035"), ("89*76", "6764")], "31+25")
    )
    result = search([(lhs.left + lhs.right, lhs.op, rhs) for lhs, rhs in puzzle.examples])
    assert result.complete
    truth = [
        f
        for f in result.fits
        if f.setting == NORMAL
        and f.op_for("+") == BY_NAME["add"]
        and f.op_for("*") == BY_NAME["mul"]
    ]
    assert truth and dict(truth[0].mapping) == {SYMBOLS[d]: str(d) for d in range(10)}


def test_solve_answers_a_deduce_row() -> None:
    prompt = _crypt(
        [("12+34", "46"), ("56+17", "73"), ("23*45", "1035"), ("89*76", "6764")], "31+25"
    )
    solution = cryptarithm.solve(cryptarithm.parse(prompt))
    assert isinstance(solution, Solution)
    assert solution.answer == _encode("56", SYMBOLS)
    assert not solution.trace_complete  # the mapping search is not in the trace


def test_unexplained_examples_are_unsolved_with_a_reason() -> None:
    # the same operands give two different results under one operator: nothing fits
    prompt = _crypt([("12+34", "46"), ("12+34", "47"), ("56+17", "73")], "31+25")
    outcome = cryptarithm.solve(cryptarithm.parse(prompt))
    assert isinstance(outcome, Unsolved) and "explain every example" in outcome.reason


def test_a_digit_without_symbol_is_unsolved_with_a_partial_guess() -> None:
    # the examples never show the digit 9; the query's sum 45 + 54 = 99 needs it
    prompt = _crypt(
        [("12+34", "46"), ("56+17", "73"), ("23*45", "1035"), ("80*76", "6080")], "45+54"
    )
    outcome = cryptarithm.solve(cryptarithm.parse(prompt))
    assert isinstance(outcome, Unsolved)
    assert outcome.partial and len(outcome.partial) == len(outcome.partial.strip())


def test_a_query_symbol_with_no_free_digit_is_unsolved() -> None:
    # the examples use all ten digits, so the query's new symbol `{` has no digit left
    examples = [("12+34", "46"), ("56+17", "73"), ("23*45", "1035"), ("89*76", "6764")]
    prompt = _prompt(
        [(_encode(l, SYMBOLS), _encode(r, SYMBOLS)) for l, r in examples],
        _encode("31+2", SYMBOLS) + "{",
    )
    outcome = cryptarithm.solve(cryptarithm.parse(prompt))
    assert isinstance(outcome, Unsolved) and "none can read the query" in outcome.reason


def test_mutated_prompts_never_crash() -> None:
    rng = random.Random(0)
    alphabet = cryptarithm.ALPHABET + "+-*~ 0123456789="
    for g in _generated(40, "deduce", seed=2):
        head, _, rest = g.prompt.partition("\n")
        text = list(rest)
        for _ in range(rng.randint(1, 3)):
            text[rng.randrange(len(text))] = rng.choice(alphabet)
        outcome = solve_prompt(head + "\n" + "".join(text), cryptarithm.NAME)
        assert isinstance(outcome, (Solution, Unsolved))
        if isinstance(outcome, Solution):
            assert extract_answer(cryptarithm.render(outcome)) == outcome.answer


def test_a_joining_query_gets_a_complete_symbol_level_trace() -> None:
    # '*' writes left then right in every example, whatever the digits; '+' is a sum
    prompt = _crypt(
        [("12*34", "1234"), ("56*78", "5678"), ("13+24", "37"), ("25+61", "86")], "90*43"
    )
    solution = cryptarithm.solve(cryptarithm.parse(prompt))
    assert isinstance(solution, Solution) and solution.trace_complete
    assert solution.answer == _encode("9043", SYMBOLS)
    trace = cryptarithm.render(solution)
    assert "no digit needs decoding" in trace and "Digits found" not in trace
    assert extract_answer(trace) == solution.answer


def test_joining_examples_are_not_searched_digit_by_digit() -> None:
    # only joins: without leaving them out the search would list every digit assignment
    prompt = _crypt([("12*34", "1234"), ("56*78", "5678"), ("90*13", "9013")], "21*43")
    result = cryptarithm.find_fits(cryptarithm.parse(prompt))
    assert result.complete and len(result.fits) == 3  # one per setting, empty mapping
    assert all(fit.mapping == () and fit.op_for("*").kind == "cat" for fit in result.fits)


@pytest.mark.parametrize(
    "rhs, known, free, loose",
    [
        # one missing digit, two loose symbols among four free digits
        ("73", {"7": "!"}, ["3", "4", "5", "6"], ["#", "$"]),
        # two missing digits, one loose symbol
        ("3~5", {}, ["3", "5", "8"], ["#"]),
        # nothing missing
        ("77", {"7": "!"}, ["1"], ["#"]),
    ],
)
def test_encodings_share_the_probability_of_loose_symbols(rhs, known, free, loose) -> None:
    options = list(cryptarithm._encodings(rhs, known, free, loose))
    assert abs(sum(p for _, p in options) - 1) < 1e-9
    for picks, _ in options:
        symbols = [s for s, _ in picks]
        assert len(symbols) == len(set(symbols)) and set(symbols) <= set(loose)


def test_search_limits_stop_a_search() -> None:
    prompt = _crypt([("12+34", "1234"), ("56+78", "5678")], "21+43")
    examples = [
        (lhs.left + lhs.right, lhs.op, rhs) for lhs, rhs in cryptarithm.parse(prompt).examples
    ]
    result = search(examples, SearchLimits(nodes=50))
    assert not result.complete and result.nodes <= 50


# ---------------------------------------------------------------- generator round trip


def _generated(n: int, subtype: str, seed: int) -> list:
    rng = random.Random(seed)
    return [cryptarithm.generate(rng, subtype) for _ in range(n)]


@pytest.mark.parametrize("subtype", ["deduce", "guess"])
def test_generated_rows_have_the_competition_shape(subtype: str) -> None:
    for g in _generated(20, subtype, seed=3):
        kind = classify(g.prompt)
        assert (kind.family, kind.subtype) == (cryptarithm.NAME, subtype)
        mapping, rule = g.rule
        plain = parse_equation_prompt(g.prompt)
        operators = {lhs.op for lhs, _ in plain.examples} | {plain.query.op}
        assert not operators & set(mapping.values())  # no operator doubles as a digit
        assert (
            set(mapping.values()) <= set(cryptarithm.ALPHABET) and len(set(mapping.values())) == 10
        )
        # the answer is the numeric rule's answer written with the mapping
        inverse = {s: d for d, s in mapping.items()}
        q = plain.query
        digits = "".join(inverse[ch] for ch in q.left), "".join(inverse[ch] for ch in q.right)
        numeric = apply(BY_NAME[rule["operations"][q.op]], *digits, q.op, Setting(rule["setting"]))
        assert g.answer == "".join(mapping.get(ch, ch) for ch in numeric)


def test_generated_deduce_rows_are_mostly_solved_and_fast() -> None:
    puzzles = _generated(30, "deduce", seed=11)
    cryptarithm.solve(cryptarithm.parse(puzzles[0].prompt))  # builds the shared index once
    start = time.perf_counter()
    outcomes = [cryptarithm.solve(cryptarithm.parse(g.prompt)) for g in puzzles]
    elapsed = time.perf_counter() - start
    right = sum(
        isinstance(o, Solution) and is_correct(g.answer, o.answer)
        for g, o in zip(puzzles, outcomes)
    )
    # the acceptance bar for dev deduce rows is 50%; seed 11 gives 17/30 (52/75 on seed 7)
    assert right >= 15, f"{right}/30 generated deduce rows solved right"
    assert elapsed < 20, f"{elapsed:.1f} s for 30 rows"


def test_traces_box_the_answer_even_with_braces_and_backslashes() -> None:
    seen_tricky = 0
    for g in _generated(60, "deduce", seed=5):
        outcome = cryptarithm.solve(cryptarithm.parse(g.prompt))
        if not isinstance(outcome, Solution):
            continue
        trace = cryptarithm.render(outcome)
        assert extract_answer(trace) == outcome.answer
        assert trace.rstrip().endswith(f"\\boxed{{{outcome.answer}}}")
        seen_tricky += any(ch in outcome.answer for ch in "}\\{")
    assert seen_tricky >= 3  # the seed gives answers holding `}`, `{` or `\`


def test_trace_shows_mapping_examples_and_query() -> None:
    prompt = _crypt(
        [("12+34", "46"), ("56+17", "73"), ("23*45", "1035"), ("89*76", "6764")], "31+25"
    )
    solution = cryptarithm.solve(cryptarithm.parse(prompt))
    trace = cryptarithm.render(solution)
    assert "Digits found: " in trace and "rejected:" in trace
    assert "31+25" in trace and "a + b" in trace
    assert trace.count("matches") == 4
    assert len(trace) < 7680  # characters; far under the token budget


# ---------------------------------------------------------------- dev accuracy (slow)


@pytest.mark.slow
def test_dev_accuracy_meets_the_acceptance_bar(dev_rows) -> None:
    counts = {"deduce": [0, 0], "guess": [0, 0]}
    start = time.perf_counter()
    for row in dev_rows[cryptarithm.NAME]:
        kind = classify(row["prompt"])
        outcome = solve_prompt(row["prompt"], kind.family)
        counts[kind.subtype][1] += 1
        counts[kind.subtype][0] += isinstance(outcome, Solution) and is_correct(
            row["answer"], outcome.answer
        )
    assert counts["deduce"][0] >= 0.5 * counts["deduce"][1], counts
    assert counts["guess"][0] >= 0.2 * counts["guess"][1], counts
    assert time.perf_counter() - start < 90


# ---------------------------------------------------------------- derived traces

# A normal-setting row ('-' multiplies, '>' adds) whose trace search is short enough to show.
DERIVED = (
    [("46-26", "1196"), ("98>64", "162"), ("50-05", "250"), ("54>53", "107")],
    "62-63",
)


def _derived() -> Solution:
    examples, query = DERIVED
    solution = cryptarithm.solve(cryptarithm.parse(_crypt(examples, query)))
    assert isinstance(solution, Solution)
    return solution


def _operands(a: str, b: str, setting: Setting) -> tuple[str, str]:
    """The written (left, right) digits whose reading under `setting` is (a, b)."""
    if setting.name == "reversed":
        return a[::-1], b[::-1]
    if setting.name == "mirrored":
        return b[::-1], a[::-1]
    return a, b


def test_a_short_search_gives_a_complete_derived_trace() -> None:
    solution = _derived()
    assert solution.answer == _encode("3906", SYMBOLS)
    assert solution.trace_complete and solution.rule.derivation is not None
    trace = cryptarithm.render(solution)
    assert "Digits found" not in trace  # the old found-not-derived format
    assert "'-' as a*b: try" in trace and "Every example fits" in trace
    assert extract_answer(trace) == solution.answer
    assert trace.rstrip().endswith(f"\\boxed{{{solution.answer}}}")
    assert len(trace) < 7_500  # ~2,500 tokens


def test_every_value_a_derived_trace_writes_is_true() -> None:
    """Recompute each shown step from its operands, then decode every example."""
    solution = _derived()
    derivation = solution.rule.derivation
    setting = derivation.setting
    for step in derivation.steps:
        if step.kind == "check" and step.written:
            left, right = _operands(step.a, step.b, setting)
            assert step.op(step.a, step.b) == step.value
            assert apply(step.op, left, right, step.lhs.op, setting) == step.written
            for symbol, digit in step.assigned:  # the digits shown are the operands read
                spots = [i for i, ch in enumerate(step.lhs.left + step.lhs.right) if ch == symbol]
                assert all((left + right)[i] == digit for i in spots)
            if step.ok or step.text.endswith(f"digits, not {len(step.rhs)}"):
                assert (len(step.written) == len(step.rhs)) == step.ok
        elif step.kind == "units":
            base = int(step.a) + int(step.b) if step.op.kind == "add" else int(step.a) * int(step.b)
            assert (base + step.op.offset) % 10 == step.value
        elif step.kind == "solve":
            for digit in step.written:
                x, y = int(step.a), int(digit)
                base = x + y if step.op.kind == "add" else x * y
                assert (base + step.op.offset) % 10 == step.value
    digits = dict(derivation.mapping)
    ops = dict(derivation.ops)
    puzzle = solution.puzzle
    for lhs, rhs in puzzle.examples:
        left = "".join(digits[s] for s in lhs.left)
        right = "".join(digits[s] for s in lhs.right)
        written = apply(ops[lhs.op], left, right, lhs.op, setting)
        assert "".join(digits.get(ch, ch) for ch in rhs) == written
    assert cryptarithm.derived_answer(derivation, puzzle) == solution.answer


def test_derived_traces_agree_with_the_solver_and_flag_completeness() -> None:
    """trace_complete exactly when the trace derives the answer (or only joins symbols)."""
    checked = derived = 0
    for g in _generated(25, "deduce", seed=5) + [None]:
        outcome = _derived() if g is None else cryptarithm.solve(cryptarithm.parse(g.prompt))
        if not isinstance(outcome, Solution):
            continue
        checked += 1
        derived += outcome.rule.derivation is not None
        puzzle, rule = outcome.puzzle, outcome.rule
        q = puzzle.query
        order = cryptarithm.joining_order(puzzle, q.op)
        pair = {"left+right": q.left + q.right, "right+left": q.right + q.left}
        joined = order is not None and outcome.answer == pair[order]
        assert outcome.trace_complete == (joined or rule.derivation is not None)
        if rule.derivation is not None:
            assert cryptarithm.derived_answer(rule.derivation, puzzle) == outcome.answer
            assert not rule.guessed
        trace = cryptarithm.render(outcome)
        assert extract_answer(trace) == outcome.answer
    # 25 of 26 solve (seed 5); the hand-made case is the one whose trace derives its answer
    assert checked >= 20 and derived >= 1, (checked, derived)
