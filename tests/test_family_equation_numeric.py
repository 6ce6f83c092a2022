"""Numeric equation puzzles: parse, solve, render and generate (family `equation_numeric`)."""

from __future__ import annotations

import importlib.util
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles.base import PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.equations import numeric as eqn
from reasonlab.puzzles.equations import numeric_trace as eqt
from reasonlab.puzzles.equations.ops import (
    BY_NAME,
    KINDS,
    OPERATIONS,
    SETTINGS,
    Setting,
    apply,
    read_operands,
    write_result,
)
from reasonlab.puzzles.equations.prompt import HEADER, QUERY_LEAD, format_equation_prompt
from reasonlab.puzzles.registry import classify, solve_prompt

REPO = Path(__file__).resolve().parents[1]


def prompt(examples: list[tuple[str, str]], query: str) -> str:
    return format_equation_prompt(examples, query)


def generated(subtype: str, count: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [eqn.generate(rng, subtype=subtype) for _ in range(count)]


# --- parse: malformed prompts raise PuzzleFormatError naming what is wrong

MALFORMED = [
    ("no header", "12+34 = 46\nNow, determine the result for: 11+11", "not an equation prompt"),
    ("symbol operands", prompt([("a{+b!", "46")], "11+11"), "numeric"),
    ("empty result", prompt([("12+34", "")], "11+11"), "empty result"),
    ("short query", prompt([("12+34", "46")], "1+11"), "5-character"),
    ("no ' = '", f"{HEADER}\n12+34 46\n{QUERY_LEAD}11+11", "without ' = '"),
]


@pytest.mark.parametrize("label,text,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_parse_rejects_malformed(label, text, words):
    with pytest.raises(PuzzleFormatError, match=words):
        eqn.parse(text)


def test_solve_prompt_turns_malformed_into_unsolved():
    result = solve_prompt(prompt([("12+34", "")], "11+11"), family="equation_numeric")
    assert isinstance(result, Unsolved) and "malformed" in result.reason


def test_random_rows_never_crash():
    """Arbitrary results and operator symbols: a Solution that renders, or an Unsolved."""
    rng = random.Random(7)
    digits, symbols = "0123456789", "+-*/%!?@#$^&|<>[]{}()'`\\\":"
    solved = 0
    for _ in range(1500):
        examples = []
        for _ in range(rng.randint(1, 5)):
            left, op, right = (
                f"{rng.randint(0, 99):02d}",
                rng.choice(symbols),
                f"{rng.randint(0, 99):02d}",
            )
            if rng.random() < 0.7:  # an operation's true result, in a random setting
                rhs = apply(rng.choice(OPERATIONS), left, right, op, rng.choice(SETTINGS))
            else:
                rhs = "".join(rng.choice(digits + symbols) for _ in range(rng.randint(1, 5)))
            examples.append((left + op + right, rhs))
        query = f"{rng.randint(0, 99):02d}{rng.choice(symbols)}{rng.randint(0, 99):02d}"
        result = eqn.solve(eqn.parse(prompt(examples, query)))
        if isinstance(result, Solution):
            solved += 1
            assert extract_answer(eqn.render(result)) == result.answer
        else:
            assert isinstance(result, Unsolved) and result.reason
    assert solved > 100


# --- solve: hand-built rows with a known reading


# (examples, query, answer, setting): each row fixes its setting and operations
SOLVED = [
    # normal: a+b and a*b, query about '+'
    ([("12+34", "46"), ("50*11", "550"), ("21+21", "42")], "30+45", "75", "normal"),
    # normal subtraction with the minus written as the operator symbol
    ([("31^75", "^44"), ("80^20", "60"), ("15&15", "1515")], "10^45", "^35", "normal"),
    # reversed: 21+43 = 64 -> "46"; 75*76 = 5700 -> "0075"; "51"+"04" -> "4015"
    # (the concatenation rules out mirrored, which would write 15&40 as "1540")
    (
        [("12+34", "46"), ("57*67", "0075"), ("13+22", "35"), ("15&40", "4015")],
        "57*18",
        "5706",
        "reversed",
    ),
    # mirrored: a = right reversed, b = left reversed; 25-96 = -71 -> "17/"
    (
        [("52/69", "17"), ("34/44", "1"), ("96/83", "13/"), ("12*40", "48")],
        "69/52",
        "17/",
        "mirrored",
    ),
]


@pytest.mark.parametrize("examples,query,answer,setting", SOLVED)
def test_solve_known_rows(examples, query, answer, setting):
    solution = eqn.solve(eqn.parse(prompt(examples, query)))
    assert isinstance(solution, Solution)
    assert solution.answer == answer
    assert solution.rule.setting == Setting(setting)
    assert not solution.rule.guessed


# A standard, reversed row whose '-' examples fit both a - b and |a - b| (a > b in both);
# the query has a < b. Dev rows of three operators have one or two plain operations, so
# the other two operators decide: one plain (a * b) -> '-' is twisted (|a - b|);
# none plain (a + b + 1, a * b + 1) -> '-' is plain (a - b).
TWIST_ROWS = [
    ([("21+43", "74"), ("12*31", "372"), ("73-21", "52"), ("85-41", "44")], "25-57", "32"),
    ([("21+43", "74"), ("12*31", "472"), ("73-21", "52"), ("85-41", "44")], "25-57", "-32"),
]


@pytest.mark.parametrize("examples,query,answer", TWIST_ROWS)
def test_plain_and_twisted_neighbours_settle_subtraction(examples, query, answer):
    solution = eqn.solve(eqn.parse(prompt(examples, query)))
    assert solution.answer == answer
    assert solution.candidates > 1  # the examples alone leave it open


# --- symbol groups: standard rows ('+', '-', '*' only) mean what their symbols say

GROUPS = [
    (["+", "-", "*"], "standard"),
    (["+", "+"], "standard"),
    (["+", "/"], "symbolic"),
    (["{", "!"], "symbolic"),
]


@pytest.mark.parametrize("symbols,group", GROUPS)
def test_symbol_group(symbols, group):
    assert eqn.symbol_group(symbols) == group


def test_symbol_class_depends_on_group():
    assert eqn.symbol_class("+", "standard") == "+"
    assert eqn.symbol_class("+", "symbolic") == "other"
    assert eqn.symbol_class("{", "standard") == "other"


def test_twist_contexts_weigh_the_others_candidates():
    fit = eqn.Fit(
        Setting("normal"), (("+", ("add",)), ("-", ("sub", "absdiff")), ("*", ("mul+1",)))
    )
    contexts = eqn.twist_contexts(fit, "*", eqn.load_prior(), "symbolic", 3)
    assert set(contexts) == {"symbolic-normal/3/1", "symbolic-normal/3/2"}
    assert abs(sum(contexts.values()) - 1) < 1e-9


# A row of three has one plain operation in standard and normal symbolic rows, two in
# symbolic rows read reversed or mirrored.
@pytest.mark.parametrize(
    "group,setting,cls",
    [
        ("standard", "reversed", "standard"),
        ("standard", "normal", "standard"),
        ("symbolic", "normal", "symbolic-normal"),
        ("symbolic", "reversed", "symbolic-turned"),
        ("symbolic", "mirrored", "symbolic-turned"),
    ],
)
def test_twist_class(group, setting, cls):
    assert eqn.twist_class(group, Setting(setting)) == cls


def test_shipped_twists_follow_the_class():
    twists = eqn.load_prior().twists
    # two shown twisted operators leave a plain one in standard / normal rows ...
    assert twists["symbolic-normal/3/0"] < 0.05 and twists["standard/3/0"] < 0.05
    # ... and one plain neighbour of two makes the third twisted there, but plain in a
    # reversed or mirrored symbolic row (two plain of three)
    assert twists["symbolic-normal/3/1"] > 0.95 and twists["symbolic-turned/3/1"] < 0.05


# --- the unseen operator: the row's three families always hold a subtraction


def _fit(setting, *candidates):
    return eqn.Fit(Setting(setting), tuple(candidates))


@pytest.mark.parametrize(
    "fit,symbol,group,likeliest",
    [
        # addition and multiplication shown: only a subtraction completes a family set
        (_fit("normal", ("!", ("add",)), ("#", ("mul",))), "@", "symbolic", "sub"),
        # subtraction and addition shown: multiplication (61%) over concatenation (17%)
        (_fit("normal", ("!", ("sub",)), ("#", ("add",))), "@", "symbolic", "mul"),
        # a standard '+' adds or concatenates: never the free multiplication
        (_fit("reversed", ("-", ("sub",)), ("*", ("mul",))), "+", "standard", "add"),
    ],
)
def test_query_kinds_complete_a_family_set(fit, symbol, group, likeliest):
    kinds = eqn.query_kinds(fit, symbol, eqn.load_prior(), group)
    assert abs(sum(kinds.values()) - 1) < 1e-9
    assert max(kinds, key=kinds.get) == likeliest


def test_query_kinds_weigh_the_shown_candidates():
    """'!' may be a subtraction or a concatenation: a subtraction makes the query's set
    {add, mul, sub} or {cat, *, sub}; a concatenation leaves room only with a subtraction."""
    prior = eqn.load_prior()
    both = eqn.query_kinds(_fit("normal", ("!", ("sub", "cat"))), "@", prior, "symbolic")
    sub = eqn.query_kinds(_fit("normal", ("!", ("sub",))), "@", prior, "symbolic")
    cat = eqn.query_kinds(_fit("normal", ("!", ("cat",))), "@", prior, "symbolic")
    assert sub["sub"] < 0.05 < cat["sub"]
    assert min(sub["sub"], cat["sub"]) < both["sub"] < max(sub["sub"], cat["sub"])


def test_unexplained_examples_are_unsolved_with_reason():
    puzzle = eqn.parse(prompt([("12+34", "99999"), ("11+11", "22")], "20+20"))
    result = eqn.solve(puzzle)
    assert isinstance(result, Unsolved)
    assert "12+34 = 99999 fits no operation" in result.reason


def test_inconsistent_operator_is_unsolved():
    """Each example alone has an explanation, but no one operation fits both."""
    puzzle = eqn.parse(prompt([("12+34", "46"), ("10+10", "100")], "20+20"))
    result = eqn.solve(puzzle)
    assert isinstance(result, Unsolved) and "no single operation" in result.reason


def test_guess_row_takes_an_unused_family():
    """'+' and '*' used as addition and multiplication: the unseen '-' is a subtraction."""
    puzzle = eqn.parse(prompt([("12+34", "46"), ("50*11", "550"), ("21+21", "42")], "45-30"))
    solution = eqn.solve(puzzle)
    assert solution.rule.guessed
    assert BY_NAME[solution.rule.query_operation].kind == "sub"
    assert solution.answer == "15"


def test_guess_row_with_every_family_used_still_answers():
    examples = [("12+34", "46"), ("50*11", "550"), ("21!21", "2121"), ("40{10", "30")]
    solution = eqn.solve(eqn.parse(prompt(examples, "45@30")))
    assert isinstance(solution, Solution) and solution.answer


def test_answer_pools_hypotheses_the_metric_scores_equal():
    """A guessed product: a*b, a*b+1, a*b-1 are within 1% of each other, so they agree."""
    puzzle = eqn.parse(prompt([("12+34", "46"), ("40-10", "30"), ("21!21", "2121")], "45*30"))
    solution = eqn.solve(puzzle)
    assert is_correct("1350", solution.answer) and is_correct("1351", solution.answer)
    assert solution.agreeing >= 3


# --- generate: exact wording, the subtype the registry sees, ground truth that fits


@pytest.mark.parametrize("subtype", ["deduce", "guess"])
def test_generated_rows_classify_and_truth_fits(subtype):
    for g in generated(subtype, 150, seed=1):
        assert classify(g.prompt).family == "equation_numeric"
        assert classify(g.prompt).subtype == subtype == g.subtype
        puzzle = eqn.parse(g.prompt)
        assert 3 <= len(puzzle.examples) <= 5
        truth = {f.setting.name: f for f in eqn.fits(puzzle)}[g.rule["setting"]]
        for symbol, names in truth.candidates:
            assert g.rule["operations"][symbol] in names
        query_op = BY_NAME[g.rule["operations"][g.rule["query"]]]
        assert (
            apply(query_op, puzzle.query.left, puzzle.query.right, puzzle.query.op, truth.setting)
            == g.answer
        )


def test_generate_rejects_unknown_subtype():
    with pytest.raises(ValueError, match="subtype"):
        eqn.generate(random.Random(0), subtype="other")


def test_generated_rows_of_three_mix_plain_and_twisted():
    for g in generated("deduce", 300, seed=8):
        ops = [BY_NAME[name] for name in g.rule["operations"].values()]
        if len(ops) == 3:
            assert 1 <= sum(op.plain for op in ops) <= 2


def test_generated_rows_have_three_operators_and_show_them_as_dev_does():
    """Every row has three operators, nearly always a subtraction among them (the fit
    smooths the other family sets); the examples use them at random, so a mix like dev's
    (500 deduce, 100 guess rows) shows one operator in 6% of rows, two in 52%, three in 42%."""
    shown, with_sub = Counter(), 0
    for g in generated("deduce", 500, seed=9) + generated("guess", 100, seed=9):
        kinds = [BY_NAME[name].kind for name in g.rule["operations"].values()]
        assert len(kinds) == 3
        with_sub += "sub" in kinds
        shown[len({lhs.op for lhs, _ in eqn.parse(g.prompt).examples})] += 1
    assert with_sub >= 0.95 * 600
    for count, share in ((1, 0.06), (2, 0.52), (3, 0.42)):
        assert abs(shown[count] / 600 - share) < 0.05


def test_generate_is_reproducible():
    assert generated("deduce", 5, seed=3) == generated("deduce", 5, seed=3)


# --- solver accuracy on generated rows (the generator draws with the dev frequencies)


@pytest.mark.parametrize("subtype,floor", [("deduce", 0.95), ("guess", 0.55)])
def test_solver_accuracy_on_generated(subtype, floor):
    rows = generated(subtype, 400, seed=2)
    correct = 0
    for g in rows:
        solution = eqn.solve(eqn.parse(g.prompt))
        assert isinstance(solution, Solution)  # generated rows are always explainable
        correct += is_correct(g.answer, solution.answer)
    assert correct / len(rows) >= floor


# --- render: the metric reads back the answer, traces stay short


def test_render_round_trips_through_the_metric():
    symbols_in_answers = Counter()
    for subtype in ("deduce", "guess"):
        for g in generated(subtype, 300, seed=4):
            solution = eqn.solve(eqn.parse(g.prompt))
            text = eqn.render(solution)
            assert extract_answer(text) == solution.answer
            assert text.endswith("\\boxed{" + solution.answer + "}")
            assert len(text) < 4000  # under ~1,350 tokens at 3 chars a token; the cap is 7,680
            symbols_in_answers.update(c for c in solution.answer if not c.isdigit())
    assert symbols_in_answers  # some answers carry an operator symbol (e.g. '}' or '\\')


# The hand-built mirrored row: the sign tell skips normal and reversed, '*' reads 12*40
# as a=04, b=21 (4*21 = 84, written 48), the query 25-96 = -71 is written 17/.
MIRRORED_ROW = ([("52/69", "17"), ("34/44", "1"), ("96/83", "13/"), ("12*40", "48")], "69/52")


@pytest.mark.parametrize(
    "row,snippets",
    [
        (
            MIRRORED_ROW,
            [
                "Skip normal, reversed: 96/83=13/ ends with '/'.",
                " '*' 12*40=48: a=04 b=21 target 84\n  a+b: 4+21 = 25 no; a*b: 4*21 = 84 yes",
                "check 96/83=13/: a=38 b=69 target -31: a-b: 38-69 = -31 ok",
                "Query 69/52: a=25 b=96: a-b: 25-96 = -71, written 17/.",
            ],
        ),
        # reversed fails on '*': 50*11=550 reads back as 055, which only a concatenation gives
        (
            ([("12+34", "46"), ("50*11", "550"), ("21+21", "42")], "45-30"),
            [
                (
                    "target 055 (leading 0: only a concatenation can give it)\n"
                    "  cat(a,b): 0511 no; cat(b,a): 1105 no\n  nothing gives 055: reversed fails."
                ),
                "a*b: 50*11 = 50*10 + 50*1 = 500 + 50 = 550 yes",
                "used here: addition, multiplication; likeliest for '-': a-b.",
                "This answer is a guess: the examples leave it open, and it is about",
            ],
        ),
        # the query's operator is searched to the end; the neighbours (one plain) pick |a-b|
        (
            TWIST_ROWS[0][:2],
            [
                "'-' is the query's operator: try the rest too",
                "'-' fits: a-b, |a-b|; |a-b| chosen since 1 of the other 2 operators are plain",
                "Query 25-57: a=52 b=75: |a-b|: |52-75| = 23, written 32.",
            ],
        ),
    ],
    ids=["mirrored", "guess", "twist"],
)
def test_render_shows_the_search(row, snippets):
    text = eqn.render(eqn.solve(eqn.parse(prompt(*row))))
    for snippet in snippets:
        assert snippet in text


# --- render faithfulness: every value the trace writes is recomputed from the table

_LABEL_OPS = {label: BY_NAME[name] for name, label in eqt.LABELS.items()}
_LABEL = "|".join(re.escape(label) for label in sorted(_LABEL_OPS, key=len, reverse=True))
_CANDIDATE = re.compile(
    rf"(?:^|; |: )(?P<label>{_LABEL}): (?P<steps>[^;]*?) (?P<verdict>yes|no|ok)(?=;|$)"
)
_READ = re.compile(
    r"(?P<lhs>\d\d\D\d\d)=(?P<rhs>\S+): a=(?P<a>\d\d) b=(?P<b>\d\d) target (?P<t>-?\d+)"
)
_QUERY = re.compile(
    rf"^Query (?P<lhs>\S+): a=(?P<a>\d\d) b=(?P<b>\d\d): (?P<label>{_LABEL}): (?P<steps>.*?)"
    r"(?:, written (?P<written>\S+))?\.$"
)


def _evaluate(part: str) -> int:
    """One side of a written step: digits with + - * ( ), `x mod y` and `|x|`."""
    expr = re.sub(r"\|([^|]*)\|", r"abs(\1)", part.replace(" mod ", "%"))
    if not re.fullmatch(r"[\d+\-*% ()abs]+", expr):
        raise AssertionError(f"unexpected step {part!r}")
    return eval(expr)  # test-only: the pattern above admits integer arithmetic only


def _steps_value(steps: str) -> str:
    """The final value of `x = y = value` (steps after a comma continue the chain), each
    `=` checked to hold."""
    for chain in steps.split(", "):
        parts = chain.split(" = ")
        if len(parts) > 1:
            values = {_evaluate(p) for p in parts}
            assert len(values) == 1, f"false step {chain!r}"
    return steps.split(" = ")[-1]


def check_trace(solution: Solution) -> None:
    """Recompute every reading, candidate value, verdict, choice and the query line."""
    rule = eqn.trace_rule(solution)
    q = solution.puzzle.query
    assert apply(BY_NAME[rule.query_operation], q.left, q.right, q.op, rule.setting) == (
        solution.answer
    )
    if rule is not solution.rule:  # only where answers pool under the metric
        assert solution.rule.setting != rule.setting or solution.rule.query_operation != (
            rule.query_operation
        )
    text = eqn.render(solution)
    setting, reading, searched = None, None, []
    guessed_family, guess_lines = False, 0
    for line in text.splitlines():
        if head := re.match(r"Setting (\w+) \(", line):
            setting = Setting(head[1])
            searched.append(setting)
        if match := _QUERY.match(line):
            op = _LABEL_OPS[match["label"]]
            a, b = read_operands(q.left, q.right, rule.setting)
            assert (match["lhs"], match["a"], match["b"]) == (q.text, a, b)
            assert op is BY_NAME[rule.query_operation]
            assert _steps_value(match["steps"]) == str(op(a, b))
            assert (match["written"] or str(op(a, b))) == solution.answer
            continue
        if read := _READ.search(line):
            lhs = eqn.parse(prompt([(read["lhs"], read["rhs"])], "11+11")).examples[0][0]
            assert (read["a"], read["b"]) == read_operands(lhs.left, lhs.right, setting)
            assert read["t"] == eqt.decode_result(read["rhs"], lhs.op, setting)
            current = (lhs, read["rhs"], read["t"])
            if not line.startswith("  check "):  # an operator's first example: the search's
                reading = current
            line = line[read.end() :]
        else:  # a line going on with the operator's first example
            current = reading
        for match in _CANDIDATE.finditer(line):
            op = _LABEL_OPS[match["label"]]
            lhs, rhs, target = current
            a, b = read_operands(lhs.left, lhs.right, setting)
            value = _steps_value(match["steps"])
            assert value == str(op(a, b)), (line, match.group())
            fits = apply(op, lhs.left, lhs.right, lhs.op, setting) == rhs
            assert (match["verdict"] != "no") == fits == (value == target), match.group()
        if unseen := re.search(r"used here: (.*); likeliest for '(.)': (.*)\.$", line):
            assert rule.guessed and unseen[2] == q.op
            assert _LABEL_OPS[unseen[3]] is BY_NAME[rule.query_operation]
            shown = {BY_NAME[n].kind for s, n, _ in rule.operations if s != q.op}
            assert unseen[1] == ", ".join(eqt.KIND_WORDS[k] for k in KINDS if k in shown)
            assert eqt.family_sets_text(eqn.load_prior().family_sets) in line
            guessed_family = True
        if odds := re.match(r"This answer is a guess: .* about (\d+)% likely\.$", line):
            assert odds[1] == f"{rule.probability * 100:.0f}" and rule.probability < eqt.CERTAIN
            guess_lines += 1
        if fit := re.match(r"'(.)' fits: (.*); (.*) chosen", line):
            chosen = next(x for x in rule.operations if x[0] == q.op)
            assert fit[1] == q.op and _LABEL_OPS[fit[3]] is BY_NAME[rule.query_operation]
            named = {_LABEL_OPS[label].name for label in fit[2].split(", ")}
            assert named == {chosen[1], *chosen[2]}
    assert searched[-1] == rule.setting  # the search ends in the solver's setting
    assert guessed_family == rule.guessed
    assert guess_lines == (rule.probability < eqt.CERTAIN)  # one line, where it is a guess
    assert extract_answer(text) == solution.answer and text.endswith(
        f"\\boxed{{{solution.answer}}}"
    )


@pytest.mark.parametrize("subtype", ["deduce", "guess"])
def test_trace_values_are_true_on_generated_rows(subtype):
    for g in generated(subtype, 200, seed=11):
        check_trace(eqn.solve(eqn.parse(g.prompt)))


@pytest.mark.parametrize("examples,query", [row[:2] for row in SOLVED + TWIST_ROWS])
def test_trace_values_are_true_on_hand_rows(examples, query):
    check_trace(eqn.solve(eqn.parse(prompt(examples, query))))


def test_trace_values_are_true_on_dev(dev_rows):
    for row in dev_rows["equation_numeric"]:
        solution = eqn.solve(eqn.parse(row["prompt"]))
        if isinstance(solution, Solution):
            check_trace(solution)


def test_shown_operators_first_fit_is_the_solvers_pick():
    """The search stops at the first fit in frequency order: the solver's pick."""
    prior = eqn.load_prior()
    for g in generated("deduce", 200, seed=12):
        solution = eqn.solve(eqn.parse(g.prompt))
        order = eqt.operation_order(prior, solution.rule.setting)
        for symbol, name, others in solution.rule.operations:
            if symbol != solution.puzzle.query.op:
                assert next(op.name for op in order if op.name in {name, *others}) == name


# --- reading a result back: decode_result inverts write_result exactly


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_decode_result_inverts_writing(setting):
    rng = random.Random(13)
    for _ in range(2000):
        a, b = f"{rng.randint(0, 99):02d}", f"{rng.randint(0, 99):02d}"
        op, other = rng.choice(OPERATIONS), rng.choice(OPERATIONS)
        written = write_result(op(a, b), "^", setting)
        assert eqt.decode_result(written, "^", setting) == str(op(a, b))
        assert (str(other(a, b)) == str(op(a, b))) == (
            write_result(other(a, b), "^", setting) == written
        )


SIGN_TELLS = [
    ([("31^75", "44^")], {"normal", "reversed"}),  # minus at the end: only mirrored
    ([("31^75", "^44")], {"mirrored"}),  # minus in front: never mirrored
    ([("31^75", "1234"), ("12+34", "46")], set()),
]


@pytest.mark.parametrize("examples,ruled", SIGN_TELLS)
def test_sign_tell(examples, ruled):
    assert set(eqt.sign_tell(eqn.parse(prompt(examples, "11+11")))) == ruled


# --- the prior: shipped file complete, fit script recovers generator frequencies


def test_shipped_prior_is_complete():
    prior = eqn.load_prior()
    assert abs(sum(prior.settings.values()) - 1) < 1e-3
    for setting in ("normal", "reversed", "mirrored"):
        assert abs(sum(prior.operations[setting].values()) - 1) < 1e-3
    assert set(prior.unseen) == {"cat"}  # the one fitted family factor
    assert abs(sum(prior.family_sets.values()) - 1) < 1e-3
    with_sub = sum(p for key, p in prior.family_sets.items() if "sub" in key.split("+"))
    assert with_sub > 0.95  # a row's three operators hold a subtraction
    assert set(prior.group_settings) == {"standard", "symbolic"}
    assert prior.group_settings["standard"]["reversed"] > 0.9  # standard rows are reversed


def _fit_script():
    spec = importlib.util.spec_from_file_location(
        "fit_equation_prior", REPO / "scripts" / "fit_equation_prior.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_recovers_setting_frequencies_from_generated_rows():
    rows = generated("deduce", 300, seed=5) + generated("guess", 100, seed=6)
    fitted = _fit_script().fit_prior([eqn.parse(g.prompt) for g in rows], [g.answer for g in rows])
    truth = Counter(g.rule["setting"] for g in rows)
    for setting, count in truth.items():
        assert abs(fitted["settings"][setting] - count / len(rows)) < 0.05
    eqn.Prior.from_json(fitted)  # the fitted fields load as a prior


def test_prior_missing_field_is_named():
    with pytest.raises(ValueError, match="unseen"):
        eqn.Prior.from_json(
            {
                "settings": {},
                "operations": {},
                "kinds": {},
                "family_sets": {},
                "examples": {},
                "twists": {},
                "group_share": {},
                "group_settings": {},
                "group_symbols": {},
            }
        )


# --- dev split (skipped where the CSV is absent)


def test_dev_accuracy_and_speed(dev_rows):
    start = time.perf_counter()
    scores: Counter = Counter()
    for row in dev_rows["equation_numeric"]:
        kind = classify(row["prompt"])
        result = eqn.solve(eqn.parse(row["prompt"]))
        scores[
            kind.subtype, isinstance(result, Solution) and is_correct(row["answer"], result.answer)
        ] += 1
    elapsed = time.perf_counter() - start
    deduce = scores["deduce", True] / (scores["deduce", True] + scores["deduce", False])
    guess = scores["guess", True] / (scores["guess", True] + scores["guess", False])
    assert deduce >= 0.975 and guess >= 0.58  # in-sample: the shipped prior was fitted on dev
    assert elapsed < 60
