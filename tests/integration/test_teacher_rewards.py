"""Teacher-model rewards on a real (tiny) teacher, against direct computation."""

import math

import torch

from reasonrl.models import load
from reasonrl.rewards import build_reward


def test_teacher_logprob_is_mean_token_logprob():
    reward = build_reward("teacher_logprob", model="tiny-llama", batch_size=2)
    prompts, completions = ["1+1=", "Q: 2+2?\nA:", "x"], ["2", " 4 because 2+2=4", ""]
    scores = reward(completions, prompts=prompts)
    model, tok = load("tiny-llama")
    for prompt, completion, score in zip(prompts[:2], completions[:2], scores, strict=False):
        p, c = tok(prompt).input_ids, tok(completion).input_ids
        with torch.no_grad():
            logp = model(torch.tensor([p + c])).logits[0].log_softmax(-1)
        expected = sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(c)) / len(c)
        assert math.isclose(score, expected, rel_tol=1e-4)
    assert scores[2] == -10.0  # an empty completion is not free


def test_judge_returns_normalised_p_yes():
    reward = build_reward("judge", model="tiny-llama")
    scores = reward(["4", "5"], prompts=["p", "p"], question=["2+2?", "2+2?"])
    assert all(0.0 < s < 1.0 for s in scores) and scores[0] != scores[1]
    model, tok = load("tiny-llama")
    text = tok.apply_chat_template(
        [
            {
                "role": "user",
                "content": "Question:\n2+2?\n\nProposed answer:\n4\n\n"
                "Is the proposed answer correct? Answer yes or no.",
            }
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    with torch.no_grad():
        probs = model(torch.tensor([tok(text).input_ids])).logits[0, -1].softmax(-1)
    yes = sum(float(probs[tok(w).input_ids[0]]) for w in {"Y", "y"})
    no = sum(float(probs[tok(w).input_ids[0]]) for w in {"N", "n"})
    assert math.isclose(scores[0], yes / (yes + no), rel_tol=1e-4)
