"""Linux live capture (capture/linux/) against real processes.

Each target is a small C program compiled with ``cc -g -O0 -fno-omit-frame-pointer
-pthread``. The checks are independent of the backend where they can be: thread ids and
mappings from /proc, symbol addresses from ``nm``, r_debug from ld.so's ``_r_debug``
symbol, and the target's own progress (a counter it prints) after the capture.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from macminidump import linux_abi, linux_abi_schema
from macminidump.arch import RegKind, arch_info
from macminidump.capture.base import CaptureOptions, capture
from macminidump.capture.linux import LinuxTarget, capture_pid, procfs, registers
from macminidump.errors import CaptureError, ModelError
from macminidump.model import Snapshot

CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer", "-pthread"]
AT_PHDR = 3

# Every thread waits in a raw system call made from the program's own code, so its frame
# pointer chain is intact when it is stopped (libc's wrappers reuse rbp as a scratch register)
FOUR = r"""
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static pthread_barrier_t ready;
static long sys_call2(long nr, long a, long b) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
  return r;
}
__attribute__((noinline)) void depth3(void) {
  pthread_barrier_wait(&ready);
  for (;;) sys_call2(34, 0, 0); /* pause */
}
__attribute__((noinline)) void depth2(void) { depth3(); }
__attribute__((noinline)) void depth1(void) { depth2(); }
void *worker(void *arg) { (void)arg; depth1(); return NULL; }
__attribute__((noinline)) void progress(void) {
  unsigned long n = 0;
  struct timespec nap = {0, 5000000};
  pthread_barrier_wait(&ready);
  printf("ready %d\n", getpid());
  for (;;) { printf("%lu\n", n++); fflush(stdout); sys_call2(35, (long)&nap, 0); /* nanosleep */ }
}
__attribute__((noinline)) void outer(void) { progress(); }
int main(void) {
  pthread_t t;
  pthread_barrier_init(&ready, NULL, 4);
  for (int i = 0; i < 3; i++) pthread_create(&t, NULL, worker, NULL);
  outer();
}
"""

MANY = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static pthread_barrier_t ready;
__attribute__((noinline)) void wait_here(void) {
  pthread_barrier_wait(&ready);
  for (;;) sleep(100);
}
void *worker(void *arg) { (void)arg; wait_here(); return NULL; }
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  pthread_t t;
  pthread_barrier_init(&ready, NULL, n);
  for (int i = 1; i < n; i++) pthread_create(&t, NULL, worker, NULL);
  pthread_barrier_wait(&ready);
  printf("ready %d\n", getpid());
  fflush(stdout);
  for (;;) sleep(100);
}
"""

# creator threads that never stop creating and joining short-lived threads
CHURN = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static unsigned long joined;
void *shortlived(void *arg) {
  volatile int x = 0;
  for (int i = 0; i < 2000; i++) x += i;
  return arg;
}
void *creator(void *arg) {
  (void)arg;
  for (;;) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, shortlived, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    __atomic_add_fetch(&joined, 4, __ATOMIC_RELAXED);
  }
}
int main(void) {
  pthread_t t;
  for (int i = 0; i < 3; i++) pthread_create(&t, NULL, creator, NULL);
  printf("ready %d\n", getpid());
  for (;;) {
    printf("%lu\n", __atomic_load_n(&joined, __ATOMIC_RELAXED));
    fflush(stdout);
    usleep(20000);
  }
}
"""

# counts real-time signals (queued, never merged): a signal lost by the capture shows
SIGNALS = r"""
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static unsigned long count;
static void on_signal(int sig) { (void)sig; __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED); }
void *idle(void *arg) { (void)arg; for (;;) pause(); }
int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGRTMIN, &sa, NULL);
  pthread_t t;
  for (int i = 0; i < 2; i++) pthread_create(&t, NULL, idle, NULL);
  printf("ready %d\n", getpid());
  for (;;) {
    printf("%lu\n", __atomic_load_n(&count, __ATOMIC_RELAXED));
    fflush(stdout);
    usleep(5000);
  }
}
"""

# the main thread leaves (pthread_exit): the leader is a zombie, the process lives on
LEADERLESS = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
void *worker(void *arg) {
  (void)arg;
  unsigned long n = 0;
  for (;;) { printf("%lu\n", n++); fflush(stdout); usleep(5000); }
}
int main(void) {
  pthread_t t;
  printf("ready %d\n", getpid());
  fflush(stdout);
  pthread_create(&t, NULL, worker, NULL);
  pthread_exit(NULL);
}
"""

SOURCES = {"four": FOUR, "many": MANY, "churn": CHURN, "signals": SIGNALS, "leaderless": LEADERLESS}
#: programs built as distributions build them: optimized, without frame pointers (the
#: capture then scans each stack for return addresses)
OPTIMIZED = {"four-o2": FOUR}
OPTIMIZED_CFLAGS = ["-g", "-O2", "-fomit-frame-pointer", "-pthread"]


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler: apt-get install gcc"
    root = tmp_path_factory.mktemp("linux-capture")
    out = {}
    builds = [(name, source, CFLAGS) for name, source in SOURCES.items()]
    builds += [(name, source, OPTIMIZED_CFLAGS) for name, source in OPTIMIZED.items()]
    for name, source, flags in builds:
        (root / f"{name}.c").write_text(source)
        subprocess.run(
            [cc, *flags, "-o", str(root / name), str(root / f"{name}.c")],
            check=True,
            capture_output=True,
        )
        out[name] = root / name
    return out


class Target:
    """A running program whose stdout lines (a counter) are read in the background."""

    def __init__(self, argv: Sequence[str | Path], prefix: Sequence[str] = ()):
        self.proc = subprocess.Popen(
            [*prefix, *map(str, argv)], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        match = re.match(r"ready (\d+)", first)
        assert match, f"target said {first!r}"
        self.pid = int(match.group(1))
        self.last = -1
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.last = int(line)

    def progresses(self, timeout: float = 5.0) -> bool:
        """Whether the counter the target prints moves on."""
        start = self.last
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.last > start:
                return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def run() -> Iterator[Callable[..., Target]]:
    started: list[Target] = []

    def start(argv: Sequence[str | Path], prefix: Sequence[str] = ()) -> Target:
        t = Target(argv, prefix)
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()


# -- /proc helpers (independent of the backend) --------------------------------------------


def task_states(pid: int) -> dict[int, tuple[str, int]]:
    """tid -> (state letter, TracerPid) for every thread of ``pid``."""
    out: dict[int, tuple[str, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        out[int(tid)] = (fields["State"].split()[0], int(fields["TracerPid"]))
    return out


def assert_released(pid: int) -> None:
    """No thread of ``pid`` is in a ptrace stop or traced by anyone."""
    for tid, (state, tracer) in task_states(pid).items():
        assert state != "t", f"thread {tid} of {pid} left in a traced stop"
        assert tracer == 0, f"thread {tid} of {pid} still traced by {tracer}"


def maps(pid: int) -> list[tuple[int, int, str, int, str]]:
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append((start, end, parts[1], int(parts[2], 16), parts[5] if len(parts) > 5 else ""))
    return out


def symbols(path: Path | str, dynamic: bool = False) -> dict[str, tuple[int, int]]:
    """name -> (value, size) from nm."""
    args = ["nm", "-S", "--defined-only", *(["-D"] if dynamic else []), str(path)]
    out = {}
    for line in subprocess.run(args, capture_output=True, text=True, check=True).stdout.split("\n"):
        parts = line.split()
        if len(parts) == 4:
            out[parts[3].split("@")[0]] = (int(parts[0], 16), int(parts[1], 16))
    return out


def saved(snap: Snapshot, address: int, size: int) -> bool:
    try:
        snap.memory.read(address, size)
    except ModelError:
        return False
    return True


def frame_chain(snap: Snapshot, rbp: int) -> list[int]:
    """Return addresses along the saved frame-pointer chain, read from the snapshot."""
    out = []
    for _ in range(64):
        if not rbp or not saved(snap, rbp, 16):
            break
        record = snap.memory.read(rbp, 16)
        caller, ret = struct.unpack("<QQ", record)
        out.append(ret)
        if caller <= rbp:
            break
        rbp = caller
    return out


# -- decoding: the struct fast paths, checked against the construct declarations -------------


def test_register_decoding() -> None:
    data = os.urandom(linux_abi.FXSAVE_SIZE)
    ours = linux_abi.fxsave_registers(data)
    theirs = linux_abi_schema.user_fpregs_struct.parse(data)
    assert set(ours) == set(linux_abi.X86_64_FPREGS)
    assert set(ours) <= set(arch_info("x86_64").registers[RegKind.FPR])
    for name, value in ours.items():
        ref = theirs[name]
        ref = int.from_bytes(ref, "little") if isinstance(ref, bytes) else ref
        assert value == (ref & 0xFF if name == "ftw" else ref), name
    # decoded areas are remembered by their bytes: a repeat gives an equal, new dict
    again = linux_abi.fxsave_registers(bytes(bytearray(data)))
    assert again == ours and again is not ours
    again["fcw"] ^= 1
    assert linux_abi.fxsave_registers(data) == ours
    other = bytearray(data)
    other[160] ^= 1  # in xmm0
    assert linux_abi.fxsave_registers(bytes(other))["xmm0"] == ours["xmm0"] ^ 1
    regs = os.urandom(27 * 8)
    parsed = linux_abi_schema.user_regs_struct_x86_64.parse(regs)
    values = struct.unpack("<27Q", regs)
    names = linux_abi.X86_64_USER_REGS
    assert registers.gpr(regs) == {n: parsed[n] for n in names} == dict(zip(names, values))
    assert set(names) == set(arch_info("x86_64").registers[RegKind.GPR])


def test_xstate_trimmed_as_gcore_does() -> None:
    def area(xcr0: int, size: int) -> bytes:
        data = bytearray(size)
        data[464:472] = xcr0.to_bytes(8, "little")
        data[512:520] = xcr0.to_bytes(8, "little")  # XSTATE_BV
        return bytes(data)

    amx = (1 << 17) | (1 << 18)
    avx512 = 0x7 | 0xE0
    out = registers.trim_xstate(area(avx512 | amx, 11008))  # a CPU with AMX: 11,008 B
    assert len(out) == 2688
    assert int.from_bytes(out[464:472], "little") == avx512
    assert int.from_bytes(out[512:520], "little") == avx512
    assert len(registers.trim_xstate(area(avx512 | 1 << 9 | amx, 11008))) == 2696  # PKRU
    assert len(registers.trim_xstate(area(0x7, 832))) == 832  # AVX only: as ptrace gives it
    assert len(registers.trim_xstate(area(0x3, 576))) == 576


# -- /proc/PID/smaps: what the dirty policy and the MADV_DONTDUMP rule read ------------------


def test_smaps_written_and_dont_dump(tmp_path: Path) -> None:
    """procfs.written_in and dont_dump_in on this process's own smaps: a written private
    anonymous mapping is written, an untouched one and a read-only file are not; the
    mapping marked MADV_DONTDUMP is listed, a file whose name holds "VmFlags: dd" is not."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, *[ctypes.c_int] * 3, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    size = 4 * mmap.PAGESIZE
    anonymous = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    decoy = tmp_path / "x\nVmFlags: dd"
    with open(decoy, "wb") as f:
        f.write(b"\0" * size)
        os.fsync(f.fileno())  # (pages not yet written back count as Private_Dirty)
    with open(decoy, "rb") as f:
        at = {
            "written": libc.mmap(None, size, rw, anonymous, -1, 0),
            "untouched": libc.mmap(None, size, mmap.PROT_READ, anonymous, -1, 0),
            "secret": libc.mmap(None, size, rw, anonymous, -1, 0),
            "file": libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE, f.fileno(), 0),
        }
    try:
        assert all(a not in (None, ctypes.c_void_p(-1).value) for a in at.values()), at
        ctypes.memmove(at["written"], b"hello", 5)
        assert libc.madvise(at["secret"], size, mmap.MADV_DONTDUMP) == 0
        assert ctypes.string_at(at["file"], 1) == ctypes.string_at(at["untouched"], 1) == b"\0"
        mappings = procfs.maps("/proc/self")
        vma = {k: next((m.start, m.end) for m in mappings if m.contains(a)) for k, a in at.items()}
        assert "VmFlags" in next(m.path for m in mappings if m.start == vma["file"][0])
        text = procfs.smaps("/proc/self")
        assert text is not None and b"x\\012VmFlags: dd" in text  # (the kernel's escape)
        starts = procfs.written_in(text)
        assert vma["written"][0] in starts
        assert vma["untouched"][0] not in starts and vma["file"][0] not in starts
        marked = procfs.dont_dump_in(text)
        # (what madvise marked is a mapping of its own, split from any neighbour)
        assert (at["secret"], at["secret"] + size) in marked
        assert vma["file"] not in marked and vma["written"] not in marked
        assert (starts, sorted(marked)) == smaps_line_by_line(text)
    finally:
        for address in at.values():
            libc.munmap(address, size)
    assert procfs.smaps("/proc/0") is None


def test_smaps_later_gives_what_smaps_gives(
    programs: dict[str, Path], run: Callable[..., Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SmapsLater`` (smaps read on a thread of its own) gives ``smaps``' bytes, None for a
    process that is gone, and raises what the read raised, each time it is asked."""
    target = run([programs["four"]])  # (parked: its mappings stay as they are)
    where = procfs.directory(target.pid)
    later = procfs.SmapsLater(where)
    assert later.text() == later.text() == procfs.smaps(where) is not None
    assert procfs.SmapsLater("/proc/0").text() is None

    def fails(where: str) -> bytes:
        raise MemoryError(where)

    monkeypatch.setattr(procfs, "smaps", fails)
    failing = procfs.SmapsLater(where)
    for _ in range(2):
        with pytest.raises(MemoryError, match=where):
            failing.text()


def test_smaps_is_read_once_every_thread_stopped(
    programs: dict[str, Path], run: Callable[..., Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capture starts its smaps read (for the MADV_DONTDUMP rule) only once every thread
    is in a ptrace stop: a range marked before the stop is then always seen marked. Once a
    stop, and not kept past it."""
    target = run([programs["four"]])
    tids = set(task_states(target.pid))
    seen: list[dict[int, tuple[str, int]]] = []
    real = procfs.SmapsLater

    def recording(where: str) -> procfs.SmapsLater:
        seen.append(task_states(target.pid))
        return real(where)

    monkeypatch.setattr(procfs, "SmapsLater", recording)
    t = LinuxTarget(target.pid)
    for _ in range(2):
        capture(t)
    assert len(seen) == 2
    me = os.getpid()
    for states in seen:
        assert set(states) == tids
        assert all(state == "t" and tracer == me for state, tracer in states.values()), states
    assert t.held.smaps is None  # (resume forgot it)
    assert_released(target.pid)


def test_a_held_process_is_captured_from_its_stop(
    programs: dict[str, Path], run: Callable[..., Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LinuxTarget(pid, held=...)`` of a process ``Held`` stopped already captures from
    that stop (no second seize, the smaps read it started is the one used) and resumes
    it; a later capture stops it again as usual. A hold of another pid is refused."""
    from macminidump.capture.linux import ptrace
    from macminidump.capture.linux.held import Held

    target = run([programs["four"]])
    held = Held(target.pid)
    held.stop()
    started = held.smaps
    assert started is not None and all(s == "t" for s, _ in task_states(target.pid).values())
    seizes: list[int] = []
    real = ptrace.Tracee.seize_all

    def counting(tracee: ptrace.Tracee) -> None:
        seizes.append(tracee.pid)
        real(tracee)

    monkeypatch.setattr(ptrace.Tracee, "seize_all", counting)
    t = LinuxTarget(target.pid, held=held)
    seen: list[procfs.SmapsLater | None] = []
    real_text = LinuxTarget._smaps_text

    def noting(self: LinuxTarget) -> bytes:
        seen.append(self.held.smaps)
        return real_text(self)

    monkeypatch.setattr(LinuxTarget, "_smaps_text", noting)
    snap = capture(t)
    assert seizes == [] and seen[0] is started
    assert len(snap.threads) == 4
    assert_released(target.pid)
    assert target.progresses()
    capture(t)
    assert seizes == [target.pid]
    assert_released(target.pid)
    with pytest.raises(CaptureError, match="is held, not process"):
        LinuxTarget(target.pid + 1, held=held)


@pytest.mark.parametrize(
    ("large", "options", "loaded_at_stop"),
    [
        (True, [], []),
        (True, ["--max-size", "8M"], ["macminidump.capture.policy"]),
        (
            False,
            [],
            ["macminidump.api", "macminidump.capture.base", "macminidump.capture.policy"],
        ),
    ],
    ids=["large-default-policy", "large-policy-given", "small"],
)
def test_dump_holds_a_large_process_before_loading_the_capture(
    programs: dict[str, Path],
    run: Callable[..., Target],
    tmp_path: Path,
    large: bool,
    options: list[str],
    loaded_at_stop: list[str],
) -> None:
    """``macminidump dump`` stops a large process (``cli.EARLY_HOLD_RESIDENT``, 0 here for
    ``large``) before it imports the capture and the renderer, so that the kernel's smaps
    walk runs while they load: at the stop, neither ``macminidump.api`` nor the renderer
    is loaded yet, nor the memory policy unless a policy option was given (its values are
    checked before the process is touched). A smaller one is stopped once the capture is
    loaded (the renderer still loads while it is stopped, beside the walk), so the
    loading is no part of its pause. The core is whole either way."""
    target = run([programs["four"]])
    watched = ["macminidump.api", "macminidump.elf.render", "macminidump.capture.base"]
    watched.append("macminidump.capture.policy")
    argv = ["dump", str(target.pid), "-o", str(tmp_path / "core"), *options]
    code = (
        "import sys\nfrom macminidump.capture.linux import held\n"
        "real = held.Held.stop\nloaded = []\n"
        "def stop(self):\n"
        f"    loaded.append(sorted(m for m in sys.modules if m in {watched!r}))\n"
        "    real(self)\n"
        "held.Held.stop = stop\nfrom macminidump import cli\n"
        f"cli.EARLY_HOLD_RESIDENT = {0 if large else 'cli.EARLY_HOLD_RESIDENT'}\n"
        f"code = cli.main({argv!r})\n"
        "print(code, loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[-2] == f"0 [{loaded_at_stop!r}]", (done.stdout, done.stderr)
    from macminidump.elf.parse import parse_elf

    assert len(parse_elf(tmp_path / "core").threads) == 4
    assert_released(target.pid)
    assert target.progresses()


@pytest.mark.parametrize(("memory", "runs"), [("stacks", True), ("full", False)])
def test_the_process_runs_while_its_core_is_written(
    programs: dict[str, Path],
    run: Callable[..., Target],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    memory: str,
    runs: bool,
) -> None:
    """The process is paused only while its state is read: a stacks capture holds every
    byte before the file is written, so the process is released and goes on while the
    renderer runs; ``full`` streams large regions from it, so it stays stopped then."""
    from macminidump import streaming

    target = run([programs["four"]])
    real = streaming.format_of
    seen: list[tuple[bool, bool]] = []

    def render(snapshot: Snapshot, path: str | os.PathLike[str]) -> int:
        states = task_states(target.pid).values()
        released = all(state != "t" and tracer == 0 for state, tracer in states)
        stopped = all(state == "t" for state, _ in states)
        seen.append((released and target.progresses(), stopped))
        return real("elf")[0](snapshot, path)

    monkeypatch.setattr(streaming, "format_of", lambda fmt: (render, real(fmt)[1]))
    core = tmp_path / "core"
    streaming.write_captured(LinuxTarget(target.pid), core, "elf", CaptureOptions(memory=memory))
    assert seen == [(runs, not runs)]
    from macminidump.elf.parse import parse_elf

    assert len(parse_elf(core).threads) == 4
    assert_released(target.pid)


def test_the_resident_size_that_decides_the_early_hold(
    programs: dict[str, Path], run: Callable[..., Target]
) -> None:
    """``procfs.resident``: /proc/PID/status's VmRSS in bytes (give or take what the
    process touched between the two reads), and 0 for a process that is not there."""
    target = run([programs["four"]])
    status = Path(f"/proc/{target.pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]
    assert abs(procfs.resident(procfs.directory(target.pid)) - rss) <= 64 * 1024
    assert procfs.resident(procfs.directory(2**22 + 1)) == 0  # (above pid_max's largest)


def test_dump_releases_a_held_process_when_the_capture_never_starts(
    programs: dict[str, Path],
    run: Callable[..., Target],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A failure between the dump's early stop of a large process and the capture (here
    write_core refusing) leaves the process running and untraced, and is reported as
    any other."""
    from macminidump import api, cli

    target = run([programs["four"]])
    held: list[bool] = []

    def refusing(*args: object, **kwargs: object) -> int:
        held.append(all(state == "t" for state, _ in task_states(target.pid).values()))
        raise CaptureError("refused for the test")

    monkeypatch.setattr(api, "write_core", refusing)
    monkeypatch.setattr(cli, "EARLY_HOLD_RESIDENT", 0)  # (the program is small)
    assert cli.main(["dump", str(target.pid), "-o", str(tmp_path / "core")]) != 0
    assert held == [True]
    assert_released(target.pid)
    assert target.progresses()
    assert not (tmp_path / "core").exists()
    monkeypatch.undo()
    # a bad option value is refused before the process is touched, with the usual line
    argv = ["dump", str(target.pid), "-o", str(tmp_path / "core"), "--max-size", "lots"]
    assert cli.main(argv) == 2
    assert "'lots' is not a size" in capsys.readouterr().err
    assert_released(target.pid)
    assert not (tmp_path / "core").exists()


def smaps_line_by_line(text: bytes) -> tuple[set[int], list[tuple[int, int]]]:
    """The test's own reading of smaps, one line at a time: (written, dont_dump)."""
    written, marked = set(), []
    for line in text.decode().splitlines():
        header = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) ", line)
        if header:
            start, end, private = int(header[1], 16), int(header[2], 16), header[3][3] == "p"
            continue
        key, _, value = line.partition(":")
        if key in ("Anonymous", "Private_Dirty") and private and int(value.split()[0]):
            written.add(start)
        if key == "VmFlags" and "dd" in value.split():
            marked.append((start, end))
    return written, sorted(marked)


# -- a 4-thread program -------------------------------------------------------------------


def test_four_threads(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    target = run([programs["four"]])
    pid = target.pid
    before = maps(pid)
    tids = set(task_states(pid))
    start = time.perf_counter()
    snap = capture_pid(pid)
    elapsed = time.perf_counter() - start
    total = sum(r.size for r in snap.regions)
    print(f"\n4-thread capture: {elapsed * 1e3:.1f} ms, {len(snap.regions)} regions, {total} B")

    # threads: the live ones, the leader first, named, with registers of every kind
    assert len(snap.threads) == 4
    assert {t.id for t in snap.threads} == tids
    assert snap.threads[0].id == pid
    for t in snap.threads:
        assert t.name == "four"
        assert {r.kind for r in t.regsets} == {RegKind.GPR, RegKind.FPR}
        assert t.raw_states == () and t.xsave is not None
        assert 576 <= len(t.xsave) <= 2696

    # stacks: from the page holding sp - 128 to the end of the stack's mapping (the main
    # thread's to its environment strings, left out), rip in executable code
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    env_start, env_end = int(stat[47]), int(stat[48])
    assert env_start and not saved(snap, env_start, 1) and not saved(snap, env_end - 1, 1)
    exe_start = next(s for s, _, _, off, p in before if p == str(programs["four"]) and off == 0)
    syms = symbols(programs["four"])
    for t in snap.threads:
        rsp, rip = t.gpr["rsp"], t.gpr["rip"]
        stack = next(m for m in before if m[0] <= rsp < m[1])
        assert "w" in stack[2]
        region = next(r for r in snap.regions if r.contains(rsp))
        assert region.address == max(stack[0], (rsp - 128) & ~0xFFF)
        assert region.end == (env_start if stack[0] <= env_start < stack[1] else stack[1])
        code = next(m for m in before if m[0] <= rip < m[1])
        assert "x" in code[2]
        assert saved(snap, rip - 16, 32), "no code around the pc"
        # the frame chain, read back from the snapshot, names the program's functions
        rets = frame_chain(snap, t.gpr["rbp"])
        names = []
        for ret in rets:
            for name, (value, size) in syms.items():
                if exe_start + value <= ret < exe_start + value + size:
                    names.append(name)
            # a code window around every return address
            assert saved(snap, ret - 16, 32), f"no code at {ret:#x}"
        in_exe = [n for n, (v, z) in syms.items() if exe_start + v <= rip < exe_start + v + z]
        if t.id != pid:
            assert in_exe == ["sys_call2"] and names[:4] == ["depth3", "depth2", "depth1", "worker"]
        elif in_exe == ["sys_call2"]:  # else in printf, a moment out of its nap
            assert names[:3] == ["progress", "outer", "main"], names

    # what gdb needs to find the libraries: r_debug, every link_map node and name, vdso
    ld = next(p for _, _, _, _, p in before if "ld-linux" in p)
    ld_base = next(s for s, _, _, off, p in before if p == ld and off == 0)
    r_debug = ld_base + symbols(ld, dynamic=True)["_r_debug"][0]
    assert saved(snap, r_debug, 40)
    node = snap.memory.read_u64(r_debug + 8)
    names = []
    while node:
        assert saved(snap, node, 40)
        l_name = snap.memory.read_u64(node + 8)
        names.append(snap.memory.read_cstring(l_name))  # raises if not saved
        node = snap.memory.read_u64(node + 24)
    assert len(names) == 4 and names[0] == "" and "linux-vdso.so.1" in names
    assert any("libc.so.6" in n for n in names)
    vdso = next((s, e) for s, e, _, _, p in before if p == "[vdso]")
    assert any(r.address <= vdso[0] and vdso[1] <= r.end for r in snap.regions)
    # nothing unreadable was described
    for r in snap.regions:
        assert not any(
            p in ("[vvar]", "[vsyscall]") and s <= r.address < e for s, e, _, _, p in before
        )

    # images: the executable (main) and libc at the start of its first mapping
    main = snap.main_image
    assert main is not None and main.path == str(programs["four"])
    assert main.load_address == exe_start
    libc = next(i for i in snap.images if i.path.endswith("libc.so.6"))
    libc_real = os.path.realpath(libc.path)
    assert libc.load_address == next(s for s, _, _, off, p in before if p == libc_real and off == 0)
    assert any("ld-linux" in i.path for i in snap.images)

    # process facts
    assert dict(snap.auxv)[AT_PHDR] > 0
    raw = Path(f"/proc/{pid}/auxv").read_bytes()
    pairs = list(struct.iter_unpack("<QQ", raw))
    assert list(snap.auxv) == pairs[: pairs.index((0, 0))]
    assert snap.process is not None
    assert (snap.process.pid, snap.process.name) == (pid, "four")
    assert snap.process.ppid == os.getpid()
    assert snap.process.args == str(programs["four"])
    assert snap.file_mappings and all(
        not any(m[0] == f.start and "w" in m[2] for m in before) for f in snap.file_mappings
    )
    assert snap.file_mappings[0].path == str(programs["four"])

    # and it runs on
    assert_released(pid)
    assert target.progresses()


def test_stacks_without_frame_pointers_are_scanned(
    programs: dict[str, Path], run: Callable[..., Target]
) -> None:
    """An optimized program keeps no frame chain: each thread's saved stack is scanned,
    and every word of it that points into code (the first SCAN_HITS within SCAN_BYTES of
    sp, found here from /proc/PID/maps) gets its code window; among them addresses in the
    program and in libc (where its threads start)."""
    from macminidump.capture.base import SCAN_BYTES, SCAN_HITS

    target = run([programs["four-o2"]])
    code = [(s, e, p) for s, e, perms, _, p in maps(target.pid) if "x" in perms]
    snap = capture_pid(target.pid)
    assert len(snap.threads) == 4
    for t in snap.threads:
        rsp = t.gpr["rsp"]
        stack = next(r for r in snap.regions if r.contains(rsp))
        end = min(stack.end, rsp + SCAN_BYTES) - 7
        words = [snap.memory.read_u64(a) for a in range(rsp, end, 8)]
        hits = [w for w in words if any(s <= w < e for s, e, _ in code)][:SCAN_HITS]
        for word in hits:
            start, end = next((s, e) for s, e, _ in code if s <= word < e)
            low, high = max(word - 16, start), min(word + 16, end)  # (windows stop there)
            assert saved(snap, low, high - low), f"thread {t.id}: no code at {word:#x}"
        paths = {p for w in hits for s, e, p in code if s <= w < e}
        assert str(programs["four-o2"]) in paths, (t.id, paths)
        assert any(p.endswith(".so.6") and "libc" in p for p in paths), (t.id, paths)


def test_repeated_and_idempotent(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    target = run([programs["four"]])
    t = LinuxTarget(target.pid)
    t.resume()  # never stopped: nothing to do
    for _ in range(3):
        capture(t)
    t.stop()
    t.resume()
    t.resume()
    assert_released(target.pid)
    assert target.progresses()


def test_a_live_core_rebuilds_from_its_spec(
    programs: dict[str, Path], run: Callable[..., Target]
) -> None:
    """to-spec then build of a live core gives the same core, on the machine where its
    binaries exist (their files are ELF: a spec that gives uuid and segments does not
    read them)."""
    from macminidump.elf.parse import parse_elf_bytes
    from macminidump.elf.render import render_elf_bytes
    from macminidump.spec import snapshot_from_spec, spec_from_snapshot

    target = run([programs["four"]])
    core = render_elf_bytes(capture_pid(target.pid))
    spec = spec_from_snapshot(parse_elf_bytes(core), "elf")
    assert any(os.path.isfile(b["name"]) for b in spec["binaries"])
    assert render_elf_bytes(snapshot_from_spec(spec)) == core


def test_register_states_are_not_kept_past_the_capture_or_the_file(
    programs: dict[str, Path], run: Callable[..., Target], tmp_path: Path
) -> None:
    """The decode and encode memos hold register contents (an xmm register may hold a
    key): empty once a capture resumes its target, a core is written, or one is read."""
    from macminidump.elf import notes
    from macminidump.elf.parse import parse_elf
    from macminidump.elf.render import render_elf

    target = run([programs["four"]])
    snapshot = capture_pid(target.pid)
    assert not linux_abi._FXSAVE_DECODED
    render_elf(snapshot, tmp_path / "core")
    assert not linux_abi._FXSAVE_DECODED and not notes._FPREGSET_ENCODED
    assert len(parse_elf(tmp_path / "core").threads) == 4
    assert not linux_abi._FXSAVE_DECODED


def test_stopped_process_stays_stopped(
    programs: dict[str, Path], run: Callable[..., Target]
) -> None:
    target = run([programs["four"]])
    os.kill(target.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while any(s != "T" for s, _ in task_states(target.pid).values()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    snap = capture_pid(target.pid)
    assert len(snap.threads) == 4
    time.sleep(0.05)
    assert {s for s, _ in task_states(target.pid).values()} == {"T"}
    os.kill(target.pid, signal.SIGCONT)
    assert_released(target.pid)
    assert target.progresses()


def test_leader_exited(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    target = run([programs["leaderless"]])
    assert target.progresses()
    snap = capture_pid(target.pid)
    assert [t.id for t in snap.threads] != [] and target.pid not in [t.id for t in snap.threads]
    assert target.progresses()


def test_no_signal_lost(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    """Signals arriving while threads are being stopped (signal-delivery-stops) are handed
    back on detach: real-time signals queue, so the target's count must match exactly."""
    target = run([programs["signals"]])
    sent = 0
    refused: list[int] = []
    done = threading.Event()

    def send() -> None:
        nonlocal sent
        while not done.is_set():
            # sigqueue, not kill: past the per-user queue limit (RLIMIT_SIGPENDING, shared
            # by every process of the user) kill() still succeeds but a real-time signal
            # is merged into the one already pending (lost by the kernel, not the
            # capture), while sigqueue() refuses it with EAGAIN: so every counted one queued
            if _sigqueue(target.pid, signal.SIGRTMIN, None) != 0:
                refused.append(ctypes.get_errno())
                if refused[-1] != errno.EAGAIN:
                    return
                time.sleep(0.001)
                continue
            sent += 1
            if sent % 50 == 0:
                time.sleep(0.0002)

    class Counting(LinuxTarget):
        delivery_stops = 0
        handed_back = 0

        def resume(self) -> None:
            Counting.delivery_stops += bool(self.tracee.pending_signals)
            Counting.handed_back += len(self.tracee.pending_signals)
            super().resume()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        for _ in range(300):
            capture(Counting(target.pid))
    finally:
        done.set()
        sender.join()
    assert set(refused) <= {errno.EAGAIN}, [os.strerror(e) for e in refused]
    waited = wait_for_signals_handled(target, signal.SIGRTMIN, sent)
    print(
        f"\n{sent} signals during 300 captures ({Counting.delivery_stops} caught a thread "
        f"in a signal-delivery-stop, {Counting.handed_back} handed back on detach; "
        f"{len(refused)} refused: queue full), {target.last} handled "
        f"({waited:.1f} s after the last capture)"
    )
    assert target.last == sent


_sigqueue = ctypes.CDLL(None, use_errno=True).sigqueue
_sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]


def pending_signals(pid: int) -> int:
    """The signals pending in process ``pid``: its shared set (ShdPnd) and every thread's
    own (SigPnd), as one mask (bit n-1 for signal n)."""
    mask = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                if line.startswith(("ShdPnd:", "SigPnd:")):
                    mask |= int(line.split()[1], 16)
    return mask


def wait_for_signals_handled(
    target: Target, signo: int, sent: int, quiet: float = 5.0, ceiling: float = 300.0
) -> float:
    """Wait while the target catches up with the ``sent`` signals ``signo``; the seconds
    waited. On a loaded machine tens of thousands may still be queued after the last
    capture, and the counter the target prints stands still while its main thread works
    through them in its handler: so the wait goes on while the signal is pending or the
    counter moved within ``quiet`` seconds, and ends once neither (or at ``ceiling``)."""
    start = last_change = time.monotonic()
    seen = target.last
    while target.last != sent:
        now = time.monotonic()
        if target.last != seen or pending_signals(target.pid) & (1 << (signo - 1)):
            seen, last_change = target.last, now
        if now - last_change > quiet or now - start > ceiling:
            break
        time.sleep(0.01)
    return time.monotonic() - start


# -- errors ------------------------------------------------------------------------------------


def test_no_such_process() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    with pytest.raises(CaptureError, match=f"no such process: {pid_max + 1}"):
        capture_pid(pid_max + 1)
    with pytest.raises(CaptureError, match="this process"):
        capture_pid(os.getpid())


def test_a_thread_id_is_not_a_process(
    programs: dict[str, Path], run: Callable[..., Target]
) -> None:
    target = run([programs["four"]])
    tid = max(task_states(target.pid))
    with pytest.raises(CaptureError, match=f"{tid} is a thread of process {target.pid}"):
        capture_pid(tid)


def test_already_traced(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    strace = shutil.which("strace")
    assert strace, "no strace: apt-get install strace"
    target = run([programs["four"]], prefix=[strace, "-f", "-o", os.devnull])
    with pytest.raises(CaptureError, match=r"already traced by process \d+ \(strace\)"):
        capture_pid(target.pid)
    # untouched: still traced by strace only, and running
    assert {tr for _, tr in task_states(target.pid).values()} == {target.proc.pid}
    assert target.progresses()


def test_permission_denied(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    """As an unprivileged user (a forked child that drops root), the error says why."""
    target = run([programs["four"]])
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        message = "no error"
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            capture_pid(target.pid)
        except CaptureError as exc:
            message = f"CaptureError: {exc}"
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        message = f.read()
    os.waitpid(child, 0)
    assert message.startswith("CaptureError: permission denied to trace process"), message
    assert "not root (running as uid 65534; the process belongs to uid 0)" in message
    assert "\n" not in message
    assert_released(target.pid)


class KillAt(LinuxTarget):
    """A LinuxTarget that SIGKILLs its target at a chosen call (the injected failure)."""

    def __init__(self, pid: int, at: str, after: int = 0, action: str = "kill"):
        super().__init__(pid)
        self.at, self.after, self.action, self.calls = at, after, action, 0
        wait_stopped = self.tracee.wait_stopped

        def hooked(deadline: float, strict: bool) -> None:
            self._hit("stop")
            wait_stopped(deadline, strict)

        self.tracee.wait_stopped = hooked  # type: ignore[method-assign]

    def _hit(self, name: str) -> None:
        if name != self.at:
            return
        self.calls += 1
        if self.calls != self.after + 1:
            return
        if self.action == "interrupt":
            raise KeyboardInterrupt
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(s == "t" for s, _ in task_states(self.pid).values()):
            assert time.monotonic() < deadline
            time.sleep(0.001)

    def threads(self):  # type: ignore[no-untyped-def]
        self._hit("threads")
        return super().threads()

    def read(self, address: int, size: int) -> bytes:
        self._hit("read")
        return super().read(address, size)

    def images(self):  # type: ignore[no-untyped-def]
        self._hit("images")
        return super().images()


def gone(target: Target) -> bool:
    target.proc.wait(timeout=10)
    states = task_states(target.pid)
    return all(s in ("Z", "X") for s, _ in states.values())


@pytest.mark.parametrize(
    ("at", "after"), [("stop", 0), ("threads", 0), ("read", 0), ("read", 5), ("images", 0)]
)
def test_killed_during_capture(
    programs: dict[str, Path], run: Callable[..., Target], at: str, after: int
) -> None:
    target = run([programs["four"]])
    t = KillAt(target.pid, at, after)
    with pytest.raises(CaptureError, match=f"process {target.pid} exited during capture"):
        capture(t)
    assert t.exited
    assert gone(target)


def test_interrupted_capture_resumes(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    target = run([programs["four"]])
    for at, after in [("stop", 0), ("threads", 0), ("read", 3), ("images", 0)]:
        with pytest.raises(KeyboardInterrupt):
            capture(KillAt(target.pid, at, after, action="interrupt"))
        assert_released(target.pid)
        assert target.progresses()


def test_killed_from_another_thread(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    """Captures in a loop while a timer kills the target: each either succeeds or raises
    CaptureError, none hangs, and the dead target is not kept from being reaped."""
    for delay in (0.003, 0.011, 0.027):
        target = run([programs["churn"]])
        timer = threading.Timer(delay, os.kill, (target.pid, signal.SIGKILL))
        timer.start()
        ok = 0
        with pytest.raises(CaptureError):
            for _ in range(10_000):
                capture_pid(target.pid)
                ok += 1
        timer.join()
        assert gone(target)


# -- scale ---------------------------------------------------------------------------------------


def test_hundred_threads_fast(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    target = run([programs["many"], "100"])
    times, stops = [], []
    for _ in range(10):
        t = LinuxTarget(target.pid)
        start = time.perf_counter()
        snap = capture(t)
        times.append(time.perf_counter() - start)
        stops.append(t.stop_seconds)
        assert len(snap.threads) == 100
    total = sum(r.size for r in snap.regions)
    print(
        f"\n100-thread capture: median {statistics.median(times) * 1e3:.1f} ms "
        f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}); stop "
        f"{statistics.median(stops) * 1e3:.1f} ms; {len(snap.regions)} regions, {total} B"
    )
    assert statistics.median(times) < 0.5
    assert_released(target.pid)


def test_soak_thread_churn(programs: dict[str, Path], run: Callable[..., Target]) -> None:
    target = run([programs["churn"]])
    failures: list[str] = []
    counts = []
    start = time.perf_counter()
    for _ in range(400):
        try:
            snap = capture_pid(target.pid)
            counts.append(len(snap.threads))
        except CaptureError as exc:
            failures.append(str(exc))
        assert_released(target.pid)
    elapsed = time.perf_counter() - start
    print(
        f"\nsoak: 400 captures in {elapsed:.1f} s ({elapsed / 400 * 1e3:.1f} ms each), "
        f"threads {min(counts, default=0)}-{max(counts, default=0)}, {len(failures)} failures"
    )
    assert failures == []
    assert target.progresses()
