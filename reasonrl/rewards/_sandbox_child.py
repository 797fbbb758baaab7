"""Runs inside the sandbox process (started by ``reasonrl.rewards.sandbox``); not imported.

Order matters: everything that needs privileges (network namespace, rlimits,
dropping to the throwaway uid) happens before any untrusted code runs; then an
audit hook forbids writes outside the working directory, new processes, sockets
and ctypes; then the program runs, then each test, and one JSON line per test
result goes to the result pipe as soon as it is known.

Usage: python -I -S _sandbox_child.py WORKDIR RESULT_FD UID MEMORY_BYTES CPU_SECONDS
"""

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
LIBC = ctypes.CDLL(None, use_errno=True)


def isolate_network() -> str:
    if LIBC.unshare(CLONE_NEWNET | CLONE_NEWNS) == 0:
        return "netns"
    if LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return "userns+netns"
    return "none"


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if LIBC.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} on {target}")


def expose_interpreter(staging: str) -> None:
    """Make the stdlib readable by the throwaway uid, and hide the rest of its private parent.

    When the interpreter lives under a directory other users cannot enter (such as
    /root/.pyenv under a 0700 /root), mount an empty tmpfs over that directory in
    this process's own mount namespace and bind only the interpreter's tree back
    into it. Private files beside it (tokens, caches) stay invisible.
    """
    lib = os.path.dirname(os.__file__)
    parts = lib.split(os.sep)
    for depth in range(2, len(parts)):
        blocked = os.sep.join(parts[:depth])
        if not os.stat(blocked).st_mode & 0o001:
            break
    else:
        return
    keep = os.sep.join(parts[: depth + 1])  # the child of the blocked directory on the way to the stdlib
    _mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    os.makedirs(staging, exist_ok=True)
    _mount(keep, staging, None, MS_BIND | MS_REC)
    _mount("tmpfs", blocked, "tmpfs", 0, "mode=755,size=1m")
    os.makedirs(keep, exist_ok=True)
    _mount(staging, keep, None, MS_BIND | MS_REC)


def limit(memory: int, cpu: int) -> None:
    for what, value in [
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, 16 * 2**20),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, 16),
    ]:
        resource.setrlimit(what, (value, value))


def audit_hook(workdir: str):
    workdir = os.path.realpath(workdir)
    inside = lambda p: os.path.realpath(os.fsdecode(p)).startswith(workdir + os.sep)  # noqa: E731
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
    path_events = {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.symlink",
        "os.link",
        "os.chmod",
        "os.chown",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
    }

    def hook(event, args):
        if event.startswith(forbidden):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1] or "r", args[2] or 0
            writing = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and not inside(args[0]):
                raise PermissionError(f"sandbox: writing {args[0]!r} outside the working directory")
        elif event in path_events:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg):
                    raise PermissionError(f"sandbox: {event} on {arg!r} outside the working directory")

    return hook


def main() -> None:
    workdir, fd, uid, memory, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:6])
    network = isolate_network()
    if os.getuid() == 0 and uid > 0 and network == "netns":
        expose_interpreter(os.path.join(workdir, ".interpreter"))
    limit(memory, cpu)
    if os.getuid() == 0 and uid > 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(HOME=workdir, TMPDIR=workdir, PATH="/usr/bin:/bin", LANG="C.UTF-8")
    with open("program.py") as f:
        program = f.read()
    with open("tests.json") as f:
        tests = json.load(f)
    out = os.fdopen(fd, "w", buffering=1)
    out.write(json.dumps({"network": network, "uid": os.getuid()}) + "\n")
    sys.addaudithook(audit_hook(workdir))
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(program, "program.py", "exec"), namespace)
    except BaseException as err:  # SystemExit included: a program must not end the run
        out.write(json.dumps({"program_error": f"{type(err).__name__}: {err}"[:500]}) + "\n")
    for i, test in enumerate(tests):
        try:
            exec(compile(test, f"test_{i}", "exec"), namespace)
            result = {"test": i, "passed": True}
        except BaseException as err:
            result = {"test": i, "passed": False, "error": f"{type(err).__name__}: {err}"[:300]}
        out.write(json.dumps(result) + "\n")
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
