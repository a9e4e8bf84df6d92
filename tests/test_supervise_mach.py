"""`macminidump run` on macOS (``capture/mach/supervise.py``) against the fake kernel.

The fake spawns a "child" whose process is the crash world of ``test_capture_mach``:
after a poll it crashes, and the kernel sends EXC_CRASH (with the original exception, its
code, subcode and signal packed as XNU packs them) to the exception port the supervisor
gave ``posix_spawnattr_setexceptionports_np``. The supervisor must capture the task with
the crashing thread first and its signal, write the core, reply, and return the status a
shell shows (128 + signal); every port right and spawn attribute must be released. The
message layouts are the SDK's/MIG's (tests/test_mach_abi.py); the cores open in LLDB.
"""

from __future__ import annotations

import os
from pathlib import Path

import debuggers
import pytest
import stacks
import test_capture_mach as mach_tests

from macminidump import parse_core
from macminidump.capture.mach import abi
from macminidump.capture.mach.supervise import decode_exc_crash, run_supervised
from macminidump.errors import TargetError
from macminidump.testing.fake_mach import FakeMachKernel

ARCHES = mach_tests.ARCHES
CRASHED = stacks.THREAD_IDS[0]
#: (original exception, code, subcode, signal) of each crash kind, as EXC_CRASH carries it
KINDS = {
    "bad-access": (abi.EXC_BAD_ACCESS, abi.KERN_INVALID_ADDRESS, 0, 11),
    "bad-instruction": (abi.EXC_BAD_INSTRUCTION, 1, 0, 4),
    "arithmetic": (abi.EXC_ARITHMETIC, 1, 0, 8),
    "abort": (0, 0, 0, 6),
}


@pytest.fixture(autouse=True)
def _host_is_the_worlds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake child runs as the supervisor's own architecture, as a spawned child does."""
    from macminidump.capture.mach import libsystem

    arch = getattr(request.node, "callspec", None)
    arch = arch.params.get("arch", "arm64") if arch is not None else "arm64"
    monkeypatch.setattr(libsystem.platform, "machine", lambda: str(arch))


def kernel(arch: str, kind: str | None, **kwargs: object) -> FakeMachKernel:
    snapshot, _ = mach_tests.world(arch)
    crash = None
    if kind is not None:
        exception, code, subcode, signo = KINDS[kind]
        crash = (CRASHED, exception, code, subcode, signo)
    return FakeMachKernel(snapshot, crash_on_run=crash, **kwargs)  # type: ignore[arg-type]


def test_decode_exc_crash() -> None:
    """XNU's packing: (signal << 24) | (exception << 20) | (code & 0xfffff)."""
    crash = decode_exc_crash((11 << 24) | (1 << 20) | 0x2, 0xDEAD0, 7)
    assert (crash.signo, crash.exception, crash.code, crash.subcode) == (11, 1, 2, 0xDEAD0)
    assert crash.address == 0xDEAD0 and crash.thread_id == 7
    abort = decode_exc_crash(6 << 24, 0x1234, 7)
    assert abort.exception == 0 and abort.address is None


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("arch", ARCHES)
def test_crash_is_caught_and_the_child_dies_of_it(arch: str, kind: str, tmp_path: Path) -> None:
    k = kernel(arch, kind)
    core = tmp_path / "run.core"
    reports: list[str] = []
    status = run_supervised(
        ["prog", "--flag"], str(core), lib=k, wait=k.waitpid, report=reports.append
    )
    exception, code, _subcode, signo = KINDS[kind]
    assert status == 128 + signo
    assert reports == []
    assert k.child is not None and k.child["argv"] == ["prog", "--flag"]
    mask, _port, behavior, _flavor = k.child["exception"]
    assert mask == abi.EXC_MASK_CRASH
    assert behavior == abi.EXCEPTION_DEFAULT | abi.MACH_EXCEPTION_CODES
    assert k.replies == [abi.KERN_SUCCESS]
    mach_tests.assert_books_balance(k)
    assert not k._spawn_attrs, "posix_spawnattr_destroy missing"
    parsed = parse_core(core)
    assert [t.id for t in parsed.threads] == list(stacks.THREAD_IDS)  # the crashed one first
    source = mach_tests.world(arch)[0].threads[0]
    assert dict(parsed.threads[0].gpr) == {
        **mach_tests.registers_zero(arch, mach_tests.RegKind.GPR),
        **dict(source.gpr),
    }


@pytest.mark.parametrize("version", mach_tests.LLDBS)
def test_lldb_shows_the_crash(version: int, tmp_path: Path) -> None:
    k = kernel("arm64", "bad-access")
    core = tmp_path / "run.core"
    assert run_supervised(["prog"], str(core), lib=k, wait=k.waitpid) == 139
    _world, expected = mach_tests.world("arm64")
    result = debuggers.probe_core(version, str(core))
    threads = result["threads"]
    description = threads[0]["stop_description"]
    assert "ESR_EC_DABORT_EL0" in description and "0x0" in description
    functions = [f["function"] for f in threads[0]["frames"]]
    assert functions == expected["threads"][0]["functions"]


def test_a_clean_exit_writes_nothing(tmp_path: Path) -> None:
    k = kernel("arm64", None, exit_code_on_run=3)
    core = tmp_path / "run.core"
    assert run_supervised(["prog"], str(core), lib=k, wait=k.waitpid) == 3
    assert not core.exists()
    assert k.replies == []
    mach_tests.assert_books_balance(k)


def test_a_crash_that_cannot_be_captured_still_dies(tmp_path: Path) -> None:
    k = kernel("arm64", "bad-access", fail_at="thread_get_state", fail_on=None)
    core = tmp_path / "run.core"
    reports: list[str] = []
    status = run_supervised(["prog"], str(core), lib=k, wait=k.waitpid, report=reports.append)
    assert status == 139 and not core.exists()
    (line,) = reports
    assert line.startswith("no core written:") and "thread_get_state" in line
    assert k.replies == [abi.KERN_SUCCESS]
    mach_tests.assert_books_balance(k)


def test_a_program_that_cannot_start(tmp_path: Path) -> None:
    k = kernel("arm64", None)
    with pytest.raises(TargetError, match="cannot run nosuch: No such file"):
        run_supervised(["nosuch"], str(tmp_path / "c"), lib=k, wait=k.waitpid)
    mach_tests.assert_books_balance(k)
    assert not k._spawn_attrs


def test_no_program() -> None:
    with pytest.raises(TargetError, match="no program given"):
        run_supervised([], "core", lib=object(), wait=os.waitpid)


def test_a_grandchilds_crash_is_left_alone(tmp_path: Path) -> None:
    """A child of the program inherits its exception port: its crash is not the program's."""
    k = kernel("arm64", "bad-access", crash_in_grandchild=True)
    core = tmp_path / "run.core"
    reports: list[str] = []
    status = run_supervised(["prog"], str(core), lib=k, wait=k.waitpid, report=reports.append)
    assert not core.exists() and reports == []
    assert k.replies == [abi.KERN_SUCCESS]
    assert status == 139  # the fake's child dies with the grandchild's signal; nothing captured
    assert "task_suspend" not in k.calls
    mach_tests.assert_books_balance(k)


def test_the_live_suites_lldb_parsing_reads_real_lldb_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/test_macos_live.py cannot run here, but its reading of `lldb bt all` can: on
    a core of the fake's crash, through this machine's LLDB 23 command line (the venv's
    console script, next to this Python)."""
    import sys

    import test_macos_live as live

    venv_bin = str(Path(sys.executable).parent)
    assert (Path(venv_bin) / "lldb").exists(), "LLDB 23: pip install lldb-for-pwndbg"
    monkeypatch.setenv("PATH", venv_bin + os.pathsep + os.environ.get("PATH", ""))

    k = kernel("arm64", "bad-access")
    core = tmp_path / "run.core"
    assert run_supervised(["prog"], str(core), lib=k, wait=k.waitpid) == 139
    threads = live.backtraces(live.lldb(core, "bt all"))
    _world, expected = mach_tests.world("arm64")
    assert sorted(threads) == [1, 2, 3]
    for index, want in enumerate(expected["threads"], start=1):
        assert threads[index][1] == want["functions"]
    header = threads[1][0]
    assert live.ESR_CLASS["null-write"] in header and "fault address: 0x0" in header
