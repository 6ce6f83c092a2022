"""The machine a bundle's wheels are for, spelled as pip's `--python-version/--abi/--platform`.

pip (23.x) takes `--platform` literally: asked for `manylinux_2_35_x86_64` it refuses a
`manylinux_2_28_x86_64` wheel although any glibc-2.35 machine runs it. So a manylinux tag
is expanded here to every older glibc's tag (and the legacy manylinux1/2010/2014 names),
the list a pip running on that machine would accept.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

__all__ = ["KAGGLE", "KAGGLE_LEAVE_OUT", "Target"]

_MANYLINUX = re.compile(r"manylinux_2_(\d+)_(\w+)")
# Legacy names of glibc floors, for the architectures they were defined on (PEP 600).
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_LEGACY_ARCHES = {"x86_64", "i686"}  # manylinux2014 alone also covers aarch64, ppc64le, s390x


@dataclass(frozen=True)
class Target:
    """CPython `python` (major.minor) on `platform` (a wheel platform tag)."""

    python: str
    platform: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise ValueError(f"python version: give major.minor such as 3.12, not {self.python!r}")
        if not re.fullmatch(r"[a-z0-9_]+", self.platform):
            raise ValueError(
                f"platform: give a wheel platform tag such as manylinux_2_35_x86_64, not {self.platform!r}"
            )

    @property
    def abi(self) -> str:
        """cp312 for 3.12; pip adds abi3 and none (pure Python) by itself."""
        return "cp" + self.python.replace(".", "")

    def platform_tags(self, native: bool = False) -> tuple[str, ...]:
        """Every platform tag a pip on the target accepts, newest first.

        `native` adds `linux_<arch>`: wheels compiled on a machine like the target (the kernel
        builds). PyPI serves none, so it is only needed when such a wheel was built here.
        """
        match = _MANYLINUX.fullmatch(self.platform)
        if not match:
            return (self.platform,)
        floor, arch = int(match[1]), match[2]
        tags = []
        for glibc in range(floor, 4, -1):
            tags.append(f"manylinux_2_{glibc}_{arch}")
            if glibc in _LEGACY and (arch in _LEGACY_ARCHES or glibc == 17):
                tags.append(f"{_LEGACY[glibc]}_{arch}")
        if native:
            tags.append(f"linux_{arch}")
        return tuple(tags)

    def pip_args(self, native: bool = False) -> list[str]:
        """Options that make `pip download`/`pip install --dry-run` choose wheels for the target."""
        args = ["--only-binary=:all:", "--implementation", "cp"]
        args += ["--python-version", self.python, "--abi", self.abi]
        for tag in self.platform_tags(native):
            args += ["--platform", tag]
        return args

    def describe(self) -> str:
        return f"CPython {self.python} on {self.platform}"

    @classmethod
    def this_machine(cls) -> Target:
        """The running interpreter's version and the newest manylinux tag its glibc accepts."""
        from packaging import tags

        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        platforms = [t.platform for t in tags.sys_tags() if t.platform.startswith("manylinux_")]
        if not platforms:
            raise ValueError("this machine has no manylinux platform tag: give --platform")
        return cls(version, platforms[0])


# The Kaggle GPU notebook image (issue 15): Python 3.12 on Ubuntu 22.04, whose glibc is 2.35.
KAGGLE = Target("3.12", "manylinux_2_35_x86_64")
# What that image already has and a bundle must not replace: torch is built for the image's
# CUDA (with its nvidia-* libraries it weighs GBs), and triton ships with it.
KAGGLE_LEAVE_OUT = ("torch", "triton")
