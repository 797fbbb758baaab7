"""Tools and environments: hand-worked answers, malformed calls, tools that fail."""

import time

import pytest

from reasonrl.envs import make_env
from reasonrl.envs.tools import MAX_RESULT_CHARS, ToolCall, ToolError, calculate, parse_tool_call, run_tool
from reasonrl.rewards.sandbox import sandbox_available


@pytest.mark.parametrize(
    "expression, value",
    [
        ("12 * (3 + 4)", "84"),
        ("2^10", "1024"),
        ("1,000 + 5", "1005"),
        ("7 / 2", "3.5"),
        ("sqrt(16) + -1", "3"),
    ],
)
def test_calculator(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression, problem",
    [
        ("1 / 0", "division by zero"),
        ("__import__('os').system('id')", "is not arithmetic"),
        ("9 ** 9 ** 9", "exponent too large"),
        ("2 +", "cannot parse"),
        ("x + 1", "is not arithmetic"),
    ],
)
def test_calculator_refuses_what_is_not_arithmetic(expression, problem):
    with pytest.raises(ToolError, match=problem):
        calculate(expression)


def test_tool_call_formats():
    json_call = (
        'I will compute. <tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>'
    )
    assert parse_tool_call(json_call, ["calculator"]) == ToolCall("calculator", "2+2", json_call[16:])
    assert parse_tool_call("<calculator>3*4</calculator>", ["calculator"]).argument == "3*4"
    assert parse_tool_call("The answer is 4.\n#### 4", ["calculator"]) is None
    with pytest.raises(ToolError, match="not valid JSON"):
        parse_tool_call('<tool_call>{"name": calculator}</tool_call>', ["calculator"])


def test_a_tool_that_raises_hangs_or_floods_is_contained():
    def broken(_):
        raise RuntimeError("disk on fire")

    def stuck(_):
        time.sleep(30)

    tools = {"broken": broken, "stuck": stuck, "flood": lambda _: "x" * 10_000_000}
    with pytest.raises(ToolError, match="broken failed: RuntimeError: disk on fire"):
        run_tool(tools, ToolCall("broken", "", ""))
    start = time.monotonic()
    with pytest.raises(ToolError, match="no answer within 0.5 s"):
        run_tool(tools, ToolCall("stuck", "", ""), time_limit=0.5)
    assert time.monotonic() - start < 5
    reply = run_tool(tools, ToolCall("flood", "", ""))
    assert len(reply) < MAX_RESULT_CHARS + 100 and "10000000 characters in all" in reply
    with pytest.raises(ToolError, match="unknown tool 'search'; the tools are: broken"):
        run_tool(tools, ToolCall("search", "", ""))


def test_tool_env_runs_calls_and_scores_the_final_answer():
    env = make_env("tool")
    state = env.reset({"question": "What is 12 * 7?", "answer": "84"})
    assert state.messages[0]["role"] == "system" and "calculator" in state.messages[0]["content"]
    step = env.step(state, "<calculator>12*7</calculator>")
    assert (step.observation, step.role, step.done, state.tool_calls) == ("84", "tool", False, 1)
    step = env.step(
        state, '<tool_call>{"name": "calculator", "arguments": {"expression": "12*"}}</tool_call>'
    )
    assert step.observation.startswith("error: calculator: cannot parse") and state.tool_errors == 1
    assert env.step(state, "12 times 7 is 84.\n#### 84").done
    state.messages.append({"role": "assistant", "content": "12 times 7 is 84.\n#### 84"})
    assert env.score(state) == 1.0 and state.info["success"]


def test_feedback_env_says_what_is_wrong_and_scores_the_retry():
    env = make_env("feedback", max_turns=3, turn_penalty=0.25)
    state = env.reset({"question": "What is 6 * 6?", "answer": "36"})
    state.turn = 1
    step = env.step(state, "#### 35")
    assert step.observation.startswith("The answer 35 is wrong") and not step.done
    state.turn = 2
    assert env.step(state, "Sorry: #### 36").done
    assert env.score(state) == 0.75  # right on the second turn


def test_unknown_environment_or_option_names_the_choices():
    with pytest.raises(ValueError, match="unknown environment 'tools'; available: feedback, lookup, tool"):
        make_env("tools")
    with pytest.raises(ValueError, match=r"no option\(s\) \['tool'\]; its options: call_bonus, demo"):
        make_env("tool", tool=["calculator"])
    with pytest.raises(ValueError, match=r"unknown tool\(s\) \['search'\]"):
        make_env("tool", tools=["search"])


@pytest.mark.skipif(sandbox_available() is not None, reason="no bubblewrap sandbox here")
def test_python_tool_runs_in_the_sandbox():
    env = make_env("tool", tools=["calculator", "python"])
    state = env.reset({"question": "?", "answer": "42"})
    code = "import os\\nprint(6 * 7, os.getuid())"
    call = f'<tool_call>{{"name": "python", "arguments": {{"code": "{code}"}}}}</tool_call>'
    assert env.step(state, call).observation == "42 65534"  # the sandbox's unprivileged user
    looping = '<tool_call>{"name": "python", "arguments": {"code": "while True: pass"}}</tool_call>'
    assert "timed out" in env.step(state, looping).observation


def test_tool_env_pays_the_call_bonus_once_and_shows_worked_episodes():
    env = make_env("tool", call_bonus=0.2)
    state = env.reset({"question": "Ann has 6 cups. She buys 7 more. How many now?", "answer": "13"})
    # the worked episodes come before the question, as earlier turns
    roles = [m["role"] for m in state.messages[:6]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert state.messages[-1]["content"].startswith("Ann has 6 cups")
    calls = (("<calculator>6 + 7 = 13.</calculator>", 0.2), ("<calculator>6+7</calculator>", 0.0))
    for text, reward in calls:
        state.messages.append({"role": "assistant", "content": text})
        step = env.step(state, text)
        state.turn_rewards.append(step.reward)
        assert (step.observation, step.reward) == ("13", reward)  # an equation's left side is the call
    state.messages.append({"role": "assistant", "content": "#### 13"})
    assert env.step(state, "#### 13").done
    assert env.score(state) == 1.2 and state.info["success"]
