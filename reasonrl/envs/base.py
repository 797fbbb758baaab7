"""The environment protocol: one small shape for every multi-turn task.

An environment turns a dataset row into an episode over chat messages:

    state = env.reset(row)            # the episode's start: state.messages holds the prompt
    step = env.step(state, text)      # after each assistant turn: the next observation
                                      # (a tool result, feedback, a user reply) or done
    reward = env.score(state)         # at the end: the episode's reward

Why this shape. Gymnasium's reset/step is the loop every RL user knows, and keeps the
environment a plain object the rollout drives (so all episodes of a step advance
together, one batched generate per turn). Observations are chat messages, not arrays,
as in TRL's and ``verifiers``' multi-turn environments; ``score`` plays ``verifiers``'
Rubric, and ``Step.reward`` its per-turn rewards. The tokens are the rollout's business:
environments see text only, and the rollout records which tokens the model wrote
(``reasonrl.rollout.episodes``). A single-turn task is the one-turn case: its ``step``
ends the episode at once. ``verifiers`` environments are not loaded through an adapter
yet: their rollout loop is async and owns the client; its MultiTurnEnv maps onto this
protocol (env_response -> step, is_completed -> Step.done, rubric -> score).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class EnvState:
    """One episode as the environment sees it."""

    row: dict  # the dataset row it started from (question, answer, ...)
    messages: list[dict]  # the conversation so far: system / user / assistant / tool
    turn: int = 0  # assistant turns taken
    info: dict[str, Any] = field(default_factory=dict)  # the environment's own; "success" after score
    tool_calls: int = 0
    tool_errors: int = 0
    turn_rewards: list[float] = field(default_factory=list)


@dataclass
class Step:
    """What the environment answers to one assistant turn."""

    observation: str | None = None  # the next message's content (None when done)
    role: str = "user"  # its role: "tool" for tool results, "user" for feedback
    done: bool = False
    reward: float = 0.0  # this turn's reward (shaping); the episode's is ``score``


class Environment(Protocol):
    name: str
    max_turns: int

    def reset(self, row: dict) -> EnvState: ...

    def step(self, state: EnvState, text: str) -> Step: ...

    def score(self, state: EnvState) -> float: ...
