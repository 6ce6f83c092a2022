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

Every value the trace writes is computed here from `equation_ops` (tests recompute each
one); products of two 2-digit numbers are split into tens and units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from reasonlab.puzzles.base import Solution, boxed
from reasonlab.puzzles.equation_format import EquationPrompt, Expression
from reasonlab.puzzles.equation_ops import (
    BY_NAME,
    KINDS,
    OPERATIONS,
    SETTINGS,
    Operation,
    Setting,
    read_operands,
    write_result,
)

if TYPE_CHECKING:  # equation_numeric imports this module; only its types are needed here
    from reasonlab.puzzles.equation_numeric import EquationRule, Prior

__all__ = [
    "LABELS",
    "decode_result",
    "operation_order",
    "product_steps",
    "render_trace",
    "setting_order",
    "sign_tell",
]

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
_KIND_WORDS = {"add": "addition", "sub": "subtraction", "mul": "multiplication", "cat": "concatenation"}
_READING = {
    "normal": "a, b as written; result as written",
    "reversed": "a, b each reversed; result digits reversed (a symbol in front = minus)",
    "mirrored": "a = right operand reversed, b = left reversed; whole result reversed "
    "(a symbol at the end = minus)",
}


def _label(op: Operation) -> str:
    return LABELS.get(op.name, op.formula)


def setting_order(prior: Prior, group: str) -> tuple[Setting, ...]:
    """Settings by P(setting | group), most frequent first; ties keep SETTINGS order."""
    return tuple(sorted(SETTINGS, key=lambda s: -prior.setting(group, s)))


def operation_order(prior: Prior, setting: Setting) -> tuple[Operation, ...]:
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


def _search(
    symbol: str,
    examples: Sequence[tuple[Expression, str]],
    setting: Setting,
    order: Sequence[Operation],
) -> tuple[list[str], Operation | None]:
    """The trace lines of one operator's search, and the operation found (None: none fits)."""
    first, *rest = examples
    a, b, target, head = _reading(*first, setting)
    lines, tried, shown = [f" '{symbol}' {head}"], [], set()
    for op in order:
        text, hit = _candidate(op, a, b, target, shown)
        tried.append(text)
        if not hit:
            continue
        checks, ok = [], True
        for lhs, rhs in rest:
            ea, eb, et, ehead = _reading(lhs, rhs, setting)
            value = str(op(ea, eb))
            agree = value == et
            checks.append(f"  check {ehead}: {_label(op)}: {_steps(op, ea, eb, set())} {'ok' if agree else 'no'}")
            if not agree:
                ok = False
                break
        lines.append("  " + "; ".join(tried))
        lines.extend(checks)
        tried = []
        if ok:
            return lines, op
    lines.append("  " + "; ".join(tried))
    lines.append(f"  nothing gives {target}: {setting.name} fails.")
    return lines, None


def _by_operator(puzzle: EquationPrompt) -> dict[str, list[tuple[Expression, str]]]:
    groups: dict[str, list[tuple[Expression, str]]] = {}
    for lhs, rhs in puzzle.examples:
        groups.setdefault(lhs.op, []).append((lhs, rhs))
    return groups


def _setting_search(
    puzzle: EquationPrompt, setting: Setting, prior: Prior
) -> tuple[list[str], dict[str, Operation] | None]:
    """Lines searching every operator under `setting`; the operations, or None on failure."""
    order = operation_order(prior, setting)
    lines = [f"Setting {setting.name} ({_READING[setting.name]}):"]
    found: dict[str, Operation] = {}
    for symbol, examples in _by_operator(puzzle).items():
        more, op = _search(symbol, examples, setting, order)
        lines.extend(more)
        if op is None:
            return lines, None
        found[symbol] = op
    return lines, found


def _choice_lines(rule: EquationRule, found: dict[str, Operation], query: str) -> list[str]:
    """One line per operator whose solver pick is not just the first fit, or that others fit."""
    lines = []
    plain = {s: BY_NAME[n].plain for s, n, _ in rule.operations}
    for symbol, name, others in rule.operations:
        if not others and found.get(symbol) is BY_NAME[name]:
            continue
        chosen = BY_NAME[name]
        alts = [BY_NAME[n] for n in (found[symbol].name, *others) if n != name]
        alts = list(dict.fromkeys(alts))
        reason = "by frequency"
        if symbol == query and found.get(symbol) is not chosen:
            k = sum(v for s, v in plain.items() if s != symbol)
            reason = f"since {k} of the other {len(plain) - 1} are plain (a+b, a-b, a*b) and rows mix plain and twisted"
        lines.append(
            f"'{symbol}': also fits: {', '.join(_label(o) for o in alts)}; "
            f"{_label(chosen)} chosen {reason}."
        )
    return lines


def _query_lines(solution: Solution, rule: EquationRule) -> list[str]:
    q = solution.puzzle.query
    op = BY_NAME[rule.query_operation]
    lines = []
    if rule.guessed:
        used = [k for k in KINDS if any(BY_NAME[n].kind == k for _, n, _ in rule.operations)]
        free = [_KIND_WORDS[k] for k in KINDS if k not in used]
        lines.append(
            f"'{q.op}' is not in the examples: families used: "
            f"{', '.join(_KIND_WORDS[k] for k in used) or 'none'}; free: {', '.join(free) or 'none'}; "
            f"most likely for '{q.op}': {_label(op)}."
        )
    a, b = read_operands(q.left, q.right, rule.setting)
    value = op(a, b)
    written = write_result(value, q.op, rule.setting)
    tail = f", written {written}" if written != str(value) else ""
    lines.append(f"Query {q.text}: a={a} b={b}: {_label(op)}: {_steps(op, a, b, set())}{tail}.")
    return lines


def render_trace(solution: Solution, prior: Prior, group: str) -> str:
    """The search for the setting and the operations, the query worked out, the boxed answer."""
    puzzle: EquationPrompt = solution.puzzle
    rule: EquationRule = solution.rule
    order = setting_order(prior, group)
    rejected = {name for name, _ in rule.rejected}
    lines = [
        f"Try settings in the order {', '.join(s.name for s in order)} "
        f"({'only + - * operators' if group == 'standard' else 'symbol operators'}); "
        "per operator, try operations most common first on its first example."
    ]
    tells = {n: why for n, why in sign_tell(puzzle).items() if n in rejected}
    for name, why in tells.items():
        lines.append(f"Skip {name}: {why}.")
    found: dict[str, Operation] = {}
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
    lines.extend(_choice_lines(rule, found, puzzle.query.op))
    lines.extend(_query_lines(solution, rule))
    lines.append(f"The answer is {solution.answer}.")
    return "\n".join(lines) + "\n" + boxed(solution.answer)
