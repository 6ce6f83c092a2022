"""Bit manipulation: the rule space, the search, the Bayesian tie-break, traces, generation."""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import re
from pathlib import Path

import pytest

from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles.base import PuzzleFormatError, Solution, Unsolved, boxed
from reasonlab.puzzles.bits import family as bits
from reasonlab.puzzles.bits.rules import (
    KINDS,
    TRANSFORMS,
    Family,
    Prior,
    Rule,
    Transform,
    consistent_rules,
    expression,
    load_prior,
    near_misses,
    search_any,
)
from reasonlab.puzzles.registry import classify, solve_prompt

REPO = Path(__file__).resolve().parents[1]

XOR, OR, AND, MAJ, CHOICE = 0b0110, 0b1110, 0b1000, 0b11101000, 0b10111000  # bit k = G(key k)


def rule(*names: str, table: int) -> Rule:
    return Rule(tuple(Transform(n[:3], int(n[3:])) for n in names), table)  # type: ignore[arg-type]


# ---- copies of the input ----


@pytest.mark.parametrize(
    "kind, amount, x, expected",
    [
        ("rol", 1, 0b10000001, 0b00000011),  # the top bit wraps to the bottom
        ("rol", 7, 0b00000001, 0b10000000),  # rol7 is a rotation right by 1
        ("shl", 3, 0b11111111, 0b11111000),  # zeros enter at the right
        ("shr", 2, 0b11111111, 0b00111111),  # zeros enter at the left
        ("shr", 7, 0b10000000, 0b00000001),
    ],
)
def test_transform_apply(kind, amount, x, expected):
    assert Transform(kind, amount).apply(x) == expected


@pytest.mark.parametrize("kind, amount", [("ror", 1), ("rol", 0), ("shl", 8)])
def test_transform_rejects_outside_space(kind, amount):
    with pytest.raises(ValueError, match="transform"):
        Transform(kind, amount)


def test_rule_rejects_non_canonical_operands():
    with pytest.raises(ValueError, match="canonical order"):
        Rule((Transform("shr", 1), Transform("rol", 2)), XOR)


# ---- formulas for truth tables ----


@pytest.mark.parametrize(
    "table, arity, text",
    [
        (XOR, 2, "a XOR b"),
        (OR, 2, "a OR b"),
        (AND, 2, "a AND b"),
        (0b0100, 2, "a AND NOT b"),  # key 2 = (a=1, b=0)
        (MAJ, 3, "MAJ(a, b, c)"),
        (CHOICE, 3, "CHOICE(b, c, a)"),  # b ? c : a
    ],
)
def test_expression_names_common_functions(table, arity, text):
    assert expression(table, arity).text("abc") == text


@pytest.mark.parametrize("arity", [1, 2, 3])
def test_every_truth_table_has_a_formula_that_computes_it(arity):
    variables = [
        sum(1 << k for k in range(1 << arity) if (k >> (arity - 1 - i)) & 1) for i in range(arity)
    ]
    mask = (1 << (1 << arity)) - 1
    for table in range(1 << (1 << arity)):
        assert expression(table, arity).eval(variables) & mask == table


def test_rule_apply_matches_its_formula_and_signature():
    r = rule("rol3", "shl1", "shr2", table=0b01101011)
    formula = expression(r.table, r.arity)
    for x in range(256):
        assert r.apply(x) == formula.eval([t.apply(x) for t in r.operands])
    assert r.signature() == bytes(r.apply(x) for x in range(256))


# ---- parsing ----

GOOD = bits.format_prompt([(0b01010001, 0b11011101), (0b00001001, 0b01101101)], 0b00110100)


def test_parse_round_trips_the_generators_wording():
    puzzle = bits.parse(GOOD)
    assert puzzle.examples == ((0b01010001, 0b11011101), (0b00001001, 0b01101101))
    assert puzzle.query == 0b00110100
    assert classify(GOOD).family == bits.NAME


@pytest.mark.parametrize(
    "broken, message",
    [
        (GOOD.replace("8-bit binary", "binary"), "header"),
        (GOOD.replace("Here are some", "Here are"), "second line"),
        (GOOD.replace("01010001 -> 11011101", "0101001 -> 11011101"), "example 1 malformed"),
        (GOOD.replace("output for: 00110100", "output for: 0011"), "query"),
        (GOOD.replace("00001001 -> 01101101", "01010001 -> 01101101"), "two different outputs"),
    ],
)
def test_parse_rejects_malformed_prompts(broken, message):
    with pytest.raises(PuzzleFormatError, match=message):
        bits.parse(broken)


# ---- search and solve on puzzles whose rule is known ----


def generated(n: int, seed: int, **knobs):
    rng = random.Random(seed)
    return [bits.generate(rng, **knobs) for _ in range(n)]


def test_search_always_contains_the_true_rule():
    prior = load_prior()
    for g in generated(150, seed=1):
        fits = consistent_rules(bits.parse(g.prompt).examples, sorted(prior.weights))
        assert g.rule.signature() in {r.signature() for r in fits}, g.rule


def test_unambiguous_solutions_agree_with_the_known_rule():
    puzzles = generated(300, seed=2)
    unambiguous = 0
    for g in puzzles:
        puzzle = bits.parse(g.prompt)
        solution = bits.solve(puzzle)
        assert isinstance(solution, Solution)
        assert solution.rule.apply(puzzle.query) == int(solution.answer, 2)
        if not solution.ambiguous:
            unambiguous += 1
            assert solution.answer == g.answer, (g.rule, solution.rule)
    assert unambiguous >= 0.9 * len(puzzles)  # the dev split: 1268 of 1294 rows


def test_generated_accuracy_like_the_dev_split():
    puzzles = generated(300, seed=3)
    correct = sum(is_correct(g.answer, solve_prompt(g.prompt).answer) for g in puzzles)
    assert correct >= 0.97 * len(puzzles)


def test_ambiguity_is_counted_and_decided_by_the_prior():
    # y = shr1(x): with only these examples rol7 AND shr1 / shl? forms can disagree on 0xFF.
    puzzle = bits.BitPuzzle(((0b00000010, 0b00000001), (0b00000100, 0b00000010)), 0b11111111)
    solution = bits.solve(puzzle)
    assert isinstance(solution, Solution)
    assert solution.candidates > solution.agreeing >= 1
    assert any(note.startswith("answers=") and note != "answers=1" for note in solution.notes)
    assert solution.alternatives and solution.answer not in solution.alternatives
    assert all(alt in bits.render(solution) for alt in solution.alternatives[:2])  # 3 answers shown


def test_a_rule_outside_the_known_families_uses_the_fallback_search():
    outsider = rule("rol1", "rol4", table=XOR)  # no rol+rol XOR family in the prior
    assert outsider.family not in load_prior().weights
    hits = 0
    for g in generated(20, seed=4, rule=outsider, n_examples=10):
        assert outsider.signature() in {
            r.signature() for r in search_any(bits.parse(g.prompt).examples)
        }
        solution = bits.solve(bits.parse(g.prompt))
        hits += isinstance(solution, Solution) and solution.answer == g.answer
    assert hits >= 15


def test_examples_no_rule_explains_are_unsolved():
    # x = 0 makes every copy 0, so any rule maps it to 00000000 or 11111111.
    puzzle = bits.BitPuzzle(((0, 0b01010101), (1, 2)), 3)
    result = bits.solve(puzzle)
    assert isinstance(result, Unsolved) and "no boolean function" in result.reason


# ---- traces ----


def test_render_searches_then_boxes_the_solvers_answer():
    for g in generated(60, seed=5):
        solution = bits.solve(bits.parse(g.prompt))
        text = bits.render(solution)
        assert text.endswith(boxed(solution.answer))
        assert extract_answer(text) == solution.answer
        assert text.count("; fits") == 1 and f"Rule: y = {solution.rule.text}" in text
        assert len(text) < 2 * 7680  # every digit one token: still inside the budget


def test_render_shows_rejected_forms_before_the_fit():
    text = bits.render(bits.solve(bits.parse(generated(1, seed=12)[0].prompt)))
    first_fit = text.index("; fits")
    assert "no amounts fit this form" in text[:first_fit] or ", reject" in text[:first_fit]


def test_render_states_the_tie_break_when_rules_disagree():
    puzzle = bits.BitPuzzle(((0b00000010, 0b00000001), (0b00000100, 0b00000010)), 0b11111111)
    solution = bits.solve(puzzle)
    text = bits.render(solution)
    assert "disagree on the query" in text and "Keep the most probable" in text
    assert extract_answer(text) == solution.answer


def test_render_falls_back_to_checking_every_example():
    # y = rol1 XOR rol4 is in no known family: the search rejects every form.
    outsider = rule("rol1", "rol4", table=XOR)
    checked = 0
    for g in generated(5, seed=4, rule=outsider, n_examples=10):
        solution = bits.solve(bits.parse(g.prompt))
        if not isinstance(solution, Solution) or "fallback" not in solution.notes[0]:
            continue
        checked += 1
        for notation in ("bin", "hex"):
            text = bits.render(solution, bits.RenderOptions(notation))
            assert "; fits" not in text and "No known form fits" in text
            checks = [line for line in text.splitlines() if " -> " in line and ": " in line]
            assert checks and all(
                c.endswith(" ok") for c in checks[-len(solution.puzzle.examples) :]
            )
            assert extract_answer(text) == solution.answer
    assert checked == 5, f"only {checked} of 5 puzzles reached the fallback"


def test_near_misses_fit_a_leading_run_then_fail():
    prior = load_prior()
    for g in generated(30, seed=11):
        examples = bits.parse(g.prompt).examples
        misses, run = near_misses(examples, sorted(prior.weights))
        assert 0 < run < len(examples) and misses
        for miss in misses:
            assert all(miss.apply(x) == y for x, y in examples[:run])
            assert miss.apply(examples[run][0]) != examples[run][1]


# ---- the written search is faithful: every intermediate value recomputed from the puzzle ----

_FORM = re.compile(r"^Form y = ")
_COLUMNS = re.compile(r"^X(\d)=([01]+) Y(\d)=([01]+)$")
_PATTERN = re.compile(
    r"^ (?:((?:(?:rol|shl|shr)\d ?)+): )?p(\d) (rol|shl|shr) column must be ([01?!]+) -> (.*)$"
)
_TRY = re.compile(r"^ try (.*?): (.*)$")
_CHECK = re.compile(r"^p(\d) (.*) = ([01]+)(?: (ok)| but Y(\d)=([01]+), reject)$")
_NAME = re.compile(r"\b(rol|shl|shr)(\d)\b")


def _bit(value: int, position: int) -> int:
    return (value >> (7 - position)) & 1


def _col(values, position: int) -> str:
    return "".join(str(_bit(v, position)) for v in values)


def _transforms(text: str) -> list[Transform]:
    found = {Transform(kind, int(n)) for kind, n in _NAME.findall(text)}
    return sorted(found, key=lambda t: (KINDS.index(t.kind), t.amount))


def _fill(family: Family, given: list[Transform], kind: str, amount: int) -> Rule:
    """A full rule of `family` with `given` copies, `kind` at `amount`, fillers elsewhere.

    Fillers are copies that read 0 at the edge being checked (shr at p0, shl at p7), so
    any amount does; the highest keeps canonical order.
    """
    slots: list[Transform | None] = [None] * family.arity
    for t in [*given, Transform(kind, amount)]:  # type: ignore[arg-type]
        i = next(i for i, k in enumerate(family.kinds) if k == t.kind and slots[i] is None)
        slots[i] = t
    operands = tuple(t or Transform(family.kinds[i], 7) for i, t in enumerate(slots))
    return Rule(
        tuple(sorted(operands, key=lambda t: (KINDS.index(t.kind), t.amount))), family.table
    )


def assert_trace_is_faithful(puzzle: bits.BitPuzzle, text: str) -> None:
    prior = load_prior()
    order = sorted(prior.weights, key=lambda f: (-prior.rule_probability(f), f))
    xs = [x for x, _ in puzzle.examples]
    ys = [y for _, y in puzzle.examples]
    forms = -1
    for line in text.splitlines():
        if _FORM.match(line):
            forms += 1
            family = order[forms]
        elif m := _COLUMNS.match(line):
            assert m[2] == _col(xs, int(m[1])) and m[4] == _col(ys, int(m[3])), line
        elif line == " no amounts fit this form":
            assert not consistent_rules(puzzle.examples, [family]), family
        elif m := _PATTERN.match(line):
            given, edge, kind, pattern = _transforms(m[1] or ""), int(m[2]), m[3], m[4]
            listed = _transforms(m[5])
            assert all(f"({'X' + str(_source(t, edge))})" in m[5] for t in listed), line
            low = max((t.amount for t in given if t.kind == kind), default=0) + 1
            for amount in range(1, 8):
                candidate = _fill(family, given, kind, amount)
                source = _source(Transform(kind, amount), edge)
                for i, (x, y) in enumerate(puzzle.examples):
                    right = _bit(candidate.apply(x), edge) == _bit(y, edge)
                    digit = str(_bit(x, source))
                    assert right == (pattern[i] == "?" or pattern[i] == digit), (line, amount, i)
                fits = all(
                    _bit(candidate.apply(x), edge) == _bit(y, edge) for x, y in puzzle.examples
                )
                assert (Transform(kind, amount) in listed) == (fits and amount >= low), (
                    line,
                    amount,
                )
        elif m := _TRY.match(line):
            candidate = Rule(tuple(_transforms(m[1])), family.table)
            assert candidate.text == m[1], line
            checks = m[2].split("; ")
            fits = checks[-1] == "fits"
            assert fits == all(candidate.apply(x) == y for x, y in puzzle.examples), line
            for check in checks[:-1] if fits else checks:
                c = _CHECK.match(check)
                assert c, check
                p = int(c[1])
                got = _col([candidate.apply(x) for x in xs], p)
                assert c[3] == got and (c[4] == "ok") == (got == _col(ys, p)), check
                assert c[4] or (int(c[5]) == p and c[6] == _col(ys, p)), check
                names = [
                    f"X{_source(t, p)}" if _source(t, p) is not None else "0"
                    for t in candidate.operands
                ]
                assert c[2] == expression(candidate.table, candidate.arity).text(names), check


def _source(transform: Transform, position: int) -> int | None:
    """Recomputed here rather than imported: the input column a copy reads at a position."""
    shift = {"rol": transform.amount, "shl": transform.amount, "shr": -transform.amount}
    j = position + shift[transform.kind]
    if transform.kind == "rol":
        return j % 8
    return j if 0 <= j <= 7 else None


def test_generated_traces_are_faithful():
    for g in generated(80, seed=13):
        solution = bits.solve(bits.parse(g.prompt))
        text = bits.render(solution)
        assert_trace_is_faithful(solution.puzzle, text)
        assert_guess_line(solution, text)


def test_faithfulness_check_catches_a_false_value():
    solution = bits.solve(bits.parse(generated(1, seed=14)[0].prompt))
    text = bits.render(solution)
    line = next(l for l in text.splitlines() if l.startswith(" try "))
    flipped = line.replace("= 0", "= 1", 1) if "= 0" in line else line.replace("= 1", "= 0", 1)
    with pytest.raises(AssertionError):
        assert_trace_is_faithful(solution.puzzle, text.replace(line, flipped))


def test_dev_traces_are_faithful_and_box_the_solvers_answer(dev_rows):
    for row in dev_rows[bits.NAME]:
        solution = bits.solve(bits.parse(row["prompt"]))
        text = bits.render(solution)
        assert extract_answer(text) == solution.answer, row["id"]
        assert len(text) <= 2 * 7680, row["id"]
        assert_trace_is_faithful(solution.puzzle, text)
        assert_guess_line(solution, text)


# ---- the explicit style: every value recomputed, with an evaluator of its own ----

_TOKEN = re.compile(r"\(|\)|,|[A-Za-z]+\d*|\S")


def _evaluate(text: str, values: dict[str, int], mask: int) -> int:
    """A formula as traces write it (NOT, AND, OR, XOR, MAJ, CHOICE, parentheses; one
    binary operator per level) over `values`, bitwise within `mask`."""
    tokens = _TOKEN.findall(text)
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        assert expected is None or token == expected, (text, pos)
        pos += 1
        return token

    def atom() -> int:
        token = take()
        if token == "NOT":
            return ~atom() & mask
        if token == "(":
            value = expr()
            take(")")
            return value
        if token in ("MAJ", "CHOICE"):
            take("(")
            a = expr()
            take(",")
            b = expr()
            take(",")
            c = expr()
            take(")")
            return (a & b) | (a & c) | (b & c) if token == "MAJ" else (a & b) | (~a & mask & c)
        if token in ("0", "1"):
            return mask if token == "1" else 0
        return values[token]

    def expr() -> int:
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] in ("AND", "OR", "XOR"):
            op = take()
            other = atom()
            value = {"AND": value & other, "OR": value | other, "XOR": value ^ other}[op]
        return value

    value = expr()
    assert pos == len(tokens), text
    return value


def _reading(kind: str, letter: str, p: int) -> str:
    if kind == "rol":
        return f"x[({p}+{letter}) mod 8]"
    if kind == "shl":
        return f"x[{letter}]" if p == 0 else f"x[{p}+{letter}], 0 past bit 7"
    return f"x[7-{letter}]" if p == 7 else f"x[{p}-{letter}], 0 before bit 0"


def _g_bit(family: Family, amounts: dict[int, int], p: int, x: int) -> int:
    """G's output bit at `p` from the assigned copies' bits (unassigned: 0)."""
    key = 0
    for j, kind in enumerate(family.kinds):
        bit = _bit(Transform(kind, amounts[j]).apply(x), p) if j in amounts else 0
        key = key * 2 + bit
    return (family.table >> key) & 1


def _parse_listing(letters: str, listing: str) -> set[tuple[int, ...]]:
    found: set[tuple[int, ...]] = set()
    if listing == "none":
        return found
    for group in listing.split():
        *head, tails = group.split(",")
        found |= {(*map(int, head), int(t)) for t in tails.split("/")}
    assert all(len(t) == len(letters.split(",")) for t in found), listing
    return found


def _computed(pairs, operands: list[Transform], line: str, x: int) -> int:
    """Check `name=bits` values of one example line; the output y."""
    values = dict(re.findall(r"(\w+)=([01]{8})", line))
    env = {}
    for t in operands:
        assert values[t.name] == format(t.apply(x), "08b"), (line, t.name)
        env[t.name] = t.apply(x)
    for label, formula in pairs:
        env[label] = _evaluate(formula, env, 0xFF)
        assert values[label] == format(env[label], "08b"), (line, label)
    return env["y"]


def _steps_of(text: str) -> list[tuple[str, str]]:
    """`s1 = ..., y = ...` as (label, formula) pairs."""
    return [tuple(part.split(" = ", 1)) for part in re.split(r", (?=(?:s\d+|y) = )", text)]


def _widened(family: Family, current: set, letters: str, new_letters: str) -> set:
    """`current` assignments (over `letters`) with every amount for the operands
    `new_letters` adds, copies of one kind in rising order."""
    idx = ["ABC".index(c) for c in new_letters.split(",")]
    old = ["ABC".index(c) for c in letters.split(",")] if letters else []
    added = [j for j in idx if j not in old]
    widened = set()
    for t in current:
        for extra in itertools.product(range(1, 8), repeat=len(added)):
            full = {**dict(zip(old, t)), **dict(zip(added, extra))}
            kinds = family.kinds
            if all(
                full[j] < full[j + 1] for j in full if j + 1 in full and kinds[j] == kinds[j + 1]
            ):
                widened.add(tuple(full[j] for j in idx))
    return widened


def _project(current: set, letters: str, onto: str) -> set:
    """`current` (tuples over `letters`) cut down to the operands `onto` also has."""
    keep = [i for i, c in enumerate(letters.split(",")) if letters and c in onto.split(",")]
    return {tuple(t[i] for i in keep) for t in current}


class _ExplicitTrace:
    """Replays an explicit trace line by line, recomputing every value it writes.

    `current` holds the amounts the search keeps (tuples over `letters`, e.g. "A,B"); a
    `bit p:` line opens a block over the copies read there (`block`, over
    `block_letters`), narrowed by its example lines, then joined back into `current`.
    """

    def __init__(self, solution: Solution) -> None:
        self.solution = solution
        self.examples = solution.puzzle.examples
        prior = load_prior()
        self.order = sorted(prior.weights, key=lambda f: (-prior.rule_probability(f), f))
        self.forms = -1
        self.block = None

    def form(self, text: str) -> None:
        self.close()
        self.forms += 1
        self.family = self.order[self.forms]
        names = [f"{k}{'ABC'[i]}" for i, k in enumerate(self.family.kinds)]
        assert text == expression(self.family.table, self.family.arity).text(names)
        self.current, self.letters = {()}, ""

    def reduced(self, p: int, dead_names: str, said: str) -> None:
        family = self.family
        dead = [j for j, k in enumerate(family.kinds) if _source(Transform(k, 1), p) is None]
        assert dead_names == " and ".join(f"{family.kinds[j]}{'ABC'[j]}" for j in dead)
        live = [j for j in range(family.arity) if j not in dead]
        for bits_ in range(1 << len(live)):
            env = {f"{family.kinds[j]}{'ABC'[j]}": (bits_ >> i) & 1 for i, j in enumerate(live)}
            key = sum(
                env.get(f"{k}{'ABC'[j]}", 0) << (family.arity - 1 - j)
                for j, k in enumerate(family.kinds)
            )
            assert _evaluate(said.split(" whatever ")[0], env, 1) == (family.table >> key) & 1

    def fixed(self, p: int, want: int, seen: str, verdict: str) -> None:
        family = self.family
        bits_seen = [_bit(y, p) for _, y in self.examples]
        assert seen == " ".join(map(str, bits_seen))
        assert (verdict == "ok") == all(b == want for b in bits_seen)
        live = [j for j, k in enumerate(family.kinds) if _source(Transform(k, 1), p) is not None]
        for bits_ in range(1 << len(live)):  # G ignores the live copies here
            key = sum(((bits_ >> i) & 1) << (family.arity - 1 - j) for i, j in enumerate(live))
            assert (family.table >> key) & 1 == want

    def reads(self, p: int, text: str) -> None:
        self.close()
        parts = re.split(r", (?=(?:rol|shl|shr)[ABC]\[)", text)
        for part in parts:
            k, letter = part[:3], part[3]
            assert part == f"{k}{letter}[{p}] = {_reading(k, letter, p)}", part
        read = ",".join(sorted(part[3] for part in parts))
        inner = p not in (0, 7)
        self.block_letters = self.letters if inner else read
        start = _project(self.current, self.letters, self.block_letters)
        known = ",".join(c for c in self.block_letters.split(",") if c in self.letters)
        self.block = _widened(self.family, start, known, self.block_letters)
        self.position, self.widened = p, self.block_letters != known

    def narrow(self, i: int, x_text: str, p: int, want: int, result: str) -> None:
        x, y = self.examples[i - 1]
        assert x_text == format(x, "08b") and p == self.position and want == _bit(y, p)
        idx = ["ABC".index(c) for c in self.block_letters.split(",")]
        fits = {t for t in self.block if _g_bit(self.family, dict(zip(idx, t)), p, x) == _bit(y, p)}
        if result == "no change":
            assert not self.widened and fits == self.block
        else:
            letters, listing = result.split("=")
            assert letters == self.block_letters and _parse_listing(letters, listing) == fits
        self.block, self.widened = fits, False

    def join(self, letters: str, listing: str) -> None:
        shared = [c for c in self.letters.split(",") if c in self.block_letters.split(",")]
        joined = set()
        for a in self.current:
            da = dict(zip(self.letters.split(","), a))
            for b in self.block:
                db = dict(zip(self.block_letters.split(","), b))
                if all(da[c] == db[c] for c in shared):
                    full = {**da, **db}
                    joined.add(tuple(full[c] for c in letters.split(",")))
        assert _parse_listing(letters, listing) == joined
        self.current, self.letters, self.block = joined, letters, None

    def close(self) -> None:
        """A block not joined back covers every copy pinned so far: it is the new state."""
        if self.block is not None:
            assert (
                not self.block
                or set(self.letters.split(",")) <= set(self.block_letters.split(","))
                or not self.letters
            )
            self.current, self.letters, self.block = self.block, self.block_letters, None

    def any_amount(self, letters: str, listing: str) -> None:
        self.close()
        self.current = _widened(self.family, self.current, self.letters, letters)
        self.letters = letters
        assert _parse_listing(letters, listing) == self.current

    def candidate(self, text: str) -> None:
        self.close()
        self.steps, self.operands = _steps_of(text), _transforms(text)
        self.rule = Rule(tuple(self.operands), self.family.table)
        assert tuple(t.amount for t in self.operands) in self.current

    def check(self, i: int, x_text: str, values: str, verdict: str, said: str | None) -> None:
        x, y = self.examples[i - 1]
        assert x_text == format(x, "08b")
        got = _computed(self.steps, self.operands, values, x)
        assert got == self.rule.apply(x) and (verdict == "ok") == (got == y)
        assert verdict == "ok" or said == format(y, "08b")


def assert_explicit_trace_is_faithful(solution: Solution, text: str) -> None:
    t = _ExplicitTrace(solution)
    puzzle: bits.BitPuzzle = solution.puzzle
    for line in text.splitlines():
        if m := re.match(r"^Form y = (.*):$", line):
            t.form(m[1])
        elif m := re.match(r"^ bit (\d): (.*) = 0, so y\[\d\] = (.*)$", line):
            t.reduced(int(m[1]), m[2], m[3])
        elif m := re.match(
            r"^ bit (\d): y\[\d\] must be (\d) in every example; "
            r"the examples' y\[\d\]: ([01 ]+): (ok|no)$",
            line,
        ):
            t.fixed(int(m[1]), int(m[2]), m[3], m[4])
        elif m := re.match(r"^ bit (\d): (.*)$", line):
            t.reads(int(m[1]), m[2])
        elif m := re.match(r"^ .* not read at bits 0 and 7, any amount -> (.*)=(.*)$", line):
            t.any_amount(m[1], m[2])
        elif m := re.match(r"^  ex(\d+) x=([01]{8}) y\[(\d)\]=(\d) -> (.*)$", line):
            t.narrow(int(m[1]), m[2], int(m[3]), int(m[4]), m[5])
        elif m := re.match(r"^  with bit \d's amounts -> (.*)=(.*)$", line):
            t.join(m[1], m[2])
        elif m := re.match(r"^ try (.*):$", line):
            t.candidate(m[1])
        elif m := re.match(
            r"^  ex(\d+) x=([01]{8}) (.*) (ok|but the example says ([01]{8}): reject)$", line
        ):
            t.check(int(m[1]), m[2], m[3], m[4], m[5])
        elif line == "  fits every example":
            assert all(t.rule.apply(x) == y for x, y in puzzle.examples)
        elif line == " no amounts fit this form":
            t.close()
            assert not consistent_rules(puzzle.examples, [t.family]), t.family
        elif m := re.match(r"^Rule: (.*)$", line):
            t.steps, t.operands = _steps_of(m[1]), _transforms(m[1])
        elif m := re.match(r"^Query x=([01]{8}) (.*)$", line):
            assert int(m[1], 2) == puzzle.query
            got = _computed(t.steps, t.operands, m[2], puzzle.query)
            assert format(got, "08b") == solution.answer
    assert_guess_line(solution, text)


def assert_guess_line(solution: Solution, text: str) -> None:
    """One line says the answer is a guess, with its posterior, exactly where the examples
    leave several answers."""
    groups, _ = bits.rank_answers(solution.puzzle)
    said = re.findall(r"^This answer is a guess: .* about (\d+)% likely\.$", text, re.MULTILINE)
    if "disagree on the query" in text and len(groups) > 1:
        assert said == [f"{groups[0].weight * 100:.0f}"]
    else:
        assert not said


def test_explicit_traces_are_faithful_and_box_the_answer():
    for g in generated(80, seed=13):
        solution = bits.solve(bits.parse(g.prompt))
        text = bits.render(solution, bits.TRACE_STYLES["explicit"])
        assert extract_answer(text) == solution.answer
        assert "Columns" not in text and "column" not in text  # nothing transposed
        assert_explicit_trace_is_faithful(solution, text)


def _falsify_value(line: str) -> str | None:
    """A check line with the first digit of its computed y flipped."""
    if " y=" not in line or not line.startswith("  ex"):
        return None
    at = line.index(" y=") + 3
    return line[:at] + ("1" if line[at] == "0" else "0") + line[at + 1 :]


def _falsify_narrowing(line: str) -> str | None:
    """A narrowing line with its last listed amount changed."""
    if not re.match(r"^  ex\d+ x=.* -> [A-C,]+=[\d,/ ]+$", line):
        return None
    return line[:-1] + str(int(line[-1]) % 7 + 1)


@pytest.mark.parametrize("falsify", [_falsify_value, _falsify_narrowing])
def test_explicit_faithfulness_check_catches_a_false_value(falsify):
    solution = bits.solve(bits.parse(generated(1, seed=14)[0].prompt))
    text = bits.render(solution, bits.TRACE_STYLES["explicit"])
    line, wrong = next((l, w) for l in text.splitlines() if (w := falsify(l)))
    with pytest.raises(AssertionError):
        assert_explicit_trace_is_faithful(solution, text.replace(line, wrong))


def test_explicit_and_compact_pick_the_same_rule():
    for g in generated(40, seed=21):
        solution = bits.solve(bits.parse(g.prompt))
        compact = bits.render(solution)
        explicit = bits.render(solution, bits.TRACE_STYLES["explicit"])
        assert compact.rsplit("\n", 1)[1] == explicit.rsplit("\n", 1)[1]  # the same box
        assert compact.count("Form y = ") == explicit.count("Form y = ")  # forms tried


def test_dev_explicit_traces_are_faithful(dev_rows):
    for row in dev_rows[bits.NAME][::4]:  # a quarter of the rows keeps the fast suite fast
        solution = bits.solve(bits.parse(row["prompt"]))
        text = bits.render(solution, bits.TRACE_STYLES["explicit"])
        assert extract_answer(text) == solution.answer, row["id"]
        assert_explicit_trace_is_faithful(solution, text)


# ---- the style, chosen per family in a dataset recipe ----


def test_dataset_recipe_picks_the_explicit_style_for_bits_only(cli, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "generated: {n: 4, weights: {bit_manipulation: 2, numeral: 1}}\n"
        "trace_styles: {bit_manipulation: explicit}\n"
    )
    out = tmp_path / "sft.jsonl"
    cli("dataset", "build", recipe, "-o", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    traces = {r["family"]: r["messages"][1]["content"] for r in rows}
    assert " try " in traces[bits.NAME] and "Columns" not in traces[bits.NAME]
    assert "Columns" not in traces["numeral"]  # other families keep their only style
    manifest = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert manifest["recipe"]["trace_styles"] == {bits.NAME: "explicit"}
    compact = tmp_path / "compact.yaml"
    compact.write_text("generated: {n: 4, weights: {bit_manipulation: 2}}\n")
    cli("dataset", "build", compact, "-o", tmp_path / "compact.jsonl")
    default = [json.loads(l) for l in (tmp_path / "compact.jsonl").read_text().splitlines()]
    assert all(
        "Columns" in r["messages"][1]["content"] for r in default if r["family"] == bits.NAME
    )


# ---- generation ----


def test_generate_draws_distinct_inputs_and_a_fresh_query():
    for g in generated(100, seed=7):
        puzzle = bits.parse(g.prompt)
        inputs = [x for x, _ in puzzle.examples]
        assert (
            7 <= len(inputs) <= 10
            and len(set(inputs)) == len(inputs)
            and puzzle.query not in inputs
        )
        assert all(g.rule.apply(x) == y for x, y in puzzle.examples)
        assert g.answer == format(g.rule.apply(puzzle.query), "08b")


def test_generate_pins_family_and_rejects_unknown_knobs():
    family = Family(("shl", "shr"), XOR)
    assert all(g.rule.family == family for g in generated(10, seed=8, family=family))
    with pytest.raises(TypeError, match="unknown knobs"):
        bits.generate(random.Random(0), colour="red")


def test_generated_wording_matches_the_dev_rows(dev_rows):
    dev = dev_rows[bits.NAME][0]
    mine = generated(1, seed=9)[0].prompt
    assert mine.split("\n")[:3] == dev["prompt"].split("\n")[:3]
    assert mine.rsplit("\n", 1)[1][:-8] == dev["prompt"].rsplit("\n", 1)[1][:-8]


# ---- the prior ----


def test_shipped_prior_is_well_formed():
    prior = load_prior()
    assert prior.weights and all(w > 0 for w in prior.weights.values())
    assert max(prior.weights, key=prior.weights.get) == Family(("shl", "shr"), XOR)
    assert Prior.from_json(prior.to_json("x", 1)).weights.keys() == prior.weights.keys()


def test_prior_rejects_a_table_of_the_wrong_size():
    bad = json.dumps({"families": [{"kinds": ["rol", "shl"], "table": "0110110", "weight": 1}]})
    with pytest.raises(ValueError, match="family 0"):
        Prior.from_json(bad)


def _fit_script():
    spec = importlib.util.spec_from_file_location(
        "fit_bit_prior", REPO / "scripts" / "fit_bit_prior.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_script_reports_held_out_accuracy(tmp_path, write_csv, capsys):
    rows = [
        {"id": str(i), "prompt": g.prompt, "answer": g.answer}
        for i, g in enumerate(generated(24, seed=15))
    ]
    path = write_csv("bits.csv", rows, ["id", "prompt", "answer"])
    assert _fit_script().main([str(path), "--report", "--folds", "2", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "in-sample" in out and out.count("2-fold cross-validation (seed") == 2
    held_out = [int(n) for n in re.findall(r"seed \d\): (\d+)/24", out)]
    assert len(held_out) == 2 and all(0 < n <= 24 for n in held_out)
    assert "2-fold, 2 seeds: mean" in out


def test_fit_script_recovers_the_generating_family(tmp_path, write_csv):
    fit_bit_prior = _fit_script()
    family = Family(("rol", "shl", "shr"), MAJ)
    rows = [
        {"id": str(i), "prompt": g.prompt}
        for i, g in enumerate(generated(25, seed=10, family=family))
    ]
    out = tmp_path / "prior.json"
    assert (
        fit_bit_prior.main(
            [str(write_csv("bits.csv", rows)), "--out", str(out), "--iterations", "20"]
        )
        == 0
    )
    fitted = Prior.from_json(out.read_text())
    assert max(fitted.weights, key=fitted.weights.get) == family


def test_dev_bit_rows_meet_the_acceptance_bar(dev_rows):
    rows = dev_rows[bits.NAME]
    correct = sum(
        is_correct(r["answer"], solve_prompt(r["prompt"], bits.NAME).answer) for r in rows
    )
    assert correct >= 0.99 * len(rows)


def test_transform_table_is_canonical():
    assert [t.name for t in TRANSFORMS[:2]] == ["rol1", "rol2"] and len(TRANSFORMS) == 21
    assert Path(bits.__file__).parents[1].joinpath("data", "bit_prior.json").exists()
