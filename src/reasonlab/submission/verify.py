"""Check a `submission.zip` the way the scorer will meet it, trusting nothing about how it was made.

The reference is the real architecture, built from its config on PyTorch's meta device
(module shapes, no memory, no weights) and named as the scorer's vLLM names it (the hub
remote code: `backbone.`, routed experts as `experts.{i}.up_proj/down_proj` Linears).
Each check is one row of the report; later checks that need an earlier one's result are
skipped when it fails. The archive is read with a byte budget: declared sizes above the
limit are refused before anything is inflated, and inflation stops at the declared size.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from reasonlab.competition import FORBIDDEN_LORA_TARGETS, MAX_LORA_RANK
from reasonlab.submission.export import hub_module_name
from reasonlab.submission.pack import PICKLE_SUFFIXES

__all__ = [
    "REAL_ARCHITECTURE",
    "Check",
    "VerifyOptions",
    "VerifyReport",
    "load_architecture",
    "scorer_module_shapes",
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

_LORA_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")
_DTYPES = {"BF16": 2, "F16": 2, "F32": 4}  # safetensors dtype -> bytes per element
_GIB = 1 << 30


@dataclass(frozen=True)
class VerifyOptions:
    max_declared_bytes: int = 8 * _GIB  # a full r=32 adapter (all presets, bf16) is ~1.8 GB
    max_entries: int = 64
    max_rank: int = MAX_LORA_RANK


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "pass" | "fail" | "skip"
    detail: str


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status == "pass" for c in self.checks)

    def add(self, name: str, problems: list[str], detail_ok: str) -> bool:
        shown = "; ".join(problems[:5]) + (
            f"; ... ({len(problems)} problems)" if len(problems) > 5 else ""
        )
        self.checks.append(
            Check(name, "fail" if problems else "pass", shown if problems else detail_ok)
        )
        return not problems


_CHECKS = (
    "archive",
    "adapter_config",
    "weights_format",
    "rank",
    "targets",
    "keys",
    "shapes",
    "values",
    "size",
)


def load_architecture(config_path: str | Path | None = None):
    """A `NemotronHConfig`: the real one by default, or one read from a config.json."""
    from transformers import NemotronHConfig

    if config_path is None:
        return NemotronHConfig.from_dict(REAL_ARCHITECTURE)
    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such architecture config")
    model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    if model_type != "nemotron_h":
        raise ValueError(f"{path}: model_type is {model_type!r}, expected 'nemotron_h'")
    return NemotronHConfig.from_json_file(str(path))


def scorer_module_shapes(config) -> dict[str, tuple[int, int]]:
    """Scorer-side name of every Linear-like module -> (in_features, out_features).

    Built on the meta device: the 30B model costs no memory. Routed experts (3-D natively)
    are listed per expert, as the hub code and vLLM name them.
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            shapes[hub_module_name(name)] = (module.in_features, module.out_features)
        elif name.endswith("mixer.experts"):
            for proj in ("up_proj", "down_proj"):
                experts, out_features, in_features = getattr(module, proj).shape  # (E, out, in)
                for i in range(experts):
                    shapes[f"{hub_module_name(name)}.{i}.{proj}"] = (in_features, out_features)
    return shapes


def _unsafe_path(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in path"
    return None


def _rank_for(module: str, config: dict) -> int:
    for pattern, rank in (config.get("rank_pattern") or {}).items():
        if re.search(rf"(^|\.){pattern}$", module):
            return int(rank)
    return int(config["r"])


def verify_submission(
    zip_path: str | Path,
    config_path: str | Path | None = None,
    options: VerifyOptions = VerifyOptions(),
) -> VerifyReport:
    """Run every check on the zip; `report.ok` only when all pass."""
    report = VerifyReport()
    with tempfile.TemporaryDirectory(prefix="reasonlab-verify-") as tmp:
        _run_checks(Path(zip_path), config_path, options, report, Path(tmp))
    done = {c.name for c in report.checks}
    report.checks += [
        Check(name, "skip", "an earlier check failed") for name in _CHECKS if name not in done
    ]
    return report


def _run_checks(
    zip_path: Path, config_path, options: VerifyOptions, report: VerifyReport, tmp: Path
) -> None:
    # archive: readable, safe names, no links, declared sizes under the budget
    if not zip_path.is_file():
        report.add("archive", [f"{zip_path}: no such file"], "")
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

        # adapter_config: exactly one, valid JSON, a LoRA
        configs = [i for i in files if PurePosixPath(i.filename).name == "adapter_config.json"]
        if len(configs) != 1:
            report.add(
                "adapter_config",
                [f"expected exactly one adapter_config.json, found {len(configs)}"],
                "",
            )
            return
        folder = str(PurePosixPath(configs[0].filename).parent)
        try:
            config = json.loads(zf.read(configs[0]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            report.add("adapter_config", [f"adapter_config.json is not valid JSON ({err})"], "")
            return
        problems = [] if isinstance(config, dict) else ["adapter_config.json is not an object"]
        if not problems:
            if config.get("peft_type") != "LORA":
                problems.append(f"peft_type is {config.get('peft_type')!r}, expected 'LORA'")
            problems += [
                f"missing field {f!r}"
                for f in ("r", "lora_alpha", "target_modules")
                if f not in config
            ]
        if not report.add("adapter_config", problems, f"{configs[0].filename}"):
            return

        # weights_format: safetensors beside the config, no pickle anywhere
        pickles = [i.filename for i in files if PurePosixPath(i.filename).suffix in PICKLE_SUFFIXES]
        weights_name = (
            str(PurePosixPath(folder) / "adapter_model.safetensors")
            if folder != "."
            else "adapter_model.safetensors"
        )
        weights = [i for i in files if i.filename == weights_name]
        problems = [f"pickle weights refused: {p}" for p in pickles]
        if not weights:
            problems.append(f"no {weights_name} beside adapter_config.json")
        if not report.add("weights_format", problems, weights_name):
            return

        # rank: r and every rank_pattern value within the limit
        ranks = {
            "r": config["r"],
            **{f"rank_pattern[{k}]": v for k, v in (config.get("rank_pattern") or {}).items()},
        }
        problems = [
            f"{k} = {v!r} is not an integer >= 1"
            for k, v in ranks.items()
            if not isinstance(v, int) or v < 1
        ]
        problems += [
            f"{k} = {v} exceeds {options.max_rank}"
            for k, v in ranks.items()
            if isinstance(v, int) and v > options.max_rank
        ]
        if not report.add("rank", problems, f"r = {config['r']}"):
            return

        # targets: config names nothing forbidden and no fused 3-D parameters
        targets = config["target_modules"]
        names = [targets] if isinstance(targets, str) else list(targets or [])
        problems = [
            f"target_modules names forbidden {t!r}"
            for t in names
            if any(re.search(rf"(^|[.\W]){f}($|[.\W])", t) for f in FORBIDDEN_LORA_TARGETS)
        ]
        if config.get("target_parameters"):
            problems.append(
                f"target_parameters {config['target_parameters']} (fused 3-D expert LoRA fails in vLLM)"
            )
        if not report.add("targets", problems, f"target_modules {names}"):
            return

        # inflate the weights with a byte cap: never more than the entry declares
        path = tmp / "adapter_model.safetensors"
        with zf.open(weights[0]) as src, path.open("wb") as dst:
            shutil.copyfileobj(_capped(src, weights[0].file_size), dst)

    _check_tensors(path, config, names, config_path, options, report)


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


def _check_tensors(
    path: Path, config: dict, target_names: list[str], config_path, options, report
) -> None:
    import torch
    from safetensors import SafetensorError, safe_open

    shapes = scorer_module_shapes(load_architecture(config_path))
    try:
        handle = safe_open(str(path), framework="pt")
    except SafetensorError as err:
        report.add("keys", [f"adapter_model.safetensors is unreadable ({err})"], "")
        return
    keys = list(handle.keys())

    # keys: LoRA pairs on modules the real architecture has, none forbidden
    problems, modules = [], {}
    for key in keys:
        match = _LORA_KEY.fullmatch(key)
        if not match:
            problems.append(
                f"{key}: not a LoRA weight (expected base_model.model.<module>.lora_A/B.weight)"
            )
            continue
        module = match["module"]
        leaf = module.rsplit(".", 1)[-1]
        if leaf in FORBIDDEN_LORA_TARGETS:
            problems.append(f"{key}: targets {leaf!r}, which must stay frozen")
        elif module not in shapes:
            hint = (
                " (a native transformers name: run `reasonlab export`)"
                if module.startswith("model.")
                else ""
            )
            problems.append(f"{key}: no module {module!r} in the architecture{hint}")
        elif (
            isinstance(target_names, list)
            and target_names
            and leaf not in target_names
            and module not in target_names
        ):
            problems.append(f"{key}: {leaf!r} is not named in target_modules")
        modules.setdefault(module, set()).add(match["ab"])
    problems += [
        f"{m}: has lora_{'AB'.replace(''.join(ab), '')} missing"
        for m, ab in modules.items()
        if ab != {"A", "B"}
    ]
    if not keys:
        problems.append("no tensors")
    if not report.add("keys", problems, f"{len(keys)} tensors on {len(modules)} modules"):
        return

    # shapes: A (r, in), B (out, r), r as configured
    problems = []
    for module in modules:
        in_f, out_f = shapes[module]
        r = _rank_for(module, config)
        a = tuple(handle.get_slice(f"base_model.model.{module}.lora_A.weight").get_shape())
        b = tuple(handle.get_slice(f"base_model.model.{module}.lora_B.weight").get_shape())
        if a != (r, in_f) or b != (out_f, r):
            problems.append(
                f"{module}: lora_A {a}, lora_B {b}; expected ({r}, {in_f}) and ({out_f}, {r})"
            )
    if not report.add("shapes", problems, f"{len(modules)} modules match"):
        return

    # values: floating dtype, finite
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
    if not report.add(
        "values",
        problems,
        "finite " + "/".join(sorted({handle.get_slice(k).get_dtype() for k in keys})),
    ):
        return

    # size: what vLLM will hold in memory for this adapter
    problems = [] if 0 < total <= options.max_declared_bytes else [f"{total:,} B of tensors"]
    report.add(
        "size",
        problems,
        f"{total / 2**20:,.1f} MiB of tensors"
        + (f" ({math.ceil(total / _GIB)} GiB)" if total > _GIB else ""),
    )
