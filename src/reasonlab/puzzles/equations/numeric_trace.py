"""The chain-of-thought trace of a numeric equation solution: a search a small model can redo.

A trained model must reproduce the procedure on unseen rows, so the trace shows how the
setting and every operator's operation are FOUND, not only that they check:

1. Settings are tried in a fixed order, most frequent for the row's symbol group first
   (`Prior.group_settings`); a quick tell skips settings first: a result that carries the
   operator symbol at its end can only be mirrored, one with it in front never is.
2. Under a setting each example is read back once: operands a, b as the operation sees
   them and the target value (the written result undone: digits reversed, the operator
   symbol in front or at the end read as a minus sign).
3. Each operator's first example is tried against the operation table in a fixed order
   (most probable under that setting first, `Prior.operations`), each candidate written
   with the value it gives and 'no' until one gives the target; the match is checked on
   the operator's other examples, and the search resumes when one disagrees. An operator
   that no candidate explains rejects the setting.
4. The query is computed with its operator's operation (for an unseen operator, the
   family rule the solver used) and written back in the setting.
5. Where the prior, not the examples, picks the answer (an unseen operator, an operator
   or setting the examples leave open), one line says it is a guess and how likely.

Every value the trace writes is computed here from `ops` (tests recompute each
one); products of two 2-digit numbers are split into tens and units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from reasonlab.puzzles.base import Solution, boxed
from reasonlab.puzzles.equations.numeric_rule import EquationRule
from reasonlab.puzzles.equations.ops import (
    BY_NAME,
    KINDS,
    OPERATIONS,
    SETTINGS,
    Operation,
    Setting,
    read_operands,
    write_result,
)
from reasonlab.puzzles.equations.prompt import EquationPrompt, Expression

__all__ = [
    "CERTAIN",
    "KIND_WORDS",
    "LABELS",
    "decode_result",
    "family_sets_text",
    "guess_line",
    "operation_order",
    "product_steps",
    "render_trace",
    "setting_order",
    "sign_tell",
]

# An answer at least this likely under the prior is the examples' answer, not a guess
# (hypotheses that disagree with it keep at most 0.5% of the weight).
CERTAIN = 0.995
# Short names a trace writes for each operation (candidates are many, so they stay short).
LABELS: dict[str, str] = {
    "add": "a+b",
    "mul": "a*b",
    "cat": "cat(a,b)",
    "sub": "a-b",
    "negabsdiff": "-|a-b|",
    "absdiff": "|a-b|",
    "maxmod": "max mod min",
    "add+1": "a+b+1",
    "add-1": "a+b-1",
    "mul+1": "a*b+1",
    "mul-1": "a*b-1",
    "rsub": "b-a",
    "rcat": "cat(b,a)",
}
KIND_WORDS = {
    "add": "addition",
    "sub": "subtraction",
    "mul": "multiplication",
    "cat": "concatenation",
}
_READING = {
    "normal": "a, b as written; result as written",
    "reversed": "a, b each reversed; result digits reversed (a symbol in front = minus)",
    "mirrored": "a = right operand reversed, b = left reversed; whole result reversed "
    "(a symbol at the end = minus)",
}


def _label(op: Operation) -> str:
    return LABELS.get(op.name, op.formula)


class SearchPrior(Protocol):
    """What the search order needs of a prior; the numeric and cryptarithm priors both have it."""

    def setting(self, group: str, setting: Setting) -> float: ...

    def op(self, setting: Setting, name: str) -> float: ...


class TracePrior(SearchPrior, Protocol):
    """What a numeric trace needs besides the search order: the row family sets."""

    family_sets: Mapping[str, float]


def setting_order(prior: SearchPrior, group: str) -> tuple[Setting, ...]:
    """Settings by P(setting | group), most frequent first; ties keep SETTINGS order."""
    return tuple(sorted(SETTINGS, key=lambda s: -prior.setting(group, s)))


def operation_order(prior: SearchPrior, setting: Setting) -> tuple[Operation, ...]:
    """The table by P(op | setting), most frequent first; ties keep table order, so the
    first operation that fits every example is the solver's pick for a shown operator."""
    return tuple(sorted(OPERATIONS, key=lambda op: -prior.op(setting, op.name)))


def sign_tell(puzzle: EquationPrompt) -> dict[str, str]:
    """Settings an example's sign position rules out, with the example: only mirrored
    writes the minus (the operator symbol) at the end, and mirrored never writes it in front."""
    ruled: dict[str, str] = {}
    for lhs, rhs in puzzle.examples:
        if len(rhs) > 1 and rhs[-1] == lhs.op and rhs[:-1].isdigit():
            for name in ("normal", "reversed"):
                ruled.setdefault(name, f"{lhs.text}={rhs} ends with '{lhs.op}'")
        if len(rhs) > 1 and rhs[0] == lhs.op and rhs[1:].isdigit():
            ruled.setdefault("mirrored", f"{lhs.text}={rhs} starts with '{lhs.op}'")
    return ruled


def decode_result(rhs: str, symbol: str, setting: Setting) -> str:
    """The value a written result stands for ('-' for minus): `write_result(v) == rhs`
    exactly when `str(v) == decode_result(rhs)` (a concatenation's v is its digit string)."""
    text = rhs if setting.name != "mirrored" else rhs[::-1]
    negative = len(text) > 1 and text[0] == symbol
    digits = text[1:] if negative else text
    if setting.name == "reversed":
        digits = digits[::-1]
    return ("-" if negative else "") + digits


def product_steps(x: int, y: int) -> str:
    """`x*y = ... = p`, split into tens and units of y when both are non-zero."""
    tens, units = y - y % 10, y % 10
    if tens and units and x >= 10:
        return f"{x}*{y} = {x}*{tens} + {x}*{units} = {x * tens} + {x * units} = {x * y}"
    return f"{x}*{y} = {x * y}"


def _steps(op: Operation, a: str, b: str, shown: set[str]) -> str:
    """How `op(a, b)` is worked out, ending in its value; `shown` collects base products
    already written for this example, so a*b+1 after a*b is just the product plus one."""
    x, y = int(a), int(b)
    value = op(a, b)
    if op.kind == "mul":
        base = f"{x}*{y}"
        if base in shown:
            work = f"{x * y}{'+' if op.offset > 0 else '-'}{abs(op.offset)}" if op.offset else ""
            return f"{work} = {value}" if work else str(value)
        shown.add(base)
        steps = product_steps(x, y)
        if op.offset:
            steps += f", {x * y}{'+' if op.offset > 0 else '-'}{abs(op.offset)} = {value}"
        return steps
    if op.name == "maxmod":
        hi, lo = max(x, y), min(x, y)
        if lo == 0:
            return str(value)
        return f"{hi} mod {lo} = {hi}-{hi // lo}*{lo} = {value}"
    if op.kind == "cat":
        return str(value)
    return f"{op.instance(a, b).replace(' ', '')} = {value}"


def _candidate(op: Operation, a: str, b: str, target: str, shown: set[str]) -> tuple[str, bool]:
    hit = str(op(a, b)) == target
    return f"{_label(op)}: {_steps(op, a, b, shown)} {'yes' if hit else 'no'}", hit


def _reading(lhs: Expression, rhs: str, setting: Setting) -> tuple[str, str, str, str]:
    """(a, b, target, text) for one example under `setting`."""
    a, b = read_operands(lhs.left, lhs.right, setting)
    target = decode_result(rhs, lhs.op, setting)
    return a, b, target, f"{lhs.text}={rhs}: a={a} b={b} target {target}"


def _checks(
    op: Operation, rest: Sequence[tuple[Expression, str]], setting: Setting
) -> tuple[list[str], bool]:
    """Lines checking `op` on an operator's other examples, stopping at the first miss."""
    lines = []
    for lhs, rhs in rest:
        a, b, target, head = _reading(lhs, rhs, setting)
        agree = str(op(a, b)) == target
        lines.append(
            f"  check {head}: {_label(op)}: {_steps(op, a, b, set())} {'ok' if agree else 'no'}"
        )
        if not agree:
            return lines, False
    return lines, True


def _search(
    symbol: str,
    examples: Sequence[tuple[Expression, str]],
    setting: Setting,
    order: Sequence[Operation],
    every: bool,
) -> tuple[list[str], list[Operation]]:
    """The trace lines of one operator's search and the operations that fit every example
    (empty: the setting fails). `every` (the query's operator) goes on past the first fit,
    since the query's answer may depend on which one is meant."""
    first, *rest = examples
    a, b, target, head = _reading(*first, setting)
    if len(target.lstrip("-")) > 1 and target.lstrip("-")[0] == "0":
        # Numbers are never written with a leading 0; concatenations keep the operands' zeros.
        order = [op for op in order if op.kind == "cat"]
        head += " (leading 0: only a concatenation can give it)"
    lines, tried, shown, fitting, hits = [f" '{symbol}' {head}"], [], set(), [], 0
    for op in order:
        text, hit = _candidate(op, a, b, target, shown)
        tried.append(text)
        if not hit:
            continue
        hits += 1
        checks, ok = _checks(op, rest, setting)
        lines.append("  " + "; ".join(tried))
        lines.extend(checks)
        tried = []
        if ok:
            fitting.append(op)
            if not every:
                return lines, fitting
            if len(fitting) == 1:
                tried.append(f"'{symbol}' is the query's operator: try the rest too")
    if tried:
        lines.append("  " + "; ".join(tried))
    if not fitting:
        why = f"nothing fits every '{symbol}' example" if hits else f"nothing gives {target}"
        lines.append(f"  {why}: {setting.name} fails.")
    return lines, fitting


def _by_operator(puzzle: EquationPrompt) -> dict[str, list[tuple[Expression, str]]]:
    groups: dict[str, list[tuple[Expression, str]]] = {}
    for lhs, rhs in puzzle.examples:
        groups.setdefault(lhs.op, []).append((lhs, rhs))
    return groups


def _setting_search(
    puzzle: EquationPrompt, setting: Setting, prior: SearchPrior
) -> tuple[list[str], dict[str, list[Operation]] | None]:
    """Lines searching every operator under `setting`; each operator's fitting operations
    (only the first, the most common, for an operator other than the query's), or None."""
    order = operation_order(prior, setting)
    lines = [f"Setting {setting.name} ({_READING[setting.name]}):"]
    found: dict[str, list[Operation]] = {}
    for symbol, examples in _by_operator(puzzle).items():
        more, fitting = _search(symbol, examples, setting, order, symbol == puzzle.query.op)
        lines.extend(more)
        if not fitting:
            return lines, None
        found[symbol] = fitting
    return lines, found


def _choice_line(rule: EquationRule, fitting: Sequence[Operation], query: str) -> list[str]:
    """Which of the query operator's fitting operations the solver takes, and why."""
    if len(fitting) < 2:
        return []
    chosen = BY_NAME[rule.query_operation]
    reason = "by frequency"
    if chosen is not fitting[0]:
        plain = [BY_NAME[n].plain for s, n, _ in rule.operations if s != query]
        reason = (
            f"since {sum(plain)} of the other {len(plain)} operators are plain (a+b, a-b, a*b) "
            "and rows mix plain and twisted"
            if fitting[0].plain != chosen.plain
            else "since more of the fits give its answer (answers within 1% count as one)"
        )
    names = ", ".join(_label(op) for op in fitting)
    return [f"'{query}' fits: {names}; {_label(chosen)} chosen {reason}."]


def family_sets_text(family_sets: Mapping[str, float]) -> str:
    """The row family sets the prior holds likely (5% or more), likeliest first."""
    likely = sorted(((-p, key) for key, p in family_sets.items() if p >= 0.05))
    return " or ".join(
        f"{', '.join(KIND_WORDS[k] for k in key.split('+'))} ({-p:.0%})" for p, key in likely
    )


def guess_line(probability: float) -> list[str]:
    """One line saying the answer is the prior's pick, unless the examples settle it."""
    if probability >= CERTAIN:
        return []
    return [
        f"This answer is a guess: the examples leave it open, and it is about {probability:.0%} likely."
    ]


def _query_lines(solution: Solution, rule: EquationRule, prior: TracePrior) -> list[str]:
    q = solution.puzzle.query
    op = BY_NAME[rule.query_operation]
    lines = []
    if rule.guessed:
        shown = [n for s, n, _ in rule.operations if s != q.op]
        used = [KIND_WORDS[k] for k in KINDS if any(BY_NAME[n].kind == k for n in shown)]
        lines.append(
            f"'{q.op}' is not in the examples, so its operation is a guess from how rows are "
            f"built: three operators, their families {family_sets_text(prior.family_sets)}; "
            f"used here: {', '.join(used) or 'none'}; likeliest for '{q.op}': {_label(op)}."
        )
    a, b = read_operands(q.left, q.right, rule.setting)
    value = op(a, b)
    written = write_result(value, q.op, rule.setting)
    tail = f", written {written}" if written != str(value) else ""
    lines.append(f"Query {q.text}: a={a} b={b}: {_label(op)}: {_steps(op, a, b, set())}{tail}.")
    return lines


def render_trace(solution: Solution, prior: TracePrior, group: str) -> str:
    """The search for the setting and the operations, the query worked out, the boxed answer."""
    puzzle: EquationPrompt = solution.puzzle
    rule: EquationRule = solution.rule
    order = setting_order(prior, group)
    rejected = {name for name, _ in rule.rejected}
    kind = "only + - * operators" if group == "standard" else "symbol operators"
    plan = (
        f"Try settings in the order {', '.join(s.name for s in order)} ({kind}); "
        "per operator, try operations most common first on its first example."
    )
    lines = [plan]
    tells = {n: why for n, why in sign_tell(puzzle).items() if n in rejected}
    for why in dict.fromkeys(tells.values()):
        skipped = ", ".join(n for n, w in tells.items() if w == why)
        lines.append(f"Skip {skipped}: {why}.")
    found: dict[str, list[Operation]] = {}
    for setting in order:
        if setting.name in tells:
            continue
        if setting != rule.setting and setting.name not in rejected:
            lines.append(
                f"Setting {setting.name} also explains every example, but {rule.setting.name} "
                "gives the likelier answer overall; use it."
            )
            continue
        more, ops = _setting_search(puzzle, setting, prior)
        lines.extend(more)
        if setting == rule.setting:
            found = ops or {}
            break
    lines.extend(_choice_line(rule, found.get(puzzle.query.op, ()), puzzle.query.op))
    lines.extend(_query_lines(solution, rule, prior))
    lines.extend(guess_line(rule.probability))
    lines.append(f"The answer is {solution.answer}.")
    return "\n".join(lines) + "\n" + boxed(solution.answer)
