"""The built-in environments: tool use, answer-check-and-retry, and a toy for tests.

tool       tools described in the system prompt; the model calls them, reads the
           results (tool messages) and answers; scored on the final answer
feedback   the model answers, a verifier checks, a wrong answer comes back with
           feedback ("the answer 36 is wrong") until max_turns
lookup     a toy for tiny models: the prompt hides a digit, the one-character tool
           call ``?`` reveals it; only an agent that calls the tool can answer
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reasonrl.envs.base import EnvState, Step
from reasonrl.envs.tools import DESCRIPTIONS, ToolError, make_tools, parse_tool_call, run_tool
from reasonrl.rewards.gsm8k import FLEXIBLE_PATTERN, INVALID, STRICT_PATTERN, extract, is_correct
from reasonrl.rewards.procedural import Checkers, read_answer

TOOL_SYSTEM = (
    'You can use tools. To call one, write <tool_call>{{"name": NAME, "arguments": '
    '{{"expression": ...}}}}</tool_call> (or the short form <calculator>EXPRESSION</calculator>) '
    "and stop; its result comes back in the next message. Tools:\n{tools}\n"
    "When you know the answer, give it on its own line as '#### <number>'."
)


# Worked episodes shown before the question, as earlier turns of the conversation: a small
# model copies a format from turns it has seen far more readily than from a description
# (SmolLM2-135M made 0 calls in 48 episodes with the description alone). Their names,
# items and answers are not the synthetic generator's, and the score checks the answer,
# so copying a demonstration pays nothing.
DEMONSTRATIONS = {
    "calculator": [
        (
            "Sam has 12 pens. Sam buys 7 more pens. How many pens does Sam have now?",
            "<calculator>12 + 7</calculator>",
            "19",
            "#### 19",
        ),
        (
            "Nora has 40 pebbles. Nora shares the pebbles equally among 4 jars and keeps one jar. "
            "Then Nora triples the number of pebbles. How many pebbles does Nora have now?",
            "<calculator>40 / 4 * 3</calculator>",
            "30",
            "#### 30",
        ),
    ],
    "python": [
        (
            "What is the sum of the squares of the numbers from 1 to 10?",
            "<python>print(sum(k * k for k in range(1, 11)))</python>",
            "385",
            "#### 385",
        ),
    ],
}


def demonstration_turns(tools: list[str], n: int) -> list[dict]:
    """Up to ``n`` worked episodes for ``tools``: user, assistant (the call), tool, assistant."""
    shown = [d for t in tools for d in DEMONSTRATIONS.get(t, [])][:n]
    roles = ("user", "assistant", "tool", "assistant")
    return [{"role": r, "content": c} for turns in shown for r, c in zip(roles, turns, strict=True)]


def final_answer(text: str) -> str | None:
    """The answer of a reply: after '####' when there is one, else its last number."""
    for pattern, which in ((STRICT_PATTERN, 0), (FLEXIBLE_PATTERN, -1)):
        found = extract(text, pattern, which)
        if found != INVALID:
            return found
    return None


_CHECKERS = Checkers()


def check_answer(text: str, row: dict) -> tuple[str | None, bool]:
    """(the reply's answer, whether it is right): a reasoning-gym row (``meta`` from a
    ``reasoning_gym:`` source) by its task's checker (full marks), else as a number."""
    meta = row.get("meta")
    if meta and "task" in meta:
        answer = read_answer(text)
        return answer, answer is not None and _CHECKERS.score(answer, meta) >= 1.0
    answer = final_answer(text)
    return answer, answer is not None and is_correct(answer, row["answer"])


@dataclass
class ToolEnv:
    """Arithmetic and word problems with tools (calculator, python)."""

    tools: list[str] = field(default_factory=lambda: ["calculator"])
    max_turns: int = 4
    tool_time_limit: float = 30.0
    tool_options: dict = field(default_factory=dict)
    demonstrations: int = 2  # worked episodes shown before the question (0: the description only)
    # a shaping reward for the episode's first call that runs: a model that never calls gets
    # no signal to start from; paid once, so calling more cannot farm it, and far below a
    # right answer's 1.0, so a call without the answer is never the better deal
    call_bonus: float = 0.0
    name: str = "tool"

    def __post_init__(self):
        self.callable = make_tools(self.tools, **self.tool_options)
        self.stop = ("</tool_call>", *(f"</{t}>" for t in self.tools))  # a turn ends with its call

    def reset(self, row: dict) -> EnvState:
        system = TOOL_SYSTEM.format(tools="\n".join(f"- {DESCRIPTIONS[t]}" for t in self.tools))
        messages = [
            {"role": "system", "content": system},
            *demonstration_turns(self.tools, self.demonstrations),
            {"role": "user", "content": row["question"]},
        ]
        return EnvState(row=row, messages=messages)

    def step(self, state: EnvState, text: str) -> Step:
        try:
            call = parse_tool_call(text, self.tools)
        except ToolError as err:  # a malformed call: say what is wrong, go on
            state.tool_calls += 1
            state.tool_errors += 1
            return Step(observation=f"error: {err}", role="tool")
        if call is None:
            return Step(done=True)
        state.tool_calls += 1
        try:
            result = run_tool(self.callable, call, self.tool_time_limit)
        except ToolError as err:
            state.tool_errors += 1
            return Step(observation=f"error: {err}", role="tool")
        first = state.tool_calls - state.tool_errors == 1
        return Step(observation=result, role="tool", reward=self.call_bonus if first else 0.0)

    def score(self, state: EnvState) -> float:
        replies = [m["content"] for m in state.messages if m["role"] == "assistant"]
        state.info["success"] = bool(replies) and check_answer(replies[-1], state.row)[1]
        return float(state.info["success"]) + sum(state.turn_rewards)


@dataclass
class FeedbackEnv:
    """Answer, be told when it is wrong, try again (up to max_turns)."""

    max_turns: int = 3
    turn_penalty: float = 0.0  # taken off the reward for each turn after the first
    instruction: str = "Solve the problem. End with the final answer on its own line as '#### <number>'."
    name: str = "feedback"

    def reset(self, row: dict) -> EnvState:
        return EnvState(
            row=row, messages=[{"role": "user", "content": f"{row['question']}\n{self.instruction}"}]
        )

    def step(self, state: EnvState, text: str) -> Step:
        answer, state.info["correct"] = check_answer(text, state.row)
        if state.info["correct"] or state.turn >= self.max_turns:
            return Step(done=True)
        said = f"The answer {answer} is wrong." if answer is not None else "I found no final answer."
        return Step(observation=f"{said} Check your work and try again.", role="user")

    def score(self, state: EnvState) -> float:
        state.info["success"] = bool(state.info.get("correct"))
        if not state.info["success"]:
            return 0.0
        return max(0.0, 1.0 - self.turn_penalty * (state.turn - 1))


@dataclass
class LookupEnv:
    """A toy a tiny character model can learn in CI: ``k3:`` hides a digit; writing ``?``
    (the tool call) brings it back (``7``); the next character is the answer. Without the
    call the answer is a guess (1 in 10 at best). Reward: 1 for the right digit, plus
    ``call_bonus`` for a call (a shaping reward, per turn)."""

    max_turns: int = 2
    call_bonus: float = 0.1
    name: str = "lookup"

    def reset(self, row: dict) -> EnvState:
        return EnvState(row=row, messages=[{"role": "user", "content": row["question"]}])

    def step(self, state: EnvState, text: str) -> Step:
        if text.startswith("?") and state.tool_calls == 0:
            state.tool_calls += 1
            return Step(observation=str(state.row["answer"]), role="tool", reward=self.call_bonus)
        return Step(done=True)

    def score(self, state: EnvState) -> float:
        last = [m["content"] for m in state.messages if m["role"] == "assistant"][-1]
        state.info["success"] = last[:1] == str(state.row["answer"])
        return float(state.info["success"]) + sum(state.turn_rewards)

    plain = True  # the prompt is raw text, observations are appended as text


ENVIRONMENTS = {"tool": ToolEnv, "feedback": FeedbackEnv, "lookup": LookupEnv}
