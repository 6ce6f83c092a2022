"""Shared arithmetic for the two proportional families: y = c * f(x).

Unit conversion has f(x) = x and c = k; gravity has f(t) = t^2 and c = g/2. Both
generators print y rounded to 2 decimals, so every example pins c to an interval
[(y - 0.005)/f, (y + 0.005)/f]; the examples agree when those intervals overlap.

The value a trace uses is a fixed, easy procedure (ratio of sums over the one or two
examples with the largest f, 6 significant digits) so the model can repeat it; the interval is
kept beside it as the evidence that the examples agree, with per-example residuals.
All arithmetic is exact `Decimal` so the trace shows the very digits the answer uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

__all__ = [
    "ESTIMATE_DIGITS",
    "HALF_STEP",
    "Fit",
    "fit_ratio",
    "multiply_steps",
    "plain",
    "round_2dp",
    "round_sig",
    "sum_text",
]

HALF_STEP = Decimal("0.005")  # y is printed rounded to 2 decimals
# Slack for the generator's binary-float rounding at exact .xx5 boundaries.
_FLOAT_SLACK = Decimal("1e-9")
ESTIMATE_DIGITS = 6  # enough that c * f(query) lands on the right 0.01 (answers < 250)


@dataclass(frozen=True)
class Fit:
    """The constant c of y = c*f, from examples (f_i, y_i).

    `low`/`high` bound every c that reproduces all examples after rounding (low > high
    means they contradict); `estimate` is the traced value (ratio of sums over the
    `references`, indices into the examples); `residuals[i] = estimate*f_i - y_i`.
    """

    estimate: Decimal
    low: Decimal
    high: Decimal
    references: tuple[int, ...]
    residuals: tuple[Decimal, ...]
    sum_y: Decimal
    sum_f: Decimal

    @property
    def consistent(self) -> bool:
        return self.low <= self.high

    @property
    def max_residual(self) -> Decimal:
        return max(abs(r) for r in self.residuals)

    def notes(self) -> tuple[str, ...]:
        """A note for audits when the traced estimate itself misses an example's rounding."""
        if self.low <= self.estimate <= self.high:
            return ()
        note = (
            f"traced estimate {plain(self.estimate)} lies outside [{self.low:.7f}, {self.high:.7f}] "
            f"that all examples allow; max residual {self.max_residual:.6f}"
        )
        return (note,)


def round_sig(value: Decimal, digits: int) -> Decimal:
    """`value` rounded half-up to `digits` significant digits."""
    if value == 0:
        return value
    exponent = value.adjusted() - digits + 1
    return value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)


def round_2dp(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 16.590000 -> 16.59, 1E+2 -> 100."""
    return format(value.normalize(), "f")


def fit_ratio(pairs: Sequence[tuple[Decimal, Decimal]], references: int = 2) -> Fit:
    """Fit c in y = c*f to (f, y) pairs; `pairs` must be non-empty with f > 0.

    The estimate uses the `references` pairs with the largest f: their ratios are the
    most precise, since every y carries the same +-0.005 rounding error.
    """
    if not pairs or references < 1:
        raise ValueError(
            f"fit_ratio needs >= 1 pair and >= 1 reference, got {len(pairs)}, {references}"
        )
    half = HALF_STEP + _FLOAT_SLACK
    low = max((y - half) / f for f, y in pairs)
    high = min((y + half) / f for f, y in pairs)
    order = sorted(range(len(pairs)), key=lambda i: pairs[i][0], reverse=True)
    chosen = tuple(sorted(order[:references]))
    sum_y = sum((pairs[i][1] for i in chosen), Decimal(0))
    sum_f = sum((pairs[i][0] for i in chosen), Decimal(0))
    estimate = round_sig(sum_y / sum_f, ESTIMATE_DIGITS)
    residuals = tuple(estimate * f - y for f, y in pairs)
    return Fit(estimate, low, high, chosen, residuals, sum_y, sum_f)


def sum_text(values: Sequence[Decimal]) -> str:
    """'a + b' for a sum the trace shows; a single value stands alone."""
    return " + ".join(plain(v) for v in values)


def _split_cost(value: Decimal) -> tuple[int, int]:
    """How many partial products splitting `value` costs (then how long they are)."""
    digits = value.normalize().as_tuple().digits
    return sum(1 for d in digits if d), len(digits)


def _digit_parts(value: Decimal) -> list[Decimal]:
    """Place-value parts of a positive decimal: 5.8081 -> [5, 0.8, 0.008, 0.0001]."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value}")
    _, digits, exponent = value.normalize().as_tuple()
    exponent = int(exponent)  # finite: an int, never 'n'/'N'/'F'
    parts = []
    for position, digit in enumerate(digits):
        if digit:
            parts.append(Decimal(digit).scaleb(exponent + len(digits) - 1 - position))
    return parts or [Decimal(0)]


def multiply_steps(a: Decimal, b: Decimal) -> tuple[Decimal, str]:
    """Exact a*b and a one-line trace splitting the factor with fewer nonzero digits.

    e.g. 8.69617 * 5.8081 -> "8.69617 * (5 + 0.8 + 0.008 + 0.0001) = 43.48085 +
    6.956936 + 0.06956936 + 0.000869617 = 50.50822..." : each partial product is a
    number times one digit, which a small model gets right far more often than a
    many-digit product in one go.
    """
    big, small = (a, b) if _split_cost(a) >= _split_cost(b) else (b, a)
    parts = _digit_parts(small)
    product = a * b
    if len(parts) == 1:
        return product, f"{plain(big)} * {plain(small)} = {plain(product)}"
    partials = [big * part for part in parts]
    return product, f"{plain(big)} * ({sum_text(parts)}) = {sum_text(partials)} = {plain(product)}"
