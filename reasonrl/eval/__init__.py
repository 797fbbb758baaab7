"""GSM8K-style evaluation that reproduces lm-evaluation-harness, on the rollout engines."""

from reasonrl.eval.metrics import majority, mean_stderr, pass_at_k
from reasonrl.eval.runner import EvalConfig, evaluate
from reasonrl.eval.tasks import TASKS, get_task

__all__ = ["TASKS", "EvalConfig", "evaluate", "get_task", "majority", "mean_stderr", "pass_at_k"]
