"""The kernel's core_pattern handler (core_handler.py) with real crashing programs.

Each test that crashes a program sets /proc/sys/kernel/core_pattern through
``core-handler --install`` and restores the pattern it found on every path (the
fixture's ``finally``), as tests/test_kernel_core.py does; it needs root, and fails
loudly without it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from test_policy import SOURCE, gdb

from macminidump import core_handler
from macminidump.errors import CaptureError
from macminidump.parse import parse_core

PATTERN = Path("/proc/sys/kernel/core_pattern")


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed: apt-get install -y gcc"
    d = tmp_path_factory.mktemp("handler-prog")
    (d / "crasher.c").write_text(SOURCE)
    exe = str(d / "crasher")
    flags = ["-g", "-O0", "-fno-omit-frame-pointer", "-pthread"]
    subprocess.run([cc, *flags, str(d / "crasher.c"), "-o", exe], check=True)
    return exe


@pytest.fixture
def pattern(core_pattern: str) -> str:
    """The machine's pattern, held for this test and put back whatever it does."""
    return core_pattern


def macminidump(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "macminidump", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[call-overload]
    )


def run_crash(program: str) -> int:
    """Run the program until it crashes; its pid."""
    proc = subprocess.Popen([program, "crash"], stdout=subprocess.DEVNULL)
    assert proc.wait(timeout=120) == -signal.SIGSEGV
    return proc.pid


def dated(paths: Iterable[Path]) -> Iterator[tuple[int, Path]]:
    """(mtime, path) of each path still there: a handler may remove a core (pruning)
    between the listing and the stat."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            yield path.stat().st_mtime_ns, path


def cores_in(directory: Path, count: int, pid: int) -> list[Path]:
    """The directory's cores, oldest first, once the core of crash ``pid`` is there and
    the handlers have pruned it to ``count``: the kernel lets the crashed process go when
    the handler has drained the pipe, and the handler prunes after that, so on a loaded
    machine the directory can still hold one core too many when the test looks. The
    ceiling is generous (a condition is awaited, not a duration); at it, the test fails
    naming what is there and what the handler logged."""
    deadline = time.monotonic() + 120
    while True:
        found = [p for _, p in sorted(dated(directory.glob("*.core")))]
        ours = any(p.name.startswith(f"crasher.{pid}.") for p in found)
        if ours and len(found) == count:
            return found
        if time.monotonic() > deadline:
            log = directory / "handler.log"
            logged = log.read_text() if log.exists() else "(no handler.log)"
            pytest.fail(f"no {count} cores with crash {pid}'s in {directory}: {found}; {logged}")
        time.sleep(0.05)


def test_handler_writes_the_core_of_a_real_crash(
    program: str, pattern: str, tmp_path: Path
) -> None:
    directory = tmp_path / "crashes"
    result = macminidump(
        "core-handler", "--install", str(directory), "--memory", "referenced", "--max-count", "2"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"previous core_pattern: {pattern}"
    assert PATTERN.read_text().startswith(f"|{directory}/.macminidump-handler ")

    pids = [run_crash(program)]
    (core,) = [p for p in cores_in(directory, 1, pids[0]) if p.name.startswith("crasher.")]
    started = int(time.time())
    assert re.fullmatch(rf"crasher\.{pids[0]}\.\d+\.core", core.name), core.name
    assert abs(int(core.name.split(".")[2]) - started) < 120
    assert core.stat().st_mode & 0o777 == 0o600
    snapshot = parse_core(core)
    first = snapshot.threads[0]
    assert first.crashed and first.id == pids[0], "the crashing thread first"
    assert len(snapshot.threads) == 4
    assert snapshot.signal is not None and snapshot.signal.signo == signal.SIGSEGV
    assert snapshot.signal.address == 0x10
    assert snapshot.memory_selection is not None
    assert snapshot.memory_selection.policy == "referenced"
    out = gdb(program, str(core), "bt", "print *local")
    assert "handle (" in out and "main (" in out, out
    assert 'name = "policy-request"' in out, out

    # --max-count 2: a third crash removes the oldest core. (The pattern is the machine's:
    # another program crashing meanwhile is kept too, and counts.)
    pids += [run_crash(program), run_crash(program)]
    kept = cores_in(directory, 2, pids[2])
    assert len(kept) == 2 and kept[-1].name.startswith(f"crasher.{pids[2]}."), kept
    assert not any(p.name.startswith(f"crasher.{pids[0]}.") for p in kept), kept
    assert not (directory / "handler.log").exists()

    uninstall_restores(directory, pattern)


def test_handler_keeps_to_the_policy_budget(program: str, pattern: str, tmp_path: Path) -> None:
    """The policy options given at --install apply to every crash: here full memory
    within 256 KiB, the crashed thread's frames kept, what was cut recorded."""
    directory = tmp_path / "budget"
    args = ["--install", str(directory), "--memory", "full", "--max-size", "256K"]
    assert macminidump("core-handler", *args).returncode == 0
    pid = run_crash(program)
    (core,) = [p for p in cores_in(directory, 1, pid) if p.name.startswith(f"crasher.{pid}.")]
    assert core.stat().st_size <= 256 << 10
    selection = parse_core(core).memory_selection
    assert selection is not None and selection.policy == "full"
    assert selection.max_size == 256 << 10 and selection.omitted_bytes > 0
    out = gdb(program, str(core), "bt")
    assert "handle (" in out and "main (" in out, out
    uninstall_restores(directory, pattern)


def uninstall_restores(directory: Path, pattern: str) -> None:
    """--uninstall puts the previous pattern back."""
    result = macminidump("core-handler", "--uninstall")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"core_pattern restored to {pattern!r}")
    assert PATTERN.read_text().rstrip("\n") == pattern
    assert not (directory / ".macminidump-handler").exists()


def test_directory_limits_remove_the_oldest_first(tmp_path: Path) -> None:
    for i, size in enumerate([400, 300, 200, 100]):
        path = tmp_path / f"p.{i}.{i}.core"
        path.write_bytes(bytes(size))
        os.utime(path, ns=(i * 10**9, i * 10**9))
    (tmp_path / "notes.txt").write_text("not a core")
    core_handler.keep_within(str(tmp_path), max_count=3, max_use=10**6)
    assert sorted(p.name for p in tmp_path.glob("*.core")) == [
        "p.1.1.core",
        "p.2.2.core",
        "p.3.3.core",
    ]
    core_handler.keep_within(str(tmp_path), max_count=10, max_use=350)
    assert sorted(p.name for p in tmp_path.glob("*.core")) == ["p.2.2.core", "p.3.3.core"]
    assert (tmp_path / "notes.txt").exists()


def test_a_pipe_that_is_not_a_core_is_drained_and_logged(tmp_path: Path) -> None:
    junk = b"not an ELF core" * 100_000
    result = macminidump(
        "core-handler", "--dir", str(tmp_path), "1", "1", "11", "0", input=junk.decode()
    )
    assert result.returncode == 1
    log = (tmp_path / "handler.log").read_text().splitlines()
    assert len(log) == 1 and "not a 64-bit ELF core" in log[0], log
    assert not list(tmp_path.glob("*.core"))
    pipe = io.BytesIO(b"\x7fELF")
    with pytest.raises(CaptureError, match="ended early"):
        core_handler.read_head(pipe)


def test_install_without_root_is_refused(tmp_path: Path, pattern: str) -> None:
    """As a user (the euid is faked: this machine's Python is not executable by another
    user), the CLI's one line and exit status 2, nothing changed."""
    before = PATTERN.read_text()
    script = (
        "import os, sys; os.geteuid = lambda: 1000\n"
        "from macminidump.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    for args in (["--install", str(tmp_path / "x")], ["--uninstall"]):
        result = subprocess.run(
            [sys.executable, "-c", script, "core-handler", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and "needs root" in result.stderr, result.stderr
        assert PATTERN.read_text() == before
    assert not (tmp_path / "x").exists()


def test_install_refuses_a_directory_others_can_write(tmp_path: Path, pattern: str) -> None:
    open_to_all = tmp_path / "open"
    open_to_all.mkdir(mode=0o777)
    open_to_all.chmod(0o1777)
    result = macminidump("core-handler", "--install", str(open_to_all))
    assert result.returncode == 2, result
    assert "is writable by others (mode 777" in result.stderr and result.stderr.count("\n") == 1
    assert PATTERN.read_text().rstrip("\n") == pattern
    assert not (open_to_all / ".macminidump-handler").exists()


@pytest.mark.parametrize("directory", ["/proc/macminidump-crashes", "/dev/null/crashes"])
def test_install_into_a_directory_that_cannot_be_written(directory: str, pattern: str) -> None:
    before = PATTERN.read_text()
    result = macminidump("core-handler", "--install", directory)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and directory in result.stderr, result.stderr
    assert PATTERN.read_text() == before


def test_uninstall_of_a_pattern_that_is_not_ours(pattern: str) -> None:
    PATTERN.write_text("core")
    result = macminidump("core-handler", "--uninstall")
    assert result.returncode == 2
    assert "core_pattern is not macminidump's handler: 'core'" in result.stderr
