"""An OpenAI-compatible server as a backend: bounded concurrency, retries, and money.

Two endpoints. `completions` (the default) posts our rendered prompt to /v1/completions,
so the server never applies a chat template: the bytes it sees are the scorer's (a vLLM
serving the student, or a teacher whose tokenizer is `--base`). `chat` posts messages to
/v1/chat/completions, for hosted teachers that only speak chat: the server renders them,
and a reasoning model's separate thinking (`reasoning_content` or `reasoning`) is joined
back as `thinking\\n</think>\\nanswer`, the shape a training completion has.

Retries back off exponentially on 429, 5xx, timeouts and dropped connections; any other
error stops the run once the requests in flight have come back (they may be paid for).
With a `SpendLedger`, each attempt is admitted only if its worst case fits under the cap
(see `spend`); when it does not, the backend waits for in-flight answers to free their
reservations and stops when none is left in flight. SIGINT/SIGTERM stop it the same way:
nothing new is sent, what is in flight is written; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from reasonlab.evaluation.backends import BackendError, Emit, Generation, Request
from reasonlab.evaluation.spend import SpendLedger

if TYPE_CHECKING:
    import httpx

__all__ = ["CHAT_PROMPT_ALLOWANCE", "Api", "OpenAIBackend"]

Api = Literal["completions", "chat"]
# In chat mode the server renders with its own template and counts with its own tokenizer,
# neither ours: a prompt is reserved at twice our count plus this many tokens.
CHAT_PROMPT_ALLOWANCE = 64
_THINK_CLOSE = "</think>"


class _Run:
    """The state one `generate` call shares between its requests."""

    def __init__(self) -> None:
        self.in_flight: set[asyncio.Task] = set()
        self.stopped: str | None = None  # "cap" or "interrupted"
        self.error: BaseException | None = None  # the first request that failed for good
        self.signals = 0


class OpenAIBackend:
    """POST our prompts to an OpenAI-compatible server; see the module docstring."""

    name = "openai"
    retry_status = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

    def __init__(
        self,
        url: str,
        model: str,
        temperature: float,
        top_p: float,
        api: Api = "completions",
        system_prompt: str | None = None,
        concurrency: int = 16,
        retries: int = 6,
        backoff_s: float = 0.5,
        timeout_s: float = 600.0,
        api_key: str | None = None,
        count_tokens: Callable[[str], int] | None = None,
        ledger: SpendLedger | None = None,
    ):
        self.url, self.model, self.api = url.rstrip("/"), model, api
        self.path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
        self.system_prompt = system_prompt
        self.count_tokens = count_tokens  # for servers whose answer has no usage block
        self.temperature, self.top_p = temperature, top_p
        self.concurrency, self.retries, self.backoff_s, self.timeout_s = (
            concurrency, retries, backoff_s, timeout_s,
        )  # fmt: skip
        self.api_key, self.ledger = api_key, ledger

    def generate(self, requests: Sequence[Request], emit: Emit) -> str | None:
        try:
            return asyncio.run(self._generate(requests, emit))
        except asyncio.CancelledError:  # a second signal: stop now, in-flight answers lost
            raise KeyboardInterrupt from None

    # ------------------------------------------------------------ the loop
    async def _generate(self, requests: Sequence[Request], emit: Emit) -> str | None:
        import httpx

        run = _Run()
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency)
        with _stop_on_signals(run, asyncio.get_running_loop(), asyncio.current_task()):
            async with httpx.AsyncClient(
                base_url=self.url, headers=headers, timeout=self.timeout_s, limits=limits
            ) as client:
                for request in requests:
                    ticket = await self._admit(run, request)
                    if ticket is False:
                        break
                    task = asyncio.create_task(self._one(client, run, request, ticket, emit))
                    run.in_flight.add(task)
                    task.add_done_callback(run.in_flight.discard)
                while run.in_flight:  # drain: what is in flight may be paid for
                    await asyncio.wait(set(run.in_flight))
        if run.error is not None:
            raise run.error
        return run.stopped

    async def _admit(self, run: _Run, request: Request) -> int | None | Literal[False]:
        """Wait for a free slot and room under the cap; the ledger ticket, or False to stop."""
        while True:
            if run.stopped or run.error:
                return False
            if len(run.in_flight) >= self.concurrency:
                await asyncio.wait(set(run.in_flight), return_when=asyncio.FIRST_COMPLETED)
                continue
            if self.ledger is None:
                return None
            ticket = self.ledger.try_send(request.id, request.sample, self.worst_usd(request))
            if ticket is not None:
                return ticket
            if not run.in_flight:  # nothing will free a reservation: the cap is reached
                run.stopped = "cap"
                return False
            await asyncio.wait(set(run.in_flight), return_when=asyncio.FIRST_COMPLETED)

    async def _one(
        self, client: httpx.AsyncClient, run: _Run, request: Request, ticket: int | None, emit: Emit
    ) -> None:
        # Failures are kept and re-raised once the other requests in flight are back.
        try:
            answered = await self._complete(client, run, request, ticket)
        except Exception as err:  # noqa: BLE001
            run.error = run.error or err
            return
        if answered is None:
            return
        generation, ticket = answered
        try:
            emit(generation)  # the answer is on disk before it is settled as paid
        except Exception as err:  # noqa: BLE001
            run.error = run.error or err
        finally:
            if ticket is not None:
                self._settle(run, generation, ticket)

    # ------------------------------------------------------------ one request
    def worst_usd(self, request: Request) -> float:
        """The most an attempt can cost: its prompt reservation and `max_tokens` of output."""
        if self.ledger is None:
            return 0.0
        return self.ledger.prices.cost(self.prompt_reservation(request), request.max_new_tokens)

    def prompt_reservation(self, request: Request) -> int:
        if self.api == "chat":
            return 2 * len(request.prompt_ids) + CHAT_PROMPT_ALLOWANCE
        return len(request.prompt_ids)

    def payload(self, request: Request) -> dict:
        settings = {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "n": 1,
        }
        if self.temperature > 0:
            settings["seed"] = request.seed
        if self.api == "completions":
            return {**settings, "prompt": request.prompt, "max_tokens": request.max_new_tokens}
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": request.prompt})
        # max_tokens is deprecated in chat (reasoning models refuse it); this bounds hidden
        # reasoning tokens too, which the worst case relies on.
        return {**settings, "messages": messages, "max_completion_tokens": request.max_new_tokens}

    async def _complete(
        self, client: httpx.AsyncClient, run: _Run, request: Request, ticket: int | None
    ) -> tuple[Generation, int | None] | None:
        """One request with its retries, and the ticket of the attempt answered; None when
        the cap forbids a retry."""
        import httpx

        payload = self.payload(request)
        attempt = 0
        while True:
            last = attempt == self.retries
            try:
                response = await client.post(self.path, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                if ticket is not None:  # the server may have billed it
                    self.ledger.settle(ticket, type(err).__name__, None)
                if last:
                    raise BackendError(
                        f"{self.url}: {type(err).__name__} after {attempt + 1} attempts"
                    ) from err
            else:
                if response.status_code == 200:
                    try:
                        return self._parse(request, _json(response, self.url)), ticket
                    except BackendError:
                        if ticket is not None:  # answered, so billed, but unreadable
                            self.ledger.settle(ticket, "unreadable", None)
                        raise
                if ticket is not None:
                    self.ledger.settle(ticket, response.status_code, None)  # refused: not billed
                if response.status_code not in self.retry_status or last:
                    raise BackendError(
                        f"{self.url}{self.path} answered {response.status_code} for id "
                        f"{request.id!r} sample {request.sample}: {response.text[:300]}"
                    )
            # Exponential backoff with jitter, so many clients do not retry in lockstep.
            await asyncio.sleep(self.backoff_s * 2**attempt * (0.5 + random.random()))
            attempt += 1
            if self.ledger is not None:
                ticket = self.ledger.try_send(request.id, request.sample, self.worst_usd(request))
                if ticket is None:
                    run.stopped = run.stopped or "cap"
                    return None

    def _settle(self, run: _Run, generation: Generation, ticket: int) -> None:
        worst = self.ledger.reserved[ticket]
        cost = self.ledger.settle(ticket, 200, generation.usage)
        usage = generation.usage
        if usage is not None and (
            usage[1] > generation.request.max_new_tokens or cost > worst + 1e-9
        ):
            run.error = run.error or BackendError(
                f"{self.url}: the answer to id {generation.request.id!r} sample "
                f"{generation.request.sample} billed {usage[0]} prompt + {usage[1]} completion "
                f"tokens, more than the {self.prompt_reservation(generation.request)} + "
                f"{generation.request.max_new_tokens} reserved: the cost cap cannot be "
                "guaranteed with this server, so the run stops"
            )

    def _parse(self, request: Request, body: dict) -> Generation:
        try:
            choice = body["choices"][0]
            if self.api == "chat":
                message = choice["message"]
                text = message.get("content") or ""
                thinking = message.get("reasoning_content") or message.get("reasoning")
                if thinking:  # the trace the server kept apart, back in front of the answer
                    text = f"{thinking.strip()}\n{_THINK_CLOSE}\n{text.strip()}"
            else:
                text = choice["text"]
        except (KeyError, IndexError, TypeError, AttributeError):
            field = "message.content" if self.api == "chat" else "text"
            raise BackendError(
                f"{self.url}: an answer without choices[0].{field}: {str(body)[:300]}"
            ) from None
        reported = body.get("usage") or {}
        usage = None
        if (
            reported.get("completion_tokens") is not None
            and reported.get("prompt_tokens") is not None
        ):
            usage = (int(reported["prompt_tokens"]), int(reported["completion_tokens"]))
        tokens = usage[1] if usage else (self.count_tokens(text) if self.count_tokens else -1)
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Generation(request, text, int(tokens), finish, usage)


def _json(response: httpx.Response, url: str) -> dict:
    try:
        return response.json()
    except ValueError:
        raise BackendError(f"{url}: an answer that is not JSON: {response.text[:300]!r}") from None


class _stop_on_signals:
    """SIGINT/SIGTERM: the first stops sending (in-flight answers still land), the second cancels."""

    def __init__(self, run: _Run, loop: asyncio.AbstractEventLoop, main: asyncio.Task | None):
        self.run, self.loop, self.main = run, loop, main
        # Handlers can only be installed from the main thread (a library caller may be elsewhere).
        self.active = threading.current_thread() is threading.main_thread()

    def _handle(self) -> None:
        self.run.signals += 1
        self.run.stopped = "interrupted"
        if self.run.signals > 1 and self.main is not None:
            self.main.cancel()

    def __enter__(self) -> None:
        if self.active:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, self._handle)

    def __exit__(self, *exc) -> None:
        if self.active:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.remove_signal_handler(sig)
