"""Datasets: GSM8K, synthetic GSM8K-style problems, prompt templates."""

from reasonrl.data.gsm8k import DataError, Problem, load_gsm8k, parse_answer, strip_calculator
from reasonrl.data.sources import load_problems
from reasonrl.data.synthetic import generate, write_jsonl

__all__ = [
    "DataError",
    "Problem",
    "generate",
    "load_gsm8k",
    "load_problems",
    "parse_answer",
    "strip_calculator",
    "write_jsonl",
]
