"""Recipes: YAML files parsed into dataclasses, with command-line overrides.

A recipe is a YAML mapping whose sections mirror a dataclass tree. Loading is
strict and says where a problem is:

    recipes/gsm8k/grpo.yaml:14: unknown key 'grpo.betta'; did you mean 'beta'?
    recipes/gsm8k/grpo.yaml:9: train.learning_rate: expected a float, got 'fast'

Overrides follow the recipe path: ``--grpo.beta 0.02``, ``--beta=0.02`` (a leaf name
that is unique across sections), ``--resume`` (a bool flag with no value).
YAML is only ever safe-loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml


class RecipeError(ValueError):
    """A recipe or override that cannot be used, with the place it came from."""


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(options))}"


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint, converting where it is unambiguous."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except RecipeError as err:
                errors.append(str(err))
        raise RecipeError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return build(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            value = [value]
        item = args[0] if args else Any
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise RecipeError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise RecipeError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)  # YAML 1.1 reads "1e-5" as a string
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: expected a float, got {value!r}") from None
    if hint is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise RecipeError(f"{where}: expected text, got {value!r}")
    return value


def build(cls, data: dict, where: str = ""):
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise RecipeError(f"unknown key {path!r}{_suggest(key, names)}")
        kwargs[key] = _convert(value, hints[key], path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{where or cls.__name__}: {err}") from None


def _key_lines(text: str) -> dict[str, int]:
    """Line number of every mapping key path in a YAML document (``a.b.c`` -> line)."""
    lines: dict[str, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
                lines[path] = key_node.start_mark.line + 1
                walk(value_node, path)

    walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    return lines


def _leaf_paths(cls, prefix: str = "") -> dict[str, list[str]]:
    """Map every leaf field name to the recipe paths that end in it."""
    out: dict[str, list[str]] = {}
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        hint = _hints(cls)[f.name]
        inner = [a for a in get_args(hint) if dataclasses.is_dataclass(a)] or [hint]
        if dataclasses.is_dataclass(inner[0]):
            for leaf, paths in _leaf_paths(inner[0], path).items():
                out.setdefault(leaf, []).extend(paths)
        out.setdefault(f.name, []).append(path)
    return out


def _is_bool_path(cls, path: str) -> bool:
    for part in path.split("."):
        hints = _hints(cls)
        if part not in hints:
            return False
        hint = hints[part]
        inner = [a for a in get_args(hint) if dataclasses.is_dataclass(a)]
        cls = inner[0] if inner else hint
    return cls is bool


def parse_overrides(cls, args: list[str], prefer: str | None = None) -> dict[str, Any]:
    """``["--grpo.beta", "0.1", "--resume"]`` -> ``{"grpo.beta": 0.1, "train.resume": True}``.

    A leaf name found in several sections resolves to the one under ``prefer`` (the
    recipe's algorithm section) when there is one.
    """
    leaves = _leaf_paths(cls)
    all_paths = {p for paths in leaves.values() for p in paths}
    out, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise RecipeError(f"override {arg!r}: expected --key value")
        key, has_value, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key in all_paths:
            path = key
        elif key in leaves and len(leaves[key]) == 1:
            path = leaves[key][0]
        elif key in leaves and f"{prefer}.{key}" in leaves[key]:
            path = f"{prefer}.{key}"
        elif key in leaves:
            raise RecipeError(f"override --{key} is ambiguous: use one of {['--' + p for p in leaves[key]]}")
        else:
            renamed = getattr(cls, "renamed", {})
            old = next((p for p in renamed if key in (p, p.rsplit(".", 1)[-1])), None)
            if old is not None:
                raise RecipeError(f"override --{key}: renamed to --{renamed[old]}")
            raise RecipeError(f"unknown override --{key}{_suggest(key, sorted(all_paths | set(leaves)))}")
        if not has_value:
            if _is_bool_path(cls, path) and (i + 1 == len(args) or args[i + 1].startswith("--")):
                value = "true"
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise RecipeError(f"override --{key} needs a value")
        out[path] = yaml.safe_load(value) if value.strip() else ""
        i += 1
    return out


def _set_path(data: dict, path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def load_recipe(cls, path: str | Path | None, overrides: list[str] | None = None):
    """Load a recipe file (or defaults when ``path`` is None) into ``cls``, then apply overrides."""
    data, lines, name = {}, {}, "<defaults>"
    if path is not None:
        path = Path(path)
        name = str(path)
        if not path.exists():
            raise RecipeError(f"recipe {name} does not exist")
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text) or {}
            lines = _key_lines(text)
        except yaml.YAMLError as err:
            raise RecipeError(f"{name}: invalid YAML: {err}") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{name}: a recipe must be a mapping of sections")
    overrides = overrides or []
    algorithm = next((v.split("=", 1)[1] for v in overrides if v.startswith("--algorithm=")), None)
    if algorithm is None and "--algorithm" in overrides[:-1]:
        algorithm = overrides[overrides.index("--algorithm") + 1]
    prefer = algorithm or data.get("algorithm") or getattr(cls, "algorithm", None)
    flags = parse_overrides(cls, overrides, prefer=prefer if isinstance(prefer, str) else None)
    for key, value in flags.items():
        _set_path(data, key, value)
    source = RecipeSource(name, lines, set(flags))
    try:
        recipe = build(cls, data)
    except RecipeError as err:
        message = str(err)
        key = message.split("'")[1] if message.startswith("unknown key") else message.split(":")[0]
        renamed = getattr(cls, "renamed", {})
        if message.startswith("unknown key") and key in renamed:
            message = f"key {key!r} was renamed to {renamed[key]!r}"
        raise RecipeError(source.at(key, message)) from None
    recipe.source = source  # not a field: where each value came from, for later checks
    return recipe


@dataclasses.dataclass
class RecipeSource:
    """Where a recipe's values came from: its file's lines, and the keys set by flags."""

    name: str = "<defaults>"
    lines: dict[str, int] = dataclasses.field(default_factory=dict)
    flags: set[str] = dataclasses.field(default_factory=set)

    def at(self, key: str, message: str) -> str:
        """``message`` prefixed with the place ``key`` was set: the flag, or file:line."""
        base = key.split("[")[0]
        parts = base.split(".")
        flag = next(
            (".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in self.flags), None
        )
        if flag is not None:  # "--rewards: rewards[0]: ...", "--beta: ...", "--env: env.max_turns: ..."
            return f"--{flag}: {message.removeprefix(flag + ': ')}"
        line = self.lines.get(key) or self.lines.get(base)
        return f"{self.name}:{line}: {message}" if line else f"{self.name}: {message}"


def place(recipe, key: str, problem: str) -> RecipeError:
    """A RecipeError saying ``key: problem``, prefixed with where ``key`` was set."""
    source = getattr(recipe, "source", None) or RecipeSource()
    return RecipeError(source.at(key, f"{key}: {problem}"))


def to_dict(obj) -> Any:
    """A recipe dataclass as plain data (for writing the resolved recipe)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_recipe(obj, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
