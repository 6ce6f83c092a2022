"""Packed rows for LoRA SFT of `nemotron_h`, with every example kept apart in every layer.

Packing puts several tokenized examples (`formats.chat.tokenize_example`: `input_ids` and
`labels`, -100 on the prompt) into rows of at most `pack_length` tokens, so short traces
stop wasting a long row. An example sees only itself, as it would alone:

- **labels**: each example's first position gets -100, so the last token of one example
  is never trained to predict the first token of the next (alone, a first token is never
  a target either).
- **attention**: the collator hands over where each example starts (`cu_seq_lens_q`,
  `max_length_q`) and `training.engine.packed_attention` attends within each example only:
  torch's flash varlen kernel on CUDA, one causal sdpa call per example elsewhere. Neither
  builds a (tokens x tokens) mask nor computes the products it would mask away.
  `position_ids` still restart at 0 at each example (this model has no rotary positions, but
  any other attention implementation reads the restarts as packed sequences).
- **Mamba**: the causal conv1d (kernel 4) and the SSD scan would carry state from one
  example into the next. `isolate_packed_sequences` wraps each mixer's forward: on the
  fused path (`mamba_ssm` + `causal_conv1d`) it hands a per-token `seq_idx` to the conv and
  the scan, which reset at each new index (transformers passes the mixer's extra keyword
  arguments on to those kernels); on the PyTorch path, which has no `seq_idx`, it runs the
  mixer once per example segment. The MoE and norms work token by token and need nothing.

`isolate_packed_sequences` installs both on a model; `collate_packed` makes the rows.

Rows are built by best-fit decreasing bin packing (deterministic given the seed), and the
Trainer's batch of rows is flattened into one `(1, tokens)` row without padding.
"""

from __future__ import annotations

import functools
import itertools
import random
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reasonlab.formats.chat import IGNORE_INDEX
from reasonlab.formats.csvio import DataError
from reasonlab.training.engine.kernels import mamba_path

__all__ = [
    "Packing",
    "batch_to",
    "collate_packed",
    "isolate_packed_sequences",
    "pack_examples",
    "pad_row",
]

_MIXER_CLASS = "NemotronHMamba2Mixer"
_ATTENTION_ONLY = ("cu_seq_lens_q", "max_length_q")


@dataclass(frozen=True)
class Packing:
    """Packed rows (`input_ids`, `labels`, `position_ids`, `seq_idx`: lists of one length each)."""

    rows: list[dict[str, list[int]]]
    examples: int  # examples placed in rows
    dropped_too_long: int  # examples longer than pack_length, left out whole


def pack_examples(
    examples: Sequence[dict[str, list[int]]], pack_length: int, seed: int = 0
) -> Packing:
    """Pack examples into rows of at most `pack_length` tokens; longer examples are dropped.

    Best-fit decreasing: longest first, each into the row whose free space fits it most
    tightly, a new row when none does. The examples are shuffled with `seed` first, so
    equal lengths do not pack in file order; same examples and seed, same rows.
    """
    if pack_length < 1:
        raise ValueError(f"pack_length must be positive, got {pack_length}")
    for index, example in enumerate(examples):
        length = len(example["input_ids"])
        if not length or len(example["labels"]) != length:
            raise DataError(
                f"example {index}: needs as many labels as input_ids (>= 1), "
                f"got {len(example['labels'])} labels for {length} input_ids"
            )
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    fitting = [i for i in order if len(examples[i]["input_ids"]) <= pack_length]
    fitting.sort(key=lambda i: -len(examples[i]["input_ids"]))  # stable: ties keep shuffled order
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, bin number), ascending
    for i in fitting:
        length = len(examples[i]["input_ids"])
        at = bisect_left(free, (length, -1))  # the tightest bin with room
        if at == len(free):
            bins.append([i])
            insort(free, (pack_length - length, len(bins) - 1))
        else:
            space, number = free.pop(at)
            bins[number].append(i)
            insort(free, (space - length, number))
    rows = [_row([examples[i] for i in members]) for members in bins]
    return Packing(rows, len(fitting), len(examples) - len(fitting))


def _row(members: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": [], "seq_idx": []}
    for index, example in enumerate(members):
        length = len(example["input_ids"])
        row["input_ids"] += example["input_ids"]
        row["labels"] += [IGNORE_INDEX, *example["labels"][1:]]
        row["position_ids"] += range(length)
        row["seq_idx"] += [index] * length
    return row


def pad_row(row: dict[str, list[int]], length: int) -> dict[str, list[int]]:
    """The row filled to `length` tokens by one padding segment of its own.

    The segment is kept apart like any example (positions restart, a new `seq_idx`) and has
    no labels, so it changes no loss or gradient. Rows of one length give every step the same
    shapes: kernels tuned per shape (Triton autotuning, cuDNN attention plans) tune once; on
    an H200, steps after a change of packed length took 1.0-2.9 s, 0.86 s at a repeated one.
    """
    missing = length - len(row["input_ids"])
    if missing < 0:
        raise ValueError(f"a packed row of {len(row['input_ids'])} tokens is longer than {length}")
    if missing == 0:
        return row
    return {
        "input_ids": row["input_ids"] + [0] * missing,
        "labels": row["labels"] + [IGNORE_INDEX] * missing,
        "position_ids": row["position_ids"] + list(range(missing)),
        "seq_idx": row["seq_idx"] + [row["seq_idx"][-1] + 1] * missing,
    }


def collate_packed(rows: Sequence[dict[str, list[int]]], pad_to: int | None = None) -> dict:
    """A batch of packed rows as one `(1, total tokens)` row, without attention_mask.

    One row, because the varlen attention and the Mamba kernels take examples as segments of
    one sequence; `seq_idx` is renumbered across the rows so it keeps increasing (the Mamba
    kernels expect it sorted), and `cu_seq_lens_q` (int32, [0, ..., tokens]) and
    `max_length_q` give the attention the same segments, computed here on the CPU so no step
    waits on the GPU for them. With `pad_to`, each row is first filled to that many tokens
    (`pad_row`), so every batch has the same shape.
    """
    import torch

    flat: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": [], "seq_idx": []}
    offset = 0
    for row in rows:
        if pad_to is not None:
            row = pad_row(row, pad_to)
        flat["input_ids"] += row["input_ids"]
        flat["labels"] += row["labels"]
        flat["position_ids"] += row["position_ids"]
        flat["seq_idx"] += [offset + k for k in row["seq_idx"]]
        offset += row["seq_idx"][-1] + 1
    batch: dict = {key: torch.tensor([values], dtype=torch.long) for key, values in flat.items()}
    batch["seq_idx"] = batch["seq_idx"].to(torch.int32)  # the kernels' dtype
    lengths = torch.bincount(batch["seq_idx"][0])
    batch["cu_seq_lens_q"] = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]).to(torch.int32)
    batch["max_length_q"] = int(lengths.max())
    return batch


def batch_to(batch: dict, device) -> dict:
    """A collated batch with its tensors on `device` (`max_length_q` is an int and stays one)."""
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def isolate_packed_sequences(model) -> str:
    """Make every layer of a `nemotron_h` model keep the examples of a packed row apart.

    Selects `packed_attention` for the attention layers, wraps each Mamba mixer instance's
    forward (not the class: other models in the process stay as shipped) so that a
    `seq_idx` keyword isolates examples on either path, and turns the cache off (packed
    rows are for training). Idempotent; returns the Mamba path that will run.
    """
    from reasonlab.training.engine.packed_attention import use_packed_attention

    config = model.config
    if getattr(config, "model_type", None) != "nemotron_h":
        raise ValueError(
            f"packing: supported for nemotron_h models, got {getattr(config, 'model_type', None)!r}"
        )
    path = mamba_path().kind
    config.use_cache = False
    use_packed_attention(model)
    mixers = [m for m in model.modules() if type(m).__name__ == _MIXER_CLASS]
    if not mixers:
        raise ValueError(f"packing: the model has no {_MIXER_CLASS} to isolate")
    for mixer in mixers:
        if not getattr(mixer.forward, "_isolates_packed", False):
            mixer.forward = _isolating_forward(mixer.forward, fused=path == "fused")
    return path


def _isolating_forward(original: Callable, fused: bool) -> Callable:
    """The mixer's forward, plus a `seq_idx` keyword: (batch, length) int32, one index per example."""

    @functools.wraps(original)
    def forward(hidden_states, *args, seq_idx=None, **kwargs):
        for name in _ATTENTION_ONLY:  # the attention's segments; the Mamba kernels take seq_idx
            kwargs.pop(name, None)
        if seq_idx is None:
            return original(hidden_states, *args, **kwargs)
        if args or any(kwargs.get(name) is not None for name in ("cache", "cache_params")):
            raise ValueError("packed rows (seq_idx) are for training: run them without a cache")
        if tuple(seq_idx.shape) != tuple(hidden_states.shape[:2]):
            raise ValueError(
                f"seq_idx has shape {tuple(seq_idx.shape)}, the tokens {tuple(hidden_states.shape[:2])}"
            )
        if fused and hidden_states.is_cuda:
            # transformers passes the mixer's keyword arguments on to the conv and scan kernels
            return original(hidden_states, seq_idx=seq_idx, **kwargs)
        return _per_segment(original, hidden_states, seq_idx, **kwargs)

    forward._isolates_packed = True
    return forward


def _per_segment(original, hidden_states, seq_idx, attention_mask=None, **kwargs):
    """Run the mixer on each example's tokens alone: the PyTorch conv and scan take no seq_idx.

    hidden_states (batch, length, hidden) -> the same shape; one call per example segment,
    so each starts from a zero conv window and a zero SSM state, exactly as unpacked.
    """
    import torch

    rows = []
    for b in range(hidden_states.shape[0]):
        changes = (seq_idx[b, 1:] != seq_idx[b, :-1]).nonzero().flatten() + 1
        bounds = [0, *changes.tolist(), hidden_states.shape[1]]
        pieces = []
        for start, end in itertools.pairwise(bounds):
            mask = None if attention_mask is None else attention_mask[b : b + 1, start:end]
            pieces.append(
                original(hidden_states[b : b + 1, start:end], attention_mask=mask, **kwargs)
            )
        rows.append(torch.cat(pieces, dim=1))
    return torch.cat(rows, dim=0)
