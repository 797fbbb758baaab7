"""Multi-turn rollouts: every live episode of a step advances together, one batched
generate per turn, and every token is recorded with who wrote it.

    episodes = [env.reset(row) for row in rows, n times each]
    while some are live:
        one engine.generate over [prompt + everything so far] of each live episode
        (token ids in, so vLLM's prefix cache reuses the earlier turns' keys and values)
        -> the model's tokens (trained on) -> env.step -> the observation's tokens
        (context only), or the episode ends: stop / length / max_turns / env_done

An episode is then one row of ``Rollouts``: its prompt, and as its "completion"
everything after the prompt, model and environment tokens alike, with ``loss_mask``
true on the model's tokens only. The trainers' losses, KL and entropy all read that
mask, so environment tokens are context and nothing else.

Observation tokens: for a chat prompt, the chat template's text for the new messages
(what the template puts between the model's last token and the next generation
prompt); for a plain-text prompt, the observation's text itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from reasonrl.envs.base import EnvState
from reasonrl.rollout.batch import Rollouts
from reasonrl.rollout.engine import SamplingConfig, encode_prompts

log = logging.getLogger("reasonrl")


@dataclass
class Episode:
    state: EnvState
    group: int  # index of the row it started from (G episodes share a group)
    prompt: str  # the rendered prompt text
    prompt_ids: list[int]
    plain: bool  # a raw-text prompt: observations are appended as text
    tokens: list[int] = field(default_factory=list)  # everything after the prompt
    owner: list[bool] = field(default_factory=list)  # True where the model wrote the token
    logprobs: list[float] = field(default_factory=list)  # sampling log-probs (0 for the env's)
    finish: str | None = None  # stop, length, max_turns, env_done, error
    reward: float = 0.0

    @property
    def model_tokens(self) -> int:
        return sum(self.owner)

    def transcript(self) -> str:
        return "\n".join(f"[{m['role']}] {m['content']}" for m in self.state.messages)


@dataclass
class EpisodeLimits:
    max_turns: int = 4  # assistant turns per episode
    max_episode_tokens: int = 1024  # model + environment tokens after the prompt
    max_model_len: int | None = 2048  # prompt + episode; None: the engine was sized for the budget


def observation_ids(tokenizer, episode: Episode, role: str, content: str) -> list[int]:
    """The tokens the environment adds for one new message."""
    if episode.plain:
        return tokenizer(content, add_special_tokens=False).input_ids
    messages = episode.state.messages  # ends with the model's turn
    so_far = tokenizer.decode(episode.prompt_ids + episode.tokens, skip_special_tokens=False)
    new = [*messages, {"role": role, "content": content}]
    after = tokenizer.apply_chat_template(new, tokenize=False, add_generation_prompt=True)
    if after.startswith(so_far):
        return tokenizer(after[len(so_far) :], add_special_tokens=False).input_ids
    # The model's turn did not end as the template ends one (a stop string, a cut, a
    # template that trims): close it as the template does, then the new message.
    ended = tokenizer.apply_chat_template(messages, tokenize=False)
    reply = messages[-1]["content"]
    turn_end = ended[ended.rfind(reply) + len(reply) :] if reply else ""
    return tokenizer(turn_end + after[len(ended) :], add_special_tokens=False).input_ids


def _budget(e: Episode, limits: EpisodeLimits) -> int:
    """Tokens the episode may still add (its own budget and the model's context)."""
    room = limits.max_episode_tokens
    if limits.max_model_len is not None:
        room = min(room, limits.max_model_len - len(e.prompt_ids))
    return room - len(e.tokens)


def _append(e: Episode, ids: list[int], logprobs: list[float], model: bool) -> None:
    e.tokens += ids
    e.owner += [model] * len(ids)
    e.logprobs += logprobs if model else [0.0] * len(ids)


def run_episodes(
    engine,
    env,
    rows: list[dict],
    n: int,
    sampling: SamplingConfig,
    limits: EpisodeLimits,
) -> list[Episode]:
    """``n`` episodes of ``env`` from each row, all advanced together; scored at the end."""
    tok = engine.tokenizer
    plain = bool(getattr(env, "plain", False))
    episodes = []
    for g, row in enumerate(rows):
        for _ in range(n):
            state = env.reset(row)
            prompt = state.messages[0]["content"] if plain else state.messages
            (text,), (ids,) = encode_prompts(tok, [prompt])
            episodes.append(Episode(state, g, text, ids, plain))
    live = [e for e in episodes if _budget(e, limits) > 0]
    for e in episodes:
        if e not in live:
            e.finish = "length"
    while live:
        budgets = [_budget(e, limits) for e in live]
        turn = replace(
            sampling,
            n=1,
            max_tokens=max(1, min(sampling.max_tokens, max(budgets))),
            stop=[*sampling.stop, *getattr(env, "stop", [])],  # e.g. the end of a tool call
        )
        batch = engine.generate([e.prompt_ids + e.tokens for e in live], turn)
        still = []
        for i, (e, budget) in enumerate(zip(live, budgets, strict=True)):
            length = int(batch.completion_lengths[i])
            ids = batch.completion_ids[i, :length].tolist()[:budget]
            _append(e, ids, batch.sampling_logprobs[i, : len(ids)].tolist(), model=True)
            e.state.messages.append({"role": "assistant", "content": batch.texts[i]})
            e.state.turn += 1
            try:
                step = env.step(e.state, batch.texts[i])
            except Exception as err:  # noqa: BLE001 - one broken episode never kills the run
                log.warning("environment %s failed on an episode: %s", env.name, err)
                e.finish = "error"
                continue
            e.state.turn_rewards.append(step.reward)
            if step.done:
                e.finish = "env_done"
            elif e.state.turn >= env.max_turns:
                e.finish = "max_turns"
            elif _budget(e, limits) <= 0:
                e.finish = "length"
            else:
                obs = observation_ids(tok, e, step.role, step.observation or "")
                e.state.messages.append({"role": step.role, "content": step.observation or ""})
                room = _budget(e, limits)
                _append(e, obs[:room], [], model=False)
                if len(obs) >= room:
                    e.finish = "length"  # no room left for the model to answer
                else:
                    still.append(e)
        live = still
    for e in episodes:
        try:
            e.reward = float(env.score(e.state))
        except Exception as err:  # noqa: BLE001
            log.warning("environment %s could not score an episode: %s", env.name, err)
            e.reward, e.finish = 0.0, "error"
    return episodes


def to_rollouts(episodes: list[Episode], pad_token_id: int) -> Rollouts:
    """One Rollouts row per episode: the prompt, then every later token; loss on the model's."""
    batch = Rollouts.from_lists(
        [e.prompt_ids for e in episodes],
        [e.tokens for e in episodes],
        [e.logprobs for e in episodes],
        [e.group for e in episodes],
        [e.prompt for e in episodes],
        [e.transcript() for e in episodes],
        ["length" if e.finish == "length" else "stop" for e in episodes],
        pad_token_id,
        owners=[e.owner for e in episodes],
    )
    return batch
