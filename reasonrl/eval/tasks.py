"""GSM8K-style evaluation tasks, prompt for prompt as lm-evaluation-harness builds them.

gsm8k               k-shot "Question: ...\\nAnswer: <worked answer>\\n\\n" exemplars from the train
                    split (lm-eval's sampler: one Random(seed) drawing k per test item, in order),
                    then "Question: <q>\\nAnswer:"; greedy; stops at "Question:"
gsm8k_cot_zeroshot  "Q: <q>\\nA: Let's think step by step."; strict answer "The answer is N."
chat                the model's chat template, asked to end with "#### N"
drill               the bare question ("3+4="), as recipes' ``drill`` template shows it to tiny
                    models; strict answer "#### N"
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from reasonrl.rewards.gsm8k import COT_STRICT_PATTERN, STRICT_PATTERN

CHAT_INSTRUCTION = (
    "Solve the problem step by step. Then write the final answer on the last line in the form:\n"
    "#### <number>\nFor example:\n#### 42"
)


@dataclass(frozen=True)
class EvalTask:
    name: str
    stop: tuple[str, ...]  # lm-eval's `until`
    strict_pattern: str
    default_fewshot: int

    def prompts(
        self,
        records: list[dict],
        fewshot: list[dict],
        num_fewshot: int,
        seed: int = 1234,
        instruction: str = CHAT_INSTRUCTION,
    ) -> list:
        if num_fewshot and not fewshot:
            raise ValueError(
                f"{self.name}: {num_fewshot}-shot prompts need few-shot examples (a train split)"
            )
        rnd = random.Random(seed)
        out = []
        for record in records:
            shots = rnd.sample(fewshot, num_fewshot) if num_fewshot else []
            if self.name == "chat":
                out.append([{"role": "user", "content": f"{record['question']}\n{instruction}"}])
            elif self.name == "drill":
                out.append(record["question"])
            elif self.name == "gsm8k_cot_zeroshot":
                out.append(f"Q: {record['question']}\nA: Let's think step by step.")
            else:
                context = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
                out.append(f"{context}Question: {record['question']}\nAnswer:")
        return out


TASKS = {
    "gsm8k": EvalTask("gsm8k", ("Question:", "</s>", "<|im_end|>"), STRICT_PATTERN, 5),
    "gsm8k_cot_zeroshot": EvalTask("gsm8k_cot_zeroshot", ("Q:", "</s>", "<|im_end|>"), COT_STRICT_PATTERN, 0),
    "chat": EvalTask("chat", (), STRICT_PATTERN, 0),
    "drill": EvalTask("drill", (), STRICT_PATTERN, 0),
}


def get_task(name: str) -> EvalTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {sorted(TASKS)}")
    return TASKS[name]
