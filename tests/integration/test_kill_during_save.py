"""A run killed at any point of a checkpoint save, re-save or rotation resumes from an
intact checkpoint to the weights and metrics of an uninterrupted run.

The worker (``checkpoint_worker.py``) trains on the real Run and saves every step, two
checkpoints kept, so each save after the second also rotates one out. It is killed
(SIGKILL) at named points inside the save sequence (``REASONRL_CRASH_AT``, including
between the atomic swap of a re-save and the removal of the old folder) and at random
instants, then resumed with --resume; every resume must end bit-identical to the run
that was never killed.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from tests.helpers import ROOT, metrics

pytestmark = pytest.mark.slow  # 21 kills and resumes, about two minutes

STEPS = 8
FIRST_PASS = ["files:2", "files:5", "manifest:3", "manifest:20", "written:1", "written:4",
              "renamed:3", "renamed:7", "discard:1", "discard:4"]  # fmt: skip
RE_SAVE = ["files:1", "manifest:2", "written:1", "exchanged:1", "renamed:1"]
RANDOM_KILLS = 6


def worker(out, *flags, crash=None, wait=True):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env.pop("REASONRL_CRASH_AT", None)
    if crash:
        env["REASONRL_CRASH_AT"] = crash
    command = [sys.executable, "-m", "tests.integration.checkpoint_worker", str(out), str(STEPS), *flags]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not wait:
        return proc
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err.decode()


def final_state(out):
    weights = load_file(out / "checkpoints" / f"checkpoint-{STEPS:06d}" / "weights.safetensors")
    return weights, metrics(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    code, err = worker(out)
    assert code == 0, err
    return out, final_state(out)


def assert_same(out, reference):
    weights, rows = final_state(out)
    ref_weights, ref_rows = reference[1]
    assert rows == ref_rows
    assert weights.keys() == ref_weights.keys()
    assert all((weights[k] == ref_weights[k]).all() for k in weights)


@pytest.mark.parametrize("crash", FIRST_PASS)
def test_kill_inside_a_save_or_rotation_then_resume(tmp_path, reference, crash):
    out = tmp_path / "run"
    code, _ = worker(out, crash=crash)
    assert code == -signal.SIGKILL, "the crash point was never reached"
    code, err = worker(out, "--resume")
    assert code == 0, err
    assert_same(out, reference)


@pytest.mark.parametrize("crash", RE_SAVE)
def test_kill_inside_a_re_save_then_resume(tmp_path, reference, crash):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    code, _ = worker(out, "--resume", crash=crash)  # a finished run, re-run: it saves step 8 again
    assert code == -signal.SIGKILL, "the crash point was never reached"
    listed = sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("."))
    assert listed[-1] == f"checkpoint-{STEPS:06d}"  # never gone, never partial
    code, err = worker(out, "--resume")
    assert code == 0, err
    assert_same(out, reference)


@pytest.mark.parametrize("seed", range(RANDOM_KILLS))
def test_kill_at_a_random_instant_then_resume(tmp_path, reference, seed):
    out = tmp_path / "run"
    proc = worker(out, wait=False)
    time.sleep(random.Random(seed).uniform(1.0, 3.0))  # start-up takes ~2 s, the steps ~0.5 s
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    code, err = worker(out, "--resume")
    assert code == 0, err
    assert_same(out, reference)
