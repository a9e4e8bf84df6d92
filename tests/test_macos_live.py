"""Live capture on a real Mac (``capture/mach/`` against the real kernel).

Marked ``macos``: ``tests/conftest.py`` deselects these off macOS and says so in the
summary ("not run: macOS only"). ``.github/workflows/macos.yml`` runs them on arm64 and
x86_64 runners under ``sudo`` (``task_for_pid`` of a child needs root). Each core is
opened with the runner's own ``lldb`` and its backtrace checked.

- a dump of the test process itself;
- a dump of a child (a C program whose main and worker sit in level1 -> level2 -> level3);
- crashes in a child Python process whose ``SA_SIGINFO`` handler calls the API with its
  ucontext, as the C++ macMiniDump's test matrix does: null write, bad call and abort,
  each on the main and on a background thread.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.macos

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

CRASHER = r"""
import ctypes, json, os, sys, threading
from macminidump.capture.mach import capture_mach, crash_context_from_ucontext
from macminidump.macho.render import render_macho
from macminidump.model import SignalInfo

kind, where, core, facts = sys.argv[1:5]
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
    render_macho(capture_mach(crash=crash), core)
    with open(facts, "w") as f:
        json.dump({"tid": tid, "main": MAIN, "signo": signo, "address": address}, f)
    os._exit(0)

handler = HANDLER(on_crash)
action = sigaction_t(handler, 0, SA_SIGINFO | SA_ONSTACK)
for signo in (4, 6, 10, 11):  # SIGILL, SIGABRT, SIGBUS, SIGSEGV
    assert libc.sigaction(signo, ctypes.byref(action), None) == 0

def crash():
    if kind == "null-write":
        ctypes.memset(0, 1, 8)
    elif kind == "bad-call":
        ctypes.CFUNCTYPE(None)(8)()
    else:
        libc.abort()

if where == "main":
    crash()
else:
    t = threading.Thread(target=crash, name="crasher")
    t.start()
    t.join()
sys.exit(3)  # not reached: the handler exits
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


def test_self_dump(tmp_path: Path) -> None:
    from macminidump import parse_core
    from macminidump.capture.mach import capture_mach
    from macminidump.macho.render import render_macho

    snapshot = capture_mach()
    assert snapshot.threads
    paths = [image.path for image in snapshot.images]
    assert any(p.endswith("/dyld") for p in paths), paths
    main = snapshot.main_image
    assert main is not None and os.path.basename(main.path).startswith("python"), paths
    core = tmp_path / "self.core"
    render_macho(snapshot, core)
    assert len(parse_core(core).threads) == len(snapshot.threads)
    out = lldb(core, "thread list", "bt all")
    assert f"{len(snapshot.threads)} threads" in out or "thread #1" in out
    assert "libsystem_kernel.dylib" in out


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
        out = lldb(core, "bt all", exe=exe_arg)
        for name in ("level3", "level2", "level1", "main", "worker"):
            assert f"`{name}" in out, name


CRASHES = [
    (kind, where) for kind in ("null-write", "bad-call", "abort") for where in ("main", "thread")
]


@pytest.mark.parametrize(("kind", "where"), CRASHES, ids=[f"{k}-{w}" for k, w in CRASHES])
def test_crash_in_a_signal_handler(kind: str, where: str, tmp_path: Path) -> None:
    from macminidump import parse_core

    core, facts = tmp_path / "crash.core", tmp_path / "facts.json"
    script = tmp_path / "crasher.py"
    script.write_text(textwrap.dedent(CRASHER))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script), kind, where, str(core), str(facts)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"child exit {proc.returncode} after {time.monotonic() - started:.1f}s\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(facts.read_text())
    expected_signals = {signal.SIGABRT} if kind == "abort" else {signal.SIGSEGV, signal.SIGBUS}
    assert info["signo"] in expected_signals
    parsed = parse_core(core)
    crashed = parsed.threads[0]  # the crashed thread comes first
    assert crashed.id == info["tid"]
    assert (crashed.id == info["main"]) == (where == "main")
    pc_name = "pc" if parsed.arch == "arm64" else "rip"
    if kind == "bad-call":
        assert crashed.gpr[pc_name] == 8
    out = lldb(core, "thread backtrace 1")
    expected = {"null-write": "memset", "bad-call": "0x0000000000000008", "abort": "abort"}[kind]
    assert expected in out
    if parsed.arch == "arm64" and kind != "abort":
        assert "EXC_BAD_ACCESS" in out or "ESR_EC_" in out
