"""Run an untrusted Python program against test cases, contained by the OS.

Containment does not depend on the untrusted interpreter's cooperation. Each run is a
bubblewrap (``bwrap``) sandbox:

* new user, mount, PID, IPC, UTS, cgroup and network namespaces (no interfaces: no
  TCP, and abstract or file-path UNIX sockets reach nothing outside); no capabilities;
* a filesystem of read-only /usr and the interpreter's own tree, a read-only input
  folder, and private, size-capped tmpfs for /work (the working folder), /tmp and
  /dev/shm; a fresh /proc that shows only the sandbox's processes (the trainer's
  command line and environment are not there); an empty environment;
* an aggregate cap per sandbox: a memory and a process cgroup where the host lets us
  make one (cgroup v1 or v2), else per-process rlimits (documented: then memory is
  capped per process, ``max_processes`` x ``memory_mb`` in all); disk by the tmpfs sizes;
* the wall-clock limit kills the whole PID namespace (its init dies, so every process
  in it dies); ``--die-with-parent`` does the same if the trainer itself dies.

Inside, ``_sandbox_harness.py`` sets rlimits and a second-layer audit hook, runs the
program, then each test's expression, and sends back *values*; this process compares
them with expected results that never enter the sandbox (``reasonrl.rewards.checks``),
so the score cannot be forged from inside, and a run that times out or crashes scores
only the tests whose values came back right.

Without bubblewrap (``scripts/system-deps.sh`` installs it), ``run_program`` refuses
unless the caller allows the weak, in-interpreter sandbox (``allow_weak=True``; the
recipe key ``allow_weak_sandbox``), which it then says once in the log.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from reasonrl.rewards.checks import Check, InvalidCheck, holds, parse_check
from reasonrl.rewards.sandbox_weak import SandboxResult, run_contained, run_program_weak

log = logging.getLogger("reasonrl")

HARNESS = Path(__file__).with_name("_sandbox_harness.py")
_runs = itertools.count()

__all__ = ["SandboxResult", "SandboxUnavailable", "run_program", "run_script", "sandbox_available"]


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot make namespaces here, and the weak mode was not allowed."""


@functools.cache
def sandbox_available() -> str | None:
    """None when bubblewrap sandboxes work on this machine, else the reason they do not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed: run `make system-deps` (apt-get install bubblewrap)"
    probe = subprocess.run(
        [bwrap, *_namespace_args(), *_system_args(), "/usr/bin/true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"bubblewrap cannot make a sandbox here: {probe.stderr.strip()[:300]}"
    return None


def require_sandbox(allow_weak: bool, what: str) -> None:
    """Fail early (at reward or tool construction) when no sandbox can run ``what``."""
    reason = sandbox_available()
    if reason is None:
        return
    if not allow_weak:
        raise SandboxUnavailable(
            f"{what}: {reason}; or set allow_weak_sandbox: true to run it in the weaker "
            "in-interpreter sandbox (reasonrl.rewards.sandbox_weak lists its holes)"
        )
    _warn_weak(what, reason)


@functools.cache
def _warn_weak(what: str, reason: str) -> None:
    log.warning("%s runs in the WEAK sandbox (allow_weak_sandbox): %s", what, reason)


def run_program(
    code: str,
    tests: list[str],
    timeout: float = 5.0,
    memory_mb: int = 512,
    max_processes: int = 16,
    disk_mb: int = 64,
    allow_weak: bool = False,
) -> SandboxResult:
    """Run ``code``, then check each test (Python source ending in an ``assert``).

    Returns which tests passed, as this process judged from the values the sandbox
    sent back, and the run's status ("ok", "timeout" or "crashed").
    """
    if sandbox_available() is not None:
        require_sandbox(allow_weak, "run_program")
        return run_program_weak(code, tests, timeout, memory_mb)
    checks, errors = [], []
    for i, test in enumerate(tests):
        try:
            checks.append(parse_check(test, i))
        except InvalidCheck as err:
            checks.append(None)
            errors.append(str(err))
    pending = [c for c in checks if c is not None and not c.literal]
    if pending:  # right sides that are not literals: evaluated in a run without the program
        specs = [Check("", c.expected_source, "==", None) for c in pending]
        side = _run("", specs, timeout, memory_mb, max_processes, disk_mb)
        for check, value, err in zip(pending, side.values, side.errors, strict=True):
            if err is None:
                check.expected = value
            else:
                errors.append(f"expected value {check.expected_source!r} cannot be computed: {err}")
    live = [c for c in checks if c is not None and c.literal]
    out = _run(code, live, timeout, memory_mb, max_processes, disk_mb)
    by_check = dict(zip(map(id, live), zip(out.values, out.errors, strict=True), strict=True))
    passed = []
    for check in checks:
        if check is None or id(check) not in by_check:
            passed.append(False)
            continue
        value, err = by_check[id(check)]
        passed.append(err is None and value is not _MISSING and holds(check, value))
        if err is not None:
            errors.append(err)
    return SandboxResult(
        passed=passed, status=out.status, network="bwrap", errors=out.program_errors + errors
    )


_MISSING = object()


def run_script(code: str, timeout: float = 5.0, memory_mb: int = 512, allow_weak: bool = False) -> str:
    """Run ``code`` in the sandbox and return what it printed (and its error, if it raised):
    the Python tool of the multi-turn environments."""
    if sandbox_available() is not None:
        require_sandbox(allow_weak, "run_script")
        raise SandboxUnavailable("the python tool needs bubblewrap (no weak mode for tools yet)")
    out = _run(code, [], timeout, memory_mb, 16, 64)
    errors = out.program_errors + ([f"timed out after {timeout:g} s"] if out.status == "timeout" else [])
    text = "\n".join([out.printed.rstrip(), *errors]).strip()
    return text or "(no output)"


@dataclass
class _RunOutput:
    values: list  # per check: the value sent back, or _MISSING
    program_errors: list[str]
    status: str  # "ok", "timeout", "crashed"
    errors: list  # per check: None or what went wrong
    printed: str  # what the program printed (first 64 KiB)


def _namespace_args() -> list[str]:
    return ["--unshare-all", "--die-with-parent", "--new-session", "--uid", "65534", "--gid", "65534"]


def _system_args() -> list[str]:
    """Read-only /usr, and /bin, /lib, /lib64, /sbin as the host has them (links or folders)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/", link)
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            args += ["--ro-bind", str(target), f"/{link}"]
    return args


def _bwrap_command(inputs: Path, memory_mb: int, cpu: int, max_processes: int, disk_mb: int) -> list[str]:
    prefix = os.path.realpath(sys.base_prefix)
    python = os.path.realpath(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable)
    if not python.startswith(prefix):
        python = os.path.join(prefix, "bin", os.path.basename(python))
    tmpfs = lambda mb, path: ["--size", str(mb * 2**20), "--tmpfs", path]  # noqa: E731
    args = ["bwrap", *_namespace_args(), *_system_args()]
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    args += ["--ro-bind", str(inputs), "/input", "--proc", "/proc", "--dev", "/dev"]
    args += tmpfs(disk_mb, "/work") + tmpfs(16, "/tmp") + tmpfs(16, "/dev/shm")
    args += ["--chdir", "/work", "--clearenv"]
    for key, value in (("PATH", "/usr/bin:/bin"), ("HOME", "/work"), ("TMPDIR", "/tmp"), ("LANG", "C.UTF-8")):
        args += ["--setenv", key, value]
    args += [python, "-I", "-S", "-B", "/input/harness.py", "/input"]
    return args + [str(memory_mb * 2**20), str(cpu), str(max_processes)]


def _run(code: str, checks: list[Check], timeout, memory_mb, max_processes, disk_mb) -> _RunOutput:
    """One sandbox run of ``code`` and ``checks``."""
    inputs = Path(tempfile.mkdtemp(prefix="reasonrl-sandbox-"))
    group = CGroup.make(f"reasonrl-{os.getpid()}-{next(_runs)}", memory_mb, max_processes)
    read_fd, write_fd = os.pipe()
    pipe_handed_over = False
    try:
        (inputs / "program.py").write_text(code)
        specs = [
            {"setup": c.setup, "expression": c.expression, "truth": c.op in ("truthy", "falsy")}
            for c in checks
        ]
        (inputs / "tests.json").write_text(json.dumps(specs))
        shutil.copy(HARNESS, inputs / "harness.py")
        os.chmod(inputs, 0o755)
        command = _bwrap_command(inputs, memory_mb, max(1, int(timeout) + 1), max_processes, disk_mb)
        command.append(str(write_fd))  # the result pipe keeps its number inside
        if group is not None:  # the shell joins the cgroup, then becomes bwrap: nothing runs outside it
            command = ["/bin/sh", "-c", f'{group.join_command()} && exec "$@"', "sh", *command]
        pipe_handed_over = True  # run_contained closes both ends, whatever happens
        data, timed_out = run_contained(command, read_fd, write_fd, timeout, {"PATH": "/usr/bin:/bin"})
    finally:
        if not pipe_handed_over:
            os.close(read_fd)
            os.close(write_fd)
        if group is not None:
            group.destroy()
        shutil.rmtree(inputs, ignore_errors=True)
    return _parse(data, len(checks), timed_out)


def _parse(data: bytes, n: int, timed_out: bool):
    """The first record the sandbox sent for each check (later ones for the same check are ignored)."""
    values, errs, program_errors, seen, printed = [_MISSING] * n, [None] * n, [], set(), None
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(record, dict):
            continue
        if "program_error" in record and not seen:
            program_errors.append(str(record["program_error"])[:500])
            continue
        if "stdout" in record and printed is None:
            printed = str(record["stdout"])
            continue
        i = record.get("test")
        if type(i) is not int or not 0 <= i < n or i in seen:
            continue
        seen.add(i)
        if "value" in record:
            values[i] = record["value"]
        else:
            errs[i] = str(record.get("error", "no value"))[:300]
    for i in range(n):
        if i not in seen:
            errs[i] = "timed out before this test" if timed_out else "the sandbox ended before this test"
    status = "timeout" if timed_out else ("ok" if len(seen) == n else "crashed")
    return _RunOutput(values, program_errors, status, errs, printed or "")


class CGroup:
    """A memory + process cgroup for one sandbox (v1 controllers or a v2 subtree), when writable."""

    def __init__(self, folders: list[Path]):
        self.folders = folders

    @classmethod
    def make(cls, name: str, memory_mb: int, max_processes: int) -> CGroup | None:
        limits = _cgroup_limits(memory_mb, max_processes)
        folders = []
        try:
            for parent, files in limits:
                folder = parent / name
                folder.mkdir()
                folders.append(folder)
                for file, value in files.items():
                    if (folder / file).exists():
                        (folder / file).write_text(value)
        except OSError:
            for folder in folders:
                _remove(folder)
            return None
        return cls(folders) if folders else None

    def join_command(self) -> str:
        return " && ".join(f"echo $$ > {folder / 'cgroup.procs'}" for folder in self.folders)

    def destroy(self) -> None:
        for folder in self.folders:
            _remove(folder)


def _remove(folder: Path) -> None:
    """Kill whatever is left in a cgroup, then remove it."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            folder.rmdir()
            return
        except OSError:
            time.sleep(0.02)


@functools.cache
def _cgroup_roots() -> tuple[str, dict[str, Path]]:
    """("v1" or "v2", controller -> this process's cgroup folder)."""
    mounts, own = {}, {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            own[c] = path
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # unified hierarchy only
        return "v2", {"": base / own.get("", "/").lstrip("/")}
    for controller in ("memory", "pids"):
        if (base / controller).is_dir() and controller in own:
            mounts[controller] = base / controller / own[controller].lstrip("/")
    return "v1", mounts


def _cgroup_limits(memory_mb: int, max_processes: int) -> list[tuple[Path, dict[str, str]]]:
    version, roots = _cgroup_roots()
    memory = str(memory_mb * 2**20)
    if version == "v2":
        return [(roots[""], {"memory.max": memory, "memory.swap.max": "0", "pids.max": str(max_processes)})]
    out = []
    if "memory" in roots:
        out.append(
            (roots["memory"], {"memory.limit_in_bytes": memory, "memory.memsw.limit_in_bytes": memory})
        )
    if "pids" in roots:
        out.append((roots["pids"], {"pids.max": str(max_processes)}))
    return out


def isolation() -> dict:
    """What this machine's sandbox gives (for logs and tests)."""
    reason = sandbox_available()
    version, roots = _cgroup_roots()
    probe = CGroup.make(f"reasonrl-probe-{os.getpid()}", 64, 4) if reason is None else None
    if probe is not None:
        probe.destroy()
    return {
        "bwrap": reason is None,
        "reason": reason,
        "cgroup": f"{version} ({', '.join(roots) or 'unified'})" if probe is not None else None,
    }
