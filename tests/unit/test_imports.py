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


def test_losses_import_only_torch():
    for path in (PACKAGE / "losses").glob("*.py"):
        for name in _imports_of(path):
            top = name.split(".")[0]
            assert top in {"torch", "typing", "__future__", "math", "reasonrl"}, (path, name)
            if top == "reasonrl":
                assert name.startswith("reasonrl.losses"), (path, name)


def test_nothing_imports_cli_and_rewards_never_import_trainers():
    for path in PACKAGE.rglob("*.py"):
        imports = _imports_of(path)
        if path.name not in {"cli.py", "__main__.py"}:
            assert "reasonrl.cli" not in imports, path
        if "rewards" in path.parts:
            assert not any(i.startswith("reasonrl.trainers") for i in imports), path
