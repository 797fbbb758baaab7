"""Multi-turn rollouts: who wrote each token, how episodes end, and that the engines'
log-probs of the model's tokens are the trainer's."""

import pytest
import torch

from reasonrl.envs import make_env
from reasonrl.envs.base import EnvState, Step
from reasonrl.models import load
from reasonrl.models.logprobs import completion_logprobs
from reasonrl.rollout import SamplingConfig, make_engine
from reasonrl.rollout.episodes import EpisodeLimits, observation_ids, run_episodes, to_rollouts
from reasonrl.rollout.vllm_engine import vllm_available


@pytest.fixture(scope="module")
def tiny():
    return load("tiny-llama")


class Scripted:
    """The HF engine, with the sampled tokens replaced by a script: turn k writes ``replies[k]``."""

    def __init__(self, engine, replies):
        self.engine, self.replies, self.turn = engine, replies, 0
        self.tokenizer = engine.tokenizer

    def generate(self, prompts, sampling):
        batch = self.engine.generate(prompts, sampling)
        ids = self.tokenizer(self.replies[self.turn], add_special_tokens=False).input_ids
        self.turn += 1
        batch.completion_ids[:, : len(ids)] = torch.tensor(ids)
        batch.completion_mask[:, : len(ids)] = True
        batch.completion_mask[:, len(ids) :] = False
        batch.texts = [self.replies[self.turn - 1]] * len(prompts)
        return batch


def test_lookup_episode_records_who_wrote_each_token(tiny):
    model, tok = tiny
    engine = Scripted(make_engine("hf", model, tok), ["?", "7"])
    env = make_env("lookup")
    limits = EpisodeLimits(max_turns=2, max_episode_tokens=8, max_model_len=64)
    episodes = run_episodes(
        engine, env, [{"question": "k3:", "answer": "7"}], 2, SamplingConfig(max_tokens=1), limits
    )
    e = episodes[0]
    # "?" (model), "7" (environment), "7" (model)
    assert tok.decode(e.tokens) == "?77" and e.owner == [True, False, True]
    assert e.finish == "env_done" and e.reward == pytest.approx(1.1) and e.state.info["success"]
    assert [m["role"] for m in e.state.messages] == ["user", "assistant", "tool", "assistant"]
    batch = to_rollouts(episodes, tok.pad_token_id)
    assert batch.loss_mask[0].tolist() == [True, False, True] and batch.completion_mask.all()
    assert batch.select([1]).loss_mask.tolist() == [[True, False, True]]


class Echo:
    """Answers every turn with a longer observation and never ends: the limits must end it."""

    name, max_turns, plain = "echo", 3, True

    def __init__(self, broken_scorer: bool = False):
        self.broken_scorer = broken_scorer

    def reset(self, row):
        return EnvState(row=row, messages=[{"role": "user", "content": row["question"]}])

    def step(self, state, text):
        return Step(observation="ab" * state.turn, role="user")

    def score(self, state):
        if self.broken_scorer:
            raise RuntimeError("a broken scorer")
        return 0.5


@pytest.mark.parametrize("budget, finish", [(64, "max_turns"), (5, "length")])
def test_turn_and_token_limits_end_episodes(tiny, budget, finish):
    model, tok = tiny
    engine = make_engine("hf", model, tok)
    limits = EpisodeLimits(max_turns=3, max_episode_tokens=budget, max_model_len=256)
    torch.manual_seed(0)
    episodes = run_episodes(engine, Echo(), [{"question": "hi:"}], 2, SamplingConfig(max_tokens=2), limits)
    for e in episodes:
        assert e.finish == finish and e.reward == 0.5
        assert len(e.tokens) <= budget and len(e.owner) == len(e.tokens) == len(e.logprobs)
        assert e.state.turn == 3 if finish == "max_turns" else len(e.tokens) == budget


def test_a_broken_scorer_costs_its_episode_only(tiny):
    model, tok = tiny
    limits = EpisodeLimits(max_turns=3, max_episode_tokens=64, max_model_len=256)
    engine = make_engine("hf", model, tok)
    episodes = run_episodes(
        engine, Echo(broken_scorer=True), [{"question": "x:"}], 2, SamplingConfig(), limits
    )
    assert [(e.finish, e.reward) for e in episodes] == [("error", 0.0)] * 2


def test_chat_observations_use_the_chat_template(tiny):
    _, tok = tiny
    env = make_env("tool")
    state = env.reset({"question": "2+2?", "answer": "4"})
    (prompt,) = [tok.apply_chat_template(state.messages, tokenize=False, add_generation_prompt=True)]
    from reasonrl.rollout.episodes import Episode

    reply = "<calculator>2+2</calculator>"
    episode = Episode(state, 0, prompt, tok(prompt, add_special_tokens=False).input_ids, plain=False)
    episode.tokens = tok(reply, add_special_tokens=False).input_ids + [tok.eos_token_id]
    state.messages.append({"role": "assistant", "content": reply})
    ids = observation_ids(tok, episode, "tool", "4")
    whole = tok.apply_chat_template(
        [*state.messages, {"role": "tool", "content": "4"}], tokenize=False, add_generation_prompt=True
    )
    assert tok.decode(episode.prompt_ids + episode.tokens + ids, skip_special_tokens=False) == whole


@pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed")
def test_vllm_multi_turn_logprobs_are_the_trainers(tiny, tmp_path):
    """Token-id prompts of every turn on the vLLM engine; its log-probs of the model's
    tokens equal the trainer's on the assembled episodes (fp32 both)."""
    from reasonrl.models import resolve

    model, tok = tiny
    folder = str(resolve("tiny-llama"))
    engine = make_engine("vllm", model, tok, model_dir=folder, dtype="float32", seed=0, max_model_len=256)
    try:
        env = make_env("lookup")
        rows = [{"question": f"k{i}:", "answer": str(i)} for i in range(4)]
        limits = EpisodeLimits(max_turns=2, max_episode_tokens=8, max_model_len=64)
        sampling = SamplingConfig(max_tokens=1, temperature=1.0)
        episodes = run_episodes(engine, env, rows, 8, sampling, limits)
    finally:
        engine.close()
    batch = to_rollouts(episodes, tok.pad_token_id)
    assert batch.loss_mask.sum() >= len(episodes)  # every episode has a model token
    with torch.no_grad():
        trainer, _ = completion_logprobs(model, batch)
    mask = batch.loss_mask
    torch.testing.assert_close(batch.sampling_logprobs[mask], trainer[mask], atol=1e-4, rtol=1e-4)
    assert (batch.sampling_logprobs[~mask & batch.completion_mask] == 0).all()


def test_eval_env_reports_success_turns_and_tool_calls(tmp_path):
    import json

    from tests.helpers import cli

    out = tmp_path / "eval"
    args = ["--model", "tiny-llama", "--engine", "hf", "--data", "lookup:30:3", "--split", "test"]
    cli("eval", "--env", "lookup", "--max-turns", "2", "--max-tokens", "1", *args, "--output", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "env:lookup" and summary["n"] == 30
    assert {"success,lookup", "turns", "tool_calls", "tool_errors"} <= set(summary["metrics"])
    assert summary["metrics"]["success,lookup"]["value"] < 0.3  # a random model guesses
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert items[0]["messages"][0] == {"role": "user", "content": items[0]["messages"][0]["content"]}
