"""Imports point down the layers, and the core never imports an ML library.

Every `import` in the package, at module level or inside a function, is read from the
source (not executed), so a lazy import that runs upward fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "reasonlab"

# Layer of each top-level part of the package, lowest first. A module may import its own
# part and any part of a lower rank. `puzzles` and `formats` share a rank but are siblings:
# neither may import the other.
RANKS = {
    "competition": 0,
    "metric": 1,
    "puzzles": 2,
    "formats": 2,
    "data": 3,
    "training": 4,
    "submission": 5,
    "evaluation": 6,
    "plans": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 9,
}
ML_LIBRARIES = {"torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers"}
NO_ML = ("competition", "metric", "puzzles")


def _part(module_path: Path) -> str:
    relative = module_path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imports(module_path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in the file."""
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_has_a_rank():
    assert {_part(m) for m in MODULES} <= set(RANKS)
    assert len(MODULES) > 60  # the walk found the package


@pytest.mark.parametrize("module_path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_point_down(module_path: Path):
    part = _part(module_path)
    upward = []
    for line, name in _imports(module_path):
        if not name.startswith("reasonlab."):
            continue
        target = name.split(".")[1]
        if target == part:
            continue
        if RANKS[target] >= RANKS[part]:
            upward.append(f"line {line}: {name}")
    assert not upward, f"{part} (rank {RANKS[part]}) imports a higher or sibling layer: {upward}"


@pytest.mark.parametrize(
    "module_path",
    [m for m in MODULES if _part(m) in NO_ML],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_core_imports_no_ml_library(module_path: Path):
    ml = [
        f"line {line}: {n}" for line, n in _imports(module_path) if n.split(".")[0] in ML_LIBRARIES
    ]
    assert not ml, f"{module_path.name} imports an ML library: {ml}"


def test_no_folder_holds_more_than_a_dozen_modules():
    for folder in {m.parent for m in MODULES}:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, f"{folder.relative_to(PACKAGE)}: {len(modules)} modules"


def test_every_subpackage_says_what_lives_there():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(PACKAGE)} has no docstring"
        if init.parent != PACKAGE and init.parent.name != "cli":
            assert "import" in doc, f"{init.relative_to(PACKAGE)}: say what it may import"
