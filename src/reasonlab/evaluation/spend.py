"""Money on a paid server: token prices, a hard cap, and a ledger that survives a kill.

Every attempt that may be billed is written to `OUTPUTS.spend.jsonl` before it is sent
(`sent`, with its worst case: the prompt reservation plus `max_tokens`, at the user's
prices) and again once its fate is known (`settled`, with the server's `usage` and the
cost). A refusal (429, 5xx, 4xx) settles at $0; an answer at its `usage`, or at the worst
case when the server reports none; a timeout or a dropped connection at the worst case
(the server may have billed it). An attempt sent but never settled (the process was
killed while it was in flight) counts at its worst case from then on. So the ledger's
total is never below what the server can have billed, and an attempt is sent only while

    settled + never-settled worst cases + in-flight reservations + its own worst case <= cap.

The outputs file stays the record of what was bought (one line per answer, with its
`usage` and `cost_usd`); the ledger is the record of what was paid for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reasonlab.formats.jsonl import append_jsonl, read_jsonl

__all__ = ["Prices", "SpendLedger", "SpendSummary", "describe", "ledger_path_for"]

_EPSILON_USD = 1e-9  # float sums of many small costs: never refuse over rounding noise


def ledger_path_for(outputs: Path) -> Path:
    """`run.jsonl` -> `run.spend.jsonl`, beside the outputs it paid for."""
    return outputs.with_name(outputs.stem + ".spend.jsonl")


@dataclass(frozen=True)
class Prices:
    """The user's prices in USD per million tokens (0: free, e.g. a server of one's own)."""

    usd_per_mtok_in: float = 0.0
    usd_per_mtok_out: float = 0.0

    def __post_init__(self) -> None:
        for name in ("usd_per_mtok_in", "usd_per_mtok_out"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.usd_per_mtok_in + completion_tokens * self.usd_per_mtok_out
        ) / 1e6


@dataclass(frozen=True)
class SpendSummary:
    """What a run paid, and what the outputs file has cost over all its runs."""

    answers: int  # attempts answered (200) in this run
    attempts: int  # attempts sent in this run (answered, refused, lost)
    prompt_tokens: int  # billed by the server's `usage`, this run
    completion_tokens: int
    usd: float  # charged to this run (answers, lost attempts at their worst case)
    usd_total: float  # every run of this outputs file, this one included
    cap_usd: float | None


class SpendLedger:
    """The append-only ledger of one outputs file; one asyncio loop uses it (no locks)."""

    def __init__(self, path: Path, prices: Prices, cap_usd: float | None = None):
        self.path, self.prices, self.cap_usd = Path(path), prices, cap_usd
        self.before_usd, self._next_ticket = self._load()
        self.run_usd = 0.0
        self.reserved: dict[int, float] = {}  # ticket -> worst case, while in flight
        self.answers = self.attempts = self.prompt_tokens = self.completion_tokens = 0

    def _load(self) -> tuple[float, int]:
        """(USD spent by earlier runs, the next ticket number) from the ledger on disk."""
        if not self.path.is_file():
            return 0.0, 0
        sent: dict[int, float] = {}
        settled: dict[int, float] = {}
        for event in read_jsonl(self.path):
            if event["event"] == "sent":
                sent[event["ticket"]] = event["worst_usd"]
            else:
                settled[event["ticket"]] = event["cost_usd"]
        # never settled: killed in flight, possibly billed -> the worst case
        spent = sum(settled.values()) + sum(w for t, w in sent.items() if t not in settled)
        return spent, max(sent, default=-1) + 1

    @property
    def spent_usd(self) -> float:
        return self.before_usd + self.run_usd

    def headroom_usd(self) -> float | None:
        """What may still be reserved under the cap (None: no cap)."""
        if self.cap_usd is None:
            return None
        return self.cap_usd - self.spent_usd - sum(self.reserved.values())

    def try_send(self, row_id: str, sample: int, worst_usd: float) -> int | None:
        """Reserve an attempt's worst case and record it as sent; None when the cap forbids it."""
        headroom = self.headroom_usd()
        if headroom is not None and worst_usd > headroom + _EPSILON_USD:
            return None
        ticket = self._next_ticket
        self._next_ticket += 1
        event = {"event": "sent", "ticket": ticket, "id": row_id, "sample": sample}
        append_jsonl(self.path, {**event, "worst_usd": worst_usd})
        self.reserved[ticket] = worst_usd
        self.attempts += 1
        return ticket

    def settle(self, ticket: int, status: int | str, usage: tuple[int, int] | None) -> float:
        """Record how an attempt ended; returns what it is charged.

        `status` 200 with `usage` (prompt, completion tokens): their price. 200 without:
        the worst case. Another HTTP status: 0 (refused, not billed). A string (timeout,
        dropped connection): the worst case.
        """
        worst = self.reserved.pop(ticket)
        if status == 200:
            self.answers += 1
            cost = worst if usage is None else self.prices.cost(*usage)
            if usage is not None:
                self.prompt_tokens += usage[0]
                self.completion_tokens += usage[1]
        else:
            cost = 0.0 if isinstance(status, int) else worst
        self.run_usd += cost
        usage_json = (
            None if usage is None else {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
        )
        append_jsonl(
            self.path,
            {
                "event": "settled",
                "ticket": ticket,
                "status": status,
                "usage": usage_json,
                "cost_usd": cost,
            },
        )
        return cost

    def summary(self) -> SpendSummary:
        return SpendSummary(
            self.answers, self.attempts, self.prompt_tokens, self.completion_tokens,
            self.run_usd, self.spent_usd, self.cap_usd,
        )  # fmt: skip


def describe(summary: SpendSummary) -> str:
    """One line for the command's output."""
    cap = f" of a ${summary.cap_usd:,.4f} cap" if summary.cap_usd is not None else ""
    return (
        f"spent ${summary.usd:,.4f} this run ({summary.answers} answers / {summary.attempts} "
        f"attempts, {summary.prompt_tokens:,} prompt + {summary.completion_tokens:,} completion "
        f"tokens); ${summary.usd_total:,.4f}{cap} in total"
    )
