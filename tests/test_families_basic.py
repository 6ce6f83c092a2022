"""The four easy families (numeral, unit_conversion, gravity, cipher): parse, solve, render, generate."""

from __future__ import annotations

import random
import re
from collections import Counter
from decimal import Decimal

import pytest

from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles import cipher, gravity, numeral, unit_conversion
from reasonlab.puzzles.base import PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.linear_fit import fit_ratio, multiply_steps, plain, round_sig
from reasonlab.puzzles.registry import classify, family_module, solve_prompt

FAMILIES = ("numeral", "unit_conversion", "gravity", "cipher")

NUMERAL_HEAD = numeral.HEADER
NUMERAL_QUERY = "Now, write the number 38 in the Wonderland numeral system."
UNIT_HEAD = unit_conversion.HEADER
UNIT_QUERY = "Now, convert the following measurement: 25.09 m"
GRAVITY_HEAD = gravity.HEADER
GRAVITY_QUERY = "Now, determine the falling distance for t = 2.41s given d = 0.5*g*t^2."
CIPHER_HEAD = cipher.HEADER


def lines(*parts: str) -> str:
    return "\n".join(parts)


# --- broken prompts: a clear PuzzleFormatError or an Unsolved with a reason, never a crash ---

# (family, prompt, expected kind, words the message must contain)
BROKEN = [
    # numeral: not Roman, malformed lines, missing pieces
    ("numeral", lines(NUMERAL_HEAD, "4 -> IIII", NUMERAL_QUERY), "unsolved", "not roman"),
    (
        "numeral",
        lines(NUMERAL_HEAD, "11 -> XI", "12 -> 1100", NUMERAL_QUERY),
        "unsolved",
        "not roman",
    ),
    ("numeral", lines(NUMERAL_HEAD, "11 => XI", NUMERAL_QUERY), "format", "example 1"),
    (
        "numeral",
        lines(NUMERAL_HEAD, "11 -> XI", "Now, write the number  in the Wonderland numeral system."),
        "format",
        "query",
    ),
    ("numeral", lines(NUMERAL_HEAD, NUMERAL_QUERY), "format", "at least one example"),
    ("numeral", lines("Some other header:", "11 -> XI", NUMERAL_QUERY), "format", "header"),
    (
        "numeral",
        lines(
            NUMERAL_HEAD, "11 -> XI", "Now, write the number 0 in the Wonderland numeral system."
        ),
        "unsolved",
        "outside",
    ),
    # unit conversion: examples no single k fits, malformed numbers
    (
        "unit_conversion",
        lines(UNIT_HEAD, "10.0 m becomes 5.00", "20.0 m becomes 30.00", UNIT_QUERY),
        "unsolved",
        "contradict",
    ),
    (
        "unit_conversion",
        lines(UNIT_HEAD, "10.0 m becomes 5.00", "10.0 m becomes 5.02", UNIT_QUERY),
        "unsolved",
        "contradict",
    ),
    ("unit_conversion", lines(UNIT_HEAD, "10.0 m becomes five", UNIT_QUERY), "format", "example 1"),
    ("unit_conversion", lines(UNIT_HEAD, "0.0 m becomes 0.00", UNIT_QUERY), "format", "x > 0"),
    (
        "unit_conversion",
        lines(UNIT_HEAD, "10.0 m becomes 5.00", "Now, convert the following measurement: m"),
        "format",
        "query",
    ),
    # gravity
    (
        "gravity",
        lines(
            GRAVITY_HEAD,
            "For t = 1.0s, distance = 4.9 m",
            "For t = 2.0s, distance = 4.9 m",
            GRAVITY_QUERY,
        ),
        "unsolved",
        "contradict",
    ),
    (
        "gravity",
        lines(GRAVITY_HEAD, "For t = 1.0s distance = 4.9 m", GRAVITY_QUERY),
        "format",
        "example 1",
    ),
    (
        "gravity",
        lines(GRAVITY_HEAD, "For t = 1.0s, distance = 4.9 m", "Now, determine the distance."),
        "format",
        "query",
    ),
    # cipher: conflicting letters, lengths, empty query, a word outside the list
    (
        "cipher",
        lines(CIPHER_HEAD, "abc -> cat", "abd -> dog", "Now, decrypt the following text: abc"),
        "unsolved",
        "maps to both",
    ),
    (
        "cipher",
        lines(CIPHER_HEAD, "abc -> cat", "dbe -> cab", "Now, decrypt the following text: abc"),
        "unsolved",
        "both map to",
    ),
    (
        "cipher",
        lines(CIPHER_HEAD, "abc -> cats", "Now, decrypt the following text: abc"),
        "format",
        "lengths differ",
    ),
    (
        "cipher",
        lines(CIPHER_HEAD, "abc -> cat", "Now, decrypt the following text: "),
        "format",
        "query",
    ),
    (
        "cipher",
        lines(CIPHER_HEAD, "abc -> Cat", "Now, decrypt the following text: abc"),
        "format",
        "example 1",
    ),
    (
        "cipher",
        lines(CIPHER_HEAD, "abc -> cat", "Now, decrypt the following text: abc zzzzzzzzzzzz"),
        "unsolved",
        "no listed word",
    ),
]


@pytest.mark.parametrize(("family", "prompt", "kind", "words"), BROKEN)
def test_broken_prompts_give_a_reason(family: str, prompt: str, kind: str, words: str) -> None:
    module = family_module(family)
    if kind == "format":
        with pytest.raises(PuzzleFormatError, match=re.compile(re.escape(words), re.IGNORECASE)):
            module.parse(prompt)
    else:
        result = module.solve(module.parse(prompt))
        assert isinstance(result, Unsolved)
        assert words in result.reason.lower()
    # Through the registry a broken prompt is always an Unsolved, never an exception.
    assert isinstance(solve_prompt(prompt, family), Unsolved)


@pytest.mark.parametrize("family", FAMILIES)
def test_mutated_prompts_never_crash(family: str) -> None:
    """Random one-character edits of real-shaped prompts: a Solution or an Unsolved, no exception."""
    rng = random.Random(family)
    module = family_module(family)
    for generated in _generated(family, seed=6, size=200):
        text = list(generated.prompt)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(text))
            text[position : position + rng.randint(0, 1)] = rng.choice(
                ["", "a", "0", ".", " ", "\n", "X", "->"]
            )
        result = solve_prompt("".join(text), family)
        if isinstance(result, Solution):
            assert module.render(result).endswith("}")
        else:
            assert result.reason


def test_unknown_cipher_word_keeps_a_partial_decryption() -> None:
    prompt = lines(CIPHER_HEAD, "abc -> cat", "Now, decrypt the following text: abc zzzzzzzzzzzz")
    result = cipher.solve(cipher.parse(prompt))
    assert isinstance(result, Unsolved) and result.partial == "cat ????????????"


# --- hand-made puzzles with known answers ------------------------------------------------

# (family, prompt, answer)
SOLVED = [
    ("numeral", lines(NUMERAL_HEAD, "11 -> XI", "94 -> XCIV", NUMERAL_QUERY), "XXXVIII"),
    (
        "numeral",
        lines(
            NUMERAL_HEAD, "4 -> IV", "Now, write the number 100 in the Wonderland numeral system."
        ),
        "C",
    ),
    (
        "unit_conversion",
        lines(UNIT_HEAD, "10.0 m becomes 5.00", "20.0 m becomes 10.00", UNIT_QUERY),
        "12.55",
    ),
    (
        "gravity",
        lines(
            GRAVITY_HEAD,
            "For t = 1.0s, distance = 4.9 m",
            "For t = 2.0s, distance = 19.6 m",
            GRAVITY_QUERY,
        ),
        "28.46",
    ),
    # every letter known from the examples
    ("cipher", lines(CIPHER_HEAD, "xyz -> cat", "Now, decrypt the following text: zyx"), "tac"),
    # "k?ng" is only "king": k, n, g known from the examples, i from the word list
    ("cipher", lines(CIPHER_HEAD, "pqr -> kng", "Now, decrypt the following text: pwqr"), "king"),
]


@pytest.mark.parametrize(("family", "prompt", "answer"), SOLVED)
def test_hand_made_puzzles(family: str, prompt: str, answer: str) -> None:
    result = solve_prompt(prompt, family)
    assert isinstance(result, Solution), result
    assert result.answer == answer
    assert extract_answer(family_module(family).render(result)) == answer


def test_cipher_rule_says_which_letters_came_from_the_word_list() -> None:
    result = cipher.solve(
        cipher.parse(lines(CIPHER_HEAD, "pqr -> kng", "Now, decrypt the following text: pwqr"))
    )
    assert isinstance(result, Solution)
    assert result.rule.inferred == (("w", "i"),)
    assert result.rule.from_list == ("pwqr",)


def test_fit_reports_residuals_per_example() -> None:
    result = unit_conversion.solve(
        unit_conversion.parse(
            lines(UNIT_HEAD, "10.0 m becomes 5.00", "20.0 m becomes 10.01", UNIT_QUERY)
        )
    )
    assert isinstance(result, Solution)
    fit = result.rule.fit
    assert len(fit.residuals) == 2 and fit.max_residual <= Decimal("0.005")
    assert fit.low <= fit.estimate <= fit.high


# --- the shared arithmetic --------------------------------------------------------------

# (a, b, product, trace)
PRODUCTS = [
    ("4.85", "4.85", "23.5225", "4.85 * (4 + 0.8 + 0.05) = 19.4 + 3.88 + 0.2425 = 23.5225"),
    (
        "0.6636",
        "25.09",
        "16.649724",
        "0.6636 * (20 + 5 + 0.09) = 13.272 + 3.318 + 0.059724 = 16.649724",
    ),
    ("0.6636", "2", "1.3272", "0.6636 * 2 = 1.3272"),
    ("1.5", "100", "150", "1.5 * 100 = 150"),
]


@pytest.mark.parametrize(("a", "b", "product", "trace"), PRODUCTS)
def test_multiply_steps(a: str, b: str, product: str, trace: str) -> None:
    value, text = multiply_steps(Decimal(a), Decimal(b))
    assert value == Decimal(product) and text == trace


# (value, digits, rounded)
ROUNDINGS = [("0.66359994", 6, "0.663600"), ("8.6961175", 6, "8.69612"), ("123.4565", 6, "123.457")]


@pytest.mark.parametrize(("value", "digits", "rounded"), ROUNDINGS)
def test_round_sig(value: str, digits: int, rounded: str) -> None:
    assert str(round_sig(Decimal(value), digits)) == rounded


def test_fit_interval_and_validation() -> None:
    fit = fit_ratio([(Decimal(10), Decimal("5.00")), (Decimal(20), Decimal("10.00"))])
    assert fit.consistent and plain(fit.estimate) == "0.5" and fit.references == (0, 1)
    with pytest.raises(ValueError):
        fit_ratio([])


# --- generate -> solve round trip over every family ----------------------------------------

ROUND_TRIP_SIZE = 300


def _generated(family: str, seed: int = 0, size: int = ROUND_TRIP_SIZE):
    rng = random.Random(seed)
    module = family_module(family)
    return [module.generate(rng) for _ in range(size)]


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_and_traces(family: str) -> None:
    module = family_module(family)
    correct = 0
    for generated in _generated(family):
        assert classify(generated.prompt).family == family
        result = module.solve(module.parse(generated.prompt))
        assert isinstance(result, Solution), result
        correct += is_correct(generated.answer, result.answer)
        trace = module.render(result)
        # The trace's final box is what the solver answered, read the way the scorer reads it.
        assert trace.endswith("\\boxed{" + result.answer + "}")
        assert is_correct(result.answer, extract_answer(trace))
    assert correct / ROUND_TRIP_SIZE >= 0.995


@pytest.mark.parametrize("family", ["numeral", "cipher"])
def test_exact_families_match_gold_strings(family: str) -> None:
    module = family_module(family)
    for generated in _generated(family, seed=1):
        assert module.solve(module.parse(generated.prompt)).answer == generated.answer


def test_numeric_fits_contain_the_true_constant() -> None:
    for generated in _generated("unit_conversion", seed=2):
        fit = unit_conversion.solve(unit_conversion.parse(generated.prompt)).rule.fit
        assert fit.low <= Decimal(generated.rule) <= fit.high
    for generated in _generated("gravity", seed=2):
        fit = gravity.solve(gravity.parse(generated.prompt)).rule.fit
        assert fit.low <= Decimal(generated.rule) / 2 <= fit.high


def test_cipher_inferred_letters_agree_with_the_key() -> None:
    for generated in _generated("cipher", seed=3):
        rule = cipher.solve(cipher.parse(generated.prompt)).rule
        inverse = {c: p for p, c in generated.rule.items()}
        assert all(inverse[c] == p for c, p in rule.known + rule.inferred)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_bytes(family: str) -> None:
    first, again = _generated(family, seed=7, size=20), _generated(family, seed=7, size=20)
    assert [(g.prompt, g.answer) for g in first] == [(g.prompt, g.answer) for g in again]
    other = _generated(family, seed=8, size=20)
    assert [g.prompt for g in first] != [g.prompt for g in other]


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_rejects_unknown_knobs(family: str) -> None:
    module = family_module(family)
    with pytest.raises(TypeError):
        module.generate(random.Random(0), colour="red")
    assert module.parse(module.generate(random.Random(0), n_examples=1).prompt)


def test_word_classes_regenerate_from_generated_plaintexts() -> None:
    """collect_word_classes (what rebuilds the package data) recovers the packaged list."""
    plaintexts = []
    for generated in _generated("cipher", seed=4, size=2000):
        plaintexts += [plain_text for _, plain_text in cipher.parse(generated.prompt).examples]
    assert cipher.collect_word_classes(plaintexts) == {
        k: list(v) for k, v in cipher.word_classes().items()
    }


# --- statistics against the dev split (skipped without it) ---------------------------------

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _example_count(family: str, prompt: str) -> int:
    puzzle = family_module(family).parse(prompt)
    return len(puzzle.examples)


def _values(prompt: str) -> list[float]:
    """Every number written in the prompt body (not the header or the query formula)."""
    body = prompt.split("\n")[1:]
    return [float(v) for line in body for v in _NUMBER.findall(line.replace("0.5*g*t^2", ""))]


@pytest.mark.parametrize("family", FAMILIES)
def test_generated_statistics_match_dev(family: str, dev_rows) -> None:
    dev = [r["prompt"] for r in dev_rows[family]]
    generated = [g.prompt for g in _generated(family, seed=5, size=1000)]
    dev_counts = Counter(_example_count(family, p) for p in dev)
    gen_counts = Counter(_example_count(family, p) for p in generated)
    assert set(gen_counts) == set(dev_counts)
    for count in dev_counts:
        assert abs(gen_counts[count] / len(generated) - dev_counts[count] / len(dev)) < 0.06
    if family == "cipher":
        dev_words = {w for r in dev_rows[family] for w in r["answer"].split()}
        gen_words = {w for p in generated for _, s in cipher.parse(p).examples for w in s.split()}
        assert gen_words == dev_words
        lengths = lambda prompts: Counter(
            len(s.split()) for p in prompts for _, s in cipher.parse(p).examples
        )
        dev_len, gen_len = lengths(dev), lengths(generated)
        for n in dev_len:
            assert abs(gen_len[n] / gen_len.total() - dev_len[n] / dev_len.total()) < 0.04
        return
    dev_values = [v for p in dev for v in _values(p)]
    gen_values = [v for p in generated for v in _values(p)]
    span = max(dev_values) - min(dev_values)
    assert abs(min(gen_values) - min(dev_values)) < 0.05 * span
    assert abs(max(gen_values) - max(dev_values)) < 0.05 * span
    # Decimal formatting: the share of 1-decimal numbers (Python's float repr) is alike.
    short = lambda vs: sum(1 for v in vs if len(repr(v).split(".")[-1]) == 1) / len(vs)
    if family != "numeral":
        assert abs(short(gen_values) - short(dev_values)) < 0.05


@pytest.mark.parametrize(
    ("family", "required"),
    [("numeral", 1.0), ("unit_conversion", 1.0), ("gravity", 1.0), ("cipher", 0.995)],
)
def test_dev_accuracy(family: str, required: float, dev_rows) -> None:
    rows = dev_rows[family]
    correct = 0
    for row in rows:
        result = solve_prompt(row["prompt"], family)
        correct += isinstance(result, Solution) and is_correct(row["answer"], result.answer)
    assert correct / len(rows) >= required
