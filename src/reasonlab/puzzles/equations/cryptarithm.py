"""Cryptarithm equations: the numeric family's arithmetic with the digits written as symbols.

A row draws a fresh injective mapping of the ten digits onto 10 of the 23 symbols of
`ALPHABET`; operators are symbols too (mostly `+ - *`, never one of the row's digit
symbols) and a negative result carries the operator symbol, as in numeric rows. The
operations and row settings are `ops`' table, shared with `numeric`.

Solving:
1. `cryptarithm_search.search` finds every fit: (setting, an operation per shown
   operator, a symbol->digit mapping) explaining all examples, operands as read in
   10..99 (`cryptarithm_search.written_operands`).
2. Each fit becomes hypotheses for the query: query symbols the examples never show
   take each free digit in turn (equally likely), and an operator the examples never
   show (`guess` rows) takes each operation with its prior probability.
3. A hypothesis weighs P(setting | symbol group) * prod P(operation | operator symbol)
   * how the row's other operations move the query's twist odds (the dev prior in
   data/cryptarithm_prior.json; groups and symbol classes are the numeric family's)
   times its share; summing over mappings gives each answer's posterior, and the
   answer with the highest expected score wins.
An answer that needs a digit whose symbol never appears cannot be written for sure:
that row is `Unsolved` with a partial guess (the first unseen symbol of `ALPHABET`).

Traces: a query that only joins its operands' symbols is shown at the symbol level.
Otherwise `cryptarithm_trace.derive` runs a step-by-step search a model can redo (cheap
symbol-level refutations first, then digits) and finds its first decoding; when that
decoding gives the chosen answer within `_TRACE_CHARS`, the trace shows the search,
then one line per choice the examples leave to the prior (`guess_lines`: an unseen
operator's operation, a query symbol's digit), marked as a guess. Both are
`trace_complete`. Other rows show the decoding the solver found, checked on every
example (`trace_complete=False`).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from reasonlab.puzzles.base import Generated, PuzzleFormatError, Solution, Unsolved, boxed
from reasonlab.puzzles.equations import numeric as equation_numeric
from reasonlab.puzzles.equations.cryptarithm_search import (
    DEFAULT_LIMITS,
    SIGN,
    Fit,
    SearchLimits,
    SearchResult,
    encode,
    reads_two_digits,
    search,
    written_operands,
)
from reasonlab.puzzles.equations.cryptarithm_trace import (
    SHORT_LINES,
    Derivation,
    derive,
    render_derivation,
)
from reasonlab.puzzles.equations.numeric import puzzle_symbols, symbol_class, symbol_group
from reasonlab.puzzles.equations.numeric_trace import LABELS, operation_order, setting_order
from reasonlab.puzzles.equations.ops import (
    BY_NAME,
    KINDS,
    OPERATIONS,
    SETTINGS,
    Operation,
    Setting,
    apply,
    read_operands,
    write_result,
)
from reasonlab.puzzles.equations.prompt import (
    EquationPrompt,
    Expression,
    format_equation_prompt,
    parse_equation_prompt,
)

__all__ = [
    "ALPHABET",
    "NAME",
    "OFFSET_CONTEXTS",
    "PRIOR_PATH",
    "CryptarithmRule",
    "Hypothesis",
    "Prior",
    "find_fits",
    "generate",
    "guess_lines",
    "hypotheses",
    "joining_order",
    "load_prior",
    "offset_context",
    "parse",
    "render",
    "row_group",
    "solve",
    "solve_found",
    "twist_class",
    "twist_context",
    "twist_factor",
]

NAME = "cryptarithm"
PRIOR_PATH = Path(__file__).parents[1] / "data" / "cryptarithm_prior.json"
# The 23 symbols that stand for digits in the dev split's 645 cryptarithm rows (every one
# appears in 244-288 rows, so a row's 10 are drawn uniformly); none of `+ - *` is among them.
ALPHABET = "!\"#$%&'()/:<>?@[\\]^`{|}"
UNKNOWN = "\x00"  # an answer character whose digit has no symbol in the puzzle
_SAME_KIND = 0.05  # two shown operators of one family: ~1% of dev rows (vs distinct)
# Two add/mul operations both off by one: 10 of the 290 dev rows with two add/mul
# operations, where independent draws would give ~46; so such a pair counts 0.2.
_TWO_OFFSETS = 0.2
OFFSET_CONTEXTS = ("none", "other-offset", "other-zero")
_MAX_ENCODINGS = 64  # beyond this many ways to write unknown digits, leave them unknown
_SETTING_WORDS = {
    "normal": "normal (a = left operand, b = right operand, result as computed)",
    "reversed": "reversed (operands digit-reversed, result digits reversed, sign in front)",
    "mirrored": "mirrored (the line read right to left: a = right operand reversed, "
    "b = left operand reversed, the signed result reversed)",
}


@dataclass(frozen=True)
class Prior:
    """Frequencies measured on dev cryptarithms (scripts/fit_cryptarithm_prior.py).

    Rows fall in the numeric family's two symbol groups (`equation_numeric.symbol_group`):
    `standard` rows use only `+ - *`, whose symbols mean what they say; `symbolic` rows
    draw operators from a wider pool. Classes are `equation_numeric.symbol_class`.

    settings:   P(setting | group)                              group -> setting -> p
    operations: P(operation | setting)                          setting -> op name -> p
    kinds:      P(family | class) of a shown operator           class -> kind -> p
    unseen:     P(family | class) of a guess row's query operator  class -> kind -> p
    offsets:    P(offset of an add/mul operation | the row's other operations)
                context (`offset_context`) -> offset -> p
    twists:     P(the query's operation is a twist, not `plain`) by context (`twist_context`:
                twist class, i.e. group and whether the setting is normal (`twist_class`),
                operators in the row, how many of the others are plain), and by class
                alone (the base rate): on dev a row of three operators has one plain
                operation in standard normal rows, two in standard turned and symbolic
                normal rows, three in symbolic turned rows
                context -> p
    """

    settings: Mapping[str, Mapping[str, float]]
    operations: Mapping[str, Mapping[str, float]]
    kinds: Mapping[str, Mapping[str, float]]
    unseen: Mapping[str, Mapping[str, float]]
    offsets: Mapping[str, Mapping[int, float]]
    twists: Mapping[str, float]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prior:
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"cryptarithm prior lacks field(s) {', '.join(missing)}")
        nested: dict[str, Any] = {
            f.name: {k: dict(v) for k, v in data[f.name].items()}
            for f in fields(cls)
            if f.name != "twists"
        }
        nested["offsets"] = {
            c: {int(k): v for k, v in d.items()} for c, d in nested["offsets"].items()
        }
        return cls(**nested, twists=dict(data["twists"]))

    @classmethod
    def flat(cls) -> Prior:
        """Every setting, operation, family and offset equally likely (what the fit starts from)."""
        names = [s.name for s in SETTINGS]
        classes = ("+", "-", "*", "other")
        return cls(
            settings={g: dict.fromkeys(names, 1.0) for g in ("standard", "symbolic")},
            operations={n: {op.name: 1.0 for op in OPERATIONS} for n in names},
            kinds={c: dict.fromkeys(KINDS, 1.0) for c in classes},
            unseen={c: dict.fromkeys(KINDS, 1.0) for c in classes},
            offsets={c: dict.fromkeys((-1, 0, 1), 1.0) for c in OFFSET_CONTEXTS},
            twists={},
        )

    def setting(self, group: str, setting: Setting) -> float:
        """P(setting | symbol group); 0 for a group the fit never saw."""
        return self.settings.get(group, {}).get(setting.name, 0.0)

    def op(self, setting: Setting, name: str) -> float:
        # an operation appended to the table after the fit gets a small mass
        return self.operations.get(setting.name, {}).get(name, 1e-3)


@functools.lru_cache(maxsize=4)
def load_prior(path: Path = PRIOR_PATH) -> Prior:
    """The prior shipped with the package (or another fitted file)."""
    return Prior.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def row_group(puzzle: EquationPrompt) -> str:
    """The row's symbol group (the numeric family's rule, applied to every operator)."""
    return symbol_group(puzzle_symbols(puzzle))


# ---------------------------------------------------------------------------- parse


def parse(prompt: str) -> EquationPrompt:
    """The equation prompt, checked to write its operands in symbols, not digits."""
    puzzle = parse_equation_prompt(prompt)
    if puzzle.is_numeric:
        raise PuzzleFormatError("not a cryptarithm: every operand is written in digits")
    for lhs, rhs in puzzle.examples:
        if not rhs.strip() or " " in rhs or SIGN in rhs:
            raise PuzzleFormatError(
                f"example {lhs.text!r} has an empty result or one with ' ' or {SIGN!r}: {rhs!r}"
            )
    for lhs in [lhs for lhs, _ in puzzle.examples] + [puzzle.query]:
        if SIGN in lhs.text or " " in lhs.text:
            raise PuzzleFormatError(
                f"expression {lhs.text!r} holds ' ' or {SIGN!r}, which no generator writes"
            )
    return puzzle


# ---------------------------------------------------------------------------- hypotheses


@dataclass(frozen=True)
class Hypothesis:
    """One way to answer: a fit, query symbols' assumed digits, the query operation."""

    fit: Fit
    assumed: tuple[tuple[str, str], ...]  # (symbol no fit fixes, digit taken): query or joined
    operation: Operation
    digits: str  # the query's rhs in digits (SIGN for the operator symbol)
    answer: str  # in symbols; UNKNOWN where a digit has no known symbol
    weight: float


def _within(
    prior: Prior, setting: Setting, op: Operation, offsets: Mapping[int, float] | None = None
) -> float:
    """P(op | its family): by P(op | setting), or for add/mul by the row's offset context."""
    members = [o for o in OPERATIONS if o.kind == op.kind]
    if offsets is not None and op.kind in ("add", "mul"):
        return offsets.get(op.offset, 1e-3) / sum(offsets.get(o.offset, 1e-3) for o in members)
    return prior.op(setting, op.name) / sum(prior.op(setting, o.name) for o in members)


def _fit_weight(fit: Fit, group: str, prior: Prior) -> float:
    """P(setting | group) * prod P(family | symbol class) P(op | family), with two
    dev regularities: operators rarely share a family, and rarely two carry an offset."""
    weight = prior.settings.get(group, {}).get(fit.setting.name, 1e-3)
    for symbol, op in fit.ops:
        family = prior.kinds.get(symbol_class(symbol, group), {}).get(op.kind, 1e-3)
        weight *= family * _within(prior, fit.setting, op)
    kinds = [op.kind for _, op in fit.ops]
    weight *= _SAME_KIND ** (len(kinds) - len(set(kinds)))
    return weight * _TWO_OFFSETS ** max(0, _offsets(op for _, op in fit.ops) - 1)


def _offsets(ops: Iterator[Operation] | list[Operation]) -> int:
    """How many operations carry a +-1 offset."""
    return sum(op.offset != 0 for op in ops)


def offset_context(others: list[Operation]) -> str:
    """The prior's offset context: do the row's other add/mul operations carry an offset?"""
    arithmetic = [op for op in others if op.kind in ("add", "mul")]
    if not arithmetic:
        return "none"
    return "other-offset" if _offsets(arithmetic) else "other-zero"


def twist_class(group: str, setting: Setting) -> str:
    """The rows that share a count of plain operations: on dev a row of three operators
    has one in standard normal rows, two in standard turned (reversed or mirrored) and
    symbolic normal rows, three in symbolic turned rows (26, 21 + 28, 15 of the deduce
    rows whose gold answer one setting and set of operations give; no exception)."""
    return f"{group}-{'normal' if setting.name == 'normal' else 'turned'}"


def twist_context(others: list[Operation], cls: str) -> str:
    """`class/operators/plain others` for one operator (`twist_class`): the row's operators
    (the query's included) and how many of the `others`' operations are plain (a + b, a - b,
    a * b)."""
    return f"{cls}/{len(others) + 1}/{sum(op.plain for op in others)}"


def twist_factor(fit: Fit, symbol: str, op: Operation, group: str, prior: Prior) -> float:
    """How the row's other operations raise or lower `op` for `symbol` against its twist
    class's base rate of twists (1 without a fitted rate)."""
    cls = twist_class(group, fit.setting)
    base = prior.twists.get(cls)
    if base is None or not 0 < base < 1:
        return 1.0
    others = [other for s, other in fit.ops if s != symbol]
    p = prior.twists.get(twist_context(others, cls), base)
    return (1 - p) / (1 - base) if op.plain else p / base


def _query_operations(
    fit: Fit, symbol: str, group: str, prior: Prior
) -> list[tuple[Operation, float]]:
    """The query's operation: the fit's if shown, else by P(family | class) of unseen
    operators (a family a shown operator uses counts _SAME_KIND) and the offset context."""
    shown = fit.op_for(symbol)
    if shown is not None:
        return [(shown, 1.0)]
    used = {op.kind for _, op in fit.ops}
    families = prior.unseen.get(symbol_class(symbol, group), {})
    offsets = prior.offsets.get(offset_context([op for _, op in fit.ops]), {})
    masses = [
        (
            op,
            families.get(op.kind, 1e-3)
            * _within(prior, fit.setting, op, offsets)
            * (_SAME_KIND if op.kind in used else 1.0),
        )
        for op in OPERATIONS
    ]
    total = sum(m for _, m in masses) or 1.0
    return [(op, m / total) for op, m in masses]


def _completions(
    fit: Fit, query: Expression, leading: frozenset[str] = frozenset()
) -> list[tuple[tuple[str, str], ...]]:
    """Digits for query symbols the fit leaves open: every injective choice of free digits
    that keeps both operands as read in 10..99 (`reads_two_digits`) and gives no
    `leading` symbol (`_leading`) the digit 0."""
    known = dict(fit.mapping)
    unseen = list(dict.fromkeys(ch for ch in query.left + query.right if ch not in known))
    free = [d for d in "0123456789" if d not in known.values()]
    out = []
    for digits in itertools.permutations(free, len(unseen)):
        assumed = tuple(zip(unseen, digits))
        if any(d == "0" and ch in leading for ch, d in assumed):
            continue
        full = known | dict(assumed)
        left = "".join(full[ch] for ch in query.left)
        if reads_two_digits(left, "".join(full[ch] for ch in query.right), fit.setting):
            out.append(assumed)
    return out


def _encodings(
    rhs: str,
    inverse: dict[str, str],
    free: list[str],
    loose: list[str],
    leading: frozenset[str] = frozenset(),
) -> Iterator[tuple[tuple[tuple[str, str], ...], float]]:
    """Symbols for rhs digits no symbol is fixed for, with their probabilities.

    `loose` symbols are seen (operands of joining operators) but hold unknown digits: they
    occupy a uniformly random injective choice of the `free` digits in which no `leading`
    symbol (`_leading`) is 0. A missing digit is held by one loose symbol or by none (it
    then has a symbol the puzzle never shows, left out: the answer writes UNKNOWN there);
    each such assignment weighs the share of choices that agree with it (`_placements`).
    """
    missing = list(dict.fromkeys(ch for ch in rhs if ch != SIGN and ch not in inverse))
    if (len(loose) + 1) ** len(missing) > _MAX_ENCODINGS:  # mapping barely known: leave unknown
        yield (), 1.0
        return
    total = _placements(loose, free, leading)
    rest = [d for d in free if d not in missing]  # digits no unheld missing digit may take

    def assign(i: int, left: list[str]) -> Iterator[tuple[tuple[tuple[str, str], ...], int]]:
        if i == len(missing):
            yield (), _placements(left, rest, leading)
            return
        digit = missing[i]
        for symbol in [*left, ""]:
            if symbol and digit == "0" and symbol in leading:
                continue
            others = [s for s in left if s != symbol]
            for picks, count in assign(i + 1, others):
                yield (((symbol, digit),) if symbol else ()) + picks, count

    for picks, count in assign(0, loose):
        if count:
            yield picks, count / total


def _placements(symbols: list[str], digits: list[str], leading: frozenset[str]) -> int:
    """Injective choices of `digits` for `symbols` that give no `leading` symbol 0."""
    n, k = len(digits), len(symbols)
    if "0" not in digits or not k:
        return math.perm(n, k)
    return math.perm(n, k) - sum(s in leading for s in symbols) * math.perm(n - 1, k - 1)


def _leading(puzzle: EquationPrompt, setting: Setting) -> frozenset[str]:
    """Symbols that lead an operand, as read in `setting`, of a joining example: the
    operands read 10..99 (`reads_two_digits`), so these are never 0. Joining examples are
    left out of the search (`find_fits`), and this is all they say about their loose
    symbols' digits."""
    out = set()
    for lhs, _ in puzzle.examples:
        if joining_order(puzzle, lhs.op):
            a, b = read_operands(lhs.left, lhs.right, setting)
            out |= {a[0], b[0]}
    return frozenset(out)


def _seen_symbols(puzzle: EquationPrompt) -> list[str]:
    """Digit symbols the examples show (operands and results, operator symbols left out)."""
    operators = set(puzzle_symbols(puzzle))
    text = "".join(lhs.left + lhs.right + rhs for lhs, rhs in puzzle.examples)
    return [ch for ch in dict.fromkeys(text) if ch not in operators]


def hypotheses(
    puzzle: EquationPrompt, fits: tuple[Fit, ...], prior: Prior, budget: int = 40_000
) -> Iterator[Hypothesis]:
    """Every (fit, completion, query operation, encoding) with its unnormalised weight.

    When fits * completions * query operations * encodings would pass `budget` (rows
    whose examples barely constrain the mapping), every k-th (fit, completion) pair
    stands for its neighbours: both come in a systematic order, so a stride samples them.
    """
    q = puzzle.query
    if not fits:
        return
    group = row_group(puzzle)
    seen = _seen_symbols(puzzle)
    # (fit, completion) pairs are sampled with one stride so the work stays near `budget`
    first = fits[0]
    leading = {setting: _leading(puzzle, setting) for setting in SETTINGS}
    loose_guess = min(
        _MAX_ENCODINGS, (len([s for s in seen if s not in dict(first.mapping)]) + 1) ** 2
    )
    per_pair = len(_query_operations(first, q.op, group, prior)) * loose_guess
    completions = len(_completions(first, q, leading[first.setting]))
    stride = max(1, -(-len(fits) * completions * per_pair // budget))
    pair = -1
    for fit in fits:
        base = _fit_weight(fit, group, prior)
        completions = _completions(fit, q, leading[fit.setting])
        for assumed in completions:
            pair += 1
            if pair % stride:
                continue
            digits = dict(fit.mapping) | dict(assumed)
            inverse = {d: s for s, d in digits.items()}
            free = [d for d in "0123456789" if d not in inverse]
            loose = [s for s in seen if s not in digits]
            left = "".join(digits[ch] for ch in q.left)
            right = "".join(digits[ch] for ch in q.right)
            for op, p in _query_operations(fit, q.op, group, prior):
                p *= twist_factor(fit, q.op, op, group, prior)
                rhs = apply(op, left, right, SIGN, fit.setting)
                for picks, share in _encodings(rhs, inverse, free, loose, leading[fit.setting]):
                    answer = encode(rhs, inverse | {d: s for s, d in picks}, q.op, UNKNOWN)
                    # not divided among the fit's completions: under a uniform mapping
                    # each (fit, completion) is one equally likely reading of the symbols
                    weight = base * p * share
                    yield Hypothesis(fit, assumed + picks, op, rhs, answer, weight)


# ---------------------------------------------------------------------------- solve


@dataclass(frozen=True)
class CryptarithmRule:
    """What the solver settled on, as the trace shows it."""

    setting: Setting
    operations: tuple[tuple[str, str], ...]  # (operator symbol, op name), shown operators
    mapping: tuple[tuple[str, str], ...]  # (symbol, digit) decoded from the examples
    assumed: tuple[tuple[str, str], ...]  # symbols no fit fixes (query, joined), digit taken
    query_operation: str
    guessed: bool  # the query operator never appears in the examples
    probability: float  # the answer's share of the posterior
    fits: int  # how many (setting, operations, mapping) explain every example
    # the trace's search when it derives this answer within the trace budget, else None
    derivation: Derivation | None = None


def find_fits(puzzle: EquationPrompt, limits: SearchLimits = DEFAULT_LIMITS) -> SearchResult:
    """`search` over the examples, except operators that only join their operands.

    A joining operator (`joining_order`) is a concatenation under every mapping, so its
    examples fix no digit; searching them would list every digit assignment of their
    symbols. They are left out and their operation is added per setting afterwards
    (their symbols are then `loose`: see `_encodings`).
    """
    joins = {
        lhs.op: order for lhs, _ in puzzle.examples if (order := joining_order(puzzle, lhs.op))
    }
    examples = [
        (lhs.left + lhs.right, lhs.op, rhs) for lhs, rhs in puzzle.examples if lhs.op not in joins
    ]
    result = search(examples, limits)
    joining = {}  # (setting, order) -> the concatenation that writes that order there
    for setting in SETTINGS:
        for op in OPERATIONS:
            if op.kind == "cat":
                written = apply(op, "12", "34", SIGN, setting)
                joining[setting, {"1234": "left+right", "3412": "right+left"}.get(written)] = op
    fits = []
    for fit in result.fits:
        extra = tuple(
            (symbol, joining.get((fit.setting, order))) for symbol, order in joins.items()
        )
        if all(op is not None for _, op in extra):
            fits.append(Fit(fit.setting, fit.ops + extra, fit.mapping))
    return SearchResult(tuple(fits), result.nodes, result.complete)


def _spare_symbols(puzzle: EquationPrompt) -> list[str]:
    """ALPHABET symbols the puzzle never writes: where a digit with no symbol must go."""
    seen = set(puzzle.query.text) | {ch for lhs, rhs in puzzle.examples for ch in lhs.text + rhs}
    return [s for s in ALPHABET if s not in seen]


def _named(h: Hypothesis) -> set[str]:
    """Digits with a symbol under `h` (SIGN counts as named: it is the operator)."""
    return {d for _, d in h.fit.mapping + h.assumed} | {SIGN}


def _fill_unknown(h: Hypothesis, puzzle: EquationPrompt) -> str:
    """`h`'s answer with a guess for digits never shown: ALPHABET symbols the puzzle
    lacks, in order, one per distinct digit (positions align: encoding is per character)."""
    spare = iter(_spare_symbols(puzzle))
    guesses: dict[str, str] = {}
    out = []
    for ch, digit in zip(h.answer, h.digits):
        if ch == UNKNOWN and digit not in guesses:
            guesses[digit] = next(spare, "?")
        out.append(guesses[digit] if ch == UNKNOWN else ch)
    return "".join(out)


# Over this many characters a derived trace is not kept complete. The real tokenizer
# (competition.md) counts cryptarithm traces at 2.0-2.4 characters a token, so 14,000
# characters stay under the 7,680-token budget with room to spare (dev max: 1.74).
_TRACE_CHARS = 12_500


def _derivation(
    puzzle: EquationPrompt, prior: Prior, fits: tuple[Fit, ...], short: int = SHORT_LINES[0]
) -> Derivation | None:
    """The trace's search over the examples (settings and operations in the prior's
    order), told dead branches by the solver's complete fit list; None when too long."""
    joins = {lhs.op: o for lhs, _ in puzzle.examples if (o := joining_order(puzzle, lhs.op))}
    return derive(
        puzzle,
        setting_order(prior, row_group(puzzle)),
        functools.partial(operation_order, prior),
        joins,
        fits,
        short,
    )


def guess_lines(rule: CryptarithmRule, puzzle: EquationPrompt) -> list[str]:
    """One line per choice the examples leave to the prior: the query's operation when its
    operator is unseen, a digit for a query symbol no example shows, a symbol for a
    result digit no example decodes."""
    q = puzzle.query
    lines = []
    if rule.guessed:
        used = ", ".join(sorted({BY_NAME[name].kind for _, name in rule.operations})) or "none"
        op = BY_NAME[rule.query_operation]
        lines.append(
            f"'{q.op}' never appears in the examples, so its operation is a guess: families "
            f"used {used}; most likely for '{q.op}': {LABELS[op.name]} (a guess)."
        )
    decoded = {d for _, d in rule.mapping}
    for symbol, digit in rule.assumed:
        if symbol in q.left + q.right:
            free = ", ".join(d for d in "0123456789" if d not in decoded)
            lines.append(
                f"{symbol} appears in no decoded example, so its digit is a guess among the "
                f"unused {free}: take {digit} (a guess)."
            )
        else:
            lines.append(
                f"Digit {digit} has no decoded symbol; {symbol} is seen but never decoded, "
                f"so write it with {symbol} (a guess)."
            )
    return lines


def _render_derived(rule: CryptarithmRule, puzzle: EquationPrompt, answer: str) -> str:
    return render_derivation(
        rule.derivation,
        puzzle,
        answer,
        BY_NAME[rule.query_operation],
        rule.assumed,
        guess_lines(rule, puzzle),
    )


def solve(
    puzzle: EquationPrompt, prior: Prior | None = None, limits: SearchLimits = DEFAULT_LIMITS
) -> Solution | Unsolved:
    return solve_found(puzzle, find_fits(puzzle, limits), prior or load_prior())


def solve_found(
    puzzle: EquationPrompt, result: SearchResult, prior: Prior, trace: bool = True
) -> Solution | Unsolved:
    """`solve` given the search's result (`find_fits`); `trace=False` skips the traced
    search (the answer is the same; the trace shows the decoding found, not derived)."""
    if not result.fits:
        if not result.complete:
            return Unsolved(f"search budget exceeded ({result.nodes} nodes) before any fit")
        return Unsolved(
            "no setting, operations and digit mapping of the table explain every example"
        )
    # The traced search's decoding, found before weighing: its hypotheses are kept apart
    # so the trace can give the chosen answer when this decoding gives it.
    derivation = _derivation(puzzle, prior, result.fits) if trace and result.complete else None
    scores: dict[str, float] = defaultdict(float)
    best_of: dict[str, Hypothesis] = {}
    traced: dict[str, Hypothesis] = {}
    count: dict[str, int] = defaultdict(int)
    for h in hypotheses(puzzle, result.fits, prior):
        scores[h.answer] += h.weight
        count[h.answer] += 1
        if h.answer not in best_of or h.weight > best_of[h.answer].weight:
            best_of[h.answer] = h
        if (derivation is not None and h.fit is derivation.fit) and (
            h.answer not in traced or h.weight > traced[h.answer].weight
        ):
            traced[h.answer] = h
    if not scores:  # e.g. the query shows more new symbols than there are free digits
        return Unsolved(f"{len(result.fits)} fits, but none can read the query {puzzle.query.text}")
    total = sum(scores.values()) or 1.0
    spare = len(_spare_symbols(puzzle)) or 1
    # Expected score: a digit with no symbol is written right only by a lucky pick among
    # the spare symbols, so such an answer counts 1/spare per unknown digit.
    expected = {
        a: w * spare ** -len(set(best_of[a].digits) - _named(best_of[a])) for a, w in scores.items()
    }
    ranked = sorted(scores, key=lambda a: -expected[a])  # stable: first found wins ties
    answer = ranked[0]
    chosen = traced.get(answer, best_of[answer])
    rule = CryptarithmRule(
        setting=chosen.fit.setting,
        operations=tuple((s, op.name) for s, op in chosen.fit.ops),
        mapping=chosen.fit.mapping,
        assumed=chosen.assumed,
        query_operation=chosen.operation.name,
        guessed=not puzzle.query_seen,
        probability=scores[answer] / total,
        fits=len(result.fits),
    )
    alternatives = tuple(_fill_unknown(best_of[a], puzzle) for a in ranked[1:6])
    if UNKNOWN in answer:
        missing = sorted(set(chosen.digits) - _named(chosen))
        return Unsolved(
            f"answer needs digit(s) {', '.join(missing)} whose symbol never appears",
            partial=_fill_unknown(chosen, puzzle),
        )
    if not result.complete:
        return Unsolved(
            f"search budget exceeded ({result.nodes} nodes, {len(result.fits)} fits so far)",
            partial=answer,
        )
    share = f"{len(ranked)} distinct answers from {len(result.fits)} fits; this one holds {rule.probability:.0%}"
    notes = (share, "trace shows the decoding found, not the search for it")
    # A joining query is derived at the symbol level; otherwise the trace derives the
    # answer when its search's decoding gives this answer and the trace fits the budget.
    order = joining_order(puzzle, puzzle.query.op)
    complete = order is not None and answer == _join(puzzle.query, order)
    if not complete and answer in traced:
        # dead branches shown in full within the most lines the budget affords (the
        # decoding found is the same whatever the allowance)
        for short in SHORT_LINES:
            if short != SHORT_LINES[0]:
                derivation = _derivation(puzzle, prior, result.fits, short)
            derived = replace(rule, derivation=derivation)
            if derivation and len(_render_derived(derived, puzzle, answer)) <= _TRACE_CHARS:
                rule, complete = derived, True
                break
    return Solution(
        puzzle,
        answer,
        rule,
        candidates=sum(count.values()),
        agreeing=count[answer],
        trace_complete=complete,
        notes=notes[: 1 if complete else 2],
        alternatives=alternatives,
    )


# ---------------------------------------------------------------------------- render


def _decode(text: str, digits: dict[str, str]) -> str:
    """Symbols to digits; the operator symbol (a minus sign) and anything unknown stay."""
    return "".join(digits.get(ch, ch) for ch in text)


def _worked(op: Operation, left: str, right: str, symbol: str, setting: Setting) -> str:
    """`a=.., b=..: instance = value -> written` for operands in digits."""
    a, b = read_operands(left, right, setting)
    value = op(a, b)
    return f"a={a}, b={b}: {op.instance(a, b)} = {value} -> written {write_result(value, symbol, setting)}"


def _others(
    op: Operation, shown: list[tuple[Expression, str]], digits: dict[str, str], setting: Setting
) -> str:
    """Every other operation: what it writes for the first example, or that it fits too."""
    wrong, also = [], []
    for other in OPERATIONS:
        if other is op:
            continue
        written = [
            apply(other, _decode(lhs.left, digits), _decode(lhs.right, digits), lhs.op, setting)
            for lhs, _ in shown
        ]
        miss = [
            (w, _decode(rhs, digits))
            for w, (_, rhs) in zip(written, shown)
            if w != _decode(rhs, digits)
        ]
        if miss:
            wrong.append(f"{other.formula} -> {miss[0][0]} not {miss[0][1]}")
        else:
            also.append(other.formula)
    text = "  rejected: " + "; ".join(wrong)
    return text + (
        f"\n  also fits: {', '.join(also)} (less likely for this symbol)" if also else ""
    )


def joining_order(puzzle: EquationPrompt, symbol: str) -> str | None:
    """`left+right` or `right+left` when every `symbol` example's result is its operands'
    symbols joined in that order (a concatenation, whatever the digits), else None."""
    shown = [(lhs, rhs) for lhs, rhs in puzzle.examples if lhs.op == symbol]
    for order in ("left+right", "right+left"):
        if shown and all(rhs == _join(lhs, order) for lhs, rhs in shown):
            return order
    return None


def _join(lhs: Expression, order: str) -> str:
    return lhs.left + lhs.right if order == "left+right" else lhs.right + lhs.left


def _render_joining(solution: Solution, order: str) -> str:
    """A complete trace at the symbol level: the query's operator only joins its operands."""
    puzzle: EquationPrompt = solution.puzzle
    q = puzzle.query
    first, second = order.split("+")
    lines = [f"The query's operator is '{q.op}'. Its examples, compared symbol by symbol:"]
    for lhs, rhs in puzzle.examples:
        if lhs.op == q.op:
            a, b = (lhs.left, lhs.right) if first == "left" else (lhs.right, lhs.left)
            lines.append(
                f"  {lhs.text} = {rhs}: {first} operand {a} then {second} operand {b} gives {a}{b}, matches"
            )
    lines.append(
        f"So '{q.op}' writes the {first} operand then the {second} operand; no digit needs decoding."
    )
    a, b = (q.left, q.right) if first == "left" else (q.right, q.left)
    lines.append(f"Query {q.text}: {a} then {b} gives {a}{b}. The answer is {solution.answer}")
    return "\n".join(lines) + "\n" + boxed(solution.answer)


def render(solution: Solution) -> str:
    """The decoding as found, every example checked in digits, the query computed and
    encoded; a query whose operator only joins its operands is shown at the symbol level."""
    puzzle: EquationPrompt = solution.puzzle
    rule: CryptarithmRule = solution.rule
    q = puzzle.query
    order = joining_order(puzzle, q.op)
    if order and solution.answer == _join(q, order):
        return _render_joining(solution, order)
    if rule.derivation is not None:
        return _render_derived(rule, puzzle, solution.answer)
    digits = dict(rule.mapping) | dict(rule.assumed)
    inverse = {d: s for s, d in digits.items()}
    ops = {symbol: BY_NAME[name] for symbol, name in rule.operations}
    lines = [
        "Each symbol stands for one digit and each operator for one operation; decode the digits.",
        "Digits found: " + ", ".join(f"{d}={s}" for s, d in rule.mapping) + ".",
        f"Setting: {_SETTING_WORDS[rule.setting.name]}. A negative result is written with the operator symbol as its minus sign.",
    ]
    if rule.fits > 1:
        lines.append(
            f"{rule.fits} decodings fit every example; the answer below holds {rule.probability:.0%} of their weight."
        )
    for symbol, op in ops.items():
        shown = [(lhs, rhs) for lhs, rhs in puzzle.examples if lhs.op == symbol]
        order = joining_order(puzzle, symbol)
        if order:  # its examples fix no digit: shown at the symbol level
            joined = ", ".join(f"{lhs.text} = {rhs}" for lhs, rhs in shown)
            lines.append(
                f"'{symbol}' writes the {order.replace('+', ' operand then the ')} operand "
                f"({joined}): a concatenation whatever the digits."
            )
            continue
        lines.append(f"'{symbol}' is {op.formula}:")
        for lhs, rhs in shown:
            left, right, target = (
                _decode(lhs.left, digits),
                _decode(lhs.right, digits),
                _decode(rhs, digits),
            )
            lines.append(
                f"  {lhs.text} = {rhs} reads {left}{symbol}{right} = {target}; "
                f"{_worked(op, left, right, symbol, rule.setting)}, matches"
            )
        lines.append(_others(op, shown, digits, rule.setting))
    if rule.assumed:
        taken = ", ".join(f"{s}={d}" for s, d in rule.assumed)
        lines.append(f"Symbols no decoded example fixes take unused digits: {taken}.")
    query_op = BY_NAME[rule.query_operation]
    if rule.guessed:
        used = ", ".join(sorted({op.kind for op in ops.values()})) or "none"
        lines.append(
            f"'{q.op}' never appears in the examples, so its operation is a guess: families used: "
            f"{used}; most likely for '{q.op}': {query_op.formula}."
        )
    left, right = _decode(q.left, digits), _decode(q.right, digits)
    written = apply(query_op, left, right, q.op, rule.setting)
    lines.append(
        f"Query {q.text} reads {left}{q.op}{right}; '{q.op}' is {query_op.formula}: "
        f"{_worked(query_op, left, right, q.op, rule.setting)}."
    )
    encoded = " ".join(f"{ch}->{inverse.get(ch, ch)}" for ch in written)
    lines.append(f"Encode {written} with the symbols: {encoded}. The answer is {solution.answer}")
    return "\n".join(lines) + "\n" + boxed(solution.answer)


# ---------------------------------------------------------------------------- generate


def generate(rng: random.Random, subtype: Literal["deduce", "guess"] = "deduce") -> Generated:
    """A numeric puzzle from `equation_numeric.generate` (the shared generator: same
    settings, operations, operator symbols and example counts), written with a fresh
    digit->symbol mapping onto 10 ALPHABET symbols that none of its operators uses.

    Its operands are drawn again, uniformly among those that read 10..99 in the row's
    setting (`written_operands`, as on dev), and every result recomputed from its rule.

    `rule` is (mapping digit -> symbol, the numeric generator's rule).
    """
    numeric = equation_numeric.generate(rng, subtype)
    plain = parse_equation_prompt(numeric.prompt)
    setting = Setting(numeric.rule["setting"])
    ops = {symbol: BY_NAME[name] for symbol, name in numeric.rule["operations"].items()}
    pairs = written_operands(setting)

    def draw(symbol: str) -> tuple[str, str]:
        left, right = rng.choice(pairs)
        return f"{left}{symbol}{right}", apply(ops[symbol], left, right, symbol, setting)

    drawn = [draw(lhs.op) for lhs, _ in plain.examples]
    query, answer = draw(plain.query.op)
    operators = {lhs.op for lhs, _ in plain.examples} | {plain.query.op}
    symbols = rng.sample([s for s in ALPHABET if s not in operators], 10)
    mapping = dict(zip("0123456789", symbols))
    table = str.maketrans(mapping)
    examples = [(lhs.translate(table), rhs.translate(table)) for lhs, rhs in drawn]
    prompt = format_equation_prompt(examples, query.translate(table))
    return Generated(prompt, answer.translate(table), rule=(mapping, numeric.rule), subtype=subtype)
