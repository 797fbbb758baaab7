"""Reward registry, and scoring that never lets one bad reward stop training.

A reward is a function ``(completions: list[str], **columns) -> list[float]`` (the
open-r1 convention): ``columns`` hold per-completion lists such as ``prompts``,
``answer`` (the reference) or ``completion_lengths``. The registry maps a name to a
*factory* that builds the function from a recipe's options, so a recipe writes

    rewards:
      - {name: gsm8k, weight: 1.0, mode: strict}
      - {name: format, weight: 0.2, preset: gsm8k}
"""

from __future__ import annotations

import difflib
import logging
import math
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)

RewardFn = Callable[..., list[float]]
_FACTORIES: dict[str, Callable[..., RewardFn]] = {}


def register(name: str):
    """Decorator: register a factory ``(**options) -> RewardFn`` under ``name``."""

    def wrap(factory):
        if name in _FACTORIES:
            raise ValueError(f"reward {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return wrap


def available() -> list[str]:
    import reasonrl.rewards  # noqa: F401  (registers the built-in rewards)

    return sorted(_FACTORIES)


def check_reward(name: str, options: dict) -> None:
    """Raise ValueError naming the problem when ``name`` or ``options`` cannot build a reward,
    without building it (a teacher reward would load a model): the factory's signature is
    bound to the options, and its ``preflight(**options)``, when it has one, runs."""
    import inspect

    names = available()
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown reward {name!r}{hint} (available: {', '.join(names)})")
    factory = _FACTORIES[name]
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError as err:
        allowed = ", ".join(p for p in signature.parameters) or "none"
        raise ValueError(f"reward {name!r}: {err} (its options: {allowed})") from None
    preflight = getattr(factory, "preflight", None)
    if preflight is not None:
        preflight(**options)


def build_reward(name: str, **options) -> RewardFn:
    names = available()
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown reward {name!r}.{hint} Available: {', '.join(names)}")
    try:
        return _FACTORIES[name](**options)
    except TypeError as err:
        raise TypeError(f"reward {name!r}: bad options {sorted(options)}: {err}") from None


@dataclass
class RewardSpec:
    """One reward of a recipe: its registered name, weight, and the factory's options."""

    name: str
    weight: float = 1.0
    options: dict = field(default_factory=dict)
    time_limit: float | None = 600.0  # seconds for one batch call; longer scores 0 (None: no limit)

    @classmethod
    def from_dict(cls, entry: dict, where: str = "rewards") -> RewardSpec:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{where}: each reward needs a 'name' (got {entry!r})")
        entry = dict(entry)
        name = entry.pop("name")
        weight = float(entry.pop("weight", 1.0))
        time_limit = entry.pop("time_limit", 600.0)
        options = entry.pop("options", {}) | entry
        return cls(name=name, weight=weight, options=options, time_limit=time_limit)


@dataclass
class RewardScores:
    total: torch.Tensor  # [N] weighted sum
    per_reward: dict[str, torch.Tensor]  # name -> [N] unweighted
    errors: dict[str, int]  # name -> completions whose reward failed (scored 0)


class RewardSet:
    """The weighted rewards of a recipe, scored safely.

    A reward that raises anything (``SystemExit`` included; only ``KeyboardInterrupt``
    stops the run), returns a non-finite value, or does not return within its
    ``time_limit`` gives the completions it failed on a reward of 0; the failures are
    counted per reward, and the first traceback of each reward is logged once. A call
    that overran is left running on a daemon thread: Python cannot stop it, but the run
    goes on.
    """

    def __init__(self, specs: list[RewardSpec]):
        if not specs:
            raise ValueError("a recipe needs at least one reward")
        self.specs = specs
        self.fns = [build_reward(s.name, **s.options) for s in specs]
        self._logged: set[str] = set()
        self.keys = [
            s.name if [t.name for t in specs].count(s.name) == 1 else f"{s.name}_{i}"
            for i, s in enumerate(specs)
        ]

    def __call__(self, completions: list[str], **columns) -> RewardScores:
        n = len(completions)
        for key, values in columns.items():
            if len(values) != n:
                raise ValueError(f"reward column {key!r} has {len(values)} values for {n} completions")
        total = torch.zeros(n, dtype=torch.float32)
        per_reward, errors = {}, {}
        for key, spec, fn in zip(self.keys, self.specs, self.fns, strict=True):
            values, failed = self._safe(key, _limited(fn, spec.time_limit), completions, columns)
            per_reward[key] = values
            errors[key] = failed
            total += spec.weight * values
        return RewardScores(total=total, per_reward=per_reward, errors=errors)

    def _safe(self, key: str, fn: RewardFn, completions: list[str], columns: dict):
        n = len(completions)
        try:
            return self._check(fn(completions, **columns), n), 0
        except RewardTimeout:
            self._log_once(key, traceback.format_exc())
            return torch.zeros(n, dtype=torch.float32), n  # one by one would hang n times
        except (Exception, SystemExit):
            self._log_once(key, traceback.format_exc())
        # The batch call failed: score completion by completion so one bad item costs one item.
        values, failed = torch.zeros(n, dtype=torch.float32), 0
        for i in range(n):
            try:
                values[i] = self._check(fn([completions[i]], **{k: [v[i]] for k, v in columns.items()}), 1)[0]
            except (Exception, SystemExit):
                failed += 1
                self._log_once(key, traceback.format_exc())
        return values, failed

    @staticmethod
    def _check(values, n: int) -> torch.Tensor:
        values = list(values)
        if len(values) != n:
            raise ValueError(f"reward returned {len(values)} values for {n} completions")
        for v in values:
            if v is None or not math.isfinite(float(v)):
                raise ValueError(f"reward returned a non-finite value {v!r}")
        return torch.tensor([float(v) for v in values], dtype=torch.float32)

    def _log_once(self, key: str, tb: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.error("reward %r failed; the completion scores 0 (logged once per reward):\n%s", key, tb)


class RewardTimeout(TimeoutError):
    """A reward call did not return within its time limit."""


def call_with_time_limit(fn: Callable, seconds: float, *args, **kwargs):
    """``fn(*args, **kwargs)``, or RewardTimeout after ``seconds``: the call runs on a daemon
    thread, which Python cannot stop, so an overrunning call is left behind and the caller
    goes on. Whatever ``fn`` raises (SystemExit included) is raised here."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True, name=getattr(fn, "__name__", "call"))
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise RewardTimeout(f"no result after {seconds:g} s (time_limit)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _limited(fn: RewardFn, seconds: float | None) -> RewardFn:
    """``fn``, giving up after ``seconds``."""
    if seconds is None:
        return fn
    return lambda completions, **columns: call_with_time_limit(fn, seconds, completions, **columns)
