"""Hostile programs stay in the sandbox, and cannot forge their score.

Each attack that beat the earlier, in-interpreter sandbox is a test here; they run in
the bubblewrap sandbox, and are skipped (with the reason) on a machine without it.
"""

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from reasonrl.rewards import build_reward
from reasonrl.rewards.checks import InvalidCheck, parse_check
from reasonrl.rewards.program import extract_code
from reasonrl.rewards.sandbox import SandboxUnavailable, isolation, require_sandbox, run_program

ISOLATION = isolation()
pytestmark = pytest.mark.skipif(not ISOLATION["bwrap"], reason=f"no sandbox: {ISOLATION['reason']}")
# fork + exec with no audit event at all: the in-interpreter hook never sees it
SPAWN = (
    "import _posixsubprocess, os, sys\n"
    "def spawn(argv):\n"
    "    _posixsubprocess.fork_exec(argv, [os.fsencode(argv[0])], True, (), None, None, -1, -1, -1,\n"
    "        -1, -1, -1, *os.pipe(), False, False, -1, None, None, None, -1, None, False)\n"
)
needs_cgroup = pytest.mark.skipif(ISOLATION["cgroup"] is None, reason="no writable cgroup on this machine")


def own_sandbox_groups() -> list[Path]:
    """cgroups this test process made for its sandboxes (other processes' are not counted)."""
    found = []
    for base in (Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").glob("*")):
        found += base.rglob(f"reasonrl-{os.getpid()}-*") if base.is_dir() else []
    return found


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    assert own_sandbox_groups() == [], "a sandbox's cgroup (and so its processes) outlived its run"


def test_honest_program_scores_fraction_of_tests():
    result = run_program(
        "def double(x):\n    return 2 * x\n",
        [
            "assert double(2) == 4",
            "assert double(3) == 5",
            "assert double(2) == 2 * 2",
            "assert not double(0)",
        ],
    )
    assert result.passed == [True, False, True, True] and result.fraction == 0.75 and result.status == "ok"


def test_program_reward_reads_fenced_code():
    code = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert extract_code(code).strip().startswith("def add")
    reward = build_reward("program", timeout=5)
    assert reward([code, "def add(a, b): return a - b"], tests=[["assert add(1, 2) == 3"]] * 2) == [1.0, 0.0]


def test_tests_must_end_in_an_assert_the_parent_can_check():
    assert parse_check("x = 3\nassert f(x) == [1, 2]").expected == [1, 2]
    assert parse_check("assert f(3) == 2 * 3").expected_source == "2 * 3"  # computed without the program
    with pytest.raises(InvalidCheck, match="test 0: the last statement must be an assert"):
        parse_check("f(3)")
    result = run_program("def f():\n    return 1\n", ["f()", "assert f() == 1"])
    assert result.passed == [False, True] and "must be an assert" in result.errors[0]


# -- forging the score ---------------------------------------------------------------


def test_pass_lines_written_to_the_result_pipe_do_not_score():
    forge = (
        "import os, json\n"
        "for fd in range(3, 64):\n"
        "    for i in range(4):\n"
        "        try:\n"
        "            record = {'test': i, 'passed': True, 'value': True}\n"
        "            os.write(fd, (json.dumps(record) + '\\n').encode())\n"
        "        except OSError:\n"
        "            pass\n"
        "def add(a, b):\n    return a - b\n"
    )
    result = run_program(forge, ["assert add(1, 2) == 3", "assert add(2, 2) == 4"])
    assert result.passed == [False, False]


def test_an_object_equal_to_everything_does_not_pass():
    cheat = (
        "class Anything(int):\n"
        "    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\n"
        "class Whatever:\n"
        "    def __eq__(self, other):\n        return True\n"
        "def add(a, b):\n    return Anything(0)\n"
        "def mul(a, b):\n    return Whatever()\n"
    )
    result = run_program(cheat, ["assert add(1, 2) == 3", "assert mul(2, 3) == 6"])
    assert result.passed == [False, False]
    assert any("not plain data" in e for e in result.errors)  # Whatever cannot even be sent back


def test_forging_then_timing_out_scores_only_what_provably_passed():
    cheat = (
        "import os, json\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        '        os.write(fd, b\'{"test": 1, "value": true}\\n{"test": 1, "passed": true}\\n\')\n'
        "    except OSError:\n"
        "        pass\n"
        "def add(a, b):\n    return a + b\n"
        "def slow():\n    while True:\n        pass\n"
    )
    result = run_program(
        cheat, ["assert add(1, 2) == 3", "assert slow() == 1", "assert add(1, 1) == 2"], timeout=2
    )
    assert result.status == "timeout" and result.passed == [True, False, False]
    assert result.fraction == pytest.approx(1 / 3)


# -- containment ---------------------------------------------------------------------


def test_infinite_loop_is_stopped_at_the_wall_clock_limit():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", ["assert True"], timeout=1.5)
    assert result.status == "timeout" and result.passed == [False]
    assert time.monotonic() - start < 10


def test_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    os.fork()\n"
    result = run_program(bomb, ["assert True"], timeout=3)
    assert any("os.fork is not allowed" in e for e in result.errors)  # the audit hook's message
    # with the hook out of the way (no audit event), the OS's process cap holds
    raw = SPAWN + (
        "started = 0\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        spawn(['/usr/bin/sleep', '20'])\n"
        "        started += 1\n"
        "    except OSError:\n"
        "        break\n"
    )
    result = run_program(raw, ["assert started < 20"], timeout=5, max_processes=16)
    assert result.passed == [True], result.errors


def test_huge_allocation_fails_inside_the_sandbox_only():
    result = run_program(
        "block = bytearray(8 * 1024**3)\n", ["assert len(block) > 0"], timeout=5, memory_mb=256
    )
    assert result.passed == [False] and any("MemoryError" in e for e in result.errors)
    assert bytearray(10 * 1024**2)  # the trainer can still allocate


@needs_cgroup
def test_memory_is_capped_per_sandbox_not_per_process():
    """Four processes of 200 MB each under a 512 MB sandbox: they cannot all hold their memory."""
    program = SPAWN + (
        "import time\n"
        'code = "b = bytearray(200 * 1024**2)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n'
        "open('/work/held-%s' % __import__('os').getpid(), 'w').write('x')\\n"
        "__import__('time').sleep(3)\"\n"
        "for _ in range(4):\n"
        "    spawn([sys.executable, '-I', '-S', '-c', code])\n"
        "time.sleep(2.5)\n"
        # alive and holding at the end: a child the OOM killer took after it wrote its file is
        # a zombie now (State Z), not a holder
        "def alive(pid):\n"
        "    try:\n"
        "        return 'State:\\tZ' not in open(f'/proc/{pid}/status').read()\n"
        "    except OSError:\n"
        "        return False\n"
        "held = len([f for f in os.listdir('/work') if f.startswith('held-') and alive(f[5:])])\n"
    )
    result = run_program(program, ["assert held <= 2", "assert held >= 1"], timeout=8, memory_mb=512)
    assert result.passed == [True, True], result.errors


def test_disk_in_the_working_folder_is_capped(tmp_path):
    program = (
        "written = 0\n"
        "try:\n"
        "    with open('/work/big', 'wb') as f:\n"
        "        for _ in range(200):\n"
        "            f.write(b'x' * 2**20)\n"
        "            written += 1\n"
        "except OSError as err:\n"
        "    error = str(err)\n"
    )
    result = run_program(program, ["assert written < 64"], timeout=10, disk_mb=32)
    assert result.passed == [True], result.errors


def test_dir_fd_writes_do_not_outlive_the_run():
    marker = f"reasonrl-escape-{uuid.uuid4().hex}"
    program = (
        "import os\n"
        f"for folder in ('/tmp', '/dev/shm', '/work'):\n"
        "    try:\n"
        f"        fd = os.open(folder, os.O_RDONLY)\n"
        f"        os.close(os.open({marker!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n"
        f"        os.mkdir({marker!r} + '-dir', dir_fd=fd)\n"
        "    except OSError:\n"
        "        pass\n"
        "tmp = os.open('/tmp', os.O_RDONLY)\n"
        f"opener = lambda path, flags: os.open({marker!r} + '-op', flags | os.O_CREAT, dir_fd=tmp)\n"
        "open('/tmp/x', 'w', opener=opener).close()\n"
    )
    run_program(program, ["assert True"], timeout=5)
    for folder in ("/tmp", "/dev/shm", "/"):
        assert not [p for p in os.listdir(folder) if p.startswith(marker)], folder


def test_writes_outside_the_working_directory_are_refused(tmp_path):
    target = tmp_path / "owned.txt"
    program = (
        "import os, shutil\nresults = []\n"
        f"for attempt in (lambda: open({str(target)!r}, 'w').write('x'),\n"
        f"                lambda: shutil.copy('/input/program.py', {str(target)!r}),\n"
        "                lambda: open('/usr/owned', 'w'),\n"
        "                lambda: open('inside.txt', 'w').write('ok')):\n"
        "    try:\n        attempt()\n        results.append(True)\n"
        "    except OSError:\n        results.append(False)\n"
    )
    result = run_program(program, ["assert results == [False, False, False, True]"], timeout=5)
    assert result.passed == [True], result.errors
    assert not target.exists()


def test_the_trainers_command_line_and_environment_are_not_readable(monkeypatch):
    secret = "sk-reasonrl-test-" + os.urandom(8).hex()
    monkeypatch.setenv("REASONRL_TEST_SECRET", secret)
    leak = (
        "import os, glob\nfound = ' '.join(f'{k}={v}' for k, v in os.environ.items())\n"
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
        "    try:\n        found += open(path, errors='ignore').read()\n"
        "    except OSError:\n        pass\n"
    )
    tests = [f"assert {secret!r} not in found", "assert 'pytest' not in found", "assert len(pids) <= 3"]
    result = run_program(leak, tests, timeout=5)
    assert result.passed == [True, True, True], result.errors


def test_no_network_tcp_or_unix_socket(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(3)
    port = server.getsockname()[1]
    unix_path = str(tmp_path / "listener.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    unix.listen()
    unix.settimeout(3)
    accepted = []
    for s in (server, unix):
        threading.Thread(target=lambda s=s: accepted.append(_accept(s)), daemon=True).start()
    code = (
        "import _socket\nreached = []\n"
        f"targets = ((_socket.AF_INET, ('127.0.0.1', {port})), (_socket.AF_UNIX, {unix_path!r}))\n"
        "for family, address in targets:\n"
        "    try:\n"
        "        s = _socket.socket(family, _socket.SOCK_STREAM)\n"
        "        s.settimeout(1)\n"
        "        s.connect(address)\n"
        "        reached.append(True)\n"
        "    except Exception as e:\n"
        "        reached.append(False)\n"
    )
    result = run_program(code, ["assert reached == [False, False]"], timeout=5)
    time.sleep(0.5)
    assert result.passed == [True], result.errors
    assert all(a is None for a in accepted)
    server.close()
    unix.close()


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
        "import os\nhome = os.listdir('/root') if os.path.isdir('/root') else []\n"
    )
    result = run_program(code, ["assert 'hf_secret' not in data", "assert '.cache' not in home"], timeout=5)
    assert result.passed == [True, True]


def test_without_bubblewrap_the_reward_refuses_unless_the_weak_mode_is_allowed(monkeypatch):
    import reasonrl.rewards.sandbox as sandbox

    monkeypatch.setattr(sandbox, "sandbox_available", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(SandboxUnavailable, match="allow_weak_sandbox"):
        require_sandbox(False, "program reward")
    require_sandbox(True, "program reward")  # allowed: a warning, no error
    result = sandbox.run_program("def f():\n    return 2\n", ["assert f() == 2"], allow_weak=True)
    assert result.passed == [True] and result.network != "bwrap"
