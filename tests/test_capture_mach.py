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
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import debuggers
import pytest
import stacks
import test_lldb_macho as lldb_tests

from macminidump import parse_core, records
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
from macminidump.capture.mach.handover import offer_task_port, receive_task_port
from macminidump.errors import CaptureError, TargetError
from macminidump.macho.render import render_macho
from macminidump.model import Image, RegisterSet, SignalInfo, Snapshot, content_of
from macminidump.spec import snapshot_from_spec
from macminidump.testing.fake_mach import FakeMachKernel, pack_mcontext, pack_state

ARCHES = lldb_tests.ARCHES
LLDBS = lldb_tests.LLDBS
MODES = ("core-only", "with-exe")
#: "pid": another process through task_for_pid, no crash context;
#: "crash": the self-dump helper holding the crashed process's task port (handed over
#: through the registered ports), with the crash context built from the mcontext bytes
#: (the crashed thread itself sits in its signal handler, blocked waiting for the helper)
SCENARIOS = ("pid", "crash")
THREAD_NAMES = {stacks.THREAD_IDS[1]: "worker-1", stacks.THREAD_IDS[2]: "worker-2"}
CRASHED = stacks.THREAD_IDS[0]


@functools.cache
def world(arch: str) -> tuple[Snapshot, dict]:
    """The process to capture: the crash spec's threads (named), memory and executable."""
    spec, expected = stacks.crash_spec(arch)
    snapshot = snapshot_from_spec(spec)
    threads = tuple(
        records.evolve(t, name=THREAD_NAMES.get(t.id), crashed=False) for t in snapshot.threads
    )
    return records.evolve(snapshot, threads=threads), expected


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
        kwargs.setdefault("live_regsets", {CRASHED: handler_state(arch)})
    return FakeMachKernel(snapshot, **kwargs)


def run_capture(k: FakeMachKernel, arch: str, scenario: str) -> Snapshot:
    if scenario == "crash":
        port = k.grant_task_port()
        return capture_mach(task=port, lib=k, arch=arch, crash=crash_context(arch))
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
    # the whole task is suspended from outside; no thread is suspended one by one
    assert "task_suspend" in k.calls and "thread_suspend" not in k.calls
    assert snapshot.warnings == ()
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
def test_the_calling_task_is_refused(arch: str) -> None:
    """Suspending its own threads could deadlock a Python process: never done in-process."""
    k = kernel(arch, "pid", self_capture=True)
    for make in (lambda: MachTarget(lib=k, arch=arch), lambda: MachTarget(task=k.self_task, lib=k)):
        with pytest.raises(TargetError, match="helper process") as info:
            make()
        assert "\n" not in str(info.value)
    assert not k.suspended_ever and k.task_suspend_count == 0
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
        MachTarget(1)
    with pytest.raises(CaptureError, match="macOS only"):
        capture_mach(task=0x103)


def test_import_loads_no_library() -> None:
    code = textwrap.dedent(
        """\
        import ctypes, ctypes.util
        def refuse(*args, **kwargs):
            raise AssertionError(f"library load at import: {args!r}")
        ctypes.CDLL.__init__ = refuse
        ctypes.util.find_library = refuse
        import macminidump.capture.mach, macminidump.testing.fake_mach
        import macminidump.capture.mach.handover, macminidump.capture.mach.supervise
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
    assert k.task_dead and k.calls[-2:] == ["task_resume", "mach_port_deallocate"]


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


# ---------------------------------------------------------------- threads that exit mid-capture

CHURN = [
    (call, answer)
    for call in ("thread_info", "thread_get_state")
    for answer in (abi.KERN_TERMINATED, abi.MACH_SEND_INVALID_DEST)
]


@pytest.mark.parametrize(("call", "answer"), CHURN, ids=[f"{c}-{a:#x}" for c, a in CHURN])
@pytest.mark.parametrize("arch", ARCHES)
def test_a_thread_that_exits_mid_capture_is_skipped(arch: str, call: str, answer: int) -> None:
    gone = stacks.THREAD_IDS[2]
    k = kernel(arch, "pid", exiting_threads={gone: call}, exit_answer=answer)
    snapshot = run_capture(k, arch, "pid")
    assert [t.id for t in snapshot.threads] == list(stacks.THREAD_IDS[:2])
    (warning,) = snapshot.warnings
    print(warning)
    assert "exited during capture and was left out" in warning and call in warning
    assert abi.kern_return_name(answer) in warning
    assert_books_balance(k)
    # the next capture no longer lists it, and says nothing
    again = run_capture(k, arch, "pid")
    assert [t.id for t in again.threads] == list(stacks.THREAD_IDS[:2])
    assert again.warnings == ()


@pytest.mark.parametrize("arch", ARCHES)
def test_every_thread_exiting_means_the_process_is_gone(arch: str) -> None:
    k = kernel(arch, "pid", exiting_threads={t: "thread_info" for t in stacks.THREAD_IDS})
    with pytest.raises(CaptureError, match="every thread exited"):
        run_capture(k, arch, "pid")
    assert_books_balance(k)


# ---------------------------------------------------------------- the self dump's hand-over


def _spawn_and_capture(k: FakeMachKernel, arch: str) -> tuple[Snapshot, FakeMachKernel]:
    """offer_task_port in the caller, then a helper kernel inheriting what spawn() saw."""
    inherited = offer_task_port(k, k.spawn)
    helper = FakeMachKernel(world(arch)[0], inherited_slots=inherited, pid=k.pid)
    port = receive_task_port(helper, k.pid)
    try:
        snapshot = capture_mach(task=port, lib=helper, arch=arch)
    finally:
        helper.mach_port_deallocate(helper.self_task, port)
    return snapshot, helper


@pytest.mark.parametrize("read_port", [True, False], ids=["read-port", "before-11.3"])
@pytest.mark.parametrize("arch", ARCHES)
def test_handover_through_registered_ports(arch: str, read_port: bool) -> None:
    """The caller's port sits in slot 0 only while the helper is spawned; the helper
    captures through it with task_suspend, and every book balances on both sides."""
    k = kernel(arch, "pid", self_capture=True, read_port=read_port)
    snapshot, helper = _spawn_and_capture(k, arch)
    assert k.spawned == [["task-read" if read_port else "task", None, None]]
    assert k.registered == [None, None, None]  # restored
    assert_books_balance(k)
    assert [t.id for t in snapshot.threads] == list(stacks.THREAD_IDS)
    assert "thread_suspend" not in helper.calls and helper.task_suspend_count == 0
    assert helper.reads_while_running == 0
    assert_books_balance(helper)


def test_handover_keeps_slots_another_library_registered() -> None:
    k = kernel("arm64", "pid", self_capture=True)
    other = k._grant("someone-elses-port", baseline=True)
    assert k.mach_ports_register(k.self_task, (abi.mach_port_t * 2)(0, other), 2) == 0
    _spawn_and_capture(k, "arm64")
    assert k.spawned == [["task-read", "someone-elses-port", None]]
    assert k.registered == [None, "someone-elses-port", None]
    assert_books_balance(k)


def test_immovable_task_port_is_a_clear_error() -> None:
    """Apple's platform python3: the kernel refuses to register its port; nothing is
    spawned, nothing suspended, the slots are as they were."""
    k = kernel("arm64", "pid", self_capture=True, immovable=True)
    with pytest.raises(TargetError, match="immovable") as info:
        offer_task_port(k, k.spawn)
    assert "\n" not in str(info.value) and "python.org" in str(info.value)
    assert k.spawned == [] and k.registered == [None, None, None]
    assert not k.suspended_ever and k.task_suspend_count == 0
    assert_books_balance(k)


def test_helper_checks_whose_port_it_got() -> None:
    k = kernel("arm64", "pid", self_capture=True)
    inherited = offer_task_port(k, k.spawn)
    helper = FakeMachKernel(world("arm64")[0], inherited_slots=inherited, pid=k.pid)
    with pytest.raises(CaptureError, match="not process 999's"):
        receive_task_port(helper, 999)
    nothing = FakeMachKernel(world("arm64")[0])
    with pytest.raises(CaptureError, match="handed over no task port"):
        receive_task_port(nothing, nothing.pid)
    assert_books_balance(helper)
    assert_books_balance(nothing)


@pytest.mark.parametrize("arch", ARCHES)
def test_busy_python_threads_do_not_hang_the_capture(arch: str) -> None:
    """Python threads spinning and fighting for the GIL (switch interval 1 µs) while the
    whole hand-over and capture run, 20 times: each finishes, none suspends a thread."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    def contend() -> None:
        while not stop.is_set():
            time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    busy = [threading.Thread(target=f, daemon=True) for f in (spin, spin, contend, contend)]
    for t in busy:
        t.start()
    try:
        for _ in range(20):
            started = time.monotonic()
            k = kernel(arch, "pid", self_capture=True)
            snapshot, helper = _spawn_and_capture(k, arch)
            assert time.monotonic() - started < 30
            assert len(snapshot.threads) == 3
            assert not k.suspended_ever and "thread_suspend" not in helper.calls
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        for t in busy:
            t.join()


# ---------------------------------------------------------------- dyld, Rosetta, PAC


@pytest.mark.parametrize("version", [1, 2, 9, 14, 15, 17])
@pytest.mark.parametrize("arch", ARCHES)
def test_older_dyld_all_image_infos(arch: str, version: int) -> None:
    """A smaller, older dyld_all_image_infos: dyld's address from v2, its path from v15."""
    k = kernel(arch, "pid", dyld_infos_version=version)
    with MachTarget(k.pid, lib=k, arch=arch) as target:
        images = list(target.images())
    listed = [image for image, _ in k.images]
    if version < 2:
        assert images == listed
    else:
        assert images == k.expected_images()


@pytest.mark.parametrize("arch", ARCHES)
def test_dyld_outside_the_shared_cache_submap(arch: str) -> None:
    k = kernel(arch, "pid")
    dyld = k.dyld_image.load_address
    assert dyld is not None and not k.submap[0] <= dyld < k.submap[1]
    with MachTarget(k.pid, lib=k, arch=arch) as target:
        mappings = target.mappings()
    inside = [m for m in mappings if k.submap[0] <= m.start < k.submap[1]]
    assert [(m.start, m.end) for m in inside] == [
        (r.start, r.end) for r in k.regions if r.in_submap
    ]


ROSETTA = [
    # (this process's arch, it is translated, target world arch, target translated, result)
    ("arm64", False, "x86_64", True, "refused"),
    ("x86_64", True, "x86_64", True, "x86_64"),
    ("x86_64", True, "arm64", False, "refused"),
    ("arm64", False, "arm64", False, "arm64"),
    ("x86_64", False, "x86_64", False, "x86_64"),  # an Intel Mac
]


@pytest.mark.parametrize(("mine", "me_translated", "theirs", "translated", "result"), ROSETTA)
def test_the_task_decides_its_architecture(
    monkeypatch: pytest.MonkeyPatch,
    mine: str,
    me_translated: bool,
    theirs: str,
    translated: bool,
    result: str,
) -> None:
    from macminidump.capture.mach import libsystem

    monkeypatch.setattr(libsystem.platform, "machine", lambda: mine)
    k = kernel(theirs, "pid", translated=translated, caller_translated=me_translated)
    if result == "refused":
        with pytest.raises(TargetError, match=f"runs as {theirs} and this process as {mine}"):
            MachTarget(k.pid, lib=k)
        assert k.task_suspend_count == 0
    else:
        with MachTarget(k.pid, lib=k) as target:
            assert target.arch == Arch(result)
            snapshot = capture(target)
        assert snapshot.arch == Arch(result) and len(snapshot.threads) == 3
    assert_books_balance(k)


#: a pointer-authentication code in bits 47..54 (user pointers keep bit 55 clear)
PAC = 0x5A << 47


def signed_world(arch: str, sign_fp: bool) -> Snapshot:
    """The crash world with lr and the saved return address of every frame record signed,
    as arm64e code leaves them (PACIBSP); ``sign_fp`` signs the saved frame pointers too."""
    snapshot, _ = world(arch)
    memory = {r.address: bytearray(content_of(r.data)) for r in snapshot.regions}

    def region_of(address: int) -> tuple[int, bytearray]:
        return next((a, d) for a, d in memory.items() if a <= address < a + len(d))

    threads = []
    for thread in snapshot.threads:
        gpr = dict(thread.gpr)
        fp = gpr["fp"]
        while fp:
            base, data = region_of(fp)
            offset = fp - base
            saved_fp = int.from_bytes(data[offset : offset + 8], "little")
            saved_lr = int.from_bytes(data[offset + 8 : offset + 16], "little")
            signed_fp = saved_fp | PAC if saved_fp and sign_fp else saved_fp
            data[offset : offset + 16] = signed_fp.to_bytes(8, "little") + (
                saved_lr | PAC
            ).to_bytes(8, "little")
            fp = saved_fp
        gpr["lr"] |= PAC
        regsets = tuple(
            RegisterSet(r.kind, gpr) if r.kind == RegKind.GPR else r for r in thread.regsets
        )
        threads.append(records.evolve(thread, regsets=regsets))
    regions = tuple(records.evolve(r, data=bytes(memory[r.address])) for r in snapshot.regions)
    return records.evolve(snapshot, threads=tuple(threads), regions=regions)


@pytest.mark.parametrize("signed", ["returns", "returns-and-fps"])
@pytest.mark.parametrize("sysctl", ["answers", "fails"])
def test_signed_pointers_keep_code_windows(sysctl: str, signed: str, tmp_path: Path) -> None:
    """Signed lr and saved return addresses (and saved fps): the same code windows as
    unsigned, the addressable bits (47 by default when the sysctl fails) in the core, and
    LLDB unwinds every thread as before. LLDB 16 stops at a *signed saved fp* (arm64e
    code does not sign those, so only LLDB 23 is held to it)."""
    plain = run_capture(kernel("arm64", "pid"), "arm64", "pid")
    bits = 47 if sysctl == "answers" else None
    k = FakeMachKernel(signed_world("arm64", signed != "returns"), addressable_bits=bits)
    snapshot = run_capture(k, "arm64", "pid")
    assert snapshot.addressable_bits is not None and snapshot.addressable_bits.low == 47
    if sysctl == "fails":
        assert snapshot.warnings == (
            "sysctl machdep.virtual_address_size failed: assuming 47 addressable bits",
        )
    code = lambda s: [(r.address, r.size) for r in s.regions if r.protection & 4]  # noqa: E731
    assert code(snapshot) == code(plain)
    assert any(t.gpr["lr"] & PAC for t in snapshot.threads)
    core = tmp_path / "signed.core"
    render_macho(snapshot, core)
    _world, expected = world("arm64")
    for version in LLDBS if signed == "returns" else [v for v in LLDBS if v >= 18]:
        result = debuggers.probe_core(version, str(core))
        threads = result["threads"]
        for got, want in zip(threads, expected["threads"], strict=True):
            assert [f["function"] for f in got["frames"]] == want["functions"], version
            assert [f["pc"] for f in got["frames"]] == want["frame_pcs"], version
    if signed != "returns" and 16 in LLDBS:
        # what formats/macos-self-capture.md says of LLDB 16: it stops at a signed saved fp
        threads = debuggers.probe_core(16, str(core))["threads"]
        cut = [
            len(got["frames"]) < len(want["functions"])
            for got, want in zip(threads, expected["threads"], strict=True)
        ]
        assert any(cut), threads


def test_every_macos_test_is_in_the_live_file() -> None:
    """The macOS workflow runs tests/test_macos_live.py: no `macos` test lives elsewhere."""
    here = Path(__file__).parent
    elsewhere = [
        p.name
        for p in here.glob("test_*.py")
        if p.name != "test_macos_live.py"
        and re.search(r"^(@pytest\.mark\.macos|pytestmark = .*mark\.macos)", p.read_text(), re.M)
    ]
    assert elsewhere == [], elsewhere


@pytest.mark.parametrize("to", ["core", "snapshot"])
@pytest.mark.parametrize("arch", ARCHES)
def test_the_self_dump_helper_end_to_end(
    arch: str, to: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: Any
) -> None:
    """``python -m macminidump._selfdump``'s macOS path, run here: the parent (a signal
    handler, blocked waiting) offers its port and sends go + its crash context as JSON; the
    helper takes the port, checks whose it is, captures with the crash applied, writes
    the core (or pickles the Snapshot to stdout), and releases the port."""
    import io
    import pickle

    from macminidump import _selfdump
    from macminidump.capture.base import CaptureOptions
    from macminidump.capture.mach import libsystem

    parent = kernel(arch, "crash", self_capture=True)
    inherited = offer_task_port(parent, parent.spawn)
    helper = kernel(arch, "crash", inherited_slots=inherited)
    monkeypatch.setattr(libsystem, "load_libsystem", lambda: helper)
    monkeypatch.setattr(libsystem.platform, "machine", lambda: arch)
    request = b"go" + _selfdump.crash_to_json(crash_context(arch)).encode()
    monkeypatch.setattr(sys, "stdin", type("In", (), {"buffer": io.BytesIO(request)})())
    core = tmp_path / "self.core"
    path = str(core) if to == "core" else _selfdump.TO_STDOUT
    assert _selfdump._capture_darwin(parent.pid, path, CaptureOptions()) == ()
    if to == "core":
        snapshot = parse_core(core)
    else:
        snapshot = pickle.loads(capsysbinary.readouterr().out)
    crashed = snapshot.threads[0]
    assert crashed.id == CRASHED and crashed.crashed
    assert dict(crashed.gpr) == {
        **registers_zero(arch, RegKind.GPR),
        **crash_state(arch)[RegKind.GPR],
    }
    assert "thread_suspend" not in helper.calls and helper.task_suspend_count == 0
    assert_books_balance(helper)
    assert_books_balance(parent)


@pytest.mark.parametrize("arch", ARCHES)
def test_write_core_and_dump_say_what_they_left_out(
    arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The public paths on macOS (libSystem replaced by the fake): write_core warns with
    CaptureWarning (or hands it to ``on_warning``), `macminidump dump` prints the warning
    and lists it in --json."""
    import json
    import warnings

    import macminidump
    from macminidump.capture.mach import libsystem, target
    from macminidump.cli import main
    from macminidump.errors import CaptureWarning

    gone = stacks.THREAD_IDS[2]
    kernels: list[FakeMachKernel] = []

    def fake_libsystem() -> FakeMachKernel:
        kernels.append(kernel(arch, "pid", exiting_threads={gone: "thread_get_state"}))
        return kernels[-1]

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(target, "load_libsystem", fake_libsystem)
    monkeypatch.setattr(libsystem.platform, "machine", lambda: arch)
    core = tmp_path / "a.core"
    with pytest.warns(CaptureWarning, match="exited during capture and was left out"):
        size = macminidump.write_core(core, 4242)
    assert size == core.stat().st_size
    assert [t.id for t in parse_core(core).threads] == list(stacks.THREAD_IDS[:2])
    # on_warning takes the messages instead: nothing is warned
    taken: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        macminidump.write_core(tmp_path / "c.core", 4242, on_warning=taken.append)
    assert len(taken) == 1 and "exited during capture and was left out" in taken[0]
    assert main(["dump", "4242", "-o", str(tmp_path / "b.core"), "--json"]) == 0
    out, err = capsys.readouterr()
    (said,) = json.loads(out)["warnings"]
    assert "exited during capture" in said
    assert f"macminidump: warning: {said}" in err
    for k in kernels:
        assert_books_balance(k)


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_environment_above_the_main_stack_is_left_out(arch: str) -> None:
    """The main thread's stack ends with the start-up arrays (argc, argv, envp) and their
    strings, as on macOS: the environment strings are absent from the capture, argv and
    the rest of the stack are there; ``keep_environment`` keeps them."""
    from macminidump.capture.policy import CaptureOptions

    snapshot, _ = world(arch)
    sp = snapshot.threads[0].gpr[stacks.SP_REG[arch]]
    stack = next(r for r in snapshot.regions if r.contains(sp))
    top = stack.end  # the block goes above the world's stack, at the mapping's new top
    strings = b"./prog\0MY_TOKEN=hunter2\0"
    arrays = [1, 0, 0, 0, 0, 0]  # argc, argv[0], NULL, envp[0], NULL, padding
    strings_at = top + 8 * len(arrays)
    arrays[1], arrays[3] = strings_at, strings_at + 7
    block = b"".join(w.to_bytes(8, "little") for w in arrays) + strings
    block += bytes(-len(block) % 16)
    grown = records.evolve(stack, data=content_of(stack.data) + block)
    regions = tuple(grown if r is stack else r for r in snapshot.regions)
    snapshot = records.evolve(snapshot, regions=regions)

    def capture_with(**options: Any) -> Snapshot:
        k = FakeMachKernel(snapshot)
        return capture_mach(k.pid, lib=k, arch=arch, options=CaptureOptions(**options))

    plain = capture_with()
    assert plain.memory.region_at(strings_at + 7) is None
    assert plain.memory.read(strings_at, 7) == b"./prog\0"  # argv stays
    assert plain.memory.read(sp, 16) == content_of(stack.data)[sp - stack.address :][:16]
    kept = capture_with(keep_environment=True)
    assert kept.memory.read(strings_at + 7, 17) == b"MY_TOKEN=hunter2\0"
