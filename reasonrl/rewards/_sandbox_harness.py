"""Runs inside bubblewrap (started by ``reasonrl.rewards.sandbox``); not imported.

The OS has already contained this process: new user, mount, PID, IPC, UTS and network
namespaces, a read-only view of /usr and the interpreter, private size-capped tmpfs
for /work, /tmp and /dev/shm, a fresh /proc, no capabilities, and (where the host
allows) a memory and process cgroup. Here, before any untrusted code: rlimits (CPU
seconds, address space, file size, open files, processes) and, as a second layer only,
an audit hook that refuses new processes, sockets, ctypes and writes outside /work.

Then the program runs, then each test's setup and expression; one JSON line per test
goes to the result pipe (RESULT_FD) with the expression's *value* as plain data. The parent compares values
with expected results it never sends here (``reasonrl.rewards.checks``).

It runs as a standalone script in an isolated interpreter (``-I -S``, nothing of reasonrl
on its path), so its rlimits and audit hook repeat those of the weak sandbox's child
rather than import them.

Usage: python -I -S -B _sandbox_harness.py INPUT_DIR MEMORY_BYTES CPU_SECONDS MAX_PROCESSES RESULT_FD
"""

import json
import os
import resource
import sys

PLAIN = (int, float, str, bool, type(None))


def encode(value, depth: int = 0):
    """``value`` as JSON data, only for exact built-in types (no subclasses, no custom __eq__)."""
    if depth > 20:
        raise TypeError("nested too deep")
    kind = type(value)
    if kind in PLAIN:
        return value
    if kind in (list, tuple):
        return [encode(v, depth + 1) for v in value]
    if kind in (set, frozenset):
        return sorted((encode(v, depth + 1) for v in value), key=repr)
    if kind is dict and all(type(k) is str for k in value):
        return {k: encode(v, depth + 1) for k, v in value.items()}
    raise TypeError(f"a {kind.__name__} is not plain data")


class Bounded:
    """A text stream that keeps the first ``limit`` characters written to it."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.size = limit, [], 0

    def write(self, text: str) -> int:
        if self.size < self.limit:
            self.parts.append(text[: self.limit - self.size])
            self.size += len(self.parts[-1])
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


def limit(memory: int, cpu: int, processes: int) -> None:
    for what, value in [
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, 16 * 2**20),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, processes),
    ]:
        resource.setrlimit(what, (value, value))


def audit_hook():
    """A second layer: the OS already contains all of this; the hook gives clear messages."""
    forbidden = (
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "subprocess.Popen",
        "socket.",
        "ctypes.",
        "os.kill",
        "os.killpg",
        "pty.",
    )

    def hook(event, args):
        if event.startswith(forbidden):
            raise PermissionError(f"sandbox: {event} is not allowed")

    return hook


def main() -> None:
    inputs, memory, cpu, processes, fd = sys.argv[1], *map(int, sys.argv[2:6])
    limit(memory, cpu, processes)
    with open(os.path.join(inputs, "program.py")) as f:
        program = f.read()
    with open(os.path.join(inputs, "tests.json")) as f:
        tests = json.load(f)
    out = os.fdopen(fd, "w", buffering=1)
    printed = Bounded(64 * 1024)
    sys.stdout = sys.stderr = printed  # what the program prints (a tool's answer)
    sys.addaudithook(audit_hook())
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(program, "program.py", "exec"), namespace)
    except BaseException as err:  # SystemExit included: a program must not end the run
        out.write(json.dumps({"program_error": f"{type(err).__name__}: {err}"[:500]}) + "\n")
    for i, test in enumerate(tests):
        try:
            if test["setup"]:
                exec(compile(test["setup"], f"test_{i}", "exec"), namespace)
            value = eval(compile(test["expression"], f"test_{i}", "eval"), namespace)
            if test["truth"]:
                value = bool(value)
            record = {"test": i, "value": encode(value)}
        except BaseException as err:
            record = {"test": i, "error": f"{type(err).__name__}: {err}"[:300]}
        out.write(json.dumps(record) + "\n")
    out.write(json.dumps({"stdout": printed.text()}) + "\n")
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
