"""The weak sandbox: containment inside the untrusted interpreter (an audit hook), for
machines without bubblewrap, and only when a recipe asks for it (``allow_weak_sandbox``).

Known holes, which ``reasonrl.rewards.sandbox`` (bubblewrap) closes: ``dir_fd`` writes,
an audit hook that the program can find through ``gc`` and rewrite, a memory limit per
process rather than per sandbox, no disk cap, and results reported by the program's own
interpreter (a program written to tamper with the harness can fake them).

Each run gets a separate process (``python -I -S``, so no site-packages and no
``PYTHON*`` variables), started without the parent's environment, in a new session
and a throwaway working directory. Inside it (see ``_sandbox_child.py``):

* no network: a fresh network namespace (no interfaces), plus an audit hook that
  refuses sockets;
* limits: address space (memory), CPU seconds, file size, open files, processes;
  the parent kills the whole process group at the wall-clock limit;
* a throwaway uid when the parent is root, so the process limit applies, the
  parent's ``/proc/PID/environ`` is unreadable, and every leftover process can be
  found and killed afterwards;
* an audit hook refusing new processes, ``ctypes``, signals, and any write,
  rename or delete outside the working directory.

Containment, not honesty: like the HumanEval/MBPP harnesses, tests run in the
program's own interpreter, so a program written to tamper with the harness could
fake its own results. It cannot reach the trainer, the network or the disk.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("_sandbox_child.py")
MAX_RESULT_BYTES = 256 * 1024
_uids = itertools.count()


@dataclass
class SandboxResult:
    passed: list[bool]  # one per test
    status: str  # "ok", "timeout", or "crashed"
    network: str = "unknown"  # the isolation the child achieved
    errors: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


def _throwaway_uid() -> int:
    return 200_000 + (os.getpid() % 1000) * 1000 + next(_uids) % 1000


def _kill_uid(uid: int) -> None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        os.kill(int(proc.name), signal.SIGKILL)
                    break
        except (OSError, ValueError):
            continue


def run_program_weak(
    code: str, tests: list[str], timeout: float = 5.0, memory_mb: int = 512
) -> SandboxResult:
    """Run ``code`` then each test (Python statements, e.g. ``assert f(2) == 4``)."""
    workdir = Path(tempfile.mkdtemp(prefix="reasonrl-sandbox-"))
    root = os.getuid() == 0
    uid = _throwaway_uid() if root else 0
    read_fd, write_fd = os.pipe()
    pipe_handed_over = False
    try:
        (workdir / "program.py").write_text(code)
        (workdir / "tests.json").write_text(json.dumps(tests))
        if root:
            os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)
        command = [
            sys.executable,
            "-I",
            "-S",
            "-B",
            str(CHILD),
            str(workdir),
            str(write_fd),
            str(uid),
            str(memory_mb * 2**20),
            str(max(1, int(timeout) + 1)),
        ]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        pipe_handed_over = True  # run_contained closes both ends, whatever happens
        data, timed_out = run_contained(command, read_fd, write_fd, timeout, env, cwd=workdir)
    finally:
        if not pipe_handed_over:
            os.close(read_fd)
            os.close(write_fd)
        if root:
            _kill_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)
    return _parse(data, len(tests), timed_out)


def run_contained(
    command, read_fd: int, write_fd: int, timeout: float, env: dict, cwd=None
) -> tuple[bytes, bool]:
    """Start ``command`` in its own session with the result pipe's write end, read the pipe
    until it closes or ``timeout`` passes, then kill the whole process group. Both pipe ends
    are closed on return. (The data read, whether the time ran out.)"""
    proc = None
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(write_fd)
        write_fd = None
        return _read_until(read_fd, time.monotonic() + timeout)
    finally:
        if write_fd is not None:
            os.close(write_fd)
        os.close(read_fd)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # under bwrap: its PID namespace dies too
            except ProcessLookupError:
                pass
            proc.wait()


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks), False
        size += len(chunk)
        if size > MAX_RESULT_BYTES:
            return b"".join(chunks), False
        chunks.append(chunk)


def _parse(data: bytes, n_tests: int, timed_out: bool) -> SandboxResult:
    passed, errors, network, seen = [False] * n_tests, [], "unknown", set()
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if "network" in record:
            network = str(record["network"])
        elif "program_error" in record:
            errors.append(str(record["program_error"]))
        elif (
            isinstance(record.get("test"), int)
            and 0 <= record["test"] < n_tests
            and record["test"] not in seen
        ):
            seen.add(record["test"])
            passed[record["test"]] = record.get("passed") is True
            if "error" in record:
                errors.append(str(record["error"]))
    status = "timeout" if timed_out else ("ok" if len(seen) == n_tests else "crashed")
    return SandboxResult(passed=passed, status=status, network=network, errors=errors)
