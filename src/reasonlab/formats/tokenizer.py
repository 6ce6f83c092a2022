"""The base model's real tokenizer, rebuilt offline byte for byte, cached, and loaded.

NVIDIA-Nemotron-3-Nano-30B-A3B's `tokenizer.json` is Mistral NeMo's "Tekken" BPE vocabulary
with ChatML special tokens. The Tekken file ships inside the `mistral-common` package, so
the exact file is rebuilt here with `tokenizers` (no hub access) and checked against the
size and sha256 NVIDIA published; any other bytes (another `tokenizers` serialization,
another Tekken file) are an error, never a near-copy. The folder written beside it carries
the base model's chat template (trl's package data), so `AutoTokenizer.from_pretrained`
loads it and renders the scorer's prompt.

The rebuilt folder is cached under `$XDG_CACHE_HOME/reasonlab` (default `~/.cache/reasonlab`)
and reused by every later command: `load_tokenizer()` gives the real tokenizer whenever the
ML extras are installed, and None otherwise (callers then say their counts are estimates).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from functools import cache
from importlib.resources import files
from pathlib import Path

from reasonlab.formats.chat import load_chat_template, render_scorer_prompt
from reasonlab.formats.csvio import DataError
from reasonlab.formats.files import atomic_write, sha256_file

__all__ = [
    "SPECIAL_TOKENS",
    "TEKKEN_FILES",
    "TOKENIZER_BYTES",
    "TOKENIZER_SHA256",
    "VOCAB_SIZE",
    "TokenizerError",
    "cache_dir",
    "cached_tokenizer_dir",
    "load_tokenizer",
    "rebuild_tokenizer_json",
    "tokenizer_config",
    "verify_tokenizer_json",
    "write_tokenizer",
]

# The published file (pinned for the BF16, FP8 and NVFP4 checkpoints of the Nano-30B).
TOKENIZER_BYTES = 17_077_485
TOKENIZER_SHA256 = "c6021eb6847e682f89aa52d5eb6e8c7d902a23acfc8137e25211cf84828f1592"
VOCAB_SIZE = 131_072  # ids 0..999 special, 1000.. the first 130,072 Tekken ranks
NUM_SPECIAL = 1000
# Tekken files in mistral-common that rebuild to the same bytes, first one found is used.
TEKKEN_FILES = ("tekken_240718.json", "tekken_240911.json")

# Ids 0..17 by name, then <SPECIAL_18> .. <SPECIAL_999>.
SPECIAL_TOKENS = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
) + tuple(f"<SPECIAL_{i}>" for i in range(18, NUM_SPECIAL))
_NOT_SPECIAL = range(12, 18)  # <think> .. </tool_response>: added tokens with special=false

_FOLDER = "nemotron-3-nano-30b-a3b"  # one cached folder per published file


class TokenizerError(DataError):
    """The tokenizer cannot be rebuilt or loaded; the message names the file or folder."""


def _tekken_file() -> Path:
    try:
        data = files("mistral_common").joinpath("data")
    except ModuleNotFoundError:
        raise TokenizerError(
            "rebuilding the Nemotron tokenizer needs the Tekken vocabulary from mistral-common; "
            "install reasonlab[train]"
        ) from None
    for name in TEKKEN_FILES:
        if data.joinpath(name).is_file():
            return Path(str(data.joinpath(name)))
    raise TokenizerError(f"mistral-common ships none of {', '.join(TEKKEN_FILES)} in {data}")


@cache  # one rebuild per process (about 4 s): filling the cache and a test share it
def rebuild_tokenizer_json() -> bytes:
    """`tokenizer.json` rebuilt from mistral-common's Tekken file (not yet verified)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    tekken = json.loads(_tekken_file().read_text(encoding="utf-8"))
    ranks = {
        base64.b64decode(entry["token_bytes"]): entry["rank"]
        for entry in tekken["vocab"][: VOCAB_SIZE - NUM_SPECIAL]
    }
    to_unicode = _bytes_to_unicode()

    def text(token: bytes) -> str:  # a token in the byte-level alphabet
        return "".join(to_unicode[b] for b in token)

    vocab = {name: i for i, name in enumerate(SPECIAL_TOKENS)}
    merges: list[tuple[str, str]] = []
    # As transformers converts a tiktoken vocabulary: for each token in rank order, every
    # split into two tokens that both exist, ordered by the ranks of the two halves.
    for token, rank in ranks.items():
        vocab[text(token)] = rank + NUM_SPECIAL
        splits = sorted(
            (ranks[token[:i]], ranks[token[i:]], token[:i], token[i:])
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        )
        merges.extend((text(left), text(right)) for _, _, left, right in splits)
    tokenizer = Tokenizer(BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(tekken["config"]["pattern"]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_tokens(
        [
            AddedToken(name, normalized=False, special=i not in _NOT_SPECIAL)
            for i, name in enumerate(SPECIAL_TOKENS)
        ]
    )
    # `Tokenizer.save`'s pretty JSON, plus the trailing newline the Nano-30B file has
    return (tokenizer.to_str(pretty=True) + "\n").encode("utf-8")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    mapping, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def verify_tokenizer_json(data: bytes, source: str = "the rebuilt tokenizer.json") -> None:
    """Raise unless `data` is the published file: its size and sha256."""
    digest = hashlib.sha256(data).hexdigest()
    if len(data) == TOKENIZER_BYTES and digest == TOKENIZER_SHA256:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        versions = f"tokenizers {version('tokenizers')}, mistral-common {version('mistral-common')}"
    except PackageNotFoundError:
        versions = "tokenizers or mistral-common not installed"
    raise TokenizerError(
        f"{source} is {len(data):,} bytes with sha256 {digest}, not the published "
        f"{TOKENIZER_BYTES:,} bytes with sha256 {TOKENIZER_SHA256} ({versions}; "
        "another serialization or Tekken file); refusing a near-copy"
    )


def tokenizer_config() -> dict:
    """`tokenizer_config.json`: the token roles and the base model's chat template.

    No BOS is added (the chat template starts every prompt with `<|im_start|>`); the turn
    ends with `<|im_end|>`, the token the scorer's vLLM stops on; pad is id 0 as in the
    model's config.
    """
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 262_144,
        "chat_template": load_chat_template(),
    }


def write_tokenizer(out_dir: str | Path) -> Path:
    """Write the verified `tokenizer.json` and its config to `out_dir` (from the cache)."""
    source = cached_tokenizer_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with atomic_write(out_dir / name, binary=True) as f:
            f.write((source / name).read_bytes())
    verify_tokenizer_json(
        (out_dir / "tokenizer.json").read_bytes(), str(out_dir / "tokenizer.json")
    )
    return out_dir


def cache_dir() -> Path:
    """reasonlab's cache: `$XDG_CACHE_HOME/reasonlab`, else `~/.cache/reasonlab`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reasonlab"


def cached_tokenizer_dir() -> Path:
    """The cached tokenizer folder, rebuilt and verified first if missing or stale.

    A cached `tokenizer.json` is trusted only while its size and sha256 match; the config
    is rewritten whenever it differs (a newer trl may ship a revised template).
    """
    folder = cache_dir() / "tokenizers" / _FOLDER
    tokenizer_json = folder / "tokenizer.json"
    if not _is_published(tokenizer_json):
        data = rebuild_tokenizer_json()
        verify_tokenizer_json(data)
        _write_beside(tokenizer_json, data)
    config = (json.dumps(tokenizer_config(), indent=2, ensure_ascii=False) + "\n").encode()
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file() or config_path.read_bytes() != config:
        _write_beside(config_path, config)
    return folder


def _is_published(path: Path) -> bool:
    return (
        path.is_file()
        and path.stat().st_size == TOKENIZER_BYTES
        and sha256_file(path) == TOKENIZER_SHA256
    )


def _write_beside(path: Path, data: bytes) -> None:
    """Atomic, and safe when two processes fill the cache at once (the last rename wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(data)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)


def load_tokenizer(path: str | Path | None = None):
    """A transformers tokenizer: the folder at `path`, or the cached real one when None.

    A `path` that is not a tokenizer folder, or whose chat template does not render the
    scorer's prompt, is a `TokenizerError` naming it (never a hub lookup). With no path,
    returns None when the real tokenizer cannot be had here (no transformers, tokenizers
    or mistral-common): counts are then estimates.
    """
    if path is None:
        try:
            import transformers  # noqa: F401

            folder = cached_tokenizer_dir()
        except (ImportError, TokenizerError):
            return None
        return _load(str(folder))
    folder = Path(path)
    if not folder.exists():
        raise TokenizerError(f"{folder}: no such tokenizer folder")
    if not folder.is_dir() or not (
        (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
    ):
        raise TokenizerError(
            f"{folder}: not a tokenizer folder (no tokenizer.json or tokenizer_config.json)"
        )
    return _load(str(folder.resolve()))


@cache  # one load per folder and process (about 2 s for 269k merges); callers share it
def _load(folder: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TokenizerError(f"{folder}: cannot load a tokenizer from it ({reason})") from None
    if not tokenizer.chat_template:
        raise TokenizerError(f"{folder}: the tokenizer has no chat template to render prompts")
    try:
        render_scorer_prompt(tokenizer, "x")
    except ValueError as err:
        raise TokenizerError(f"{folder}: {err}") from None
    return tokenizer
