"""Numeric equation puzzles: examples `AB?CD = result` with 2-digit operands, then a query.

Each operator symbol of a row stands for one operation of `ops.OPERATIONS`, and
one row-level `Setting` (normal / reversed / mirrored) says how operands are read and
results written. `deduce` rows ask about an operator the examples show; `guess` rows
about one they never show, which only a prior can answer.

Solving:
1. `fits(puzzle)`: for each setting, the operations consistent with every example of
   each operator; a setting is kept when every operator has one.
2. Each (setting, query operation) hypothesis is weighted with the dev prior
   (data/equation_prior.json, written by scripts/fit_equation_prior.py):
   P(setting | symbol group) * prod over shown operators of sum of P(op | setting) over
   its candidates (rows of only '+', '-', '*' come from another generator, see
   `symbol_group`);
   the query's operation in proportion to P(op | setting) among its candidates. In a
   guess row the query's family comes from the row's family set (`query_kinds`): every
   dev row has three operators (the shown ones and, in a guess row, the query's, and
   perhaps one the examples never use), one of them a subtraction, the other two
   addition and multiplication or either one with a concatenation (`Prior.family_sets`);
   the family is then weighed by how often an unseen operator takes it
   (`Prior.unseen`), and in standard rows by what its symbol allows ('+' adds or
   concatenates). In both kinds of row the query's operation is also weighed by how
   many of the other operators are plain or twisted (`Prior.twists`, by `twist_class`):
   a row of three has exactly one plain operation, or two in a symbolic row that is
   reversed or mirrored.
3. The answer is the one with the highest expected score under the metric (hypotheses
   whose answers the metric scores as equal, e.g. 2483 and 2484, pool their weight).
   Equal scores keep the first hypothesis in SETTINGS order, then table order.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reasonlab.metric import is_correct
from reasonlab.puzzles.base import Generated, PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.equations.numeric_rule import EquationRule
from reasonlab.puzzles.equations.numeric_trace import render_trace
from reasonlab.puzzles.equations.ops import (
    BY_NAME,
    KINDS,
    OPERATIONS,
    SETTINGS,
    Operation,
    Setting,
    apply,
)
from reasonlab.puzzles.equations.prompt import (
    EquationPrompt,
    Expression,
    format_equation_prompt,
    parse_equation_prompt,
)

__all__ = [
    "NAME",
    "PRIOR_PATH",
    "STANDARD",
    "EquationRule",
    "Fit",
    "Hypothesis",
    "Prior",
    "fit_weight",
    "fits",
    "generate",
    "hypotheses",
    "load_prior",
    "parse",
    "puzzle_symbols",
    "query_kinds",
    "render",
    "solve",
    "symbol_class",
    "symbol_group",
    "trace_rule",
    "twist_class",
    "twist_contexts",
    "twist_factor",
]

NAME = "equation_numeric"
PRIOR_PATH = Path(__file__).parents[1] / "data" / "equation_prior.json"


# ---------------------------------------------------------------------------- prior


@dataclass(frozen=True)
class Prior:
    """Frequencies measured on dev (read-only mappings; see scripts/fit_equation_prior.py).

    settings:   P(setting)                                   setting name -> p
    group_share:    P(symbol group)                          group -> p    (generator)
    group_settings: P(setting | symbol group)                group -> setting -> p
    group_symbols:  symbol frequencies within each group     group -> symbol -> p (generator)
    operations: P(operation | setting)                       setting -> op name -> p
    kinds:      P(family | operator symbol class)            '+', '-', '*', 'other' -> kind -> p
                of a shown operator (what a standard row's symbol allows)
    family_sets: P(the families of a row's three operators)  'add+mul+sub' -> p
                (kinds sorted, joined by '+'); on dev a subtraction is always one of them
    unseen:     how much more or less often an unseen operator takes family k than
                the family sets alone say (guess rows' answers / the sets' expectation,
                shrunk towards 1)                             kind -> factor
    examples:   examples per row                             count -> p    (generator)
    twists:     P(an operator's operation is a twist, i.e. not `plain`) by context
                `class/operators/plain others` (`twist_class`; operators in the row,
                the query's included; how many of the other operators' operations are
                plain), and by `class` alone (the base rate).
    """

    settings: Mapping[str, float]
    group_share: Mapping[str, float]
    group_settings: Mapping[str, Mapping[str, float]]
    group_symbols: Mapping[str, Mapping[str, float]]
    operations: Mapping[str, Mapping[str, float]]
    kinds: Mapping[str, Mapping[str, float]]
    family_sets: Mapping[str, float]
    unseen: Mapping[str, float]
    examples: Mapping[int, float]
    twists: Mapping[str, float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prior:
        fields = (
            "settings",
            "group_share",
            "group_settings",
            "group_symbols",
            "operations",
            "kinds",
            "family_sets",
            "unseen",
            "examples",
            "twists",
        )
        missing = [f for f in fields if f not in data]
        if missing:
            raise ValueError(f"equation prior lacks field(s) {', '.join(missing)}")
        return cls(
            settings=dict(data["settings"]),
            group_share=dict(data["group_share"]),
            group_settings={g: dict(v) for g, v in data["group_settings"].items()},
            group_symbols={g: dict(v) for g, v in data["group_symbols"].items()},
            operations={s: dict(v) for s, v in data["operations"].items()},
            kinds={c: dict(v) for c, v in data["kinds"].items()},
            family_sets=dict(data["family_sets"]),
            unseen=dict(data["unseen"]),
            examples={int(k): v for k, v in data["examples"].items()},
            twists=dict(data["twists"]),
        )

    def setting(self, group: str, setting: Setting) -> float:
        """P(setting | symbol group), or P(setting) for a group the fit never saw."""
        return self.group_settings.get(group, self.settings).get(setting.name, 1e-3)

    def op(self, setting: Setting, name: str) -> float:
        # Unknown names (an operation appended to the table after the fit) get a small mass.
        return self.operations.get(setting.name, {}).get(name, 1e-3)


@functools.lru_cache(maxsize=4)
def load_prior(path: Path = PRIOR_PATH) -> Prior:
    """The prior shipped with the package (or another fitted file)."""
    return Prior.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


STANDARD = "+-*"


def symbol_group(symbols: Iterable[str]) -> str:
    """'standard' when every operator is '+', '-' or '*', else 'symbolic'.

    Dev shows two generators. Standard rows are reversed (99%), and their symbols mean
    what they say: '-' is always a subtraction/remainder, '+' an addition (75%) or a
    concatenation, '*' a multiplication (73%) or a concatenation. Symbolic rows draw
    symbols from a pool of 26 where '+', '-', '*' are ordinary members: the family is
    independent of the symbol, and the setting is normal about half the time.
    """
    return "standard" if set(symbols) <= set(STANDARD) else "symbolic"


def puzzle_symbols(puzzle: EquationPrompt) -> list[str]:
    """Every operator symbol of a row, the query's included."""
    return [lhs.op for lhs, _ in puzzle.examples] + [puzzle.query.op]


def symbol_class(symbol: str, group: str = "standard") -> str:
    """The symbol itself where it carries meaning ('+', '-', '*' in a standard row), else
    'other'. Without a group, '+', '-', '*' are read as meaningful."""
    return symbol if group == "standard" and symbol in STANDARD else "other"


# ---------------------------------------------------------------------------- parse


def parse(prompt: str) -> EquationPrompt:
    """The equation prompt, checked to be numeric with non-empty results."""
    puzzle = parse_equation_prompt(prompt)
    if not puzzle.is_numeric:
        raise PuzzleFormatError("not a numeric equation: every operand must be 2 digits")
    for lhs, rhs in puzzle.examples:
        if not rhs.strip():
            raise PuzzleFormatError(f"example {lhs.text!r} has an empty result")
    return puzzle


# ---------------------------------------------------------------------------- fits


@dataclass(frozen=True)
class Fit:
    """A setting under which every shown operator has at least one consistent operation."""

    setting: Setting
    candidates: tuple[tuple[str, tuple[str, ...]], ...]  # (symbol, op names in table order)

    def of(self, symbol: str) -> tuple[str, ...]:
        return dict(self.candidates).get(symbol, ())


def _by_operator(puzzle: EquationPrompt) -> dict[str, list[tuple[Expression, str]]]:
    groups: dict[str, list[tuple[Expression, str]]] = {}
    for lhs, rhs in puzzle.examples:
        groups.setdefault(lhs.op, []).append((lhs, rhs))
    return groups


def _consistent(examples: list[tuple[Expression, str]], setting: Setting) -> tuple[str, ...]:
    return tuple(
        op.name
        for op in OPERATIONS
        if all(apply(op, e.left, e.right, e.op, setting) == rhs for e, rhs in examples)
    )


def _failure(puzzle: EquationPrompt, setting: Setting) -> str | None:
    """Why `setting` cannot explain the examples (None when it can)."""
    for symbol, examples in _by_operator(puzzle).items():
        for lhs, rhs in examples:
            if not _consistent([(lhs, rhs)], setting):
                return f"{lhs.text} = {rhs} fits no operation"
        if not _consistent(examples, setting):
            return f"no single operation fits every '{symbol}' example"
    return None


def fits(puzzle: EquationPrompt) -> tuple[Fit, ...]:
    """Every setting that explains all examples, with each operator's candidates."""
    found = []
    for setting in SETTINGS:
        candidates = tuple((s, _consistent(ex, setting)) for s, ex in _by_operator(puzzle).items())
        if all(names for _, names in candidates):
            found.append(Fit(setting, candidates))
    return tuple(found)


# ---------------------------------------------------------------------------- hypotheses


@dataclass(frozen=True)
class Hypothesis:
    """One way to answer: a setting, the query's operation, its answer and prior weight."""

    fit: Fit
    operation: str
    answer: str
    weight: float


def fit_weight(fit: Fit, prior: Prior, group: str) -> float:
    """Unnormalised P(fit): P(setting | group) * prod over operators of their candidates' mass."""
    weight = prior.setting(group, fit.setting)
    for _, names in fit.candidates:
        weight *= sum(prior.op(fit.setting, n) for n in names)
    return weight


def _left_over(shown: list[str], family_sets: Mapping[str, float]) -> dict[str, float]:
    """P(query family) given the shown operators' families: each family set that holds
    them leaves one or two families, and the query takes either of two equally."""
    out: dict[str, float] = {}
    for key, p in family_sets.items():
        rest = key.split("+")
        for kind in shown:
            if kind not in rest:
                break
            rest.remove(kind)
        else:
            for kind in rest:
                out[kind] = out.get(kind, 0.0) + p / len(rest)
    return out


def _symbol_fit(cls: str, kind: str, prior: Prior) -> float:
    """How well a standard row's symbol fits family `kind`, 1 for the families it takes
    ('+': addition or concatenation) and near 0 otherwise; 1 for any symbolic operator."""
    if cls == "other":
        return 1.0
    best = max(prior.kinds.get(c, {}).get(kind, 0.0) for c in STANDARD)
    return prior.kinds.get(cls, {}).get(kind, 0.0) / best if best > 0 else 0.0


def query_kinds(fit: Fit, symbol: str, prior: Prior, group: str) -> dict[str, float]:
    """P(family of the unseen operator `symbol`) under `fit`: the family sets that hold
    the shown operators' families (over the joint choices of their candidates, weighted
    by P(op | setting)), times `Prior.unseen` and, in a standard row, the symbol's fit."""
    others = [names for other, names in fit.candidates if other != symbol]
    masses = dict.fromkeys(KINDS, 0.0)
    for combo in itertools.product(*others):
        weight = math.prod(prior.op(fit.setting, n) for n in combo)
        shown = [BY_NAME[n].kind for n in combo]
        for kind, p in _left_over(shown, prior.family_sets).items():
            masses[kind] += weight * p
    cls = symbol_class(symbol, group)
    masses = {
        k: m * prior.unseen.get(k, 1.0) * _symbol_fit(cls, k, prior) for k, m in masses.items()
    }
    total = sum(masses.values())
    if total <= 0:  # no family set holds the shown families: any family, evenly
        return dict.fromkeys(KINDS, 1 / len(KINDS))
    return {k: m / total for k, m in masses.items()}


def twist_class(group: str, setting: Setting) -> str:
    """The rows that share a plain/twisted pattern: a row of three operators has exactly
    one plain operation in standard rows and in normal symbolic rows, two in reversed or
    mirrored symbolic rows (all 84 such dev rows with one consistent rule)."""
    if group == "standard":
        return group
    return f"{group}-{'normal' if setting.name == 'normal' else 'turned'}"


def twist_contexts(
    fit: Fit, symbol: str, prior: Prior, group: str, operators: int
) -> dict[str, float]:
    """P(context) for `symbol`, context = `class/operators/plain others` (`Prior.twists`,
    `twist_class`), over the joint choices of the other operators' candidates weighted by
    P(op | setting)."""
    others = [names for other, names in fit.candidates if other != symbol]
    plain_counts: dict[int, float] = {}
    for combo in itertools.product(*others):
        weight = math.prod(prior.op(fit.setting, n) for n in combo)
        plain = sum(BY_NAME[n].plain for n in combo)
        plain_counts[plain] = plain_counts.get(plain, 0.0) + weight
    total = sum(plain_counts.values()) or 1.0
    cls = twist_class(group, fit.setting)
    return {f"{cls}/{operators}/{k}": w / total for k, w in plain_counts.items()}


def twist_factor(op: Operation, contexts: Mapping[str, float], cls: str, prior: Prior) -> float:
    """How much the contexts raise or lower `op` against its twist class's base rate."""
    base = prior.twists.get(cls)
    if base is None or not 0 < base < 1:
        return 1.0
    factor = 0.0
    for context, weight in contexts.items():
        p = prior.twists.get(context, base)
        factor += weight * ((1 - p) / (1 - base) if op.plain else p / base)
    return factor


def _within_kind(kind: str, setting: Setting, prior: Prior) -> dict[str, float]:
    """P(operation | family, setting)."""
    masses = {op.name: prior.op(setting, op.name) for op in OPERATIONS if op.kind == kind}
    total = sum(masses.values())
    return {n: m / total for n, m in masses.items()} if total > 0 else {}


def _query_operations(fit: Fit, query: Expression, prior: Prior, group: str) -> dict[str, float]:
    """P(query operation | fit): its candidates if shown, else the family prior."""
    shown = fit.of(query.op)
    operators = len(fit.candidates) + (not shown)
    twists = twist_contexts(fit, query.op, prior, group, operators)
    cls = twist_class(group, fit.setting)
    if shown:
        masses = {
            n: prior.op(fit.setting, n) * twist_factor(BY_NAME[n], twists, cls, prior)
            for n in shown
        }
    else:
        families = query_kinds(fit, query.op, prior, group)
        masses = {
            n: families[kind] * m * twist_factor(BY_NAME[n], twists, cls, prior)
            for kind in KINDS
            for n, m in _within_kind(kind, fit.setting, prior).items()
        }
    total = sum(masses.values())
    if total <= 0:  # a prior with zeros everywhere: fall back to table order, evenly
        masses, total = (
            dict.fromkeys(shown or [op.name for op in OPERATIONS], 1.0),
            float(len(shown or OPERATIONS)),
        )
    return {n: m / total for n, m in masses.items() if m > 0}


def hypotheses(puzzle: EquationPrompt, prior: Prior | None = None) -> list[Hypothesis]:
    """All (setting, query operation) hypotheses with normalised weights, in tie-break order."""
    prior = prior or load_prior()
    found = fits(puzzle)
    group = symbol_group(puzzle_symbols(puzzle))
    fit_weights = [fit_weight(f, prior, group) for f in found]
    total = sum(fit_weights) or 1.0
    out = []
    q = puzzle.query
    for fit, fw in zip(found, fit_weights):
        for name, p in _query_operations(fit, q, prior, group).items():
            answer = apply(BY_NAME[name], q.left, q.right, q.op, fit.setting)
            out.append(Hypothesis(fit, name, answer, fw / total * p))
    return out


def _best_answer(hyps: list[Hypothesis]) -> tuple[str, float]:
    """The answer with the highest expected metric score; the first one wins ties."""
    best, best_score = "", -1.0
    for answer in dict.fromkeys(h.answer for h in hyps):
        score = sum(h.weight for h in hyps if is_correct(h.answer, answer))
        if score > best_score + 1e-12:
            best, best_score = answer, score
    return best, best_score


# ---------------------------------------------------------------------------- solve


def _rule(
    puzzle: EquationPrompt, hyps: list[Hypothesis], chosen: Hypothesis, score: float, prior: Prior
) -> EquationRule:
    """The rule of hypothesis `chosen`: each shown operator's most common candidate (the
    query's own operation for its operator), with the candidates that also fit."""
    fit = chosen.fit
    operations = []
    for symbol, names in fit.candidates:
        pick = (
            chosen.operation
            if symbol == puzzle.query.op
            else max(names, key=lambda n: prior.op(fit.setting, n))
        )
        operations.append((symbol, pick, tuple(n for n in names if n != pick)))
    return EquationRule(
        setting=fit.setting,
        operations=tuple(operations),
        query_operation=chosen.operation,
        guessed=not puzzle.query_seen,
        probability=score,
        rejected=tuple((s.name, why) for s in SETTINGS if (why := _failure(puzzle, s))),
        other_settings=tuple(dict.fromkeys(h.fit.setting.name for h in hyps if h.fit is not fit)),
    )


def solve(puzzle: EquationPrompt, prior: Prior | None = None) -> Solution | Unsolved:
    prior = prior or load_prior()
    hyps = hypotheses(puzzle, prior)
    if not hyps:
        reasons = "; ".join(f"{s.name}: {_failure(puzzle, s)}" for s in SETTINGS)
        return Unsolved(f"no setting explains every example ({reasons})")
    answer, score = _best_answer(hyps)
    agreeing = [h for h in hyps if is_correct(h.answer, answer)]
    chosen = max(agreeing, key=lambda h: h.weight)  # first of equals: tie-break order
    rule = _rule(puzzle, hyps, chosen, score, prior)
    distinct = len({h.answer for h in hyps})
    notes = (f"{distinct} distinct answers among {len(hyps)} hypotheses",)
    return Solution(puzzle, answer, rule, candidates=len(hyps), agreeing=len(agreeing), notes=notes)


# ---------------------------------------------------------------------------- render


def trace_rule(solution: Solution) -> EquationRule:
    """The rule a trace follows: the likeliest hypothesis giving the answer's exact string.

    That is the solver's rule except where answers pool under the metric (158 and 159
    agree, and the pool's first answer string may come from a less likely hypothesis than
    the pool's likeliest); a trace must compute the very answer it boxes."""
    puzzle: EquationPrompt = solution.puzzle
    rule: EquationRule = solution.rule
    q = puzzle.query
    if apply(BY_NAME[rule.query_operation], q.left, q.right, q.op, rule.setting) == solution.answer:
        return rule
    prior = load_prior()
    hyps = hypotheses(puzzle, prior)
    exact = [h for h in hyps if h.answer == solution.answer]
    if not exact:  # only for a solution found with another prior: keep the solver's rule
        return rule
    return _rule(puzzle, hyps, max(exact, key=lambda h: h.weight), rule.probability, prior)


def render(solution: Solution) -> str:
    """The search that finds the setting and operations, then the query (`numeric_trace`)."""
    traced = dataclasses.replace(solution, rule=trace_rule(solution))
    group = symbol_group(puzzle_symbols(solution.puzzle))
    return render_trace(traced, load_prior(), group)


# ---------------------------------------------------------------------------- generate


def _draw(rng: random.Random, weights: Mapping[Any, float]) -> Any:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _operand(rng: random.Random) -> str:
    # Dev operands run 01..99 with zeros kept ("07"); "00" never occurs.
    return f"{rng.randint(1, 99):02d}"


def _draw_symbols(rng: random.Random, count: int, group: str, prior: Prior) -> list[str]:
    """`count` distinct symbols by their frequency in `group` rows (redrawn until the mix
    is the group's: a symbolic row of standard symbols only would read as standard)."""
    weights = prior.group_symbols[group]
    while True:
        symbols = _distinct(rng, count, weights)
        if symbol_group(symbols) == group:
            return symbols


def _distinct(rng: random.Random, count: int, weights: Mapping[str, float]) -> list[str]:
    chosen: list[str] = []
    for _ in range(count):
        chosen.append(_draw(rng, {s: p for s, p in weights.items() if s not in chosen}))
    return chosen


def _plausible(assignment: list[tuple[str, Operation]], cls: str, prior: Prior) -> bool:
    """Whether each operator's plain/twisted state is one dev shows in its context (a
    row of three has one plain operation, or two: see `twist_class`)."""
    for symbol, op in assignment:
        plain_others = sum(o.plain for s, o in assignment if s != symbol)
        p = prior.twists.get(f"{cls}/{len(assignment)}/{plain_others}")
        if p is None or (1 - p if op.plain else p) < 0.05:
            return False
    return True


def _draw_assignment(
    rng: random.Random, group: str, setting: Setting, prior: Prior
) -> list[tuple[str, Operation]]:
    """The row's three operators: a family set (`family_sets`), symbols matched to the
    families as their symbol class allows (`kinds`: in a standard row '-' subtracts),
    operations by P(op | setting); redrawn while the plain/twisted pattern is implausible."""
    for _ in range(100):  # about one draw in three is implausible; 100 never run out on dev
        families = _draw(rng, prior.family_sets).split("+")
        symbols = _draw_symbols(rng, len(families), group, prior)
        orders = {
            order: math.prod(
                prior.kinds[symbol_class(s, group)].get(k, 0.0) for s, k in zip(order, families)
            )
            for order in itertools.permutations(symbols)
        }
        symbols = list(_draw(rng, orders))
        ops = [BY_NAME[_draw(rng, _within_kind(k, setting, prior))] for k in families]
        assignment = list(zip(symbols, ops))
        if _plausible(assignment, twist_class(group, setting), prior):
            break
    return assignment


def generate(
    rng: random.Random,
    subtype: Literal["deduce", "guess"] = "deduce",
    prior: Prior | None = None,
) -> Generated:
    """A fresh puzzle drawn with dev frequencies: setting, three operators, 3-5 examples
    each using one of them at random, a query whose operator the examples show (deduce)
    or never use (guess), and the exact answer."""
    if subtype not in ("deduce", "guess"):
        raise ValueError(f"subtype must be 'deduce' or 'guess', got {subtype!r}")
    prior = prior or load_prior()
    group = _draw(rng, prior.group_share)
    n_examples = _draw(rng, prior.examples)
    setting = Setting(_draw(rng, prior.group_settings[group]))
    assignment = _draw_assignment(rng, group, setting, prior)
    while True:  # a guess row's query operator is unused: about one draw in five
        used = [rng.randrange(len(assignment)) for _ in range(n_examples)]
        query = rng.randrange(len(assignment))
        if (query in used) == (subtype == "deduce"):
            break
    examples = []
    for i in used:
        symbol, op = assignment[i]
        left, right = _operand(rng), _operand(rng)
        examples.append((f"{left}{symbol}{right}", apply(op, left, right, symbol, setting)))
    query_symbol, query_op = assignment[query]
    left, right = _operand(rng), _operand(rng)
    prompt = format_equation_prompt(examples, f"{left}{query_symbol}{right}")
    answer = apply(query_op, left, right, query_symbol, setting)
    rule = {
        "setting": setting.name,
        "operations": {s: op.name for s, op in assignment},
        "query": query_symbol,
    }
    return Generated(prompt, answer, rule=rule, subtype=subtype)
