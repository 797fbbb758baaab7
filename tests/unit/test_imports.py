"""Every module of the package imports, and the layering rules of DESIGN.md hold."""

import ast
import importlib
import pkgutil
from pathlib import Path

import reasonrl

PACKAGE = Path(reasonrl.__file__).parent


def _modules():
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="reasonrl."):
        yield info.name


def test_every_module_imports():
    names = list(_modules())
    assert len(names) > 10
    for name in names:
        importlib.import_module(name)


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


# DESIGN.md's arrows: cli -> apps -> components -> losses. Every top-level module or
# package of reasonrl sits in exactly one layer; a new one must be placed here.
ENTRY = {"cli", "__main__"}
APPS = {"trainers", "control", "eval", "serve", "hub"}
COMPONENTS = {"runtime", "rollout", "envs", "rewards", "data", "models"}
UTILITIES = {"config", "allocator", "__init__"}  # imported by any layer; import no layer
LOSSES = {"losses"}


def _edges() -> list[tuple[str, str, Path]]:
    """(importing top-level unit, imported top-level unit, file) for every reasonrl import."""
    out = []
    for path in PACKAGE.rglob("*.py"):
        src = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for name in _imports_of(path):
            if name.startswith("reasonrl."):
                dst = name.split(".")[1]
                if dst != src:
                    out.append((src, dst, path))
    return out


def test_every_unit_has_a_layer():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    unplaced = units - (ENTRY | APPS | COMPONENTS | UTILITIES | LOSSES)
    assert not unplaced, f"place {sorted(unplaced)} in a layer of tests/unit/test_imports.py and DESIGN.md"


def test_losses_import_only_torch():
    for path in (PACKAGE / "losses").glob("*.py"):
        for name in _imports_of(path):
            top = name.split(".")[0]
            assert top in {"torch", "typing", "__future__", "math", "reasonrl"}, (path, name)
            if top == "reasonrl":
                assert name.startswith("reasonrl.losses"), (path, name)


def test_arrows_point_one_way():
    edges = _edges()
    assert edges  # the scan sees the package's imports
    for src, dst, path in edges:
        where = f"{path.relative_to(PACKAGE)} imports reasonrl.{dst}"
        assert dst != "cli" or src == "__main__", f"{where}: nothing imports the command line"
        if src in COMPONENTS | UTILITIES | LOSSES:
            assert dst not in APPS | ENTRY, f"{where}: nothing below the trainers imports them"
        if src in APPS:  # trainers and control never import each other, nor eval / serve
            assert dst not in APPS, f"{where}: one app never imports another"
        if src in UTILITIES:
            assert dst in UTILITIES, f"{where}: utilities import no layer"


def test_the_rules_would_catch_a_wrong_arrow(tmp_path):
    """The scan reads real import statements: a control module importing trainers is found."""
    fake = tmp_path / "control" / "bad.py"
    fake.parent.mkdir()
    fake.write_text("from reasonrl.trainers.grpo import update\n")
    global PACKAGE
    real, PACKAGE = PACKAGE, tmp_path
    try:
        try:
            test_arrows_point_one_way()
        except AssertionError as err:
            assert "one app never imports another" in str(err)
        else:
            raise AssertionError("a control -> trainers import went unnoticed")
    finally:
        PACKAGE = real


def test_importing_the_package_loads_no_numba():
    """numba's llvmlite, once loaded, stops vLLM's compiled engine from starting in that
    process (its kernel registry trips on llvmlite's wrappers): the tree search compiles its
    kernels on first use, so importing every module must leave it unloaded."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, reasonrl\n"
        "for m in pkgutil.walk_packages(reasonrl.__path__, 'reasonrl.'): importlib.import_module(m.name)\n"
        "print(sorted(n for n in ('numba', 'llvmlite') if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
