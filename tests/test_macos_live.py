"""Live capture on a real Mac (``capture/mach/`` against the real kernel).

Marked ``macos``: ``tests/conftest.py`` deselects these off macOS and says so in the
summary ("not run: macOS only"). ``.github/workflows/macos.yml`` runs them on an arm64
and an x86_64 runner: those also marked ``root`` under ``sudo`` (``task_for_pid`` of
another process needs root), the others as the runner's user. Each core is opened with
the runner's own ``lldb`` and what it shows is checked:

- self dumps of a Python process whose other threads spin, fight for the GIL (switch
  interval 1 µs) and allocate, 20 in a row (a hang fails on the timeout): every thread
  is in the core, and the calling thread's backtrace shows it blocked in ``read`` inside
  ``write_core`` with the interpreter's frames down to ``main``;
- a dump of a child (a C program whose main and worker sit in level1 -> level2 -> level3);
- crashes in a child Python process whose ``SA_SIGINFO`` handler calls ``write_core`` with
  its ucontext, as the C++ macMiniDump's test matrix does: null write, bad call and
  abort, each on the main and on a background thread; the crashed thread comes first
  with its stop reason (arm64) and fault address;
- the same crashes under ``macminidump run`` (exception ports, no handler in the child):
  the exit status is the signal's, and the core is the same.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from macminidump import parse_core

pytestmark = pytest.mark.macos
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

CHILD_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#define NOINLINE __attribute__((noinline))
volatile int sink;
NOINLINE int level3(int d) { for (;;) { sink = d; sleep(1); } return d; }
NOINLINE int level2(int d) { int r = level3(d + 1); sink = r; return r; }
NOINLINE int level1(int d) { int r = level2(d + 1); sink = r; return r; }
NOINLINE void *worker(void *arg) { level1((int)(long)arg); return NULL; }
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, (void *)10);
    usleep(200000);
    printf("ready\n");
    fflush(stdout);
    return level1(0);
}
"""

SELF_DUMPER = r"""
import json, sys, threading, time
import macminidump

core, facts, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
stop = threading.Event()

def spin():
    x = 0
    while not stop.is_set():
        x += 1

def contend():
    while not stop.is_set():
        time.sleep(0)

def allocate():
    while not stop.is_set():
        bytearray(1 << 16)

sys.setswitchinterval(1e-6)
busy = [threading.Thread(target=f) for f in (spin, spin, contend, contend, allocate)]
for t in busy:
    t.start()

def calls_write_core():
    for _ in range(rounds):
        macminidump.write_core(core)
    return macminidump.capture_process()

snapshot = calls_write_core()
stop.set()
for t in busy:
    t.join()
json.dump(
    {
        "caller": threading.get_native_id(),
        "busy": [t.native_id for t in busy],
        "captured": [t.id for t in snapshot.threads],
    },
    open(facts, "w"),
)
"""

CRASHER = r"""
import ctypes, json, os, sys, threading
import macminidump
from macminidump.capture.mach import crash_context_from_ucontext
from macminidump.model import SignalInfo

kind, where, core, facts, handler_wanted = sys.argv[1:6]
libc = ctypes.CDLL("/usr/lib/libSystem.B.dylib", use_errno=True)
SA_ONSTACK, SA_SIGINFO = 0x1, 0x40
HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)

class sigaction_t(ctypes.Structure):  # struct sigaction: handler, sa_mask, sa_flags
    _fields_ = [("handler", HANDLER), ("mask", ctypes.c_uint32), ("flags", ctypes.c_int)]

def thread_id():
    tid = ctypes.c_uint64()
    libc.pthread_threadid_np(None, ctypes.byref(tid))
    return tid.value

MAIN = thread_id()

def on_crash(signo, info, context):
    # siginfo_t: si_signo @0, si_errno @4, si_code @8, si_addr @24
    code = ctypes.c_int.from_address(info + 8).value
    address = ctypes.c_uint64.from_address(info + 24).value
    tid = thread_id()
    crash = crash_context_from_ucontext(
        context, tid, signal=SignalInfo(signo=signo, code=code, address=address)
    )
    macminidump.write_core(core, crash=crash)
    with open(facts, "w") as f:
        json.dump({"tid": tid, "main": MAIN, "signo": signo, "address": address}, f)
    os._exit(0)

if handler_wanted == "handler":
    handler = HANDLER(on_crash)
    action = sigaction_t(handler, 0, SA_SIGINFO | SA_ONSTACK)
    for signo in (4, 6, 10, 11):  # SIGILL, SIGABRT, SIGBUS, SIGSEGV
        assert libc.sigaction(signo, ctypes.byref(action), None) == 0
else:
    with open(facts, "w") as f:
        json.dump({"main": MAIN}, f)

def crash():
    if where == "thread" and handler_wanted != "handler":
        with open(facts, "w") as f:
            json.dump({"main": MAIN, "tid": thread_id()}, f)
    if kind == "null-write":
        ctypes.memset(0, 1, 8)
    elif kind == "bad-call":
        ctypes.CFUNCTYPE(None)(8)()
    else:
        libc.abort()

if where == "main":
    if handler_wanted != "handler":
        with open(facts, "w") as f:
            json.dump({"main": MAIN, "tid": MAIN}, f)
    crash()
else:
    t = threading.Thread(target=crash, name="crasher")
    t.start()
    t.join()
sys.exit(3)  # not reached
"""


def lldb(core: Path, *commands: str, exe: str | None = None) -> str:
    tool = shutil.which("lldb")
    assert tool, "lldb not found (Xcode command line tools)"
    target = f"target create --core {core}" + (f" {exe}" if exe else "")
    args = [tool, "--batch", "-o", target]
    for command in commands:
        args += ["-o", command]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    print(proc.stdout, proc.stderr, sep="\n")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


_THREAD = re.compile(r"^\s*\*?\s*thread #(\d+)(.*)$")
#: "frame #0: 0x... module`function + 8", or "...`function(arg=1) at file.c:3" with
#: debug info: the function's name stops at a space or "("
_FRAME = re.compile(r"^\s*\*?\s*frame #\d+: 0x[0-9a-fA-F]+ (?:([^`\s]+)`)?([^\s(]+)")


def backtraces(out: str) -> dict[int, tuple[str, list[str]]]:
    """``bt all`` output -> thread index -> (its header line, its frames' function names)."""
    threads: dict[int, tuple[str, list[str]]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if m := _THREAD.match(line):
            current = []
            threads[int(m.group(1))] = (m.group(2), current)
        elif (m := _FRAME.match(line)) and current is not None:
            current.append(m.group(2))
    return threads


def test_self_dump_with_busy_python_threads(tmp_path: Path) -> None:
    core, facts = tmp_path / "self.core", tmp_path / "facts.json"
    script = tmp_path / "self_dumper.py"
    script.write_text(textwrap.dedent(SELF_DUMPER))
    proc = subprocess.run(
        [sys.executable, str(script), str(core), str(facts), "20"],
        capture_output=True,
        text=True,
        timeout=600,  # a deadlock fails here
        env=ENV,
    )
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(facts.read_text())
    parsed = parse_core(core)
    ids = [t.id for t in parsed.threads]
    for tid in [info["caller"], *info["busy"]]:
        assert tid in ids, (tid, ids)
        assert tid in info["captured"]
    out = lldb(core, "bt all")
    threads = backtraces(out)
    assert len(threads) == len(ids)
    # LLDB numbers a core's threads in LC_THREAD order, from 1
    _header, frames = threads[ids.index(info["caller"]) + 1]
    print(frames)
    assert any(f in ("read", "__read_nocancel") for f in frames[:4]), frames
    assert any("PyEval" in f or f.startswith("_Py") for f in frames), frames
    assert "main" in frames, frames
    paths = [image.path for image in parsed.images]
    assert any(p.endswith("/dyld") for p in paths), paths
    main = parsed.main_image
    assert main is not None and os.path.basename(main.path).startswith("python"), paths


@pytest.mark.root
def test_dump_of_a_child(tmp_path: Path) -> None:
    from macminidump.capture.mach import capture_mach
    from macminidump.macho.render import render_macho

    source = tmp_path / "child.c"
    source.write_text(CHILD_C)
    exe = tmp_path / "child"
    subprocess.run(
        ["cc", "-g", "-O0", "-fno-omit-frame-pointer", str(source), "-o", str(exe)], check=True
    )
    child = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        snapshot = capture_mach(child.pid)
    finally:
        child.kill()
        child.wait()
    assert len(snapshot.threads) == 2
    main = snapshot.main_image
    assert main is not None and os.path.realpath(main.path) == os.path.realpath(exe)
    core = tmp_path / "child.core"
    render_macho(snapshot, core)
    for exe_arg in (None, str(exe)):
        threads = backtraces(lldb(core, "bt all", exe=exe_arg))
        names = [f for _header, frames in threads.values() for f in frames]
        for name in ("level3", "level2", "level1", "main", "worker"):
            assert name in names, name


CRASHES = [
    (kind, where) for kind in ("null-write", "bad-call", "abort") for where in ("main", "thread")
]
CRASH_IDS = [f"{k}-{w}" for k, w in CRASHES]
#: the fault address each crash kind makes (none for abort)
FAULT = {"null-write": 0, "bad-call": 8, "abort": None}
#: arm64 ESR exception class of each fault, as LLDB names it in the stop reason
ESR_CLASS = {"null-write": "ESR_EC_DABORT_EL0", "bad-call": "ESR_EC_IABORT_EL0"}


def check_crash_core(core: Path, kind: str, where: str, tid: int, main_tid: int) -> None:
    """The crashed thread first, its id, its fault in the exception state and, on arm64,
    in LLDB's stop reason; its frames what the crash kind calls for."""
    parsed = parse_core(core)
    crashed = parsed.threads[0]
    assert crashed.id == tid
    assert (crashed.id == main_tid) == (where == "main")
    exc = dict(crashed.exception)
    arm64 = parsed.arch == "arm64"
    if kind == "bad-call":
        assert crashed.gpr["pc" if arm64 else "rip"] == 8
    if FAULT[kind] is not None:
        assert exc["far" if arm64 else "faultvaddr"] == FAULT[kind], exc
        if not arm64:
            assert exc["trapno"] == 14, exc  # page fault
    threads = backtraces(lldb(core, "bt all"))
    header, frames = threads[1]
    print(header, frames)
    if arm64 and FAULT[kind] is not None:
        # LLDB's stop reason of an arm64 core comes from ESR/FAR (x86_64 cores get none)
        assert ESR_CLASS[kind] in header and f"fault address: {FAULT[kind]:#x}" in header
    if kind == "null-write":
        assert frames[0].startswith(("_platform_memset", "memset")), frames
    elif kind == "abort":
        assert "abort" in frames and any("pthread_kill" in f for f in frames), frames


@pytest.mark.parametrize(("kind", "where"), CRASHES, ids=CRASH_IDS)
def test_crash_in_a_signal_handler(kind: str, where: str, tmp_path: Path) -> None:
    core, facts = tmp_path / "crash.core", tmp_path / "facts.json"
    script = tmp_path / "crasher.py"
    script.write_text(textwrap.dedent(CRASHER))
    proc = subprocess.run(
        [sys.executable, str(script), kind, where, str(core), str(facts), "handler"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    print(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(facts.read_text())
    expected = {signal.SIGABRT} if kind == "abort" else {signal.SIGSEGV, signal.SIGBUS}
    assert info["signo"] in expected
    if FAULT[kind] is not None:
        assert info["address"] == FAULT[kind]
    check_crash_core(core, kind, where, info["tid"], info["main"])


@pytest.mark.parametrize(("kind", "where"), CRASHES, ids=CRASH_IDS)
def test_crash_under_run(kind: str, where: str, tmp_path: Path) -> None:
    """`macminidump run`: the crash comes through the child's exception port (EXC_CRASH),
    the core is written, and the child dies of its signal as it would have."""
    core, facts = tmp_path / "run.core", tmp_path / "facts.json"
    script = tmp_path / "crasher.py"
    script.write_text(textwrap.dedent(CRASHER))
    proc = subprocess.run(
        [sys.executable, "-m", "macminidump", "run", "-o", str(core), "--"]
        + [sys.executable, str(script), kind, where, str(core) + ".unused", str(facts), "none"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    print(proc.stdout, proc.stderr)
    signals = (signal.SIGABRT,) if kind == "abort" else (signal.SIGSEGV, signal.SIGBUS)
    assert proc.returncode in [128 + s for s in signals], proc.returncode
    info = json.loads(facts.read_text())
    check_crash_core(core, kind, where, info["tid"], info["main"])
