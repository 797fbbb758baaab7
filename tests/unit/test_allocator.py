"""The allocator switch: a real re-execution with the library preloaded, as the CLI does."""

import os
import subprocess
import sys

import pytest

from reasonrl import allocator
from tests.helpers import ROOT

PROGRAM = (
    "from reasonrl import allocator; allocator.preload(); "
    "allocator.release_free_memory(); print(allocator.loaded(), flush=True)"
)


def run(choice: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {allocator.ENV: choice}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("choice", ["auto", "tcmalloc", "jemalloc", "system"])
def test_the_program_runs_on_the_allocator_it_asked_for(choice, monkeypatch):
    monkeypatch.setenv(allocator.ENV, choice)
    expected = allocator.wanted()
    if choice in ("tcmalloc", "jemalloc") and expected is None:
        pytest.skip(f"no {choice} library on this machine")
    proc = run(choice)
    assert proc.returncode == 0, proc.stderr
    print(choice, "->", proc.stdout.strip())
    assert proc.stdout.strip() == (expected[0] if expected else "system")
    assert "large alloc" not in proc.stderr


def test_auto_takes_tcmalloc_on_this_machine_when_it_has_one(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "auto")
    if allocator.find("tcmalloc") is None:
        pytest.skip("no tcmalloc library on this machine")
    assert allocator.wanted()[0] == "tcmalloc"


def test_an_unknown_allocator_is_named_with_the_choices(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "mimalloc")
    with pytest.raises(ValueError, match=r"REASONRL_ALLOCATOR='mimalloc' .*auto, tcmalloc, jemalloc, system"):
        allocator.choice()


def test_the_command_names_an_unknown_allocator():
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {allocator.ENV: "mimalloc"}
    proc = subprocess.run(
        [sys.executable, "-m", "reasonrl", "model", "tiny-llama"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: REASONRL_ALLOCATOR='mimalloc' is not an allocator; "
        "choose one of auto, tcmalloc, jemalloc, system"
    )


def test_a_preloaded_allocator_is_kept(monkeypatch):
    """A user's own LD_PRELOAD allocator wins, and the re-executed program does not loop."""

    def execve(*args):
        raise AssertionError(f"re-executed with {args}")

    monkeypatch.setattr(allocator.os, "execve", execve)
    monkeypatch.setenv("LD_PRELOAD", "/opt/libmimalloc.so")
    monkeypatch.setenv(allocator.ENV, "auto")
    allocator.preload()
    if allocator.wanted() is not None:  # the check that matters: without the preload it would run
        monkeypatch.setenv("LD_PRELOAD", "")
        with pytest.raises(AssertionError, match="re-executed"):
            allocator.preload()


def test_a_run_on_glibc_malloc_says_what_it_costs(tmp_path, monkeypatch):
    """One line in the run's log names what is missing, what it costs and the fix."""
    from reasonrl.cli import main

    if allocator.loaded() != "system":
        pytest.skip("this test process runs on a preloaded allocator")
    monkeypatch.setenv(allocator.ENV, "auto")
    out = tmp_path / "run"
    args = ["control", "recipes/control/ppo-cartpole.yaml", "--total_steps", "512", "--output_dir", str(out)]
    assert main([*args, "--progress", "false", "--report_to", "none"]) == 0
    log = (out / "train.log").read_text()
    assert "1.3x as long at 1.3x the peak memory" in log
    found = allocator.wanted()  # installed but not preloaded here (in-process), or not installed
    assert (f"LD_PRELOAD={found[1]}" if found else "make system-deps") in log


RELEASE = """
import resource, sys
from reasonrl import allocator
allocator.preload()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
blocks = [bytearray(100_000) for _ in range(3000)]  # 300 MB in the heap, below mmap's threshold
sentinel = bytearray(100_000)  # keeps the heap's top in place: the blocks' pages stay mapped
del blocks
before = rss()
allocator.release_free_memory()
print(allocator.loaded(), before, rss(), flush=True)
"""


@pytest.mark.parametrize("choice", ["system", "tcmalloc"])
def test_free_pages_go_back_to_the_os_under_glibc_only(choice):
    """glibc keeps a step's freed activations resident (malloc_trim returns them); tcmalloc
    reuses them, and returning them would only fault them in again next step."""
    if choice == "tcmalloc" and allocator.find("tcmalloc") is None:
        pytest.skip("no tcmalloc library on this machine")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | {allocator.ENV: choice}
    proc = subprocess.run([sys.executable, "-c", RELEASE], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    name, before, after = proc.stdout.split()
    print(name, "resident MiB before / after the release:", before, after)
    assert name == choice
    if choice == "system":
        assert int(before) - int(after) > 200
    else:
        assert int(before) - int(after) < 20
