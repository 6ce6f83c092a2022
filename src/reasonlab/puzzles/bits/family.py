"""Bit manipulation: 7-10 examples `01010001 -> 11011101`, then an 8-bit query.

The rule space and its search live in `bit_rules`: y = G(copies of x), a copy being a
rotation or shift by 1..7 and G a boolean function of one to three copies. Most
puzzles admit several rules that fit every example and disagree on the query, so the
solver is Bayesian over the generator as fitted on the dev split: each rule's weight is
P(family) / (members of the family), rules that compute the same function are one
hypothesis weighed as its heaviest rule, the answers' weights are summed over those
functions, and the heaviest answer wins; the rule shown is that answer's heaviest rule.
A puzzle no known family explains falls back to any truth table over up to three
copies (fewest copies first, majority vote); none at all is `Unsolved`.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reasonlab.puzzles.base import Generated, PuzzleFormatError, Solution, Unsolved, boxed
from reasonlab.puzzles.bits.rules import (
    TRANSFORMS,
    Family,
    Prior,
    Rule,
    consistent_rules,
    load_prior,
    search_any,
)
from reasonlab.puzzles.bits.trace import (
    Style,
    explicit_rule,
    explicit_values,
    rule_steps,
    search_trace,
)
from reasonlab.puzzles.prompt_lines import PromptLayout, example_count, match_lines

__all__ = [
    "NAME",
    "TRACE_STYLES",
    "AnswerGroup",
    "BitPuzzle",
    "RenderOptions",
    "format_prompt",
    "generate",
    "parse",
    "rank_answers",
    "render",
    "solve",
]

NAME = "bit_manipulation"

HEADER = (
    "In Alice's Wonderland, a secret bit manipulation rule transforms 8-bit binary numbers. "
    "The transformation involves operations like bit shifts, rotations, XOR, AND, OR, NOT, "
    "and possibly majority or choice functions."
)
EXAMPLES_LEAD = "Here are some examples of input -> output:"
QUERY_LEAD = "Now, determine the output for: "
EXAMPLE_COUNTS = (7, 8, 9, 10)  # about a quarter each on the dev split
_EXAMPLE = re.compile(r"([01]{8}) -> ([01]{8})")
_QUERY = re.compile(re.escape(QUERY_LEAD) + r"([01]{8})")
_LAYOUT = PromptLayout(NAME, (HEADER, EXAMPLES_LEAD), _EXAMPLE, _QUERY)


@dataclass(frozen=True)
class BitPuzzle:
    examples: tuple[tuple[int, int], ...]  # (input byte, output byte)
    query: int


def _bits(value: int) -> str:
    return format(value, "08b")


def parse(prompt: str) -> BitPuzzle:
    matches, query = match_lines(prompt, _LAYOUT)
    examples = [(int(match[1], 2), int(match[2], 2)) for match in matches]
    inputs = [x for x, _ in examples]
    if len(set(inputs)) != len(inputs):
        repeated = next(x for x in inputs if inputs.count(x) > 1)
        if len({y for x, y in examples if x == repeated}) > 1:
            raise PuzzleFormatError(
                f"bit_manipulation: input {_bits(repeated)} has two different outputs"
            )
    return BitPuzzle(tuple(examples), int(query[1], 2))


@dataclass(frozen=True)
class AnswerGroup:
    """One query answer and the fitting rules that give it; `weight` is its posterior."""

    answer: int
    weight: float
    best: Rule  # the heaviest rule giving this answer (ties: fewer copies, canonical order)
    rules: tuple[Rule, ...]


def rank_answers(puzzle: BitPuzzle, prior: Prior | None = None) -> tuple[list[AnswerGroup], bool]:
    """Answers by posterior, heaviest first, and whether the prior-free fallback was used.

    A rule weighs P(family) / |family|; with no known family fitting, every truth table
    over the fewest copies that fit gets one vote. Rules with equal outputs on every byte
    count once, as their heaviest: summing them would favour functions that many copy
    sets spell (a shl7 or shr7 copy keeps one bit, so its rules collapse), which picks
    gold less often on held-out dev rows. Empty when nothing fits.
    """
    prior = prior or load_prior()
    rules = consistent_rules(puzzle.examples, sorted(prior.weights))
    weights = {rule: prior.rule_probability(rule.family) for rule in rules}
    fallback = not rules
    if fallback:
        rules = search_any(puzzle.examples)
        fewest = min((rule.arity for rule in rules), default=0)
        weights = {rule: 1.0 for rule in rules if rule.arity == fewest}

    def rank(rule: Rule) -> tuple[float, int, Rule]:
        return -weights[rule], rule.arity, rule

    heaviest: dict[bytes, Rule] = {}  # per function (signature), its heaviest rule
    for rule in sorted(weights, key=rank):
        heaviest.setdefault(rule.signature(), rule)
    counted = set(heaviest.values())  # the rules that vote: one per function
    by_answer: dict[int, list[Rule]] = defaultdict(list)
    for rule in weights:
        by_answer[rule.apply(puzzle.query)].append(rule)
    total = sum(weights[r] for r in counted)
    groups = [
        AnswerGroup(
            answer,
            sum(weights[r] for r in group if r in counted) / total,
            min(group, key=rank),
            tuple(group),
        )
        for answer, group in by_answer.items()
    ]
    groups.sort(key=lambda g: (-g.weight, g.answer))  # ties: the smaller byte, deterministically
    return groups, fallback


def solve(puzzle: BitPuzzle, prior: Prior | None = None) -> Solution | Unsolved:
    """The prior-weighted most probable answer over every rule that fits the examples."""
    groups, fallback = rank_answers(puzzle, prior)
    if not groups:
        return Unsolved(
            "no boolean function of up to three shifted/rotated copies of x fits all examples"
        )
    chosen = groups[0]
    distinct = {rule.signature() for g in groups for rule in g.rules}
    agreeing = {rule.signature() for rule in chosen.rules}
    notes = (
        "fallback: no known family fits; any truth table over the fewest copies, one vote per function",
    ) * fallback
    notes += (
        f"answers={len(groups)}",
        f"posterior={chosen.weight:.3f}",
        f"family={chosen.best.family.label}",
    )
    return Solution(
        puzzle,
        _bits(chosen.answer),
        chosen.best,
        candidates=len(distinct),
        agreeing=len(agreeing),
        notes=notes,
        alternatives=tuple(_bits(g.answer) for g in groups[1:]),
    )


# ---- rendering ----

Notation = Literal["bin", "hex"]


@dataclass(frozen=True)
class RenderOptions:
    """`style`: how the search is written (`bits.trace`: compact columns, or explicit
    example by example); `hex` writes the fallback's example checks in hex (the rest
    stays binary)."""

    notation: Notation = "bin"
    alternatives: int = 3  # answers listed when fitting rules disagree on the query
    style: Style = "compact"


# The trace styles this family offers, by name, as `render` takes them (a dataset recipe
# picks one per family; `data.traces`).
TRACE_STYLES: dict[str, RenderOptions] = {
    "compact": RenderOptions(),
    "explicit": RenderOptions(style="explicit"),
}


def _alternatives(puzzle: BitPuzzle, shown: int) -> list[str]:
    """The competing answers with a representative rule each: the tie-break made visible,
    and one line saying the answer is a guess."""
    groups, _ = rank_answers(puzzle)
    lines = [f"Other forms fit all examples too and disagree on the query ({len(groups)} answers):"]
    for g in groups[:shown]:
        lines.append(f"{_bits(g.answer)} from y = {g.best.text} (probability {g.weight:.2f})")
    lines.append("Keep the most probable: the first answer above.")
    if len(groups) > 1:
        lines.append(
            "This answer is a guess: the examples leave it open, and it is about "
            f"{groups[0].weight:.0%} likely."
        )
    return lines


def _fallback_checks(solution: Solution, show: Callable[[int], str]) -> list[str]:
    """No known form fits: state the fewest-copies rule and check it on every example."""
    puzzle: BitPuzzle = solution.puzzle
    rule: Rule = solution.rule
    lines = [
        "No known form fits. Fallback: any boolean function of the fewest copies that fits;",
        f"the most common answer among those comes from y = {rule.text}. Check:",
    ]
    for x, y in puzzle.examples:
        copies = " ".join(f"{t.name}={show(t.apply(x))}" for t in rule.operands)
        got = rule.apply(x)
        lines.append(
            f"{show(x)}: {copies} -> {show(got)} {'ok' if got == y else 'MISMATCH ' + show(y)}"
        )
    return lines


_INTRO = {
    "compact": "Try the forms most probable first; the edge positions 0 and 7 pin the amounts, "
    "positions 1-6 check the survivors.",
    "explicit": "Try the forms most probable first. At bit 0 every shr copy is 0 and at bit 7 "
    "every shl copy is 0, so there the output bit depends on fewer copies: going through the "
    "examples one by one keeps only the amounts whose input bit gives the output bit; each "
    "surviving rule is then computed in full on every example.",
}
_COPY_HELP = {
    "rol": "rotate left by N; output position p reads input position (p+N) mod 8",
    "shl": "shift left by N; p reads p+N, or 0 when p+N > 7",
    "shr": "shift right by N; p reads p-N, or 0 when p-N < 0",
}


def render(solution: Solution, options: RenderOptions = RenderOptions()) -> str:
    """The search that finds the rule (`options.style`), the tie-break if any, then the query."""
    puzzle: BitPuzzle = solution.puzzle
    rule: Rule = solution.rule
    show = _bits if options.notation == "bin" else (lambda v: format(v, "02X"))
    search = search_trace(puzzle.examples, load_prior(), options.style)
    lines = [
        (
            "Each output bit is a boolean function of bits of shifted/rotated copies of x "
            f"({'; '.join(f'{k}N = {help_text}' for k, help_text in _COPY_HELP.items())}). "
            f"Positions count from 0 at the leftmost bit. {_INTRO[options.style]}"
        ),
        *search.lines,
    ]
    if search.rule is None:
        lines += _fallback_checks(solution, show)
    elif solution.ambiguous or search.rule != rule:
        lines += _alternatives(puzzle, options.alternatives)
    if options.style == "compact":
        lines.append(f"Rule: y = {rule.text}")
        lines.append(f"Query x = {_bits(puzzle.query)}")
        lines += rule_steps(rule, puzzle.query)
    else:
        lines.append(f"Rule: {explicit_rule(rule)}")
        lines.append(f"Query x={_bits(puzzle.query)} {explicit_values(rule, puzzle.query)}")
    lines.append(boxed(solution.answer))
    return "\n".join(lines)


# ---- generation ----


def format_prompt(examples: list[tuple[int, int]], query: int) -> str:
    """The competition's exact wording for a puzzle."""
    body = "\n".join(f"{_bits(x)} -> {_bits(y)}" for x, y in examples)
    return f"{HEADER}\n\n{EXAMPLES_LEAD}\n{body}\n\n{QUERY_LEAD}{_bits(query)}"


def _sample_rule(rng: random.Random, prior: Prior, family: Family | None) -> Rule:
    if family is None:
        families = sorted(prior.weights)
        family = rng.choices(families, weights=[prior.weights[f] for f in families])[0]
    row = rng.choice(family.members())
    return Rule(tuple(TRANSFORMS[i] for i in row), family.table)


def generate(
    rng: random.Random,
    n_examples: int | None = None,
    family: Family | None = None,
    rule: Rule | None = None,
    prior: Prior | None = None,
    **knobs: Any,
) -> Generated:
    """A puzzle with a rule drawn as the dev split draws them (family by prior weight).

    `rule` or `family` pin the rule; `n_examples` defaults to uniform 7-10. Inputs are
    distinct random bytes and the query is none of them, as in the dev rows.
    """
    count = example_count(rng, NAME, n_examples, knobs, EXAMPLE_COUNTS)
    if count > 255:
        raise ValueError(f"bit_manipulation.generate: n_examples must be 1..255, got {count}")
    rule = rule or _sample_rule(rng, prior or load_prior(), family)
    *inputs, query = rng.sample(range(256), count + 1)
    examples = [(x, rule.apply(x)) for x in inputs]
    return Generated(
        format_prompt(examples, query),
        _bits(rule.apply(query)),
        rule=rule,
        meta={"family": rule.family.label},
    )
