"""reasonrl.envs: multi-turn environments over chat messages.

    base      the protocol (reset / step / score) and its two records, EnvState and Step
    tools     the calculator, the sandboxed Python tool, and the tool-call format
    builtin   tool, feedback, and the lookup toy

``make_env(name, **options)`` builds one; the rollout that drives them is
``reasonrl.rollout.episodes``.
"""

from __future__ import annotations

import dataclasses

from reasonrl.envs.base import Environment, EnvState, Step
from reasonrl.envs.builtin import ENVIRONMENTS


def make_env(name: str, **options) -> Environment:
    """The environment ``name`` with ``options``; ValueError naming the choices otherwise."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}; available: {', '.join(sorted(ENVIRONMENTS))}")
    cls = ENVIRONMENTS[name]
    fields = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "name"}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(
            f"environment {name!r} has no option(s) {unknown}; its options: {', '.join(sorted(fields))}"
        )
    return cls(**options)


__all__ = ["ENVIRONMENTS", "EnvState", "Environment", "Step", "make_env"]
