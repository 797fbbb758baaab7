"""Hostile programs stay in the sandbox: the trainer's process, disk, network and secrets are safe."""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from reasonrl.rewards import build_reward
from reasonrl.rewards.program import extract_code
from reasonrl.rewards.sandbox import _throwaway_uid, run_program


def sandbox_processes():
    """Processes running as one of the throwaway uids this test process hands out.

    ``run_program`` draws uids from a block of 1,000 keyed by the caller's pid, so another
    program's sandboxes on the same machine (a second test suite, a training run) have
    other uids and are not counted here.
    """
    ours = range(_throwaway_uid_block(), _throwaway_uid_block() + 1000)
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                uid = int((proc / "status").read_text().split("Uid:")[1].split()[0])
            except (OSError, IndexError, ValueError):
                continue
            if uid in ours:
                pids.add(int(proc.name))
    return pids


def _throwaway_uid_block() -> int:
    return _throwaway_uid() // 1000 * 1000


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    assert sandbox_processes() == set(), "a sandboxed process outlived its run"


def test_honest_program_scores_fraction_of_tests():
    result = run_program(
        "def double(x):\n    return 2 * x\n", ["assert double(2) == 4", "assert double(3) == 5"]
    )
    assert result.passed == [True, False] and result.fraction == 0.5 and result.status == "ok"


def test_program_reward_reads_fenced_code():
    code = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert extract_code(code).strip().startswith("def add")
    reward = build_reward("program", timeout=5)
    assert reward([code, "def add(a, b): return a - b"], tests=[["assert add(1, 2) == 3"]] * 2) == [1.0, 0.0]


def test_infinite_loop_is_stopped_at_the_wall_clock_limit():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", ["assert True"], timeout=1.5)
    assert result.status == "timeout" and result.passed == [False]
    assert time.monotonic() - start < 10


def test_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    os.fork()\n"
    result = run_program(bomb, ["assert True"], timeout=3)
    assert any("os.fork is not allowed" in e for e in result.errors)
    # threads bypass the fork hook but count against the process limit
    threads = (
        "import threading, time\nstarted = 0\n"
        "try:\n    for _ in range(10_000):\n        threading.Thread(target=time.sleep, args=(30,)).start()\n"
        "        started += 1\nexcept RuntimeError:\n    pass\n"
    )
    result = run_program(threads, ["assert started < 100"], timeout=3)
    assert result.passed == [True]


def test_huge_allocation_fails_inside_the_sandbox_only():
    result = run_program(
        "block = bytearray(8 * 1024**3)\n", ["assert len(block) > 0"], timeout=5, memory_mb=256
    )
    assert result.passed == [False] and any("MemoryError" in e for e in result.errors)
    assert bytearray(10 * 1024**2)  # the trainer can still allocate


def test_writes_outside_the_working_directory_are_refused(tmp_path):
    target = tmp_path / "owned.txt"
    tries = [
        f"open({str(target)!r}, 'w').write('x')",
        f"import os; os.rename('program.py', {str(target)!r})",
        f"import shutil; shutil.copy('program.py', {str(target)!r})",
        "open('inside.txt', 'w').write('ok')",
    ]
    result = run_program("", [t for t in tries], timeout=5)
    assert result.passed == [False, False, False, True]
    assert not target.exists()


def test_environment_secrets_are_not_readable(monkeypatch):
    secret = "sk-reasonrl-test-" + os.urandom(8).hex()
    monkeypatch.setenv("REASONRL_TEST_SECRET", secret)
    leak = (
        "import os, glob\nfound = ' '.join(f'{k}={v}' for k, v in os.environ.items())\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n        found += open(path, errors='ignore').read()\n"
        "    except OSError:\n        pass\n"
    )
    result = run_program(leak, [f"assert {secret!r} not in found", "assert 'PATH' in found"], timeout=5)
    assert result.passed == [True, True]


def test_no_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    code = (
        "import socket\nreached = False\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    reached = True\n"
        "except Exception as e:\n    error = repr(e)\n"
    )
    result = run_program(code, ["assert reached"], timeout=5)
    assert result.passed == [False] and result.network in ("netns", "userns+netns")
    time.sleep(0.5)
    assert accepted in ([], [None])
    server.close()


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_exit_and_exceptions_do_not_end_the_run():
    result = run_program("raise SystemExit(0)\n", ["assert 1 == 1"], timeout=5)
    assert result.passed == [True] and "SystemExit" in result.errors[0]


def test_private_files_of_the_trainer_are_not_readable(tmp_path):
    secret_file = tmp_path / "token"
    secret_file.write_text("hf_secret_token")
    secret_file.chmod(0o600)
    code = (
        f"try:\n    data = open({str(secret_file)!r}).read()\nexcept OSError as e:\n    data = ''\n"
        "import os\nhome = os.listdir(os.path.expanduser('~root')) if os.path.isdir('/root') else []\n"
    )
    result = run_program(code, ["assert 'hf_secret' not in data", "assert '.cache' not in home"], timeout=5)
    assert result.passed == [True, True]
