"""The macOS backend (``capture/mach/``) end to end, without a Mac.

``MachTarget`` runs unchanged against ``FakeMachKernel``, which answers libSystem's Mach
calls at the ctypes level over a world built from ``stacks.crash_spec``: the fixture's
three-thread crash laid out through its real call sites. Each capture is rendered with
``render_macho`` and opened in LLDB 16 and 23 (without and with the executable); the
kernel's books must balance afterwards: no port right or allocation leaked, every
suspension undone, nothing read while the target ran. A failure injected at each call in
turn must give one line of CaptureError and leave the target running.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import debuggers
import pytest
import stacks
import test_lldb_macho as lldb_tests

from macminidump.arch import Arch, RegKind
from macminidump.capture.base import CrashContext, capture
from macminidump.capture.mach import (
    MachTarget,
    abi,
    capture_mach,
    crash_context_from_mcontext,
    crash_context_from_ucontext,
    register_slots,
    registers_to_state,
    state_to_registers,
)
from macminidump.errors import CaptureError
from macminidump.macho.render import render_macho
from macminidump.model import Image, SignalInfo, Snapshot
from macminidump.spec import snapshot_from_spec
from macminidump.testing.fake_mach import FakeMachKernel, pack_mcontext, pack_state

ARCHES = lldb_tests.ARCHES
LLDBS = lldb_tests.LLDBS
MODES = ("core-only", "with-exe")
#: "pid": another process through task_for_pid, no crash context;
#: "crash": the process itself, from a signal handler on the crashed thread, with the
#: crash context built from the mcontext bytes (the thread's live state is the handler's)
SCENARIOS = ("pid", "crash")
THREAD_NAMES = {stacks.THREAD_IDS[1]: "worker-1", stacks.THREAD_IDS[2]: "worker-2"}
CRASHED = stacks.THREAD_IDS[0]


@functools.cache
def world(arch: str) -> tuple[Snapshot, dict]:
    """The process to capture: the crash spec's threads (named), memory and executable."""
    spec, expected = stacks.crash_spec(arch)
    snapshot = snapshot_from_spec(spec)
    threads = tuple(
        attrs.evolve(t, name=THREAD_NAMES.get(t.id), crashed=False) for t in snapshot.threads
    )
    return attrs.evolve(snapshot, threads=threads), expected


def crash_state(arch: str) -> dict[RegKind, dict[str, int]]:
    thread = world(arch)[0].threads[0]
    assert thread.id == CRASHED
    return {RegKind(r.kind): dict(r.values) for r in thread.regsets}


def handler_state(arch: str) -> dict[RegKind, dict[str, int]]:
    """What thread_get_state gives for the crashed thread while it runs its handler."""
    gpr = crash_state(arch)[RegKind.GPR]
    sp_name, pc_name = stacks.SP_REG[arch], stacks.PC_REG[arch]
    return {RegKind.GPR: {sp_name: gpr[sp_name] - 0x800, pc_name: 0xDEAD_0000}}


def crash_context(arch: str) -> CrashContext:
    mcontext = bytes(pack_mcontext(arch, crash_state(arch)))
    return crash_context_from_mcontext(
        arch, CRASHED, mcontext, SignalInfo(signo=11, code=2, address=0)
    )


def kernel(arch: str, scenario: str, **kwargs: Any) -> FakeMachKernel:
    snapshot, _ = world(arch)
    if scenario == "crash":
        kwargs.setdefault("self_capture", True)
        kwargs.setdefault("calling_thread", CRASHED)
        kwargs.setdefault("live_regsets", {CRASHED: handler_state(arch)})
    return FakeMachKernel(snapshot, **kwargs)


def run_capture(k: FakeMachKernel, arch: str, scenario: str) -> Snapshot:
    if scenario == "crash":
        return capture_mach(lib=k, arch=arch, crash=crash_context(arch))
    return capture_mach(k.pid, lib=k, arch=arch)


def assert_books_balance(k: FakeMachKernel) -> None:
    assert k.leaked_rights() == 0, "port rights leaked"
    assert k.baseline_intact()
    assert k.leaked_allocations() == 0, "task_threads arrays leaked"
    assert k.all_resumed(), (k.task_suspend_count, k.suspended_threads())


_captures: dict[tuple[str, str], tuple[Snapshot, FakeMachKernel, str]] = {}


def captured(arch: str, scenario: str, directory: Path) -> tuple[Snapshot, FakeMachKernel, str]:
    if (arch, scenario) not in _captures:
        k = kernel(arch, scenario)
        snapshot = run_capture(k, arch, scenario)
        core = directory / f"mach_{arch}_{scenario}.core"
        render_macho(snapshot, core)
        _captures[(arch, scenario)] = (snapshot, k, str(core))
    return _captures[(arch, scenario)]


@pytest.fixture(scope="session")
def mach_core_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mach-cores")


# ---------------------------------------------------------------- the capture itself


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", ARCHES)
def test_capture_matches_world(arch: str, scenario: str, mach_core_dir: Path) -> None:
    snapshot, k, _core = captured(arch, scenario, mach_core_dir)
    source, expected = world(arch)
    assert_books_balance(k)
    assert k.reads_while_running == 0
    assert snapshot.arch == Arch(arch)
    assert [t.id for t in snapshot.threads] == list(stacks.THREAD_IDS)
    assert [t.name for t in snapshot.threads] == [THREAD_NAMES.get(i) for i in stacks.THREAD_IDS]
    for got, want in zip(snapshot.threads, source.threads, strict=True):
        assert dict(got.gpr) == {**registers_zero(arch, RegKind.GPR), **dict(want.gpr)}
        assert set(got.regset(RegKind.FPR)) == {n for n, *_ in register_slots(arch, RegKind.FPR)}
    crashed = snapshot.threads[0]
    assert crashed.crashed == (scenario == "crash")
    assert dict(crashed.exception) == {
        **registers_zero(arch, RegKind.EXC),
        **crash_state(arch)[RegKind.EXC],
    }
    if scenario == "crash":
        assert snapshot.signal == SignalInfo(signo=11, code=2, address=0)
        # a handler on the crashed thread: it ran on, the two others were suspended
        assert k.suspended_ever == set(stacks.THREAD_IDS[1:])
        assert k.task_suspend_count == 0
    # every stack from sp (less the red zone) to its top, byte for byte
    for thread in expected["threads"]:
        low, top = thread["stack"]
        sp = thread["sp"] - stacks.RED_ZONE[arch]
        data = thread["stack_bytes"][sp - low :]
        assert snapshot.memory.read(sp, top - sp) == data
    for address, hex_ in expected["memory"]:
        assert snapshot.memory.read(address, len(hex_) // 2).hex() == hex_
    assert list(snapshot.images) == k.expected_images()
    main = snapshot.main_image
    assert main is not None and main == source.images[0]
    bits = snapshot.addressable_bits
    assert (bits.low if bits else None) == (47 if arch == "arm64" else None)


def registers_zero(arch: str, kind: RegKind) -> dict[str, int]:
    return {name: 0 for name, *_ in register_slots(arch, kind)}


# ---------------------------------------------------------------- in LLDB

LLDB_COMBOS = [(a, s, v, m) for a in ARCHES for s in SCENARIOS for v in LLDBS for m in MODES]


@pytest.mark.parametrize(
    ("arch", "scenario", "version", "mode"),
    LLDB_COMBOS,
    ids=[f"{a}-{s}-lldb{v}-{m}" for a, s, v, m in LLDB_COMBOS],
)
def test_lldb_opens_capture(
    arch: str, scenario: str, version: int, mode: str, mach_core_dir: Path
) -> None:
    _snapshot, _k, core = captured(arch, scenario, mach_core_dir)
    _world, expected = world(arch)
    result = debuggers.probe_core(
        version,
        core,
        exe=expected["exe"] if mode == "with-exe" else None,
        variables=lldb_tests._variables(expected),
    )
    context = lldb_tests._context(result)
    print(result.get("bt_all", ""))
    assert result.get("process_valid"), context
    assert result["state"] == "stopped", context
    threads = result["threads"]
    assert len(threads) == 3, context
    if version >= 18:
        assert [t["thread_id"] for t in threads] == list(stacks.THREAD_IDS), context
    exe_name = os.path.basename(expected["exe"])
    for t, (got, want) in enumerate(zip(threads, expected["threads"], strict=True)):
        functions = [f["function"] for f in got["frames"]]
        assert functions == want["functions"], f"thread {t}: {functions}" + context
        assert [f["pc"] for f in got["frames"]] == want["frame_pcs"], f"thread {t}" + context
        assert all(f["module"] == exe_name for f in got["frames"]), got["frames"]
    for var in result["variables"]:
        want = expected["threads"][var["thread"]]["values"][var["frame"]][var["name"]]
        assert var["error"] is None and int(var["value"], 0) == want, var
    if arch == "arm64":
        description = threads[0]["stop_description"]
        assert "ESR_EC_DABORT_EL0" in description and "0x0" in description, context


# ---------------------------------------------------------------- modes and refusals


@pytest.mark.parametrize("arch", ARCHES)
def test_self_capture_without_crash(arch: str) -> None:
    """The calling thread keeps running; the others are suspended, then resumed."""
    calling = stacks.THREAD_IDS[1]
    k = kernel(arch, "pid", self_capture=True, calling_thread=calling)
    with MachTarget(lib=k, arch=arch) as target:
        assert target.is_self
        assert target.calling_thread_id() == calling
        snapshot = capture(target)
    assert k.suspended_ever == {stacks.THREAD_IDS[0], stacks.THREAD_IDS[2]}
    assert "task_suspend" not in k.calls
    assert k.reads_while_running == 0
    assert [t.id for t in snapshot.threads] == list(stacks.THREAD_IDS)
    assert not any(t.crashed for t in snapshot.threads)
    assert_books_balance(k)


@pytest.mark.parametrize("arch", ARCHES)
def test_task_port_the_caller_holds(arch: str) -> None:
    k = kernel(arch, "pid")
    port = k.grant_task_port()
    snapshot = capture_mach(task=port, lib=k, arch=arch)
    assert "task_for_pid" not in k.calls
    assert len(snapshot.threads) == 3
    assert_books_balance(k)  # the caller's right is still the caller's


def test_task_for_pid_refused() -> None:
    k = kernel("arm64", "pid", task_for_pid_allowed=False)
    with pytest.raises(CaptureError) as info:
        MachTarget(k.pid, lib=k, arch="arm64")
    message = str(info.value)
    print(message)
    assert "\n" not in message
    assert f"task_for_pid({k.pid})" in message and "KERN_FAILURE" in message
    for words in ("root", "com.apple.security.cs.debugger", "get-task-allow"):
        assert words in message
    assert k.leaked_rights() == 0


def test_not_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(CaptureError, match="macOS only"):
        MachTarget()
    with pytest.raises(CaptureError, match="macOS only"):
        capture_mach(1)


def test_import_loads_no_library() -> None:
    code = textwrap.dedent(
        """\
        import ctypes, ctypes.util
        def refuse(*args, **kwargs):
            raise AssertionError(f"library load at import: {args!r}")
        ctypes.CDLL.__init__ = refuse
        ctypes.util.find_library = refuse
        import macminidump.capture.mach, macminidump.testing.fake_mach
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- failure at every call


def _clean_calls(arch: str, scenario: str) -> list[str]:
    k = kernel(arch, scenario)
    run_capture(k, arch, scenario)
    return sorted(set(k.calls))


#: calls whose failure costs detail, not the capture
TOLERATED = {"sysctlbyname", "mach_port_deallocate", "vm_deallocate"}

FAILURE_CASES = [
    (arch, scenario, call, when, how)
    for arch in ARCHES
    for scenario in SCENARIOS
    for call in _clean_calls(arch, scenario)
    for when in ("first", "every")
    for how in ("kern", "exception")
]


@pytest.mark.parametrize(
    ("arch", "scenario", "call", "when", "how"),
    FAILURE_CASES,
    ids=["-".join(case) for case in FAILURE_CASES],
)
def test_failure_at_each_call(arch: str, scenario: str, call: str, when: str, how: str) -> None:
    k = kernel(arch, scenario, fail_at=call, fail_on=0 if when == "first" else None, fail_with=how)
    try:
        snapshot = run_capture(k, arch, scenario)
    except CaptureError as e:
        message = str(e)
        print(message)
        assert "\n" not in message
        assert call in message
        # a partial read is retried page by page: only reads failing every time are fatal
        assert call not in TOLERATED and not (call == "mach_vm_read_overwrite" and when == "first")
    else:
        assert call in TOLERATED or (call == "mach_vm_read_overwrite" and when == "first"), (
            f"a failing {call} went unnoticed"
        )
        assert len(snapshot.threads) == 3
    assert k.failed, f"{call} was never called"
    failed_ports = {args[0] for name, args in k.failed if name in ("thread_resume", "task_resume")}
    if call in ("thread_resume", "task_resume"):
        # what could not be resumed stays suspended; everything else was resumed
        still = set(k.suspended_threads()) | ({"task"} if k.task_suspend_count else set())
        assert len(still) == len(failed_ports)
    else:
        assert k.all_resumed(), (k.task_suspend_count, k.suspended_threads())
    failed_frees = sum(1 for name, _ in k.failed if name == "mach_port_deallocate")
    assert k.leaked_rights() == failed_frees
    assert k.baseline_intact()
    assert k.leaked_allocations() == sum(1 for name, _ in k.failed if name == "vm_deallocate")


@pytest.mark.parametrize("arch", ARCHES)
def test_a_target_that_dies_is_named_gone(arch: str) -> None:
    k = kernel(arch, "pid", fail_at="thread_get_state", fail_on=None, fail_with="gone")
    with pytest.raises(CaptureError, match=r"the target process is gone \(thread_get_state"):
        run_capture(k, arch, "pid")
    assert k.all_resumed()


# ---------------------------------------------------------------- pieces


@pytest.mark.parametrize("arch", ARCHES)
def test_partial_read_stops_at_the_refused_page(arch: str) -> None:
    _snapshot, expected = world(arch)
    low, top = expected["threads"][1]["stack"]
    refused = top - 0x1000
    k = kernel(arch, "pid", unreadable=[refused])
    with MachTarget(k.pid, lib=k, arch=arch) as target:
        target.stop()
        data = target.read(refused - 0x800, 0x1000)
        target.resume()
    assert data == k.read_target(refused - 0x800, 0x800)
    assert len(data) == 0x800
    assert_books_balance(k)


@pytest.mark.parametrize("arch", ARCHES)
def test_mappings_descend_into_submaps(arch: str) -> None:
    k = kernel(arch, "pid")
    with MachTarget(k.pid, lib=k, arch=arch) as target:
        mappings = target.mappings()
    spans = [(m.start, m.end, int(m.protection), m.tag) for m in mappings]
    assert spans == [(r.start, r.end, r.protection, r.tag) for r in k.regions]
    dyld = k.dyld_image.load_address
    assert any(m.start == dyld for m in mappings)
    assert any(m.tag == abi.VM_MEMORY_STACK for m in mappings)
    assert any(m.tag == abi.VM_MEMORY_GUARD and not m.protection for m in mappings)


@pytest.mark.parametrize("arch", ARCHES)
def test_dyld_rewriting_its_list(arch: str) -> None:
    """infoArray is NULL while dyld updates it: dyld alone is reported."""
    k = kernel(arch, "pid", dyld_updating=True)
    with MachTarget(k.pid, lib=k, arch=arch) as target:
        images = target.images()
    assert list(images) == [k.dyld_image]


@pytest.mark.parametrize("arch", ARCHES)
def test_image_whose_headers_cannot_be_read(arch: str) -> None:
    """An image whose header is refused, or whose load commands are corrupt, is reported
    by its path and address alone; the others are unaffected."""
    k = kernel(arch, "pid")
    dyld = k.dyld_image.load_address
    assert dyld is not None
    main = next(image for image in k.expected_images() if image.main)
    assert main.load_address is not None
    k.unreadable.add(dyld)
    region = next(r for r in k.regions if r.start <= main.load_address < r.end)
    at = main.load_address - region.start + 32  # the first load command's cmdsize
    region.data[at + 4 : at + 8] = (3).to_bytes(4, "little")
    with MachTarget(k.pid, lib=k, arch=arch) as target:
        images = {image.path: image for image in target.images()}
    assert images[main.path] == Image(path=main.path, load_address=main.load_address)
    assert images["/usr/lib/dyld"] == Image(path="/usr/lib/dyld", load_address=dyld)
    others = [i for i in k.expected_images() if i.path not in (main.path, "/usr/lib/dyld")]
    assert all(images[i.path] == i for i in others)


@pytest.mark.parametrize("kind", list(RegKind))
@pytest.mark.parametrize("arch", ARCHES)
def test_register_conversion(arch: str, kind: RegKind) -> None:
    values = {
        name: (0x0102030405060708090A0B0C0D0E0F10 + i) % (1 << (8 * width))
        for i, (name, _offset, width) in enumerate(register_slots(arch, kind))
    }
    raw = bytes(pack_state(arch, kind, values))
    assert state_to_registers(arch, kind, raw) == values
    assert registers_to_state(arch, kind, values) == raw


@pytest.mark.parametrize("arch", ARCHES)
def test_crash_context_from_ucontext(arch: str) -> None:
    """The pointer path a signal handler takes: ucontext -> uc_mcontext."""
    mcontext = pack_mcontext(arch, crash_state(arch))
    uc = abi.ucontext64(uc_mcsize=ctypes.sizeof(mcontext), uc_mcontext=ctypes.addressof(mcontext))
    context = crash_context_from_ucontext(ctypes.addressof(uc), CRASHED, arch)
    assert context == crash_context_from_mcontext(arch, CRASHED, mcontext)
    assert context.regsets[RegKind.GPR] == {
        **registers_zero(arch, RegKind.GPR),
        **crash_state(arch)[RegKind.GPR],
    }
    with pytest.raises(CaptureError, match="bytes"):
        crash_context_from_mcontext(arch, CRASHED, bytes(mcontext)[:100])
    short = abi.ucontext64(uc_mcsize=100, uc_mcontext=ctypes.addressof(mcontext))
    with pytest.raises(CaptureError, match="holds no"):
        crash_context_from_ucontext(ctypes.addressof(short), CRASHED, arch)
