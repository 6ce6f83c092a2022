"""Numeric equation puzzles: parse, solve, render and generate (family `equation_numeric`)."""

from __future__ import annotations

import importlib.util
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles import equation_numeric as eqn
from reasonlab.puzzles.base import PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.equation_format import HEADER, QUERY_LEAD, format_equation_prompt
from reasonlab.puzzles.equation_ops import BY_NAME, OPERATIONS, SETTINGS, Setting, apply
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
    assert set(contexts) == {"symbolic/3/1", "symbolic/3/2"}
    assert abs(sum(contexts.values()) - 1) < 1e-9


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
            assert len(text) < 4000  # far inside 7,680 tokens
            symbols_in_answers.update(c for c in solution.answer if not c.isdigit())
    assert symbols_in_answers  # some answers carry an operator symbol (e.g. '}' or '\\')


def test_render_shows_setting_checks_and_query_arithmetic():
    puzzle = eqn.parse(
        prompt([("52/69", "17"), ("34/44", "1"), ("96/83", "13/"), ("12*40", "48")], "69/52")
    )
    text = eqn.render(eqn.solve(puzzle))
    assert "Setting normal fails" in text
    assert "a=25, b=96: 25 - 96 = -71 -> /71 -> 17/" in text
    assert "12*40: a=04, b=21: 4 * 21 = 4 * 20 + 4 * 1 = 80 + 4 = 84 -> 48" in text


def test_render_explains_a_guess():
    puzzle = eqn.parse(prompt([("12+34", "46"), ("50*11", "550"), ("21+21", "42")], "45-30"))
    text = eqn.render(eqn.solve(puzzle))
    assert "'-' never appears in the examples" in text and "unused: subtraction" in text


# --- the prior: shipped file complete, fit script recovers generator frequencies


def test_shipped_prior_is_complete():
    prior = eqn.load_prior()
    assert abs(sum(prior.settings.values()) - 1) < 1e-3
    for setting in ("normal", "reversed", "mirrored"):
        assert abs(sum(prior.operations[setting].values()) - 1) < 1e-3
    assert set(prior.unseen) == {"+", "-", "*", "other"}
    assert set(prior.group_settings) == {"standard", "symbolic"}
    assert prior.group_settings["standard"]["reversed"] > 0.9  # standard rows are reversed
    assert prior.twists["standard/3/0"] < 0.1  # three operators: never all twisted
    assert prior.twists["standard/3/1"] > 0.9  # ... and exactly one plain in standard rows


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
                "symbols": {},
                "examples": {},
                "operators": {},
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
    assert deduce >= 0.97 and guess >= 0.5  # in-sample: the shipped prior was fitted on dev
    assert elapsed < 60
