"""The crash supervisor (capture/supervise.py) on real crashing programs.

One C program (compiled once per session with ``cc -g -O0 -fno-omit-frame-pointer
-pthread``) crashes in the way its arguments say, on the main thread or on a background
thread, while four more threads wait in nested functions. Each crash runs once under the
supervisor (in a child Python, so its stdout and exit status are seen as a shell sees
them); the core is then checked by the package's parser, gdb, LLDB 16 and LLDB 23. Missing
tools fail the tests, never skip them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import debuggers
import pytest

from macminidump.capture import supervise
from macminidump.capture.supervise import CrashReport, run_supervised
from macminidump.errors import CaptureError
from macminidump.parse import parse_core

CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer", "-pthread"]
TIMEOUT = 60
MARKER = 0x5EED1234
IDLE = 4

SOURCE = r"""
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IDLE 4
static pthread_barrier_t ready;
typedef void (*fn_t)(void);

__attribute__((noinline)) void idle_inner(int n) {
  (void)n;
  pthread_barrier_wait(&ready);
  for (;;) pause();
}
__attribute__((noinline)) void idle_outer(int n) { idle_inner(n + 1); }
void *idle_thread(void *arg) { idle_outer((int)(long)arg); return NULL; }

__attribute__((noinline)) void do_crash(const char *how) {
  volatile long marker = 0x5eed1234;
  char code[64];
  fn_t fn = 0;
  void *heap = malloc(64);
  memset(code, 0xc3, sizeof code); /* ret: harmless if the stack were executable */
  memset(heap, 0xc3, 64);
  if (!strcmp(how, "write")) {
    volatile long *p = (long *)0xdeadbeef0;
    printf("address %p\n", (void *)p); fflush(stdout);
    *p = marker;
  } else if (!strcmp(how, "nullcall")) {
    printf("address %p\n", (void *)0); fflush(stdout);
    fn();
  } else if (!strcmp(how, "badcall")) {
    fn = (fn_t)0xbad0c0de000;
    printf("address %p\n", (void *)fn); fflush(stdout);
    fn();
  } else if (!strcmp(how, "stackcall")) {
    fn = (fn_t)(void *)code;
    printf("address %p\n", (void *)code); fflush(stdout);
    fn();
  } else if (!strcmp(how, "heapcall")) {
    fn = (fn_t)heap;
    printf("address %p\n", heap); fflush(stdout);
    fn();
  } else if (!strcmp(how, "abort")) {
    abort();
  }
  printf("no crash %ld\n", marker);
}
__attribute__((noinline)) void crash_middle(const char *how) { do_crash(how); }
__attribute__((noinline)) void crash_outer(const char *how) { crash_middle(how); }
void *crash_thread(void *arg) {
  pthread_barrier_wait(&ready);
  crash_outer((const char *)arg);
  return NULL;
}

static sigjmp_buf recover;
static void on_segv(int sig) { (void)sig; siglongjmp(recover, 1); }

int main(int argc, char **argv) {
  const char *how = argc > 1 ? argv[1] : "exit3";
  const char *where = argc > 2 ? argv[2] : "main";
  if (!strcmp(how, "exit3")) return 3;
  if (!strcmp(how, "echo")) {
    char line[256];
    if (!fgets(line, sizeof line, stdin)) return 1;
    printf("echo: %s", line);
    return 0;
  }
  if (!strcmp(how, "handled")) {
    struct sigaction sa = {0};
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);
    int recovered = 0;
    for (int i = 0; i < 3; i++) {
      if (sigsetjmp(recover, 1) == 0) *(volatile int *)0x10 = i;
      else recovered++;
    }
    printf("recovered %d\n", recovered);
    return 0;
  }
  if (!strcmp(how, "spin")) { /* prints its pid, then a counter, until killed */
    unsigned long n = 0;
    printf("pid %d\n", getpid()); fflush(stdout);
    for (;;) { printf("%lu\n", n++); fflush(stdout); usleep(5000); }
  }
  int thread = !strcmp(where, "thread");
  pthread_t t;
  pthread_barrier_init(&ready, NULL, IDLE + 1 + thread);
  for (long i = 0; i < IDLE; i++) pthread_create(&t, NULL, idle_thread, (void *)i);
  if (thread) {
    pthread_create(&t, NULL, crash_thread, (void *)how);
    pthread_barrier_wait(&ready);
    pthread_join(t, NULL);
  } else {
    pthread_barrier_wait(&ready);
    usleep(1000);
    crash_outer(how);
  }
  return 0;
}
"""

# runs the supervisor as the CLI would: exit status passed on, the crash report on stderr
DRIVER = r"""
import json, sys
from macminidump.capture.supervise import run_supervised
reports = []
status = run_supervised(sys.argv[2:], sys.argv[1], on_crash=reports.append)
for r in reports:
    sys.stderr.write("REPORT " + json.dumps({
        "thread_id": r.thread_id, "signo": r.signal.signo, "code": r.signal.code,
        "address": r.signal.address, "size": r.size, "seconds": r.seconds,
        "error": r.error}) + "\n")
sys.exit(status)
"""

KINDS = {  # kind -> (signal, whether the fault address is the printed one)
    "write": (signal.SIGSEGV, True),
    "nullcall": (signal.SIGSEGV, True),
    "badcall": (signal.SIGSEGV, True),
    "stackcall": (signal.SIGSEGV, True),
    "heapcall": (signal.SIGSEGV, True),
    "abort": (signal.SIGABRT, False),
}
WHERE = ("main", "thread")
CASES = [(k, w) for k in KINDS for w in WHERE]
CASE_IDS = [f"{k}-{w}" for k, w in CASES]
#: frames of the crashing thread, innermost first, below the crash point itself
CHAINS = {
    "main": ["do_crash", "crash_middle", "crash_outer", "main"],
    "thread": ["do_crash", "crash_middle", "crash_outer", "crash_thread", "start_thread"],
}
OUTERMOST = {
    "clone3",
    "__clone3",
    "__libc_start_main",
    "__libc_start_main_impl",
    "__libc_start_call_main",
    "_start",
}


def compiled(directory: Path, name: str, source: str, flags: Sequence[str] = CFLAGS) -> Path:
    """C ``source`` built with cc as ``directory/name``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler: apt-get install gcc"
    (directory / f"{name}.c").write_text(source)
    subprocess.run(
        [cc, *flags, "-o", str(directory / name), str(directory / f"{name}.c")],
        check=True,
        capture_output=True,
    )
    return directory / name


@pytest.fixture(scope="session")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("supervise")
    (root / "driver.py").write_text(DRIVER)
    return compiled(root, "crash", SOURCE)


def drive(
    program: Path, core: Path, *args: str, stdin: str = "", timeout: float = TIMEOUT
) -> tuple[int, str, list[dict]]:
    """(exit status, stdout, crash reports) of ``args`` run under the supervisor in a child
    Python."""
    out = subprocess.run(
        [sys.executable, str(program.parent / "driver.py"), str(core), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    reports = [
        json.loads(line[len("REPORT ") :])
        for line in out.stderr.splitlines()
        if line.startswith("REPORT ")
    ]
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, out.stdout, reports


class Crash:
    def __init__(self, kind: str, where: str, program: Path, directory: Path):
        self.kind, self.where, self.program = kind, where, program
        self.signo = KINDS[kind][0]
        self.core = directory / f"{kind}-{where}.core"
        self.status, self.stdout, self.reports = drive(
            program, self.core, str(program), kind, where
        )
        match = re.search(r"^address (\S+)$", self.stdout, re.M)
        self.address: int | None = None
        if match and KINDS[kind][1]:
            self.address = 0 if match.group(1) == "(nil)" else int(match.group(1), 16)
        self.threads = IDLE + 1 + (where == "thread")
        self._gdb: str | None = None
        self._lldb: dict[int, dict] = {}

    def gdb(self) -> str:
        if self._gdb is None:
            out = subprocess.run(
                ["gdb", "-batch", "-nx", "-ex", "set debuginfod enabled off"]
                + ["-ex", "info threads", "-ex", "thread apply all bt"]
                + ["-ex", "p $_siginfo.si_signo"]
                + ["-ex", "p/x (unsigned long) $_siginfo._sifields._sigfault.si_addr"]
                + ["-ex", "frame function do_crash", "-ex", "p/x marker"]
                + [str(self.program), str(self.core)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            self._gdb = out.stdout + out.stderr
        return self._gdb

    def lldb(self, version: int) -> dict:
        if version not in self._lldb:
            self._lldb[version] = debuggers.probe_core(
                version, str(self.core), exe=str(self.program)
            )
        return self._lldb[version]


_crashes: dict[tuple[str, str], Crash] = {}


@pytest.fixture(scope="session")
def core_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("supervise-cores")


def crash(kind: str, where: str, program: Path, core_dir: Path) -> Crash:
    if (kind, where) not in _crashes:
        _crashes[kind, where] = Crash(kind, where, program, core_dir)
    return _crashes[kind, where]


# -- the crash, the status, the core as this package reads it -------------------------------


@pytest.mark.parametrize(("kind", "where"), CASES, ids=CASE_IDS)
def test_crash_writes_a_minimal_core(kind: str, where: str, program: Path, core_dir: Path) -> None:
    c = crash(kind, where, program, core_dir)
    assert c.status == 128 + c.signo, c.stdout
    assert len(c.reports) == 1, c.reports
    report = c.reports[0]
    assert report["error"] is None
    assert report["signo"] == c.signo
    assert c.core.exists()
    size = c.core.stat().st_size
    assert size == report["size"]
    assert 10_000 < size < 150_000, size  # tens of KB
    assert report["seconds"] < 1.0
    print(f"{kind}-{where}: {size} B, core written {report['seconds'] * 1e3:.1f} ms after the stop")

    snapshot = parse_core(c.core)
    assert len(snapshot.threads) == c.threads
    first = snapshot.threads[0]
    assert first.id == report["thread_id"]
    assert first.crashed
    assert not any(t.crashed for t in snapshot.threads[1:])
    assert snapshot.process is not None
    assert (first.id == snapshot.process.pid) == (where == "main")
    assert snapshot.signal is not None
    assert snapshot.signal.signo == c.signo
    if c.address is not None:
        assert snapshot.signal.address == c.address == report["address"]
    else:
        assert snapshot.signal.address is None


# -- gdb ----------------------------------------------------------------------------------------

_GDB_THREAD = re.compile(r"^Thread \d+ \(.*?LWP (\d+)\)")
_GDB_FRAME = re.compile(r"^#(\d+)\s+(?:0x[0-9a-f]+ in )?(\S+) \(")


def gdb_threads(text: str) -> dict[int, list[str]]:
    threads: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("$"):
            break  # the prints after "thread apply all bt"
        m = _GDB_THREAD.match(line)
        if m:
            current = threads.setdefault(int(m.group(1)), [])
            continue
        m = _GDB_FRAME.match(line)
        if m and current is not None:
            current.append(m.group(2))
    return threads


def check_chain(kind: str, where: str, frames: list[str]) -> None:
    """The crashing thread: every frame named from the crash down to main / start_thread."""
    assert frames, frames
    start = frames.index("do_crash")
    below = frames[start:]
    chain = CHAINS[where]
    assert below[: len(chain)] == chain, frames
    assert set(below[len(chain) :]) <= OUTERMOST, frames
    above = frames[:start]
    if kind == "abort":
        assert above and "??" not in above, frames
        assert any("abort" in f for f in above), frames
    else:
        # a call through a bad pointer: frame 0 is the bad address itself, unnamed
        assert len(above) <= 1, frames


@pytest.mark.parametrize(("kind", "where"), CASES, ids=CASE_IDS)
def test_gdb_opens_the_core(kind: str, where: str, program: Path, core_dir: Path) -> None:
    assert shutil.which("gdb"), "gdb is missing: apt-get install -y gdb libc6-dbg"
    c = crash(kind, where, program, core_dir)
    text = c.gdb()
    name = signal.Signals(c.signo).name
    assert f"Program terminated with signal {name}" in text, text
    threads = gdb_threads(text)
    assert len(threads) == c.threads, text
    info_rows = re.findall(r"^\*?\s+\d+\s+LWP \d+", text, re.M)
    assert len(info_rows) == c.threads, text
    tid = c.reports[0]["thread_id"]
    assert re.search(rf"^\* 1\s+LWP {tid}\b", text, re.M), text  # the crashing thread first
    check_chain(kind, where, threads[tid])
    values = re.findall(r"^\$\d+ = (.*)$", text, re.M)
    assert values[0] == str(c.signo), text
    if c.address is not None:
        assert int(values[1], 16) == c.address, text
    assert int(values[2], 16) == MARKER, text  # a local variable of the crashing frame
    for other, frames in threads.items():
        if other != tid:
            assert "??" not in frames, text


# -- LLDB 16 and 23 --------------------------------------------------------------------------


@pytest.mark.parametrize("version", debuggers.SUPPORTED_VERSIONS)
@pytest.mark.parametrize(("kind", "where"), CASES, ids=CASE_IDS)
def test_lldb_opens_the_core(
    kind: str, where: str, version: int, program: Path, core_dir: Path
) -> None:
    c = crash(kind, where, program, core_dir)
    result = c.lldb(version)
    assert not result["errors"], result["errors"]
    assert len(result["threads"]) == c.threads, result["bt_all"]
    tid = c.reports[0]["thread_id"]
    crashed = next(t for t in result["threads"] if t["thread_id"] == tid)
    names = [f["function"] or f["symbol"] or "??" for f in crashed["frames"]]
    check_chain(kind, where, names)
    assert "SIG" in crashed["stop_description"] or "signal" in crashed["stop_description"]


# -- no crash -------------------------------------------------------------------------------------


def _children() -> list[int]:
    """Processes whose parent is this one (zombies included)."""
    out = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if re.search(rf"^PPid:\s+{me}$", text, re.M):
                out.append(int(entry))
    return out


def test_exit_code_without_a_crash(program: Path, tmp_path: Path) -> None:
    core = tmp_path / "none.core"
    before = _children()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    handler = signal.getsignal(signal.SIGINT)
    assert run_supervised([str(program), "exit3"], str(core)) == 3
    assert not core.exists()
    assert _children() == before
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    assert signal.getsignal(signal.SIGINT) is handler


def test_in_process_crash_leaves_nothing_behind(program: Path, tmp_path: Path) -> None:
    core = tmp_path / "in-process.core"
    before = _children()
    reports: list[CrashReport] = []
    status = run_supervised([str(program), "write", "thread"], core, on_crash=reports.append)
    assert status == 128 + signal.SIGSEGV
    assert len(reports) == 1 and reports[0].error is None
    assert core.exists() and not list(tmp_path.glob("*.tmp*"))
    assert _children() == before


def test_program_that_handles_sigsegv_runs_on(program: Path, tmp_path: Path) -> None:
    core = tmp_path / "handled.core"
    status, stdout, reports = drive(program, core, str(program), "handled")
    assert status == 0
    assert "recovered 3" in stdout
    assert reports == []
    assert not core.exists()


def test_stdin_and_stdout_pass_through(program: Path, tmp_path: Path) -> None:
    status, stdout, _ = drive(program, tmp_path / "echo.core", str(program), "echo", stdin="hi\n")
    assert status == 0
    assert stdout == "echo: hi\n"


def test_a_program_that_cannot_start(program: Path, tmp_path: Path) -> None:
    before = _children()
    text = tmp_path / "text"
    text.write_text("not a program\n")
    with pytest.raises(CaptureError, match=r"cannot run .*No such file") as info:
        run_supervised([str(tmp_path / "missing")], str(tmp_path / "a.core"))
    assert "\n" not in str(info.value)
    with pytest.raises(CaptureError, match="cannot run .*Permission denied"):
        run_supervised([str(text)], str(tmp_path / "b.core"))
    text.chmod(0o755)
    with pytest.raises(CaptureError, match="cannot run .*Exec format error"):
        run_supervised([str(text)], str(tmp_path / "c.core"))
    with pytest.raises(CaptureError, match="cannot run no-such-program-here"):
        run_supervised(["no-such-program-here"], str(tmp_path / "d.core"))
    with pytest.raises(CaptureError, match="no such directory"):
        run_supervised([str(program), "exit3"], str(tmp_path / "nowhere" / "e.core"))
    assert _children() == before
    assert not list(tmp_path.glob("*.core"))


# -- job control, signals, the supervisor's own death ---------------------------------------


class Spinner:
    """``crash spin`` under the supervisor in a child Python: its pid and its counter."""

    def __init__(self, program: Path, core: Path):
        self.proc = subprocess.Popen(
            [sys.executable, str(program.parent / "driver.py"), str(core), str(program), "spin"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            # its own process group in this session: not orphaned, so SIGTSTP stops it
            preexec_fn=os.setpgrp,
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        first = b""
        while not first.endswith(b"\n"):
            byte = os.read(self.fd, 1)
            assert byte, first
            first += byte
        match = re.match(rb"pid (\d+)", first)
        assert match, first
        self.pid = int(match.group(1))
        os.set_blocking(self.fd, False)

    def counts(self, seconds: float = 0.2) -> int:
        """How many counter lines arrive in ``seconds``."""
        time.sleep(seconds)
        got = b""
        while True:
            try:
                part = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not part:
                break
            got += part
        return got.count(b"\n")

    def state(self) -> str:
        text = Path(f"/proc/{self.pid}/stat").read_text()
        return text.rpartition(")")[2].split()[0]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def test_group_stop_and_continue(program: Path, tmp_path: Path) -> None:
    s = Spinner(program, tmp_path / "spin.core")
    try:
        assert s.counts() > 0
        for stop in (signal.SIGSTOP, signal.SIGTSTP):
            os.kill(s.pid, stop)
            s.counts(0.1)  # drain what was printed before the stop
            assert s.counts() == 0, stop
            assert s.state() in "tT"
            os.kill(s.pid, signal.SIGCONT)
            assert s.counts() > 0, stop
        os.kill(s.pid, signal.SIGTERM)
        assert s.proc.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        s.close()
    assert not (tmp_path / "spin.core").exists()


def test_terminal_signals_reach_the_program_not_the_supervisor(
    program: Path, tmp_path: Path
) -> None:
    s = Spinner(program, tmp_path / "spin.core")
    try:
        os.kill(s.proc.pid, signal.SIGQUIT)  # the supervisor alone: ignored
        assert s.counts() > 0
        assert s.proc.poll() is None
        os.killpg(s.proc.pid, signal.SIGINT)  # the whole job, as from the terminal
        assert s.proc.wait(timeout=10) == 128 + signal.SIGINT
    finally:
        s.close()


def test_sigint_to_the_supervisor_alone_goes_to_the_program(program: Path, tmp_path: Path) -> None:
    """No terminal sent it (issue 9, class 14): passed on, the program dies of it."""
    s = Spinner(program, tmp_path / "spin.core")
    try:
        assert s.counts() > 0
        os.kill(s.proc.pid, signal.SIGINT)
        assert s.proc.wait(timeout=10) == 128 + signal.SIGINT
    finally:
        s.close()


def test_the_program_dies_with_the_supervisor(program: Path, tmp_path: Path) -> None:
    s = Spinner(program, tmp_path / "spin.core")
    try:
        assert s.counts() > 0
        s.proc.kill()
        s.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if s.state() in "ZX":
                    break
            except OSError:
                break  # gone
            time.sleep(0.01)
        else:
            pytest.fail(f"process {s.pid} outlived its supervisor")
    finally:
        s.close()


def test_fatal_signals_are_the_core_dumping_ones() -> None:
    assert supervise.FATAL_SIGNALS == {
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGILL,
        signal.SIGFPE,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
    }


def test_ctrl_z_stops_the_job_and_fg_continues_it(program: Path, tmp_path: Path) -> None:
    """In an interactive shell on a terminal: Ctrl-Z stops the program and the supervisor
    (the shell shows the job stopped), ``fg`` continues both, Ctrl-C ends the program."""
    import pty
    import select

    bash = shutil.which("bash")
    assert bash, "bash is missing"
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(bash, [bash, "--norc", "--noprofile", "-i"])
    seen = ""

    def until(pattern: str, timeout: float = 10.0) -> str:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, seen)
            if match:
                seen = seen[match.end() :]
                return match.group(0)
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                seen += os.read(fd, 65536).decode(errors="replace").replace("\r", "")
        raise AssertionError(f"no {pattern!r} in {seen[-2000:]!r}")

    try:
        driver = program.parent / "driver.py"
        os.write(fd, f"{sys.executable} {driver} {tmp_path / 'tty.core'} {program} spin\n".encode())
        until(r"\n5\n")
        os.write(fd, b"\x1a")  # Ctrl-Z
        until(r"Stopped")
        os.write(fd, b"fg\n")
        until(r"\n(\d+)\n\d+\n\d+\n")  # counting again
        os.write(fd, b"\x03")  # Ctrl-C
        os.write(fd, b"echo status=$?\n")
        assert until(r"status=\d+") == f"status={128 + signal.SIGINT}"
        os.write(fd, b"exit\n")
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    assert not (tmp_path / "tty.core").exists()


def test_cli_run(tmp_path: Path) -> None:
    """`macminidump run` as a shell uses it: exit statuses pass through, a crash leaves a core."""
    core = tmp_path / "c.core"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "macminidump", "run", "-o", str(core), "--", *argv],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    out = run("sh", "-c", "echo hello; exit 3")
    assert out.returncode == 3 and out.stdout == "hello\n" and not core.exists()
    out = run("sh", "-c", "kill -SEGV $$")
    assert out.returncode == 128 + signal.SIGSEGV, out.stderr
    assert core.exists() and parse_core(core).signal.signo == signal.SIGSEGV  # type: ignore[union-attr]
    core.unlink()
    out = run("/nonexistent/program")
    assert out.returncode == 2 and "cannot run /nonexistent/program" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not core.exists()
    bare = subprocess.run(
        [sys.executable, "-m", "macminidump", "run", "-o", str(core)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bare.returncode == 2 and "no program given" in bare.stderr


CHURN = r"""
#include <pthread.h>
#include <unistd.h>
static void *idle(void *a) { (void)a; for (;;) pause(); return 0; }
static void *brief(void *a) { return a; }
int main(void) {
    pthread_t t;
    for (int i = 0; i < 200; i++) pthread_create(&t, 0, idle, 0);
    for (int i = 0; i < 300; i++) { pthread_create(&t, 0, brief, 0); pthread_join(t, 0); }
    return 0;
}
"""


@pytest.mark.parametrize("only_child", [False, True])
def test_a_thread_event_costs_the_same_with_many_threads_alive(
    only_child: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 idle threads, 300 short-lived ones: the supervisor's waits stay in proportion
    to the events (about 3 per thread created), not to events × threads alive."""
    compiled(tmp_path, "churn", CHURN, ["-O2", "-pthread"])
    calls = {"waitpid": 0, "waitid": 0}
    real_waitpid, real_waitid = os.waitpid, os.waitid

    def waitpid(*args: int) -> tuple[int, int]:
        calls["waitpid"] += 1
        return real_waitpid(*args)

    def waitid(*args: int) -> os.waitid_result | None:
        calls["waitid"] += 1
        return real_waitid(*args)

    monkeypatch.setattr(os, "waitpid", waitpid)
    monkeypatch.setattr(os, "waitid", waitid)
    status = run_supervised([str(tmp_path / "churn")], tmp_path / "core", only_child=only_child)
    assert status == 0
    threads = 200 + 300 + 1
    # polling every traced thread after each event would make about 200 × 900 calls
    assert calls["waitpid"] + calls["waitid"] < 10 * threads, calls


CLONED_PROCESS = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
static char stack[1 << 16];
static int crash(void *a) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    (void)a;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "TracerPid:", 10) && atoi(line + 10) != 0) return 7; /* traced */
    *(volatile int *)0 = 1;
    return 0;
}
int main(void) {
    /* a process, not a thread (no CLONE_THREAD), announced by no signal: ptrace reports it
       as a clone event, so the supervisor traces it until it lets it go */
    pid_t pid = clone(crash, stack + sizeof stack, 0, 0);
    int status;
    if (pid < 0 || waitpid(pid, &status, __WALL) != pid) return 1;
    printf("child %d\n", WIFSIGNALED(status) ? WTERMSIG(status) : -WEXITSTATUS(status));
    return 4;
}
"""


@pytest.mark.parametrize("only_child", [False, True])
def test_a_cloned_process_is_let_go(only_child: bool, tmp_path: Path) -> None:
    """A process the program clones without CLONE_THREAD is not a thread of it: it runs
    untraced (it exits 7 when it finds a tracer), its crash is its own (no core), and the
    program goes on to its exit status."""
    exe = compiled(tmp_path, "cloned", CLONED_PROCESS, ["-O2"])
    code = (
        "import sys\nfrom macminidump.capture.supervise import run_supervised\n"
        f"sys.exit(run_supervised([{str(exe)!r}], {str(tmp_path / 'x.core')!r}, "
        f"only_child={only_child}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert (out.returncode, out.stdout) == (4, f"child {int(signal.SIGSEGV)}\n"), out.stderr
    assert not (tmp_path / "x.core").exists()


# -- a thread that is not the leader calls execve -------------------------------------------

EXEC_FROM_THREAD = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_barrier_t ready;
static const char *after;

__attribute__((noinline)) void idle_inner(void) { pthread_barrier_wait(&ready); for (;;) pause(); }
__attribute__((noinline)) void idle_outer(void) { idle_inner(); }
static void *idle_thread(void *a) { (void)a; idle_outer(); return 0; }

static void *exec_thread(void *a) {
  (void)a;
  pthread_barrier_wait(&ready);
  printf("exec from %ld\n", (long)syscall(SYS_gettid));
  fflush(stdout);
  execl("/proc/self/exe", "after-exec", after, (char *)0);
  perror("execl");
  _exit(99);
}

__attribute__((noinline)) void crash_inner(void) { *(volatile int *)0x10 = 1; }
__attribute__((noinline)) void crash_outer(void) { crash_inner(); }

int main(int argc, char **argv) {
  pthread_t t;
  const char *mode = argc > 1 ? argv[1] : "";
  if (argc > 2 && !strcmp(mode, "exec")) {
    /* before the exec: the leader, two idle threads and the thread that execs */
    after = argv[2];
    pthread_barrier_init(&ready, 0, 4);
    for (int i = 0; i < 2; i++) pthread_create(&t, 0, idle_thread, 0);
    pthread_create(&t, 0, exec_thread, 0);
    pthread_barrier_wait(&ready);
    for (;;) pause();
  }
  /* after it (the same program): two idle threads, then what the mode says */
  pthread_barrier_init(&ready, 0, 3);
  for (int i = 0; i < 2; i++) pthread_create(&t, 0, idle_thread, 0);
  pthread_barrier_wait(&ready);
  printf("pid %d\n", getpid());
  fflush(stdout);
  if (!strcmp(mode, "crash")) crash_outer();
  if (!strcmp(mode, "stop")) {
    kill(getpid(), SIGTSTP);
    puts("continued");
    return 5;
  }
  return 4;
}
"""

# the supervisor as a terminal's foreground job would run it, without a terminal: its own
# SIGSTOP (the mirrored Ctrl-Z) is reported instead of sent; the state after the exec
# event is reported too
MIRROR_DRIVER = r"""
import json, os, signal, sys
from macminidump.capture import supervise
from macminidump.capture.linux.ptrace import PTRACE_EVENT_EXEC

class Watched(supervise._Supervisor):
    def _handle(self, tid, status):
        super()._handle(tid, status)
        if os.WIFSTOPPED(status) and status >> 16 == PTRACE_EVENT_EXEC:
            state = {"pid": self.pid, "tid": tid, "tids": sorted(self.tids),
                     "listening": sorted(self.listening), "foreign": sorted(self.foreign)}
            print("EXEC " + json.dumps(state), file=sys.stderr, flush=True)

real_kill = os.kill
def kill(pid, sig):
    if pid == os.getpid() and sig == signal.SIGSTOP:
        print("MIRRORED", file=sys.stderr, flush=True)
        return
    real_kill(pid, sig)

os.kill = kill
supervise._foreground_job = lambda: True
supervise._Supervisor = Watched
only_child = sys.argv[1] == "only-child"
sys.exit(supervise.run_supervised(sys.argv[3:], sys.argv[2], only_child=only_child))
"""


@pytest.fixture(scope="session")
def exec_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("supervise-exec")
    (root / "driver.py").write_text(DRIVER)
    (root / "mirror.py").write_text(MIRROR_DRIVER)
    return compiled(root, "exec", EXEC_FROM_THREAD)


@pytest.mark.parametrize("how", ["cli", "api"])
def test_a_crash_after_a_thread_execs(how: str, exec_program: Path, tmp_path: Path) -> None:
    """A thread that is not the leader execs (its former thread id vanishes without an
    exit, the other threads die), the new program starts two threads and crashes: the
    core holds its three threads, the crash on the leader's id, and ``run`` exits as the
    crash says, with nothing said about the vanished thread. ``cli``: `macminidump run`
    (the supervisor waits for any child); ``api``: run_supervised as a library call,
    which never reaps a child that is not its own."""
    core = tmp_path / "exec.core"
    argv = [str(exec_program), "exec", "crash"]
    if how == "cli":
        out = subprocess.run(
            [sys.executable, "-m", "macminidump", "run", "-o", str(core), "--", *argv],
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        status, stdout, stderr = out.returncode, out.stdout, out.stderr
        assert stderr == "", stderr
    else:
        status, stdout, reports = drive(exec_program, core, *argv)
        assert [r["error"] for r in reports] == [None], reports
    former = int(re.search(r"^exec from (\d+)$", stdout, re.M).group(1))  # type: ignore[union-attr]
    pid = int(re.search(r"^pid (\d+)$", stdout, re.M).group(1))  # type: ignore[union-attr]
    assert former != pid
    assert status == 128 + signal.SIGSEGV, stdout
    if how == "api":
        assert reports[0]["thread_id"] == pid
    snapshot = parse_core(core)
    assert snapshot.process is not None and snapshot.process.pid == pid
    assert [t.id for t in snapshot.threads][0] == pid and snapshot.threads[0].crashed
    assert len(snapshot.threads) == 3 and former not in {t.id for t in snapshot.threads}

    assert shutil.which("gdb"), "gdb is missing: apt-get install -y gdb libc6-dbg"
    text = subprocess.run(
        ["gdb", "-batch", "-nx", "-ex", "set debuginfod enabled off"]
        + ["-ex", "info threads", "-ex", "thread apply all bt", str(exec_program), str(core)],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    ).stdout  # fmt: skip
    assert "Program terminated with signal SIGSEGV" in text, text
    threads = gdb_threads(text)
    assert sorted(threads) == sorted(t.id for t in snapshot.threads), text
    assert threads[pid][:3] == ["crash_inner", "crash_outer", "main"], text
    for tid, frames in threads.items():
        if tid != pid:
            assert "idle_inner" in frames, text
            below = frames[frames.index("idle_inner") :]
            assert below[:3] == ["idle_inner", "idle_outer", "idle_thread"], text


@pytest.mark.parametrize("only_child", [False, True])
def test_a_terminal_stop_after_a_thread_execs_is_mirrored(
    only_child: bool, exec_program: Path, tmp_path: Path
) -> None:
    """After a thread that is not the leader execs, the supervisor forgets its former id
    (the kernel reports no exit for it): a stop from the terminal (SIGTSTP) of the new
    program is then mirrored onto the supervisor once all its threads are stopped, as
    without the exec (before, the vanished id kept "every thread stopped" from ever
    being true, and a Ctrl-Z left the shell waiting on a running supervisor)."""
    import select

    proc = subprocess.Popen(
        [sys.executable, str(exec_program.parent / "mirror.py")]
        + ["only-child" if only_child else "not-only-child", str(tmp_path / "stop.core")]
        + [str(exec_program), "exec", "stop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # its own process group in this session: not orphaned, so SIGTSTP stops it
        preexec_fn=os.setpgrp,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    seen = {out_fd: b"", err_fd: b""}

    def until(fd: int, pattern: bytes, timeout: float) -> re.Match[bytes] | None:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, seen[fd])
            if match or time.monotonic() > deadline:
                return match
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                seen[fd] += os.read(fd, 65536)

    try:
        started = until(out_fd, rb"pid (\d+)\n", TIMEOUT)
        assert started, seen
        pid = int(started.group(1))
        mirrored = until(err_fd, rb"MIRRORED\n", 5.0)
        # continued either way, so that a failure does not leave the program stopped
        os.kill(pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    stdout = (seen[out_fd] + out).decode()
    stderr = (seen[err_fd] + err).decode()
    assert proc.returncode == 5 and "continued" in stdout, (stdout, stderr)
    assert mirrored, f"the terminal stop was not mirrored: {stderr}"
    former = int(re.search(r"^exec from (\d+)$", stdout, re.M).group(1))  # type: ignore[union-attr]
    # two exec events: the supervisor's start of the program, then the thread's
    execs = re.findall(r"^EXEC (.*)$", stderr, re.M)
    assert len(execs) == 2, stderr
    state = json.loads(execs[-1])
    assert state["tid"] == state["pid"] == pid != former
    assert former not in state["tids"] + state["listening"] + state["foreign"], state
    assert pid in state["tids"] and pid not in state["listening"], state
    assert not (tmp_path / "stop.core").exists()
