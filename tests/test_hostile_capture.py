"""Issue 9, live capture in a hostile environment, with real processes.

Classes: 5 (signals during ``dump`` and during a self dump leave no temporary file),
7 (32-bit processes refused), 11 (self-dump environment failures are one CaptureError),
14 (``run`` passes SIGTERM/SIGHUP/SIGINT to the program; a forked child's crash is not
captured, as documented).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import cli, one_line


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import threading, time\n"
         "for _ in range(8):\n"
         "    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
         "print('up', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    yield proc
    proc.kill()
    proc.wait()


# --------------------------------------------------------------------------- class 5


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_dump_leaves_a_whole_core_or_nothing(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], signo: int
) -> None:
    """The signal lands at a different moment each time (startup, capture, write)."""
    for attempt in range(8):
        out = tmp_path / f"{attempt}.core"
        proc = subprocess.Popen(
            [sys.executable, "-m", "macminidump", "dump", str(sleeper.pid), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.05 + 0.1 * attempt)
        proc.send_signal(signo)
        proc.wait(timeout=60)
        names = os.listdir(tmp_path)
        assert all(not n.endswith(".tmp") for n in names), names
        if out.exists():
            assert cli("inspect", str(out)).returncode == 0
        # the target goes on, untraced and running
        time.sleep(0.2)
        assert state(sleeper.pid) in "SR"


SELF_DUMP = textwrap.dedent(
    """
    import sys, macminidump
    print("go", flush=True)
    while True:
        macminidump.write_core(sys.argv[1])
    """
)


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_self_dump_leaves_no_temporary_file(tmp_path: Path, signo: int) -> None:
    for attempt in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", SELF_DUMP, str(tmp_path / "self.core")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(0.3 + 0.37 * attempt)
        proc.send_signal(signo)
        proc.wait(timeout=60)
        time.sleep(1.0)  # a helper still running would finish (or fail) by now
        names = os.listdir(tmp_path)
        assert all(not n.endswith(".tmp") for n in names), names


# --------------------------------------------------------------------------- class 7


def _tiny_i386(path: Path) -> None:
    """A 93-byte static i386 program: pause() forever (no toolchain needed)."""
    base = 0x08048000
    code = bytes.fromhex("b81d000000cd80ebf7")  # mov eax, 29 (pause); int 0x80; jmp back
    ehdr = b"\x7fELF\x01\x01\x01" + bytes(9)
    ehdr += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, base + 84, 52, 0, 0, 52, 32, 1, 0, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 0, base, base, 84 + len(code), 84 + len(code), 5, 0x1000)
    path.write_bytes(ehdr + phdr + code)
    path.chmod(0o755)


def test_a_32bit_process_is_refused_in_one_line(tmp_path: Path) -> None:
    program = tmp_path / "tiny32"
    _tiny_i386(program)
    proc = subprocess.Popen([str(program)])
    try:
        time.sleep(0.3)
        assert proc.poll() is None, "this kernel cannot run i386 programs (IA32 emulation)"
        out = cli("dump", str(proc.pid), "-o", str(tmp_path / "x.core"))
        assert out.returncode == 2
        assert "32-bit (i386)" in one_line(out.stderr)
        assert not (tmp_path / "x.core").exists()
        assert state(proc.pid) in "SR"
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- class 11


def _self_dump_in(tmp_path: Path, prelude: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import sys, macminidump
        from macminidump.errors import CaptureError
        PRELUDE
        try:
            macminidump.write_core(sys.argv[1])
        except CaptureError as e:
            print("CaptureError:", e)
        else:
            print("written")
        """
    ).replace("PRELUDE", prelude)
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "self.core")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_self_dump_with_no_file_descriptors_left(tmp_path: Path) -> None:
    prelude = textwrap.dedent(
        """
        import os, resource
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used, used))
        """
    )
    out = _self_dump_in(tmp_path, prelude)
    assert "CaptureError: cannot start the capture helper" in out.stdout, out
    assert out.stdout.count("\n") == 1 and not out.stderr
    assert os.listdir(tmp_path) == []


def test_self_dump_with_no_interpreter(tmp_path: Path) -> None:
    out = _self_dump_in(tmp_path, "sys.executable = '/nonexistent/python3'")
    assert "CaptureError: no Python interpreter" in out.stdout, out
    assert os.listdir(tmp_path) == []


def test_self_dump_with_sigchld_ignored_still_learns_the_result(tmp_path: Path) -> None:
    prelude = "import signal; signal.signal(signal.SIGCHLD, signal.SIG_IGN)"
    out = _self_dump_in(tmp_path, prelude)
    assert out.stdout == "written\n", out
    assert (tmp_path / "self.core").stat().st_size > 0
    # and a failure is a failure, not a success read from a lost exit status
    failing = _self_dump_in(tmp_path / "missing-dir", prelude)
    assert failing.stdout.startswith("CaptureError:"), failing


def test_self_dump_from_a_thread_with_sigchld_ignored(tmp_path: Path) -> None:
    prelude = textwrap.dedent(
        """
        import signal, threading
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        result = []
        def dump():
            try:
                macminidump.write_core(sys.argv[1])
                result.append("written")
            except CaptureError as e:
                result.append(f"CaptureError: {e}")
        t = threading.Thread(target=dump); t.start(); t.join()
        print(result[0]); sys.exit(0)
        """
    )
    out = _self_dump_in(tmp_path, prelude)
    assert out.stdout.startswith("CaptureError: SIGCHLD is ignored"), out
    assert out.stdout.count("\n") == 1


# --------------------------------------------------------------------------- class 14

HANDLER = textwrap.dedent(
    """
    import signal, sys, time
    def bye(signum, frame):
        open(sys.argv[1], "w").write(f"cleaned up after {signum}")
        sys.exit(3)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, bye)
    print("ready", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_run_passes_signals_to_the_program(tmp_path: Path, signo: int) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-m", "macminidump", "run", "-o", str(tmp_path / "x.core"), "--",
         sys.executable, "-c", HANDLER, str(marker)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: the signal comes from a process
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.send_signal(signo)
    assert proc.wait(timeout=60) == 3  # the program's own exit status, after its handler
    assert marker.read_text() == f"cleaned up after {signo}"
    assert not (tmp_path / "x.core").exists()


FORK_CRASH = textwrap.dedent(
    """
    import os, ctypes
    pid = os.fork()
    if pid == 0:
        ctypes.string_at(0)   # the child crashes (SIGSEGV)
    _, status = os.waitpid(pid, 0)
    print("child", os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
    """
)


def test_run_does_not_capture_a_forked_childs_crash(tmp_path: Path) -> None:
    """Documented (README "Guarantees"): `run` follows the program's threads, not its
    children; a child's crash is the child's own (no core from `run`)."""
    out = subprocess.run(
        [sys.executable, "-m", "macminidump", "run", "-o", str(tmp_path / "x.core"), "--",
         sys.executable, "-c", FORK_CRASH],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"child {int(signal.SIGSEGV)}\n"
    assert not (tmp_path / "x.core").exists()
