"""pip as a subprocess: run it with its output streamed, resolve for a target, read its report.

Nothing here picks versions: `pip install --dry-run --report` resolves the whole set for the
target and `pip download` fetches exactly the files it chose. What this module adds is
reading pip's answer: a one-line summary of a failure (the package pip could not find, the
requirements that conflict), and which resolved packages only a left-out package needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from reasonlab.plans.bundle.manifest import BundleError
from reasonlab.plans.bundle.target import Target

__all__ = [
    "Resolution",
    "Resolved",
    "pip_failure",
    "python_version",
    "resolve",
    "run_logged",
    "run_pip",
    "split_left_out",
]


def python_version(python: str) -> str:
    """major.minor of the interpreter at `python`."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return run_logged([python, "-c", code], what=f"running {python}")[-1]


def run_pip(
    python: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    what: str = "pip",
) -> list[str]:
    """`python -m pip ARGS`, each output line passed to `on_line`; a failure raises BundleError."""
    return run_logged([python, "-m", "pip", *args], env=env, on_line=on_line, what=what)


def run_logged(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    what: str = "",
) -> list[str]:
    """Run a command with stdout and stderr merged and streamed; BundleError names what failed."""
    try:
        process = subprocess.Popen(
            [str(part) for part in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    except OSError as err:
        raise BundleError(f"{what or command[0]}: cannot start {command[0]} ({err})") from None
    lines = []
    for raw in process.stdout or ():
        line = raw.rstrip()
        lines.append(line)
        if on_line:
            on_line(line)
    if process.wait():
        raise BundleError(f"{what or command[0]} failed: {pip_failure(lines)}")
    return lines


# pip's own words for the failures a bundle meets, most specific first.
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_NO_VERSION = re.compile(
    r"Could not find a version that satisfies the requirement (\S+)(?: \(from (?!versions:)([^)]*)\))?"
)
_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")
_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "name resolution")


def pip_failure(lines: Sequence[str]) -> str:
    """One line saying why pip failed: the missing or conflicting package when pip named one."""
    text = "\n".join(lines)
    offline = (
        " (the package registry was not reachable)" if any(n in text for n in _NETWORK) else ""
    )
    if match := _NO_VERSION.search(text):
        wanted_by = f" (needed by {match[2]})" if match[2] else ""
        return f"missing package: no distribution of {match[1]}{wanted_by} is available{offline}"
    if match := _NOT_FOUND.search(text):
        return f"missing package: no distribution of {match[1]} is available{offline}"
    if "The conflict is caused by:" in text:
        cause = text.split("The conflict is caused by:", 1)[1].split("\n\n", 1)[0]
        return "conflicting packages: " + "; ".join(
            line.strip() for line in cause.splitlines() if line.strip()
        )
    if "has requirement" in text or "which is not installed" in text:  # `pip check`
        return "conflicting packages: " + "; ".join(line for line in lines if line.strip())
    if "DO NOT MATCH THE HASHES" in text:
        mismatched = [line.strip() for line in lines if "sha256" in line.lower()]
        return "a download does not match its sha256: " + "; ".join(mismatched[:2])
    if match := _NO_MODULE.search(text):
        return f"module {match[1]} is not importable"
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    tail = [line.strip() for line in lines if line.strip()]
    return (errors[-1] if errors else tail[-1] if tail else "no output") + offline


@dataclass(frozen=True)
class Resolved:
    """One package pip chose: where its file is and what it declares."""

    name: str
    version: str
    url: str
    sha256: str
    requested: bool  # named on the command line (a root of the dependency walk)
    extras: tuple[str, ...]  # extras requested on it
    requires: tuple[str, ...]  # its Requires-Dist lines

    @property
    def key(self) -> str:
        from packaging.utils import canonicalize_name

        return canonicalize_name(self.name)

    @property
    def filename(self) -> str:
        return unquote(Path(urlparse(self.url).path).name)

    def path_in(self, folder: Path) -> bool:
        """Whether pip found its file in `folder` (a find-links folder of this machine)."""
        if urlparse(self.url).scheme != "file":
            return False
        return Path(unquote(urlparse(self.url).path)).parent == folder.resolve()


@dataclass(frozen=True)
class Resolution:
    packages: tuple[Resolved, ...]
    environment: dict[str, str]  # the marker environment pip evaluated (its interpreter's)
    pip_version: str


def resolve(
    python: str,
    target: Target,
    requirements: Iterable[str],
    find_links: Iterable[Path] = (),
    *,
    native: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> Resolution:
    """The full install set for `requirements` on `target`, as pip resolves it (no install)."""
    with tempfile.TemporaryDirectory(prefix="reasonlab-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        # --target makes pip accept the platform options; with --dry-run nothing is written.
        args = ["install", "--dry-run", "--ignore-installed", "--progress-bar", "off"]
        args += ["--target", str(Path(tmp) / "unused"), "--report", str(report)]
        args += target.pip_args(native)
        for link in find_links:
            args += ["--find-links", str(link)]
        run_pip(
            python,
            [*args, *requirements],
            on_line=on_line,
            what=f"resolving for {target.describe()}",
        )
        data = json.loads(report.read_text(encoding="utf-8"))
    packages = []
    for item in data["install"]:
        meta, info = item["metadata"], item["download_info"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        if "sha256" not in hashes:
            raise BundleError(f"pip's report gives no sha256 for {info['url']}")
        packages.append(
            Resolved(
                name=meta["name"],
                version=meta["version"],
                url=info["url"],
                sha256=hashes["sha256"],
                requested=bool(item.get("requested")),
                extras=tuple(item.get("requested_extras") or ()),
                requires=tuple(meta.get("requires_dist") or ()),
            )
        )
    return Resolution(
        tuple(packages), dict(data.get("environment", {})), data.get("pip_version", "")
    )


def split_left_out(
    resolution: Resolution, left_out: Iterable[str]
) -> tuple[list[Resolved], list[Resolved]]:
    """(kept, dropped): dropped are the left-out packages and those only they need.

    A walk over pip's own answer: from the requested packages, along each one's
    Requires-Dist whose marker holds (for the extras asked of it), never into a left-out
    package. Whatever the walk does not reach is needed only through a left-out package
    (torch's CUDA libraries, say), which the target provides along with it.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    by_key = {package.key: package for package in resolution.packages}
    skipped = {canonicalize_name(name) for name in left_out}
    reached: dict[str, set[str]] = {}  # package -> the extras it was reached with
    todo = [(p.key, set(p.extras)) for p in resolution.packages if p.requested]
    while todo:
        key, extras = todo.pop()
        if key in skipped or key not in by_key:
            continue
        if key in reached and extras <= reached[key]:
            continue
        reached[key] = reached.get(key, set()) | extras
        for line in by_key[key].requires:
            requirement = Requirement(line)
            marker = requirement.marker
            active = reached[key] or {""}
            if marker is None or any(
                marker.evaluate({**resolution.environment, "extra": extra}) for extra in active
            ):
                todo.append((canonicalize_name(requirement.name), set(requirement.extras)))
    kept = [p for p in resolution.packages if p.key in reached]
    dropped = [p for p in resolution.packages if p.key not in reached]
    return kept, dropped
