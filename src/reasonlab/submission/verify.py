"""Judge a `submission.zip` as the scorer's vLLM will, trusting nothing about how it was made.

The rules are those of the shared competition doc, "What the scorer's vLLM does with an
adapter" (read from vLLM 0.15-0.22's source). Each check is one row of the report:
`fail` where vLLM refuses the adapter, or loads part of it and silently never applies
it (for a user, a lost adapter); `warn` where vLLM loads it but something is likely
not what the user meant; `pass` otherwise. The reference is the real architecture, built
from its config on PyTorch's meta device (module shapes, no memory) and named as the
hub remote code and vLLM name it (`backbone.`, routed experts as `experts.{i}.up_proj`).
Later checks that need an earlier one's result are skipped when it fails. The archive
is read with a byte budget: declared sizes above the limit are refused before anything
is inflated, and inflation stops at the declared size.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import stat
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from reasonlab.competition import (
    MAX_LORA_RANK,
    VLLM_LORA_MODULE_NAMES,
    VLLM_UNAPPLIED_LORA_MODULES,
)
from reasonlab.formats.files import require_file
from reasonlab.submission.export import ADAPTER_CONFIG, ADAPTER_WEIGHTS, hub_module_name
from reasonlab.submission.pack import PICKLE_SUFFIXES

__all__ = [
    "REAL_ARCHITECTURE",
    "Check",
    "ScorerModule",
    "VerifyOptions",
    "VerifyReport",
    "load_architecture",
    "scorer_modules",
    "verify_submission",
]

# Nemotron-3-Nano-30B-A3B's config.json (the hub checkpoint's, architecture fields only):
# verify defaults to it so no download is needed. `--config` replaces it.
REAL_ARCHITECTURE: dict = {
    "model_type": "nemotron_h",
    "vocab_size": 131072,
    "hidden_size": 2688,
    "num_hidden_layers": 52,
    "hybrid_override_pattern": "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
    "num_attention_heads": 32,
    "num_key_value_heads": 2,
    "head_dim": 128,
    "attention_bias": False,
    "mamba_num_heads": 64,
    "mamba_head_dim": 64,
    "n_groups": 8,
    "ssm_state_size": 128,
    "conv_kernel": 4,
    "chunk_size": 128,
    "expand": 2,
    "mamba_proj_bias": False,
    "use_bias": False,
    "use_conv_bias": True,
    "intermediate_size": 1856,
    "moe_intermediate_size": 1856,
    "moe_shared_expert_intermediate_size": 3712,
    "n_routed_experts": 128,
    "n_shared_experts": 1,
    "num_experts_per_tok": 6,
    "n_group": 1,
    "topk_group": 1,
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "mlp_bias": False,
    "mlp_hidden_act": "relu2",
    "mamba_hidden_act": "silu",
    "tie_word_embeddings": False,
}

_PEFT_ROOT = "base_model.model."
# The tensor names vLLM accepts: `<module>.lora_A.weight` ... `<module>.lora_embedding_B`.
_TENSOR = re.compile(r"(?P<module>.+)\.(?:lora_(?P<ab>[AB])\.weight|lora_embedding_(?P<emb>[AB]))")
_EXPERT = re.compile(r"(?P<layer>.+\.mixer\.experts)\.(?P<i>\d+)\.(?P<proj>up_proj|down_proj)")
_SHARD = re.compile(
    r"adapter_model[-.].*\.safetensors(\.index\.json)?$|.*\.safetensors\.index\.json$"
)
_DTYPES = {"BF16": 2, "F16": 2, "F32": 4}  # safetensors dtype -> bytes per element
_GIB = 1 << 30

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass(frozen=True)
class VerifyOptions:
    max_declared_bytes: int = 8 * _GIB  # a full r=32 adapter (all presets, bf16) is ~1.8 GB
    max_entries: int = 64
    max_rank: int = MAX_LORA_RANK


@dataclass(frozen=True)
class Check:
    name: str
    status: Status  # warn: vLLM loads it, but read the detail
    detail: str


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the scorer would load every tensor and apply it (warnings allowed)."""
        return bool(self.checks) and all(c.status in ("pass", "warn") for c in self.checks)

    def add(self, name: str, problems: list[str], detail_ok: str, warnings: list[str] = ()) -> bool:
        """Record one check; True when it did not fail (so later checks may run)."""
        shown = problems or list(warnings)
        detail = "; ".join(shown[:5]) + (f"; ... ({len(shown)} in all)" if len(shown) > 5 else "")
        status: Status = "fail" if problems else "warn" if warnings else "pass"
        self.checks.append(Check(name, status, detail if shown else detail_ok))
        return not problems


_CHECKS = (
    "archive",
    "adapter_config",
    "weights_format",
    "rank",
    "keys",
    "experts",
    "shapes",
    "values",
    "size",
)


def load_architecture(config_path: str | Path | None = None):
    """A `NemotronHConfig`: the real one by default, or one read from a config.json."""
    from transformers import NemotronHConfig

    if config_path is None:
        return NemotronHConfig.from_dict(REAL_ARCHITECTURE)
    path = require_file(config_path, "model config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a model config.json (not valid JSON: {err})") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type != "nemotron_h":
        raise ValueError(f"{path}: model_type is {model_type!r}, expected 'nemotron_h'")
    return NemotronHConfig.from_json_file(str(path))  # decodes its encoded floats (Infinity)


@dataclass(frozen=True)
class ScorerModule:
    """A module the scorer can put a LoRA on: A is (r, in_features), B (out_features, r)."""

    in_features: int
    out_features: int
    embedding: bool = False  # LoRA as lora_embedding_A (r, vocab) / lora_embedding_B (hidden, r)


def scorer_modules(config) -> dict[str, ScorerModule]:
    """Hub name (`backbone.layers.3.mixer.q_proj`) of every module a LoRA can sit on.

    Built on the meta device: the 30B model costs no memory. Routed experts (3-D natively)
    are listed per expert, as the hub code and vLLM name them.
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    found: dict[str, ScorerModule] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            found[hub_module_name(name)] = ScorerModule(module.in_features, module.out_features)
        elif isinstance(module, torch.nn.Embedding):
            found[hub_module_name(name)] = ScorerModule(
                module.num_embeddings, module.embedding_dim, embedding=True
            )
        elif name.endswith("mixer.experts"):
            for proj in ("up_proj", "down_proj"):
                experts, out_features, in_features = getattr(module, proj).shape  # (E, out, in)
                for i in range(experts):
                    found[f"{hub_module_name(name)}.{i}.{proj}"] = ScorerModule(
                        in_features, out_features
                    )
    return found


def _unsafe_path(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in path"
    return None


def verify_submission(
    zip_path: str | Path,
    config_path: str | Path | None = None,
    options: VerifyOptions = VerifyOptions(),
) -> VerifyReport:
    """Run every check on the zip; `report.ok` when none fails.

    A `config_path` that is not a nemotron_h config.json raises at once (ValueError,
    FileNotFoundError): it is the user's input, not a property of the zip.
    """
    architecture = load_architecture(config_path)
    report = VerifyReport()
    with tempfile.TemporaryDirectory(prefix="reasonlab-verify-") as tmp:
        _run_checks(Path(zip_path), architecture, options, report, Path(tmp))
    done = {c.name for c in report.checks}
    report.checks += [
        Check(name, "skip", "an earlier check failed") for name in _CHECKS if name not in done
    ]
    return report


def _config_problems(config: dict) -> list[str]:
    """adapter_config.json fields vLLM refuses, or drops silently where that mis-scales."""
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {config['peft_type']!r}, expected 'LORA'")
    problems += [
        f"missing field {f!r} (vLLM requires it)"
        for f in ("r", "lora_alpha", "target_modules")
        if f not in config
    ]
    if config.get("modules_to_save"):
        problems.append(
            f"modules_to_save {config['modules_to_save']} (vLLM refuses full module copies)"
        )
    if config.get("bias", "none") != "none":
        problems.append(f"bias is {config['bias']!r} (vLLM accepts only 'none')")
    if config.get("use_dora"):
        problems.append("use_dora is true (vLLM refuses DoRA)")
    for name in ("rank_pattern", "alpha_pattern"):
        if config.get(name):
            problems.append(
                f"{name} {config[name]} (vLLM before 0.32 drops it silently: those modules "
                "would be scaled by the global r and lora_alpha)"
            )
    alpha = config.get("lora_alpha")
    if "lora_alpha" in config and (isinstance(alpha, bool) or not isinstance(alpha, int | float)):
        problems.append(f"lora_alpha = {alpha!r} is not a number")
    return problems


def _run_checks(
    zip_path: Path, architecture, options: VerifyOptions, report: VerifyReport, tmp: Path
) -> None:
    # archive: readable, safe names, no links, declared sizes under the budget
    if not zip_path.is_file():
        what = "is a folder, expected a zip file" if zip_path.is_dir() else "no such file"
        report.add("archive", [f"{zip_path}: {what}"], "")
        return
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        report.add("archive", [f"not a zip file ({err})"], "")
        return
    with zf:
        infos = zf.infolist()
        problems = [f"{i.filename}: {why}" for i in infos if (why := _unsafe_path(i.filename))]
        problems += [
            f"{i.filename}: symbolic link" for i in infos if stat.S_ISLNK(i.external_attr >> 16)
        ]
        declared = sum(i.file_size for i in infos)
        if declared > options.max_declared_bytes:
            problems.append(
                f"declared uncompressed size {declared:,} B exceeds the limit {options.max_declared_bytes:,} B"
            )
        if len(infos) > options.max_entries:
            problems.append(f"{len(infos)} entries (limit {options.max_entries})")
        if not report.add("archive", problems, f"{len(infos)} entries, {declared:,} B declared"):
            return
        files = [i for i in infos if not i.is_dir()]

        # adapter_config: the scorer globs **/adapter_config.json and loads that folder
        configs = [i for i in files if PurePosixPath(i.filename).name == ADAPTER_CONFIG]
        if len(configs) != 1:
            where = ", ".join(i.filename for i in configs)
            report.add(
                "adapter_config",
                [
                    f"expected exactly one {ADAPTER_CONFIG}, found {len(configs)}"
                    + (
                        f" ({where}): which one the scorer's glob loads is not defined"
                        if where
                        else ""
                    )
                ],
                "",
            )
            return
        folder = PurePosixPath(configs[0].filename).parent
        try:
            config = json.loads(zf.read(configs[0]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            report.add("adapter_config", [f"{configs[0].filename} is not valid JSON ({err})"], "")
            return
        if not isinstance(config, dict):
            report.add("adapter_config", [f"{configs[0].filename} is not a JSON object"], "")
            return
        problems, warnings = _config_problems(config), []
        if str(folder) != ".":
            warnings.append(
                f"{configs[0].filename} sits in the subfolder {folder}/: accepted, because the "
                f"scorer globs **/{ADAPTER_CONFIG} and loads the folder holding it (pack puts "
                "the files at the root)"
            )
        if not report.add("adapter_config", problems, configs[0].filename, warnings):
            return

        # weights_format: one unsharded safetensors beside the config; nothing unpickled
        weights_name = str(folder / ADAPTER_WEIGHTS) if str(folder) != "." else ADAPTER_WEIGHTS
        weights = [i for i in files if i.filename == weights_name]
        pickles = [i.filename for i in files if PurePosixPath(i.filename).suffix in PICKLE_SUFFIXES]
        shards = [i.filename for i in files if _SHARD.match(PurePosixPath(i.filename).name)]
        problems, warnings = [], []
        if not weights:
            problems.append(
                f"no {weights_name} beside {ADAPTER_CONFIG}"
                + (f"; sharded weights {shards} are not read by vLLM" if shards else "")
                + (f"; pickle weights {pickles} refused (unpickling runs code)" if pickles else "")
            )
        else:
            warnings += [f"{p}: ignored by the scorer (it reads {weights_name})" for p in shards]
            warnings += [
                f"{p}: pickle ignored by the scorer (it reads {weights_name}); remove it"
                for p in pickles
            ]
        if not report.add("weights_format", problems, weights_name, warnings):
            return

        # rank: the scorer's max_lora_rank; every tensor's rank must equal it (see shapes)
        r = config["r"]
        problems = []
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            problems.append(f"r = {r!r} is not an integer >= 1")
        elif r > options.max_rank:
            problems.append(f"r = {r} exceeds {options.max_rank} (the scorer's max_lora_rank)")
        if not report.add("rank", problems, f"r = {r}"):
            return

        # inflate the weights with a byte cap: never more than the entry declares
        path = tmp / ADAPTER_WEIGHTS
        with zf.open(weights[0]) as src, path.open("wb") as dst:
            shutil.copyfileobj(_capped(src, weights[0].file_size), dst)

    _check_tensors(path, config, architecture, options, report)


class _capped:
    """A reader that raises once more than `limit` bytes come out (a lying zip header)."""

    def __init__(self, raw, limit: int):
        self.raw, self.left = raw, limit

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n if n >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise zipfile.BadZipFile("entry inflates beyond its declared size")
        return data


def _module_of(key: str) -> tuple[str, str, bool] | str:
    """(hub module name, "A"/"B", embedding form) of a tensor name, or why vLLM refuses it."""
    match = _TENSOR.fullmatch(key.removeprefix(_PEFT_ROOT))
    if match is None:
        return (
            "not a LoRA tensor name vLLM accepts (<module>.lora_A.weight, .lora_B.weight, "
            ".lora_embedding_A or .lora_embedding_B); vLLM raises on it"
        )
    module = match["module"]
    # vLLM maps `backbone.` to `model.`: both prefixes name the same module
    module = "backbone." + module.removeprefix("model.") if module.startswith("model.") else module
    return module, match["ab"] or match["emb"], match["emb"] is not None


def _key_findings(key: str, modules: dict[str, ScorerModule]) -> tuple[str | None, str | None]:
    """(problem, warning) for one tensor key, by vLLM's rules for its module."""
    parsed = _module_of(key)
    if isinstance(parsed, str):
        return f"{key}: {parsed}", None
    module, _, embedding = parsed
    leaf = module.rsplit(".", 1)[-1]
    problem = warning = None
    if leaf not in VLLM_LORA_MODULE_NAMES and leaf != "embeddings":
        problem = f"{leaf!r} is not a module name vLLM puts LoRA on; vLLM raises"
    elif leaf in VLLM_UNAPPLIED_LORA_MODULES:
        problem = f"vLLM loads a LoRA on {leaf!r} but never applies it"
    elif leaf == "experts":
        problem = "fused 3-D expert LoRA (fails in vLLM; `reasonlab export` splits it per expert)"
    elif module not in modules:
        problem = f"no module {module} in the architecture; vLLM would load it and never use it"
    elif embedding != modules[module].embedding:
        form = "lora_embedding_A/B" if modules[module].embedding else "lora_A/B.weight"
        problem = f"{module} takes its LoRA as {form}"
    elif leaf == "out_proj" and ".mixer." in module:
        warning = (
            "Mamba out_proj: vLLM applies it, but the fused CUDA training kernel gives it no "
            "gradient, so it may be untrained"
        )
    elif ".shared_experts." in module:
        warning = (
            "shared-expert LoRA: very likely wiped at activation in vLLM 0.15-0.19 (fixed by 0.20)"
        )
    return (f"{key}: {problem}" if problem else None), warning


def _check_tensors(path: Path, config: dict, architecture, options, report) -> None:
    import torch
    from safetensors import SafetensorError, safe_open

    modules = scorer_modules(architecture)
    try:
        handle = safe_open(str(path), framework="pt")
    except SafetensorError as err:
        report.add("keys", [f"{ADAPTER_WEIGHTS} is unreadable ({err})"], "")
        return
    keys = list(handle.keys())

    # keys: names vLLM accepts, on modules it applies, that exist at that path, in A/B pairs
    problems, warnings, pairs = [], [], defaultdict(dict)
    for key in keys:
        problem, warning = _key_findings(key, modules)
        if problem:
            problems.append(problem)
            continue
        if warning and warning not in warnings:
            warnings.append(warning)
        module, ab, _ = _module_of(key)
        pairs[module][ab] = key
    problems += [
        f"{module}: lora_{'B' if 'A' in found else 'A'} missing"
        for module, found in pairs.items()
        if len(found) != 2
    ]
    if not keys:
        problems.append("no tensors")
    if not report.add("keys", problems, f"{len(keys)} tensors on {len(pairs)} modules", warnings):
        return

    # experts: a layer with any routed-expert LoRA needs it on every expert's up and down
    experts = getattr(architecture, "n_routed_experts", 0)
    by_layer: dict[str, set] = defaultdict(set)
    for module in pairs:
        if found := _EXPERT.fullmatch(module):
            by_layer[found["layer"]].add((int(found["i"]), found["proj"]))
    problems = [
        f"{layer}: LoRA on {len(have)} of the {2 * experts} expert projections; vLLM needs "
        f"all {experts} experts' up_proj and down_proj once any has one"
        for layer, have in sorted(by_layer.items())
        if len(have) != 2 * experts
    ]
    warnings = []
    if by_layer and config.get("use_rslora"):
        warnings.append("use_rslora: vLLM before 0.30 scales routed experts by alpha/r instead")
    detail = f"{len(by_layer)} MoE layer(s) with all {experts} experts" if by_layer else "none"
    if not report.add("experts", problems, detail, warnings):
        return

    # shapes: 2-D, A (r, in), B (out, r), with r the config's r for every module
    r = config["r"]
    problems = []
    for module, found in pairs.items():
        target = modules[module]
        a = tuple(handle.get_slice(found["A"]).get_shape())
        b = tuple(handle.get_slice(found["B"]).get_shape())
        want_a, want_b = (r, target.in_features), (target.out_features, r)
        if a != want_a or b != want_b:
            problems.append(
                f"{module}: A {a}, B {b}; expected A {want_a} and B {want_b} (r = {r} from "
                f"{ADAPTER_CONFIG})"
            )
    if not report.add("shapes", problems, f"{len(pairs)} modules match, rank {r}"):
        return

    # values: floating dtype (vLLM casts to bf16), finite
    problems, total = [], 0
    for key in keys:
        dtype = handle.get_slice(key).get_dtype()
        if dtype not in _DTYPES:
            problems.append(f"{key}: dtype {dtype} (expected one of {sorted(_DTYPES)})")
            continue
        tensor = handle.get_tensor(key)
        total += tensor.numel() * _DTYPES[dtype]
        if not bool(torch.isfinite(tensor).all()):
            problems.append(f"{key}: contains NaN or inf")
    dtypes = "/".join(sorted({handle.get_slice(k).get_dtype() for k in keys}))
    if not report.add("values", problems, f"finite {dtypes}"):
        return

    # size: what vLLM will hold in memory for this adapter
    problems = [] if 0 < total <= options.max_declared_bytes else [f"{total:,} B of tensors"]
    report.add(
        "size",
        problems,
        f"{total / 2**20:,.1f} MiB of tensors"
        + (f" ({math.ceil(total / _GIB)} GiB)" if total > _GIB else ""),
    )
