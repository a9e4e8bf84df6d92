"""Memory policies, the size budget and --include (capture/policy.py), on every path.

First against the fake OS (the rules, exactly), then the Mach backend through its fake
kernel, then real Linux processes: one C program whose crashing frame holds a pointer to
a heap structure, run under ``macminidump run`` and dumped live with ``macminidump dump``;
its cores are read by gdb, by this package's parser, and compared with gcore's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import debuggers
import pytest
import test_capture_mach as mach_tests
from commands import stderr_on_a_terminal

from macminidump import Region, Snapshot, Thread, records
from macminidump.capture import policy
from macminidump.capture.base import CaptureOptions, CrashContext, capture, captured
from macminidump.capture.linux import procfs
from macminidump.capture.mach import MachTarget
from macminidump.capture.policy import Memory, parse_range, parse_size
from macminidump.elf.layout import core_cost as elf_cost
from macminidump.errors import CaptureError, TargetError
from macminidump.model import Protection, SignalInfo
from macminidump.parse import parse_core
from macminidump.streaming import write_captured
from macminidump.testing.fake_os import FakeTarget

# ---------------------------------------------------------------- the rules, on a fake OS

STACK, OTHER_STACK, HEAP, CODE, DATA = 0x7FF00000, 0x7FE00000, 0x600000, 0x400000, 0x500000
STACK_SIZE = 0x40000


def world() -> Snapshot:
    """Two threads with 256 KiB stacks; the crashed one holds a pointer to the heap in a
    stack word and in rbx; the heap's first word points further into the heap."""
    stack = bytearray(STACK_SIZE)
    sp = STACK + 0x1000
    struct.pack_into("<Q", stack, sp - STACK + 0x40, HEAP + 0x2000)  # a local: heap pointer
    heap = bytearray(b"\x11" * 0x10000)
    struct.pack_into("<Q", heap, 0x2000, HEAP + 0x8000)  # its first field: another pointer
    crashed = {"rip": CODE + 0x10, "rsp": sp, "rbp": 0, "rbx": HEAP + 0x4000}
    other = {"rip": CODE + 0x20, "rsp": OTHER_STACK + 0x800, "rbp": 0}
    return Snapshot(
        arch="x86_64",
        threads=[Thread(id=1, regsets={"gpr": crashed}), Thread(id=2, regsets={"gpr": other})],
        regions=[
            Region(address=CODE, data=b"\x90" * 0x1000, protection="r-x"),
            Region(address=DATA, data=b"\x22" * 0x3000, protection="r--"),
            Region(address=HEAP, data=bytes(heap), protection="rw-"),
            Region(address=OTHER_STACK, data=b"\x33" * STACK_SIZE, protection="rw-"),
            Region(address=STACK, data=bytes(stack), protection="rw-"),
        ],
    )


def saved(snapshot: Snapshot, address: int) -> bool:
    return snapshot.memory.region_at(address) is not None


def bytes_saved(snapshot: Snapshot) -> int:
    return sum(r.size for r in snapshot.regions)


CRASH = CrashContext(thread_id=1, signal=SignalInfo(signo=11, code=1, address=0x10))


def test_stacks_is_todays_minimal_core() -> None:
    snap = capture(FakeTarget(world()), crash=CRASH)
    assert snap.memory_selection is not None and snap.memory_selection.policy == "stacks"
    assert saved(snap, STACK + 0x1000) and saved(snap, OTHER_STACK + 0x800)
    assert not saved(snap, HEAP + 0x2000), "stacks saves no heap"
    assert not saved(snap, DATA)


def test_referenced_saves_windows_around_pointers_two_levels_deep() -> None:
    snap = capture(FakeTarget(world()), CaptureOptions(memory="referenced"), CRASH)
    for pointer in (HEAP + 0x2000, HEAP + 0x4000, HEAP + 0x8000):  # stack word, rbx, level 2
        region = snap.memory.region_at(pointer)
        assert region is not None, hex(pointer)
        assert region.address <= pointer - policy.REFERENCED_BEFORE
        assert region.end >= pointer + policy.REFERENCED_AFTER
    assert not saved(snap, HEAP + 0xC000), "only windows, not the whole heap"
    assert not saved(snap, DATA)


def test_dirty_saves_written_mappings_and_full_everything_readable() -> None:
    dirty = capture(FakeTarget(world()), CaptureOptions(memory="dirty"), CRASH)
    assert saved(dirty, HEAP) and saved(dirty, HEAP + 0xFFFF)
    assert not saved(dirty, DATA), "read-only memory was not written"
    full = capture(FakeTarget(world()), CaptureOptions(memory="full"), CRASH)
    for region in world().regions:
        assert full.memory.read(region.address, region.size) == region.data.read(0, region.size)


def test_stack_is_cut_at_max_stack() -> None:
    sp = STACK + 0x1000
    snap = capture(FakeTarget(world()), CaptureOptions(max_stack="64K"), CRASH)
    assert saved(snap, sp + 0xFFFF) and not saved(snap, sp + 0x10000)
    whole = capture(FakeTarget(world()), CaptureOptions(max_stack=None), CRASH)
    assert saved(whole, STACK + STACK_SIZE - 1)


@pytest.mark.parametrize("budget", [8 << 10, 16 << 10, 40 << 10, 100 << 10, 300 << 10])
def test_budget_cuts_in_priority_order(budget: int) -> None:
    options = CaptureOptions(memory="full", max_size=budget)
    snap = capture(FakeTarget(world()), options, CRASH, elf_cost)
    from macminidump.elf.render import render_elf_bytes

    assert len(render_elf_bytes(snap)) <= budget
    sel = snap.memory_selection
    assert sel is not None and sel.max_size == budget
    total = sum(r.size for r in world().regions)
    assert bytes_saved(snap) + sel.omitted_bytes == total, "every byte: saved or listed as cut"
    assert sel.omitted_count >= len(sel.omitted)
    # what is kept is a prefix of the order: the crashed thread's stack at sp first
    sp = STACK + 0x1000
    assert saved(snap, sp)
    kinds = {o.kind for o in sel.omitted}
    if saved(snap, HEAP):
        assert "crashed-thread-stack" not in kinds and "stack" not in kinds
    if "crashed-thread-stack" in kinds:
        assert not saved(snap, OTHER_STACK + 0x800) and not saved(snap, HEAP)


def test_a_budget_below_registers_and_top_of_stack_is_refused() -> None:
    with pytest.raises(TargetError, match="too small: the crashed thread's registers"):
        capture(FakeTarget(world()), CaptureOptions(max_size=1024), CRASH, elf_cost)


def test_include_adds_ranges_and_refuses_unmapped_ones() -> None:
    snap = capture(FakeTarget(world()), CaptureOptions(include=[f"{DATA + 0x100:#x}:16"]), CRASH)
    assert snap.memory.read(DATA + 0x100, 16) == b"\x22" * 16
    assert not saved(snap, DATA + 0x110)
    for bad in (f"{0x900000:#x}:4K", f"{DATA + 0x2F00:#x}:1K"):  # unmapped; runs past the end
        target = FakeTarget(world())
        with pytest.raises(TargetError, match="is not in readable memory"):
            capture(target, CaptureOptions(include=[bad]), CRASH)
        assert target.running


def test_exclusions_are_the_final_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever asks (here: full, and --include of the same bytes), the hook's ranges are
    not saved, and they are not listed as cut either."""
    hole = (HEAP + 0x1000, HEAP + 0x3000)
    monkeypatch.setattr(policy, "never_saved", lambda target, options, mappings: [hole])
    options = CaptureOptions(memory="full", include=[(HEAP + 0x1000, 0x100)], max_size="64K")
    snap = capture(FakeTarget(world()), options, CRASH, elf_cost)
    assert not any(saved(snap, a) for a in range(*hole, 0x100))
    assert snap.memory_selection is not None
    assert not any(
        o.address < hole[1] and o.address + o.size > hole[0] for o in snap.memory_selection.omitted
    )


@pytest.mark.parametrize(
    "text, value",
    [("64K", 65536), ("8M", 8 << 20), ("1G", 1 << 30), ("4096", 4096), ("2MiB", 2 << 20)],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1", "0", "1.5M", "12X"])
def test_not_sizes(text: str) -> None:
    with pytest.raises(TargetError, match="size"):
        parse_size(text)


def test_a_unit_that_only_looks_like_one_is_not_a_size() -> None:
    """The Kelvin sign (U+212A) matches K when case is ignored: refused as a size, not a
    KeyError's traceback."""
    with pytest.raises(TargetError, match="size"):
        parse_size("1\u212a")


def test_ranges() -> None:
    assert parse_range("0x1000:4K") == (0x1000, 4096)
    assert parse_range("4096:0x10") == (4096, 16)
    for bad in ("0x1000", "x:4K", "0x1000:0", "0xffffffffffffffff:2"):
        with pytest.raises(TargetError):
            parse_range(bad)


def test_large_regions_are_read_while_the_file_is_written() -> None:
    """Inside ``captured`` a large region is a source read from the still-stopped target."""
    target = FakeTarget(world())
    with captured(target, CaptureOptions(memory="full"), CRASH) as snap:
        lazy = [r for r in snap.regions if type(r.data).__name__ == "TargetSource"]
        assert lazy and not target.running
        reads = target.calls.count("read")
        assert lazy[0].data.read(0, 16) == world().memory.read(lazy[0].address, 16)
        assert target.calls.count("read") == reads + 1
    assert target.running


def test_a_capture_with_nothing_to_stream_resumes_before_the_file_is_written() -> None:
    """Every byte of a stacks capture is read while the target is stopped: the target goes
    on before the body of ``captured`` (where the file is written), and once only."""
    target = FakeTarget(world())
    with captured(target, CaptureOptions(max_stack=16 << 10), CRASH) as snap:
        assert not [r for r in snap.regions if type(r.data).__name__ == "TargetSource"]
        assert target.running and target.calls[-1] == "resume"
    assert target.calls.count("resume") == 1


@pytest.mark.parametrize(("memory", "running"), [("stacks", True), ("full", False)])
def test_the_snapshot_is_made_once_nothing_more_is_read(
    monkeypatch: pytest.MonkeyPatch, memory: str, running: bool
) -> None:
    """The model of what was read (threads, the Snapshot and its checks: ~30 ms for a
    thousand threads) is made after the target is resumed when nothing streams from
    it, and before, while it stays stopped, when something does; a Snapshot that fails
    its checks then is an error, and the target is resumed once."""
    from macminidump.capture import base
    from macminidump.errors import ModelError

    target = FakeTarget(world())
    seen: list[bool] = []
    real = base._model_threads

    def noting(*args: object) -> object:
        seen.append(target.running)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "_model_threads", noting)
    with captured(target, CaptureOptions(memory=memory, max_stack=16 << 10), CRASH):
        assert seen == [running]
    assert target.calls.count("resume") == 1
    twins = FakeTarget(world())
    twins.world = records.evolve(world(), threads=[])  # (built unchecked below)
    object.__setattr__(twins.world, "threads", world().threads * 2)
    with pytest.raises(ModelError, match="two threads have id"):
        with captured(twins, CaptureOptions(memory=memory, max_stack=16 << 10), CRASH):
            pass
    assert twins.running and twins.calls.count("resume") == 1


def test_a_target_found_dead_at_the_early_resume_writes_nothing() -> None:
    """The resume is where a backend reaps a target killed meanwhile: found exited there,
    ``captured`` raises before its body runs (no core of a process that was not whole)."""

    class DiesAtResume(FakeTarget):
        def resume(self) -> None:
            super().resume()
            self.exited = True

    target = DiesAtResume(world())
    body: list[Snapshot] = []
    with pytest.raises(CaptureError, match="exited during capture"):
        with captured(target, CaptureOptions(max_stack=16 << 10), CRASH) as snap:
            body.append(snap)
    assert body == [] and target.calls.count("resume") == 1


# ---------------------------------------------------------------- the Mach backend


@pytest.mark.parametrize("memory", [m.value for m in Memory])
@pytest.mark.parametrize("arch", mach_tests.ARCHES)
def test_mach_backend_policies(arch: str, memory: str, tmp_path: Path) -> None:
    source, _ = mach_tests.world(arch)
    k = mach_tests.kernel(arch, "pid")
    core = tmp_path / "mach.core"
    with MachTarget(k.pid, lib=k, arch=arch) as target:
        write_captured(target, core, "macho", CaptureOptions(memory=memory))
    mach_tests.assert_books_balance(k)
    assert k.reads_while_running == 0, "streamed regions are read while the task is stopped"
    snap = parse_core(core)
    assert snap.memory_selection is not None and snap.memory_selection.policy == memory
    for region in source.regions:
        writable = bool(region.protection & 2)
        if memory == "full" or (memory == "dirty" and writable):
            assert snap.memory.read(region.address, region.size) == region.data.read(0, region.size)
    stacks_only = mach_tests.run_capture(mach_tests.kernel(arch, "pid"), arch, "pid")
    assert sum(r.size for r in snap.regions) >= sum(r.size for r in stacks_only.regions)


@pytest.mark.parametrize("arch", mach_tests.ARCHES)
def test_mach_backend_budget(arch: str, tmp_path: Path) -> None:
    """A crash through a task port handed over (macOS's self dump, from its helper)."""
    k = mach_tests.kernel(arch, "crash")
    core = tmp_path / "mach.core"
    crash = mach_tests.crash_context(arch)
    unbounded = tmp_path / "all.core"
    whole = mach_tests.kernel(arch, "crash")
    with MachTarget(task=whole.grant_task_port(), lib=whole, arch=arch) as target:
        write_captured(target, unbounded, "macho", CaptureOptions(memory="full"), crash)
    budget = os.path.getsize(unbounded) // 2
    options = CaptureOptions(memory="full", max_size=budget)
    with MachTarget(task=k.grant_task_port(), lib=k, arch=arch) as target:
        size = write_captured(target, core, "macho", options, crash).size
    mach_tests.assert_books_balance(k)
    assert size <= budget
    snap = parse_core(core)
    sel = snap.memory_selection
    assert sel is not None and sel.omitted_bytes > 0 and sel.max_size == budget
    crashed = snap.threads[0]
    assert crashed.crashed and snap.memory.region_at(crashed.gpr[mach_tests.stacks.SP_REG[arch]])
    # the crashed thread keeps its frames, in LLDB
    _, expected = mach_tests.world(arch)
    result = debuggers.probe_core(23, str(core), exe=expected["exe"])
    functions = [f["function"] for f in result["threads"][0]["frames"]]
    assert functions == expected["threads"][0]["functions"], result.get("bt_all")
    assert len(functions) >= 4, functions


# ---------------------------------------------------------------- real Linux processes

SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct request { long id; char name[32]; struct request *next; };
static pthread_barrier_t ready;

__attribute__((noinline)) void idle_inner(int n) {
  (void)n; pthread_barrier_wait(&ready); for (;;) pause();
}
void *idle_thread(void *arg) { idle_inner((int)(long)arg); return NULL; }

__attribute__((noinline)) void handle(struct request *req, int crash) {
  struct request *volatile local = req;
  if (crash) { volatile long *p = (long *)0x10; *p = local->id; }
  printf("ready %p\n", (void *)local); fflush(stdout);
  for (;;) pause();
}

int main(int argc, char **argv) {
  long mib = argc > 2 ? atol(argv[2]) : 0;
  pthread_t t[3];
  pthread_barrier_init(&ready, NULL, 4);
  for (long i = 0; i < 3; i++) pthread_create(&t[i], NULL, idle_thread, (void *)i);
  pthread_barrier_wait(&ready);
  if (mib) {
    char *big = malloc(mib << 20);
    for (long i = 0; i < (mib << 20); i += 4096) big[i] = (char)(i >> 12) | 1;
  }
  struct request *req = malloc(sizeof *req);
  req->id = 0x5eed1234; strcpy(req->name, "policy-request");
  req->next = malloc(sizeof *req); req->next->id = 0x5eed5678;
  strcpy(req->next->name, "second"); req->next->next = 0;
  handle(req, argv[1][0] == 'c');
  return 0;
}
"""


@pytest.fixture(scope="session")
def program(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed: apt-get install -y gcc"
    d = tmp_path_factory.mktemp("policy-prog")
    (d / "prog.c").write_text(SOURCE)
    exe = str(d / "prog")
    subprocess.run(
        [cc, "-g", "-O0", "-fno-omit-frame-pointer", "-pthread", str(d / "prog.c"), "-o", exe],
        check=True,
    )
    return exe


def macminidump(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "macminidump", *args], capture_output=True, text=True, timeout=300
    )
    if check and result.returncode not in (0, 128 + signal.SIGSEGV):
        raise AssertionError(f"{args}: {result.returncode}: {result.stderr}")
    return result


def gdb(exe: str, core: str, *commands: str) -> str:
    assert shutil.which("gdb"), "gdb is needed: apt-get install -y gdb"
    argv = ["gdb", "-nx", "-batch", *(x for c in commands for x in ("-ex", c)), exe, core]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


@pytest.fixture
def live(program: str) -> Iterator[tuple[int, int]]:
    """A running program paused in handle(): (pid, the address of its request)."""
    # without rseq: the kernel rewrites each thread's rseq area (its CPU number) whenever
    # the thread migrates, e.g. as a capture wakes it, so two captures a moment apart
    # would differ there though the program itself writes nothing after "ready"
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
    proc = subprocess.Popen([program, "wait", "16"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready "), line
        yield proc.pid, int(line.split()[1], 16)
    finally:
        proc.kill()
        proc.wait()


def test_referenced_lets_gdb_print_a_heap_structure(program: str, tmp_path: Path) -> None:
    for memory in ("stacks", "referenced"):
        core = str(tmp_path / f"{memory}.core")
        result = macminidump("run", "-o", core, "--memory", memory, "--", program, "crash")
        assert result.returncode == 128 + signal.SIGSEGV, result.stderr
        out = gdb(program, core, "print *local", "print local->next->name")
        if memory == "stacks":
            assert "Cannot access memory at address" in out, out
        else:
            assert 'name = "policy-request"' in out and "id = 1592594996" in out, out
            assert '"second"' in out, out  # one more level, for the crashed thread


@pytest.mark.parametrize("budget", ["64K", "256K", "1M", "8M"])
def test_every_max_size_is_respected_and_the_crash_keeps_its_frames(
    program: str, tmp_path: Path, budget: str
) -> None:
    core = str(tmp_path / "budget.core")
    macminidump(
        "run", "-o", core, "--memory", "full", "--max-size", budget, "--", program, "crash", "4"
    )
    assert os.path.getsize(core) <= parse_size(budget)
    bt = gdb(program, core, "bt")
    assert "handle (" in bt and "main (" in bt, bt
    report = json.loads(macminidump("inspect", "--json", core).stdout)
    selection = report["memory_selection"]
    assert selection["policy"] == "full" and selection["max_size"] == parse_size(budget)
    assert selection["omitted_bytes"] > 0 and selection["omitted"]
    text = macminidump("inspect", core).stdout
    assert "memory policy: full, max size" in text and "cut " in text


def unreadable_mappings(pid: int) -> list[tuple[int, int]]:
    """Mappings the process itself cannot read (guard pages, [vsyscall]): gcore saves
    them (it reads through /proc/PID/mem, which ignores protections), a capture does not."""
    return [
        (m.start, m.end)
        for m in procfs.maps(procfs.directory(pid))
        if not m.protection & Protection.READ
    ]


def test_full_matches_gcore_at_every_saved_address(live: tuple[int, int], tmp_path: Path) -> None:
    assert shutil.which("gcore"), "gcore is needed: apt-get install -y gdb"
    pid, _ = live
    ours, theirs = str(tmp_path / "ours.core"), str(tmp_path / "gcore")
    macminidump("dump", str(pid), "-o", ours, "--memory", "full")
    subprocess.run(["gcore", "-o", theirs, str(pid)], capture_output=True, check=True, timeout=300)
    mine, gcore = parse_core(ours), parse_core(f"{theirs}.{pid}")
    unreadable = unreadable_mappings(pid)
    # the environment strings are never saved unless asked for (gcore saves them)
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    env_start, env_end = int(stat[47]), int(stat[48])
    assert mine.memory.region_at(env_start) is None and gcore.memory.region_at(env_start)
    compared = 0
    for region in gcore.regions:
        if any(a <= region.address and region.end <= b for a, b in unreadable):
            assert mine.memory.region_at(region.address) is None
            continue
        for offset in range(0, region.size, 1 << 20):
            length = min(1 << 20, region.size - offset)
            expected = region.data.read(offset, length)
            at = region.address + offset
            if at < env_end and env_start < at + length:
                cut = max(at, env_start) - at, min(at + length, env_end) - at
                got = mine.memory.read(at, cut[0]) + bytes(cut[1] - cut[0])
                got += mine.memory.read(at + cut[1], length - cut[1])
                expected = expected[: cut[0]] + bytes(cut[1] - cut[0]) + expected[cut[1] :]
            else:
                got = mine.memory.read(at, length)
            assert got == expected, hex(at)
            compared += length
    assert compared >= 16 << 20
    size_ours, size_gcore = os.path.getsize(ours), os.path.getsize(f"{theirs}.{pid}")
    assert abs(size_ours - size_gcore) <= 0.05 * size_gcore, (size_ours, size_gcore)


def test_dirty_saves_the_heap_and_not_the_code(live: tuple[int, int], tmp_path: Path) -> None:
    pid, request = live
    core = str(tmp_path / "dirty.core")
    macminidump("dump", str(pid), "-o", core, "--memory", "dirty")
    snap = parse_core(core)
    assert snap.memory.read(request + 8, 14) == b"policy-request"
    with open(f"/proc/{pid}/maps") as f:
        text = [line.split()[0] for line in f if " r-xp " in line and "libc" in line]
    start = int(text[0].partition("-")[0], 16)
    assert snap.memory.region_at(start) is None, "library code was not written"


def test_include_saves_the_callers_range(live: tuple[int, int], tmp_path: Path) -> None:
    pid, request = live
    core = str(tmp_path / "include.core")
    macminidump("dump", str(pid), "-o", core, "--include", f"{request:#x}:48")
    assert parse_core(core).memory.read(request + 8, 14) == b"policy-request"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-size", "lots"], "'lots' is not a size"),
        (["--max-size", "1K"], "too small: the crashed thread's registers"),
        (["--include", "0x10:4K"], "--include 0x10:0x1000: 0x10 is not in readable memory"),
        (["--include", "0x10"], "is not ADDR:SIZE"),
        (["--memory", "most"], "memory policy 'most' is not one of stacks, referenced"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    live: tuple[int, int], tmp_path: Path, args: list[str], message: str
) -> None:
    pid, _ = live
    core = tmp_path / "bad.core"
    result = macminidump("dump", str(pid), "-o", str(core), *args, check=False)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not core.exists() and not list(tmp_path.iterdir())
    os.kill(pid, 0)  # still alive, and resumed:
    with open(f"/proc/{pid}/status") as f:
        assert "TracerPid:\t0" in f.read()


def test_a_self_dump_takes_the_options(tmp_path: Path) -> None:
    core = tmp_path / "self.core"
    script = f"""
import ctypes, macminidump
secret = ctypes.create_string_buffer(b"only-if-included", 64)
address = ctypes.addressof(secret)
macminidump.write_core({str(core)!r}, memory="referenced", max_size="4M", include=[(address, 64)])
print(address)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    snap = parse_core(core)
    address = int(result.stdout)
    assert snap.memory.read(address, 16) == b"only-if-included"
    assert os.path.getsize(core) <= 4 << 20
    assert snap.memory_selection is not None and snap.memory_selection.policy == "referenced"


# ---------------------------------------------------------------- the progress line


def test_progress_line_counts_what_streams() -> None:
    import io

    from macminidump.elf.render import render_elf_bytes
    from macminidump.progress import Progress

    stream = io.StringIO()
    progress = Progress(stream, after=0, every=0)
    options = CaptureOptions(memory="full")
    with captured(FakeTarget(world()), options, CRASH, progress=progress) as snap:
        lazy = sum(r.size for r in snap.regions if type(r.data).__name__ == "TargetSource")
        render_elf_bytes(snap)
    assert lazy and progress.total == lazy and progress.done_bytes == lazy
    lines = stream.getvalue().split("\r")
    assert "macminidump: 0 of 0 MiB written (100%)" in lines[-2], lines
    assert lines[-1] == "\x1b[K", "the line is cleared at the end"


#: the command line with the progress line's threshold at 0 s, so a short capture shows it
PROGRESS_AT_ONCE = (
    "import sys, macminidump.progress as p\n"
    "p.Progress.__init__.__defaults__ = (0.0, 0.0)\n"
    "from macminidump.cli import main\n"
    "sys.exit(main(sys.argv[1:]))"
)


def test_progress_only_on_a_terminal(live: tuple[int, int], tmp_path: Path) -> None:
    """stderr a terminal: a capture that takes seconds shows a progress line (here the
    threshold is 0 s); not a terminal: nothing."""
    pid, _ = live
    core = str(tmp_path / "p.core")
    argv = [
        sys.executable,
        "-c",
        PROGRESS_AT_ONCE,
        "dump",
        str(pid),
        "-o",
        core,
        "--memory",
        "full",
    ]
    returncode, shown = stderr_on_a_terminal(argv)
    assert returncode == 0
    assert b"MiB written (" in shown and shown.endswith(b"\r\x1b[K"), shown[-200:]
    quiet = subprocess.run(argv, capture_output=True, timeout=300)
    assert quiet.returncode == 0 and b"written (" not in quiet.stderr


COROUTINE = r"""
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

static ucontext_t main_context, coroutine;

__attribute__((noinline)) void coroutine_crash(int depth) {
  volatile int *p = (int *)0x10;
  *p = depth;
}
__attribute__((noinline)) void coroutine_body(void) { coroutine_crash(7); }

int main(void) {
  /* a 1 GiB pool of coroutine stacks; the first stack at its bottom */
  char *pool = mmap(0, 1L << 30, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  getcontext(&coroutine);
  coroutine.uc_stack.ss_sp = pool;
  coroutine.uc_stack.ss_size = 64 << 10;
  coroutine.uc_link = &main_context;
  makecontext(&coroutine, coroutine_body, 0);
  swapcontext(&main_context, &coroutine);
  return 0;
}
"""


def test_a_stack_at_the_bottom_of_a_large_pool_is_cut_at_max_stack(tmp_path: Path) -> None:
    """The issue's case: sp near the start of a 1 GiB mapping. The stack is saved from sp
    for 8 MiB (the default --max-stack), not to the end of the mapping."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed: apt-get install -y gcc"
    (tmp_path / "pool.c").write_text(COROUTINE)
    exe = str(tmp_path / "pool")
    flags = ["-g", "-O0", "-fno-omit-frame-pointer"]
    subprocess.run([cc, *flags, str(tmp_path / "pool.c"), "-o", exe], check=True)
    core = str(tmp_path / "pool.core")
    result = macminidump("run", "-o", core, "--", exe)
    assert result.returncode == 128 + signal.SIGSEGV, result.stderr
    assert os.path.getsize(core) < 12 << 20, os.path.getsize(core)
    sp = parse_core(core).threads[0].gpr["rsp"]
    region = parse_core(core).memory.region_at(sp)
    assert region is not None and region.end - sp <= policy.DEFAULT_MAX_STACK + 4096
    bt = gdb(exe, core, "bt")
    assert "coroutine_crash (" in bt and "coroutine_body (" in bt, bt


def test_the_record_of_what_was_cut_survives_parse_and_spec() -> None:
    """ELF and Mach-O carry the MemorySelection note; parse -> spec -> build gives the
    same bytes."""
    from macminidump.elf.parse import parse_elf_bytes
    from macminidump.elf.render import render_elf_bytes
    from macminidump.macho.parse import parse_macho_bytes
    from macminidump.macho.render import render_macho_bytes
    from macminidump.spec import dump_spec, snapshot_from_spec

    options = CaptureOptions(memory="full", max_size="40K")
    snap = capture(FakeTarget(world()), options, CRASH, elf_cost)
    assert snap.memory_selection is not None and snap.memory_selection.omitted
    elf = render_elf_bytes(snap)
    parsed = parse_elf_bytes(elf)
    assert parsed.memory_selection == snap.memory_selection
    rebuilt = snapshot_from_spec(json.loads(dump_spec(parsed, fmt="elf", as_json=True)))
    assert render_elf_bytes(rebuilt) == elf
    plain = records.evolve(snap, threads=[records.evolve(t, raw_states=()) for t in snap.threads])
    macho = render_macho_bytes(records.evolve(plain, process=None, auxv=(), file_mappings=()))
    assert parse_macho_bytes(macho).memory_selection == snap.memory_selection


def test_run_shows_progress_on_a_terminal_too(program: str, tmp_path: Path) -> None:
    """`run` makes its Progress when it starts; the clock starts with the crash's capture."""
    core = str(tmp_path / "run.core")
    argv = [sys.executable, "-c", PROGRESS_AT_ONCE, "run", "-o", core, "--memory", "full"]
    argv += ["--", program, "crash", "4"]
    returncode, shown = stderr_on_a_terminal(argv)
    assert returncode == 128 + signal.SIGSEGV
    assert b"MiB written (" in shown, shown[-300:]
    assert os.path.getsize(core) > 4 << 20
