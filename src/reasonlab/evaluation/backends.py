"""Three ways to generate from the scorer's prompts: transformers, vLLM, an OpenAI-compatible server.

Each backend takes `Request`s (the rendered prompt, its token ids, a per-request cap on
new tokens and a seed) and hands every finished `Generation` to a callback as soon as it
exists, so the caller can append it to disk and a killed run loses only what was in flight.
The prompt text is always rendered by us with the base tokenizer's chat template, so all
three backends see exactly the bytes the scorer's vLLM sees (the HTTP backend's `chat`
mode, for hosted teachers, is the one exception: there the server renders). This module
holds the shared types and the two local engines; `openai_backend` the HTTP one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from reasonlab.competition import SCORER_ENGINE

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BackendName",
    "Generation",
    "HFBackend",
    "Request",
    "VLLMBackend",
    "vllm_available",
]

BackendName = Literal["auto", "hf", "vllm", "openai"]  # auto: vllm where installed, else hf
BACKENDS: tuple[str, ...] = ("auto", "hf", "vllm", "openai")


class BackendError(RuntimeError):
    """A server or engine refused or failed a request for good (after the retries)."""


@dataclass(frozen=True)
class Request:
    id: str
    sample: int
    prompt: str  # the rendered chat prompt, ending in "<|im_start|>assistant\n<think>\n"
    prompt_ids: tuple[int, ...]  # the prompt as vLLM tokenizes a text prompt
    max_new_tokens: int  # already capped so prompt + output fit the context, as vLLM does
    seed: int  # per (id, sample): sampled reruns reproduce


@dataclass(frozen=True)
class Generation:
    request: Request
    text: str  # special tokens skipped, stop token excluded (vLLM's defaults)
    output_tokens: int  # counts the stop token, as vLLM's max_tokens does
    finish_reason: str  # "stop" (end of turn) or "length" (hit max_new_tokens)
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens a server billed


Emit = Callable[[Generation], None]


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[Request], emit: Emit) -> str | None:
        """Generate the requests, calling `emit` once per finished one (any order).

        Returns why it stopped before the end ("cap": the cost cap; "interrupted": a
        signal, in-flight requests drained), or None when every request was generated.
        """


# ---------------------------------------------------------------- transformers
class _SeededSampling:
    """Temperature and top-p, then Gumbel noise drawn from each row's own generator.

    The argmax of `logits / T + Gumbel` is an exact sample of softmax(logits / T), so greedy
    decoding over these scores samples; because each row owns its generator (seeded per
    (id, sample)), a row's draw does not depend on which other rows share its batch, and a
    resumed run reproduces the samples of an uninterrupted one.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.float() / self.temperature  # (batch, vocab)
        if self.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            # Drop a token once the mass before it reaches top_p (the top token always stays).
            drop = probs.cumsum(dim=-1) - probs >= self.top_p
            scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1.0 - 1e-7)))
        return scores + gumbel.to(scores.device)


def _scorer_layout(adapter: Path) -> bool:
    """Whether an adapter was exported for the scorer (`backbone.` names, per-expert LoRAs)."""
    from safetensors import safe_open

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        return False
    with safe_open(str(weights), framework="pt") as f:
        return any(".backbone." in key for key in f.keys())  # noqa: SIM118 (safe_open is not a dict)


def _with_adapter(model, adapter: Path):
    """The native model with the adapter applied, whichever layout the adapter is in.

    A native PEFT folder (what `reasonlab train` writes) loads as a PeftModel. An exported
    one names modules as the hub code does, which transformers' native class lacks, so its
    updates are merged into the weights by export's own inverse mapping: the same function.
    """
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: no adapter_config.json (not a PEFT adapter folder)")
    if _scorer_layout(adapter):
        from reasonlab.submission.export import merge_exported

        return merge_exported(model, adapter)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter))


class HFBackend:
    """transformers `generate`: batched, left-padded, KV cache; runs on CPU with the tiny model."""

    name = "hf"

    def __init__(
        self,
        base: str,
        adapter: Path | None,
        tokenizer,
        temperature: float = 0.0,
        top_p: float = 1.0,
        batch_size: int = 8,
    ):
        import torch
        from transformers import AutoModelForCausalLM

        from reasonlab.training.engine.kernels import prepare

        prepare()  # the Mamba kernels where installed, on CUDA tensors only (as in `train`)
        self.tokenizer, self.temperature, self.top_p, self.batch_size = (
            tokenizer,
            temperature,
            top_p,
            batch_size,
        )
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # bf16 on GPU as the scorer; float32 on CPU, where bf16 matmuls are slow.
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        if adapter is not None:  # on the CPU: export's merge adds CPU tensors into the weights
            model = _with_adapter(model, adapter)
        self.model = model.to(self.device).eval()
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = eos_ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)

    def generate(self, requests: Sequence[Request], emit: Emit) -> None:
        """Batches in order; a kill loses the batch in flight (nothing was paid for)."""
        # Longest first: similar lengths share a batch (less padding), and memory runs out early.
        ordered = sorted(requests, key=lambda r: len(r.prompt_ids), reverse=True)
        for start in range(0, len(ordered), self.batch_size):
            for generation in self._batch(ordered[start : start + self.batch_size]):
                emit(generation)

    def _batch(self, batch: Sequence[Request]) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full(
            (len(batch), width), self.pad_id, dtype=torch.long
        )  # (batch, width), left-padded
        attention = torch.zeros_like(input_ids)
        for i, r in enumerate(batch):
            input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention[i, width - len(r.prompt_ids) :] = 1
        # One generate call runs to the largest cap; each row is cut to its own cap afterwards,
        # which equals stopping there since decoding is causal.
        limit = max(r.max_new_tokens for r in batch)
        config = GenerationConfig(
            max_new_tokens=limit,
            do_sample=False,  # sampling, when asked, happens in _SeededSampling
            # Neutral values set explicitly: unset fields are filled from the model's own
            # generation_config.json, and the scorer's SamplingParams leave them neutral.
            temperature=1.0,
            top_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            use_cache=True,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
        )
        processors = LogitsProcessorList()
        if self.temperature > 0:
            processors.append(
                _SeededSampling([r.seed for r in batch], self.temperature, self.top_p)
            )
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=processors,
            )
        new_tokens = out[:, width:].tolist()  # (batch, <= limit)
        return [self._finish(r, ids) for r, ids in zip(batch, new_tokens, strict=True)]

    def _finish(self, request: Request, ids: list[int]) -> Generation:
        ids = ids[: request.max_new_tokens]
        stop = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        if stop is None:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            return Generation(request, text, len(ids), "length")
        text = self.tokenizer.decode(ids[:stop], skip_special_tokens=True)
        return Generation(request, text, stop + 1, "stop")


# ---------------------------------------------------------------- vLLM
def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMBackend:
    """vLLM with the scorer's engine settings; the adapter rides in a LoRARequest."""

    name = "vllm"
    chunk = 256  # requests per generate call: results reach the disk at least this often

    def __init__(
        self, base: str, adapter: Path | None, temperature: float, top_p: float, max_model_len: int
    ):
        from vllm import LLM

        engine = {**SCORER_ENGINE, "max_model_len": max_model_len}
        self.llm = LLM(model=base, **engine)
        self.lora = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(adapter))
        self.temperature, self.top_p = temperature, top_p

    def generate(self, requests: Sequence[Request], emit: Emit) -> None:
        from vllm import SamplingParams

        for start in range(0, len(requests), self.chunk):
            chunk = requests[start : start + self.chunk]
            params = [
                SamplingParams(
                    temperature=self.temperature,
                    top_p=self.top_p,
                    max_tokens=r.max_new_tokens,
                    seed=r.seed if self.temperature > 0 else None,
                    n=1,
                )
                for r in chunk
            ]
            # Text prompts, as the scorer sends them; vLLM tokenizes them itself.
            outputs = self.llm.generate(
                [r.prompt for r in chunk], params, lora_request=self.lora, use_tqdm=False
            )
            for r, out in zip(chunk, outputs, strict=True):
                done = out.outputs[0]
                emit(
                    Generation(
                        r,
                        done.text,
                        len(done.token_ids),
                        "length" if done.finish_reason == "length" else "stop",
                    )
                )
