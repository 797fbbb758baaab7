"""The process's memory allocator: tcmalloc (or jemalloc) instead of glibc's malloc.

A training step allocates and frees gigabytes of activations of a few MiB each. glibc
keeps the freed chunks resident, split up, and the next step's peak lands on top of them;
an allocator that reuses freed blocks by size does not. Measured on the GRPO benchmark's
fixed-length side (``python -m tests.benchmarks.grpo_vs_trl --side reasonrl --fixed``,
SmolLM2-135M + LoRA, fp32, 2-core AVX2): peak resident memory 4499 MiB with glibc,
3728 with tcmalloc, 3682 with jemalloc, and the 4 steps took 75.2, 70.3 and 73.5 s.

An allocator has to be in place before the first ``malloc``, so it cannot be switched
from Python: ``preload`` re-executes the program with it in ``LD_PRELOAD``, as vLLM does
for its own CPU workers. The command line calls it first thing; the choice is the
environment variable ``REASONRL_ALLOCATOR``: ``auto`` (default: tcmalloc, else jemalloc,
else the system's), ``tcmalloc``, ``jemalloc`` or ``system`` (no re-execution).
"""

from __future__ import annotations

import ctypes.util
import functools
import glob
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "REASONRL_ALLOCATOR"
LIBRARIES = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
CHOICES = ("auto", *LIBRARIES, "system")
# measured on the GRPO benchmark's fixed-length side (scripts/system-deps.sh)
GLIBC_COST = "a GRPO step took 1.3x as long at 1.3x the peak memory"
# tcmalloc reports every allocation above 1 GiB on stderr; a KV cache is one on purpose
QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(2**40)}


def choice() -> str:
    """``REASONRL_ALLOCATOR``, checked."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r} is not an allocator; choose one of {', '.join(CHOICES)}")
    return value


def find(name: str) -> str | None:
    """The library to preload for allocator ``name`` (a path or a name ld.so finds), or None.

    tcmalloc is looked for where vLLM's wheels bundle it, then on the system's library path.
    """
    for stem in LIBRARIES[name]:
        bundled = _bundled(stem)
        if bundled:
            return bundled
        found = ctypes.util.find_library(stem)
        if found:
            return found
    return None


def _bundled(stem: str) -> str | None:
    spec = importlib.util.find_spec("vllm")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        matches = sorted(glob.glob(os.path.join(folder, "libs", f"lib{stem}.so*")))
        if matches:
            return matches[0]
    return None


def wanted() -> tuple[str, str] | None:
    """(allocator, library) that ``REASONRL_ALLOCATOR`` asks for on this machine, or None
    for the system's."""
    name = choice()
    for candidate in {"auto": list(LIBRARIES), "system": []}.get(name, [name]):
        library = find(candidate)
        if library:
            return candidate, library
    if name not in ("auto", "system"):
        log.warning("%s=%s: library not found, using the system allocator", ENV, name)
    return None


def preload() -> None:
    """Re-execute this program with the wanted allocator preloaded; return when there is
    nothing to do: not Linux, ``system`` asked for, no library found, or an allocator
    already preloaded (by this function before the re-execution, or by the user)."""
    choice()  # a misspelt choice is an error even when there is nothing to do
    preloaded = os.environ.get("LD_PRELOAD", "")
    if not sys.platform.startswith("linux") or "malloc" in preloaded:
        return
    found = wanted()
    if found is None:
        return
    env = {**QUIET, **os.environ, "LD_PRELOAD": ":".join(filter(None, (found[1], preloaded)))}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def glibc_note() -> str | None:
    """What a run on glibc's malloc says (once, in its log): what is missing, what it costs
    and the fix; None when the process runs on another allocator or the user chose glibc's."""
    if loaded() != "system" or choice() == "system":
        return None
    found = wanted()
    if found is None:
        return (
            f"no tcmalloc or jemalloc on this machine: on glibc's malloc {GLIBC_COST}; "
            f"`make system-deps` installs tcmalloc (as root on Debian/Ubuntu), or {ENV}=system silences this"
        )
    return (
        f"this process runs on glibc's malloc, where {GLIBC_COST}: {found[0]} is installed and the "
        f"`reasonrl` command preloads it; from Python, start with LD_PRELOAD={found[1]}"
    )


def loaded() -> str:
    """The allocator this process runs on: ``tcmalloc``, ``jemalloc`` or ``system``."""
    try:
        files = {line.rsplit("/", 1)[-1] for line in Path("/proc/self/maps").read_text().splitlines()}
    except OSError:
        return "system"
    for name, stems in LIBRARIES.items():
        if any(file.startswith(f"lib{stem}.") for file in files for stem in stems):
            return name
    return "system"


def release_free_memory() -> None:
    """Hand glibc's free heap pages back to the OS (``malloc_trim``); a no-op under tcmalloc
    and jemalloc, which reuse them.

    Called after each optimizer step, when the step's activations are gone, and after a
    weight sync. Under glibc it matters: on the GRPO benchmark resident memory after an
    update was 3.3-5.1 GiB without it, about 2.2 with it. Unlike a low mmap threshold, which
    also returns pages, it adds no page fault per allocation (that cost 60% more step time
    under bf16 autocast). tcmalloc reuses freed spans by size, so there returning them only
    costs page faults: on the benchmark's fixed-length side (bf16, AVX512-BF16) the next
    step's first micro-batch faulted its ~570 MiB of activations in again, 0.2 s of a 4.1 s
    step, for 19 MiB less peak memory (2635 vs 2654 MiB). jemalloc returns pages by itself
    after a few seconds.
    """
    release = _release_function()
    if release is not None:
        release()


@functools.cache
def _release_function() -> Callable[[], object] | None:
    """glibc's ``malloc_trim`` when glibc's malloc is the running allocator, else None."""
    if loaded() != "system":
        return None
    try:
        process = ctypes.CDLL(None)
    except OSError:
        return None
    trim = getattr(process, "malloc_trim", None)
    return None if trim is None else lambda: trim(0)
