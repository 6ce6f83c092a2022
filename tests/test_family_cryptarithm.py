"""Cryptarithm equations: parsing, the joint mapping/operation search, traces, the generator.

Puzzles come from the family's own generator (seeded) or are written by hand; the dev
CSV is only read by the slow accuracy test, which skips when it is absent.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles.base import PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.equations import cryptarithm
from reasonlab.puzzles.equations.cryptarithm_search import SIGN, Fit, SearchLimits, search, shape
from reasonlab.puzzles.equations.ops import (
    BY_NAME,
    NORMAL,
    REVERSED,
    Setting,
    apply,
    read_operands,
)
from reasonlab.puzzles.equations.prompt import format_equation_prompt, parse_equation_prompt
from reasonlab.puzzles.registry import classify, solve_prompt

REPO = Path(__file__).resolve().parents[1]


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
    # the traced search reaches the same decoding, so the trace derives the answer
    assert solution.trace_complete and solution.rule.derivation is not None


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
    rendered = 0
    for g in _generated(40, "deduce", seed=2):
        head, _, rest = g.prompt.partition("\n")
        text = list(rest)
        for _ in range(rng.randint(1, 3)):
            text[rng.randrange(len(text))] = rng.choice(alphabet)
        outcome = solve_prompt(head + "\n" + "".join(text), cryptarithm.NAME)
        assert isinstance(outcome, (Solution, Unsolved))
        if isinstance(outcome, Solution):
            assert extract_answer(cryptarithm.render(outcome)) == outcome.answer
            rendered += 1
    assert rendered >= 1  # some mutations still solve (2 of 40), their traces checked


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


def test_a_loose_symbol_that_leads_a_joined_operand_is_never_zero() -> None:
    # '#' leads an operand of a joining example, so it reads 1..9, never 0
    free, loose = ["0", "5"], ["#"]
    assert dict(cryptarithm._encodings("0", {}, free, loose)) == {(("#", "0"),): 0.5, (): 0.5}
    assert dict(cryptarithm._encodings("0", {}, free, loose, frozenset("#"))) == {(): 1.0}
    assert dict(cryptarithm._encodings("5", {}, free, loose, frozenset("#"))) == {
        (("#", "5"),): 1.0
    }


@pytest.mark.parametrize("symbols, leading", [("#$", "#"), ("#$%", "#$"), ("#", "")])
def test_placements_count_the_choices_with_no_leading_zero(symbols, leading) -> None:
    digits = ["0", "3", "5", "8"]
    brute = sum(
        not any(d == "0" and s in leading for s, d in zip(symbols, choice))
        for choice in itertools.permutations(digits, len(symbols))
    )
    assert cryptarithm._placements(list(symbols), digits, frozenset(leading)) == brute


def test_leading_symbols_are_read_by_the_setting() -> None:
    puzzle = cryptarithm.parse(_crypt([("12*34", "1234"), ("56*78", "5678")], "15*37"))
    assert cryptarithm._leading(puzzle, NORMAL) == frozenset(_encode("1357", SYMBOLS))
    assert cryptarithm._leading(puzzle, REVERSED) == frozenset(_encode("2468", SYMBOLS))


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
    seen_tricky = checked = 0
    for g in _generated(60, "deduce", seed=5):
        outcome = cryptarithm.solve(cryptarithm.parse(g.prompt))
        if not isinstance(outcome, Solution):
            continue
        trace = cryptarithm.render(outcome)
        assert extract_answer(trace) == outcome.answer
        assert trace.rstrip().endswith(f"\\boxed{{{outcome.answer}}}")
        seen_tricky += any(ch in outcome.answer for ch in "}\\{")
        checked += 1
    assert checked >= 40 and seen_tricky >= 3  # answers holding `}`, `{` or `\` among them


def test_an_underived_trace_shows_mapping_examples_and_query() -> None:
    prompt = _crypt(
        [("12+34", "46"), ("56+17", "73"), ("23*45", "1035"), ("89*76", "6764")], "31+25"
    )
    solution = cryptarithm.solve(cryptarithm.parse(prompt))
    # what a row gets when the traced search does not reach the solver's answer
    solution = replace(solution, rule=replace(solution.rule, derivation=None))
    trace = cryptarithm.render(solution)
    assert "Digits found: " in trace and "rejected:" in trace
    assert "31+25" in trace and "a + b" in trace
    assert trace.count("matches") == 4
    assert len(trace) < 7680  # characters; far under the token budget


# ---------------------------------------------------------------- every setting and order

# Hand-made rows, one per setting and non-commutative operation: '-' is the operation
# named, '+' an addition or multiplication; examples and query in digits (encoded with
# SYMBOLS), the answer worked out by hand. Swapping a and b anywhere in the search or in
# the answer's arithmetic changes every one of these answers.
#   normal    a, b as written; result as written           (82-18: 82 - 18 = 64)
#   reversed  a, b and the result's digits read backwards  (49-57: 94 - 75 = 19 -> 91)
#   mirrored  a = right backwards, b = left backwards, the whole result backwards
#             (34-43: 34 - 43 = -9 -> "-9" -> "9-")
ORDERED = [
    ("normal", "sub", [("82-18", "64"), ("42-25", "17"), ("73+67", "140"), ("70+93", "163")],
     "58-36", "22"),  # 58 - 36
    ("normal", "rsub", [("50-13", "-37"), ("12-13", "1"), ("93+79", "172"), ("11+58", "69")],
     "97-37", "-60"),  # 37 - 97
    ("normal", "cat", [("13-77", "1377"), ("38-66", "3866"), ("73+80", "5840"),
                       ("39+54", "2106")], "39-96", "3996"),
    ("normal", "rcat", [("52-74", "7452"), ("64-74", "7464"), ("95+34", "129"), ("48+46", "94")],
     "85-73", "7385"),
    ("reversed", "sub", [("12-66", "-54"), ("49-57", "91"), ("32+03", "096"),
                         ("67+06", "0654")], "75-27", "-51"),  # 57 - 72 = -15
    ("reversed", "rsub", [("36-45", "-9"), ("01-87", "86"), ("97+98", "1307"),
                          ("88+25", "6754")], "86-68", "81"),  # 86 - 68 = 18
    ("reversed", "cat", [("93-19", "1993"), ("23-08", "0823"), ("48+33", "711"),
                         ("12+08", "101")], "24-41", "4124"),  # 42 then 14 = 4214
    ("reversed", "rcat", [("74-81", "7481"), ("13-03", "1303"), ("24+77", "4323"),
                          ("13+49", "4192")], "44-29", "4429"),  # 92 then 44 = 9244
    ("mirrored", "sub", [("34-43", "9-"), ("24-32", "91-"), ("63+57", "0072"),
                         ("56+78", "5565")], "83-21", "62-"),  # 12 - 38 = -26
    ("mirrored", "rsub", [("82-06", "23-"), ("03-41", "61"), ("47+76", "141"), ("46+69", "061")],
     "83-97", "14-"),  # b - a = 38 - 79 = -41
    ("mirrored", "cat", [("77-83", "7783"), ("31-39", "3139"), ("69+06", "0675"),
                         ("15+38", "3324")], "09-49", "0949"),  # 94 then 90 -> 9490
    ("mirrored", "rcat", [("84-71", "7184"), ("73-62", "6273"), ("94+61", "487"),
                          ("91+91", "163")], "84-94", "9484"),  # 48 then 49 -> 4849
]  # fmt: skip


@pytest.mark.parametrize(
    "setting, operation, examples, query, answer", ORDERED, ids=[f"{s}-{o}" for s, o, *_ in ORDERED]
)
def test_every_order_sensitive_operation_in_every_setting(
    setting: str, operation: str, examples: list, query: str, answer: str
) -> None:
    solution = cryptarithm.solve(cryptarithm.parse(_crypt(examples, query)))
    assert isinstance(solution, Solution)
    assert solution.answer == _encode(answer, SYMBOLS)
    assert solution.trace_complete
    rule = solution.rule
    if BY_NAME[operation].kind != "cat":  # a concatenation is read at the symbol level
        assert (rule.setting.name, dict(rule.operations)["-"]) == (setting, operation)
        assert rule.derivation is not None and rule.derivation.setting.name == setting
        _verify_derivation(solution)
    assert extract_answer(cryptarithm.render(solution)) == solution.answer


# ---------------------------------------------------------------- derived traces

# A normal-setting row ('-' multiplies, '>' adds) whose trace search is short enough to show.
DERIVED = (
    [("46-26", "1196"), ("98>64", "162"), ("50-15", "750"), ("54>53", "107")],
    "62-63",
)


def _derived() -> Solution:
    examples, query = DERIVED
    solution = cryptarithm.solve(cryptarithm.parse(_crypt(examples, query)))
    assert isinstance(solution, Solution)
    return solution


def _lengths(op, setting: str) -> set[tuple[int, int]]:
    """(length, sign place) of everything `op` writes for operands 10..99, by brute force."""
    out = set()
    for x in range(10, 100):
        for y in range(10, 100):
            value = op(str(x), str(y))
            if isinstance(value, str):
                out.add((4, -1))
            elif value >= 0:
                out.add((len(str(value)), -1))
            else:
                size = len(str(value))
                out.add((size, size - 1 if setting == "mirrored" else 0))
    return out


def _units(op, x: int, y: int, negative: bool) -> set[int]:
    """Units digits of |op(a, b)| for a ending in x, b in y, by brute force over 10..99."""
    return {
        abs(value) % 10
        for a in range(10 + x, 100, 10)
        for b in range(10 + y, 100, 10)
        if (value := op(str(a), str(b))) < 0 or not negative
        if (value < 0) == negative
    }


def _leading(rhs: str, setting: str) -> str:
    return rhs[0] if setting == "normal" else rhs[-1]


def _units_at(rhs: str, setting: str, negative: bool) -> str:
    if setting == "normal":
        return rhs[-1]
    return rhs[1] if negative and setting == "reversed" else rhs[0]


def _verify_derivation(solution: Solution) -> int:
    """Recompute every line of a derived trace; the number of lines checked.

    Each step's decoding so far is replayed from the digits its ancestors (the choices it
    was taken under) and it assigned; every claim is checked against it, and every
    '-> no fit further on' against the complete list of fits."""
    puzzle, derivation = solution.puzzle, solution.rule.derivation
    steps = derivation.steps
    fits = cryptarithm.find_fits(puzzle).fits
    shown = {
        lhs.op: [(l, r) for l, r in puzzle.examples if l.op == lhs.op] for lhs, _ in puzzle.examples
    }
    state: list[tuple[str, dict, dict]] = []  # per step: setting, digits, operations after it
    for i, step in enumerate(steps):
        if step.parent >= 0:
            name, digits, ops = (
                state[step.parent][0],
                dict(state[step.parent][1]),
                dict(state[step.parent][2]),
            )
        else:
            name, digits, ops = (step.setting.name if step.setting else None), {}, {}
        before = dict(digits)
        for symbol, digit in step.assigned:
            assert digits.get(symbol, digit) == digit
            digits[symbol] = digit
        if step.kind == "setting":
            assert step.parent == -1
            sign_end = [(l, r) for l, r in puzzle.examples if len(r) > 1 and r[-1] == l.op]
            sign_front = [(l, r) for l, r in puzzle.examples if len(r) > 1 and r[0] == l.op]
            ruled = sign_front if name == "mirrored" else sign_end
            assert bool(step.text) == bool(ruled)
            if ruled:
                assert step.text.startswith(f"{ruled[0][0].text} = {ruled[0][1]}")
        elif step.kind == "example":
            assert (step.lhs, step.rhs) in puzzle.examples
        elif step.kind == "skip":
            where = step.other or f"{step.lhs.text} = {step.rhs}"
            lhs, rhs = next((l, r) for l, r in shown[step.lhs.op] if f"{l.text} = {r}" == where)
            if step.text.startswith("never writes"):
                sign = rhs.find(lhs.op)
                assert (len(rhs), sign) not in _lengths(step.op, name)
                plural = "" if len(rhs) == 1 else "s"
                assert step.text.startswith(f"never writes {len(rhs)} symbol{plural}")
            elif step.text.startswith("would copy"):
                # cat writes left+right symbols (normal, mirrored) or right+left (reversed);
                # b then a (rcat) the other way round
                forward = (step.op.name == "cat") == (name != "reversed")
                copy = lhs.left + lhs.right if forward else lhs.right + lhs.left
                assert step.text.endswith(copy) and copy != rhs
            else:  # the hundreds digit of a sum of two operands 10..99 is 1
                assert step.op.kind == "add"
                leads = {
                    _leading(r, name) for _, r in shown[lhs.op] if len(r) == 3 and lhs.op not in r
                }
                if "start differently" in step.text:
                    assert len(leads) > 1
                else:
                    claim = step.text.rsplit("but ", 1)[1]  # "S is D"
                    symbol, digit = claim.split(" is ")
                    assert digits[symbol] == digit and leads
                    assert (symbol in leads) != (digit == "1")
        elif step.kind == "try":
            assert step.lhs.op not in ops
            ops[step.lhs.op] = step.op
        elif step.kind == "pin":
            ((symbol, digit),) = step.assigned
            assert digit == "1" and step.op.kind == "add"
            assert symbol in {_leading(r, name) for _, r in shown[step.lhs.op] if len(r) == 3}
            assert step.value == 99 + 99 + step.op.offset
        elif step.kind == "zero":
            ((symbol, digit),) = step.assigned
            a, b = read_operands(step.lhs.left, step.lhs.right, Setting(name))
            assert digit == "0" and symbol in (a[0], b[0]) and before[symbol] == "0"
        elif step.kind == "units":
            negative = step.lhs.op in step.rhs
            options = _units(step.op, int(step.a), int(step.b), negative)
            assert step.value == " or ".join(
                map(str, sorted(options, key=lambda v: str(step.value).index(str(v))))
            )
            at = _units_at(step.rhs, name, negative)
            if at in digits:
                assert step.ok == (int(digits[at]) in options)
            elif not step.ok:
                assert all(str(v) in digits.values() for v in options)
        elif step.kind == "solve":
            negative = step.lhs.op in step.rhs
            at = _units_at(step.rhs, name, negative)
            used = set(digits.values())
            for d in "0123456789":
                target = int(d) if step.b == at else int(digits[at])
                good = d not in used and target in _units(step.op, int(step.a), int(d), negative)
                a, b = read_operands(step.lhs.left, step.lhs.right, Setting(name))
                good = good and not (step.b in (a[0], b[0]) and d == "0")
                assert (d in step.written) == good, (step, d)
        elif step.kind == "order":  # the sign says which operand is larger
            a, b = read_operands(step.lhs.left, step.lhs.right, Setting(name))
            larger = {("sub", False): a, ("sub", True): b, ("rsub", False): b}.get(
                (step.op.name, step.lhs.op in step.rhs), a
            )
            other = b[0] if step.b == a[0] else a[0]
            assert step.b in (a[0], b[0]) and digits[other] == step.a
            assert step.text == (">=" if step.b == larger[0] else "<=")
            used = set(digits.values())
            allowed = [
                d
                for d in "123456789"
                if d not in used and (d >= step.a if step.text == ">=" else d <= step.a)
            ]
            assert step.written == "".join(allowed)
        elif step.kind == "range":
            lo_a, hi_a = step.a.split("..")
            lo_b, hi_b = step.b.split("..")
            low, high = step.op(lo_a, lo_b), step.op(hi_a, hi_b)
            assert step.value == f"{low}..{high}"
            assert not len(str(low)) <= len(step.rhs) <= len(str(high))
        elif step.kind == "check":
            left = "".join(digits[s] for s in step.lhs.left)
            right = "".join(digits[s] for s in step.lhs.right)
            assert read_operands(left, right, Setting(name)) == (step.a, step.b)
            assert step.op(step.a, step.b) == step.value
            assert apply(step.op, left, right, step.lhs.op, Setting(name)) == step.written
            target = step.rhs
            news = {}
            fits_rhs = len(step.written) == len(target)
            for digit, symbol in zip(step.written, target):
                if symbol == step.lhs.op or digit == step.lhs.op:
                    fits_rhs &= symbol == digit
                elif symbol in digits or symbol in news:
                    fits_rhs &= (digits | news)[symbol] == digit
                elif digit in set(digits.values()) | set(news.values()):
                    fits_rhs = False
                else:
                    news[symbol] = digit
            assert step.ok == fits_rhs, step
            if step.ok:
                assert step.text == (
                    "new " + ", ".join(f"{s}={d}" for s, d in news.items()) if news else ""
                )
                digits |= news
        state.append((name, digits, ops))
        if derivation.failed_later[i]:  # nothing the solver's complete search found extends it
            assert not any(
                fit.setting.name == name
                and all(fit.op_for(s) == op for s, op in ops.items())
                and all(dict(fit.mapping).get(s) == d for s, d in digits.items())
                for fit in fits
            ), step
    # the decoding found fits every example, and the trace ends in the solver's answer
    mapping, ops = dict(derivation.mapping), dict(derivation.ops)
    for lhs, rhs in puzzle.examples:
        if lhs.op in ops:
            left = "".join(mapping[s] for s in lhs.left)
            right = "".join(mapping[s] for s in lhs.right)
            written = apply(ops[lhs.op], left, right, lhs.op, derivation.setting)
            assert "".join(mapping.get(ch, ch) for ch in rhs) == written
    trace = cryptarithm.render(solution)
    assert extract_answer(trace) == solution.answer
    assert len(trace) <= cryptarithm._TRACE_CHARS
    return len(steps)


def test_a_short_search_gives_a_complete_derived_trace() -> None:
    solution = _derived()
    assert solution.answer == _encode("3906", SYMBOLS)
    assert solution.trace_complete and solution.rule.derivation is not None
    trace = cryptarithm.render(solution)
    assert "Digits found" not in trace  # the found-not-derived format
    assert "'-' as a*b: try" in trace and "Every example fits" in trace
    assert extract_answer(trace) == solution.answer
    assert trace.rstrip().endswith(f"\\boxed{{{solution.answer}}}")
    assert _verify_derivation(solution) > 5


@pytest.mark.parametrize("subtype", ["deduce", "guess"])
def test_every_line_of_generated_derived_traces_is_true(subtype: str) -> None:
    checked = rows = 0
    for g in _generated(20, subtype, seed=5):
        outcome = cryptarithm.solve(cryptarithm.parse(g.prompt))
        if isinstance(outcome, Solution) and outcome.rule.derivation is not None:
            checked += _verify_derivation(outcome)
            rows += 1
    assert rows >= 8 and checked >= 800, (rows, checked)  # 13 / 11 rows, ~1,220 / ~930 lines


def test_a_guess_says_so_in_one_line() -> None:
    # '+' adds and '*' multiplies (normal); the query's '-' never appears: its operation
    # is the prior's pick, and the trace says it is a guess
    examples = [("12+34", "46"), ("56+17", "73"), ("23*45", "1035"), ("89*76", "6764")]
    solution = cryptarithm.solve(cryptarithm.parse(_crypt(examples, "93-25")))
    assert isinstance(solution, Solution) and solution.rule.guessed
    trace = cryptarithm.render(solution)
    guesses = [line for line in trace.splitlines() if "(a guess)" in line]
    assert len(guesses) == 1 and "'-' never appears in the examples" in guesses[0]
    assert solution.trace_complete and _verify_derivation(solution) > 0


def test_derived_traces_agree_with_the_solver_and_flag_completeness() -> None:
    """trace_complete exactly when the trace derives the answer (or only joins symbols)."""
    complete = 0
    for g in _generated(25, "deduce", seed=5) + [None]:
        outcome = _derived() if g is None else cryptarithm.solve(cryptarithm.parse(g.prompt))
        if not isinstance(outcome, Solution):
            continue
        puzzle, rule = outcome.puzzle, outcome.rule
        q = puzzle.query
        order = cryptarithm.joining_order(puzzle, q.op)
        pair = {"left+right": q.left + q.right, "right+left": q.right + q.left}
        joined = order is not None and outcome.answer == pair[order]
        assert outcome.trace_complete == (joined or rule.derivation is not None)
        complete += outcome.trace_complete
        trace = cryptarithm.render(outcome)
        assert extract_answer(trace) == outcome.answer
    assert complete >= 15


# ---------------------------------------------------------------- the prior


def test_shipped_prior_is_complete_and_holds_the_twist_structure() -> None:
    prior = cryptarithm.load_prior()
    for group in ("standard", "symbolic"):
        assert abs(sum(prior.settings[group].values()) - 1) < 1e-3
    for setting in ("normal", "reversed", "mirrored"):
        assert abs(sum(prior.operations[setting].values()) - 1) < 1e-3
    assert set(prior.unseen) == set(prior.kinds) == {"+", "-", "*", "other"}
    # a row of three operators has one plain operation (standard normal), two (standard
    # turned, symbolic normal) or three (symbolic turned); a standard row's '-' subtracts
    twists = prior.twists
    assert twists["standard-normal/3/1"] > 0.9 and twists["standard-turned/3/1"] < 0.2
    assert twists["symbolic-normal/3/1"] < 0.2 and twists["symbolic-normal/3/2"] > 0.9
    assert twists["symbolic-turned"] < 0.2 < twists["symbolic-normal"]
    assert prior.kinds["-"]["sub"] > 0.9


def test_a_twisted_row_makes_a_plain_query_likelier() -> None:
    prior = cryptarithm.load_prior()
    fit = Fit(NORMAL, (("*", BY_NAME["mul+1"]), ("+", BY_NAME["add-1"])), ())
    plain, twisted = (
        cryptarithm.twist_factor(fit, "-", BY_NAME[name], "symbolic", prior)
        for name in ("sub", "absdiff")
    )
    assert plain > 1 > twisted


def _fit_script():
    spec = importlib.util.spec_from_file_location(
        "fit_cryptarithm_prior", REPO / "scripts" / "fit_cryptarithm_prior.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_recovers_setting_frequencies_from_generated_rows() -> None:
    generated = _generated(40, "deduce", seed=8) + _generated(10, "guess", seed=9)
    rows = [
        (p := cryptarithm.parse(g.prompt), g.answer, cryptarithm.find_fits(p)) for g in generated
    ]
    fitted = _fit_script().fit_prior(rows, iterations=2)
    assert fitted["explained"] >= 35
    prior = cryptarithm.Prior.from_json(fitted)  # the fitted fields load as a prior
    truth = Counter(g.rule[1]["setting"] for g in generated)
    by_group = Counter(cryptarithm.row_group(p) for p, _, _ in rows)
    for setting, count in truth.items():
        fitted_share = sum(
            prior.settings[group][setting] * n / len(rows) for group, n in by_group.items()
        )
        # Many rows read the same reversed as mirrored (their operations are symmetric): the
        # examples leave that split to the prior, so those two settings get a wider margin.
        margin = 0.1 if setting == "normal" else 0.15
        assert abs(fitted_share - count / len(rows)) < margin, (setting, fitted_share)


def test_prior_missing_field_is_named() -> None:
    fields = cryptarithm.Prior.flat().__dict__ | {}
    del fields["twists"]
    with pytest.raises(ValueError, match="twists"):
        cryptarithm.Prior.from_json(fields)


# ---------------------------------------------------------------- ceiling analysis


def _bench_module(name: str, monkeypatch):
    """bench/<name>.py, loaded by path (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # a dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ceiling(monkeypatch):
    """bench/cryptarithm_ceiling.py (its oracle needs scipy)."""
    pytest.importorskip("scipy")
    return _bench_module("cryptarithm_ceiling", monkeypatch)


def test_ceiling_finds_no_coverage_gap_on_generated_rows(ceiling) -> None:
    """bench/cryptarithm_ceiling.py on rows the solver's own space generates: every gold
    answer is among the hypotheses (no class c) and a wrong row is never unambiguous
    (no class d); the one-answer row it judges is right."""
    prior = cryptarithm.load_prior()
    verdicts = []
    for i, g in enumerate(_generated(12, "deduce", seed=21)):
        puzzle = cryptarithm.parse(g.prompt)
        result = cryptarithm.find_fits(puzzle)
        verdicts.append(ceiling.judge(str(i), puzzle, g.answer, result, prior))
    assert all(v.klass in ("", "a", "b") and v.gold_among for v in verdicts)
    assert all(v.right and v.oracle == 1 for v in verdicts if v.answers == 1)
    assert any(v.right for v in verdicts)


def test_ceiling_study_of_generated_rows_holds_every_row_out(ceiling) -> None:
    """`--generated N`: N seeded deduce puzzles, each judged once under a prior fitted on
    the other fold (the two folds hold different rows), the same puzzles for one seed."""
    rows = ceiling.generated_rows(16, seed=3)
    again = ceiling.generated_rows(16, seed=3)
    assert {i: (p, gold) for i, (p, gold, _) in rows.items()} == {
        i: (p, gold) for i, (p, gold, _) in again.items()
    }
    found = ceiling.verdicts(rows)
    assert sorted(v.row_id for v in found) == sorted(rows)
    assert {ceiling._fold(i) for i in rows} == {0, 1}
    assert all(v.gold_among for v in found)


def test_exact_prior_weighs_fits_by_the_generators_draws_and_restores_the_solver(
    monkeypatch,
) -> None:
    """bench/cryptarithm_exact_prior.py: the generator's own frequencies stand in for the
    fitted prior only inside `exact_weights`; a fit whose operations the generator never
    draws together weighs (almost) nothing there."""
    exact = _bench_module("cryptarithm_exact_prior", monkeypatch)
    configs = exact.sample_configs(300)
    settings = ("normal", "reversed", "mirrored")
    assert set(configs) == {(g, s) for g in ("standard", "symbolic") for s in settings}
    fit_weight = cryptarithm._fit_weight
    # a standard normal row holds one plain operation (`twist_class`), so mul with add+1
    drawn = Fit(NORMAL, (("*", BY_NAME["mul"]), ("+", BY_NAME["add+1"])), ())
    never = Fit(NORMAL, (("-", BY_NAME["add"]), ("+", BY_NAME["add"])), ())
    with exact.exact_weights(configs, 300):
        assert cryptarithm._fit_weight is not fit_weight
        assert cryptarithm._fit_weight(drawn, "standard", None) > 100 * cryptarithm._fit_weight(
            never, "standard", None
        )
    assert cryptarithm._fit_weight is fit_weight


# ---------------------------------------------------------------- dev accuracy (slow)

# Measured on train_dev.csv (`reasonlab solve` / `reasonlab traces`), floors a point or
# two below: deduce 374/516, guess 49/129 right; 386 of the 423 right answers traced.
_DEV_FLOORS = {"deduce": 366, "guess": 47, "complete": 378}


@pytest.mark.slow
def test_dev_accuracy_and_trace_completeness(dev_rows) -> None:
    right = {"deduce": 0, "guess": 0}
    complete = lines = 0
    start = time.perf_counter()
    for row in dev_rows[cryptarithm.NAME]:
        kind = classify(row["prompt"])
        outcome = solve_prompt(row["prompt"], kind.family)
        if isinstance(outcome, Solution) and is_correct(row["answer"], outcome.answer):
            right[kind.subtype] += 1
            complete += outcome.trace_complete
            if outcome.rule.derivation is not None:
                lines += _verify_derivation(outcome)
    elapsed = time.perf_counter() - start
    assert right["deduce"] >= _DEV_FLOORS["deduce"], right
    assert right["guess"] >= _DEV_FLOORS["guess"], right
    assert complete >= _DEV_FLOORS["complete"], complete
    assert lines > 20_000  # every line of every derived dev trace recomputed
    assert elapsed < 400
