"""The package map: imports only point down (docs/architecture.md draws it).

Every `import lobseq.X` / `from lobseq.X import …` in lobseq/, at module level or inside a
function, must name a package at the same level or below the importing one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

# Lowest first. core: errors, io, locks, quiet, config, yaml_lines (lobseq/__init__ too).
ORDER = ("core", "engine", "data", "scoring", "models", "tracking", "registry", "serving",
         "training", "evaluation", "workflow", "cli")
CORE = {"errors", "io", "locks", "quiet", "config", "yaml_lines", "__version__"}
SCORING = {"metrics", "plots"}  # they name classes by the labels' convention (data)
ROOT = Path(__file__).resolve().parents[1] / "lobseq"


def layer(module: str) -> str | None:
    """The layer of a dotted `lobseq…` module name (None outside lobseq)."""
    parts = module.split(".")
    if parts[0] != "lobseq":
        return None
    if len(parts) == 1 or parts[1] in CORE or parts[1] == "__init__":
        return "core"
    if parts[1] in SCORING:
        return "scoring"
    return parts[1]


def imports(path: Path):
    """(line, imported lobseq module) for every import in `path`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lobseq":  # from lobseq import x: x is the module
                yield from ((node.lineno, f"lobseq.{a.name}") for a in node.names)
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_package_has_a_place_in_the_map():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
    assert packages <= set(ORDER), f"add {sorted(packages - set(ORDER))} to the map"
    assert modules <= CORE | SCORING, f"add {sorted(modules - CORE - SCORING)} to the map"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_point_down(path):
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
    mine = layer(module)
    upward = [(line, target, layer(target)) for line, target in imports(path)
              if layer(target) is not None and ORDER.index(layer(target)) > ORDER.index(mine)]
    assert not upward, f"{module} ({mine}) imports upward: " + ", ".join(
        f"line {line}: {target} ({where})" for line, target, where in upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The rule is not vacuous: a data module importing training is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from lobseq.training.fit import fit\n")
    [(line, target)] = list(imports(bad))
    assert line == 2 and ORDER.index(layer(target)) > ORDER.index(layer("lobseq.data.ingest"))
