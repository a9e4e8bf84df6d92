"""The Mach backend's target: a task behind the ``TargetOS`` interface, and ``capture_mach``.

``MachTarget`` reads another task (a process by pid, or a task port the caller holds)
through the libSystem calls of :mod:`.libsystem`. Never the calling task itself: a
process that suspends its own threads from Python can deadlock on the GIL (see
:mod:`.handover`, which hands this process's task port to a helper process instead).

- stop/resume: ``task_suspend``/``task_resume``;
- threads: ``task_threads``, ``thread_info`` (``THREAD_IDENTIFIER_INFO`` for the id LLDB
  shows, ``THREAD_EXTENDED_INFO`` for the name), ``thread_get_state`` for the GPR, float
  and exception flavors (converted by :mod:`.registers`). A thread that exits between
  ``task_threads`` and its own calls (``KERN_TERMINATED``, ``MACH_SEND_INVALID_DEST``
  while the task lives on: workqueue threads come and go) is left out and named in
  ``warnings``, which ``capture`` copies into ``Snapshot.warnings``;
- memory: ``mach_vm_region_recurse`` (descending into submaps) and
  ``mach_vm_read_overwrite`` (page by page where a whole read is refused);
- images: ``task_info(TASK_DYLD_INFO)``, then dyld's list read from memory (:mod:`.dyld`);
- addressable bits (arm64): ``sysctlbyname("machdep.virtual_address_size")``, else
  ``DEFAULT_ARM64_ADDRESSABLE_BITS`` (a signed return address must still be stripped);
- architecture: the task's own (:func:`.libsystem.task_arch`: a Rosetta-translated task
  is x86_64), refused when it is not the capturing process's.

Every port right received (task_for_pid, task_threads) is released with
``mach_port_deallocate`` and the array ``task_threads`` allocates with ``vm_deallocate``.

The library object is injected (``lib=``): by default libSystem through ``ctypes.CDLL``
(macOS only), in tests ``testing.fake_mach.FakeMachKernel``, which implements the same
functions at the ctypes level.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from ...arch import Arch, RegKind, arch_info
from ...errors import CaptureError, TargetError
from ...mach_flavors import mach_arch
from ...model import PROTECTIONS, AddressableBits, FileMapping, Image, ProcessInfo, Snapshot
from ..base import CapturedThread, CaptureOptions, CrashContext, MemoryMapping, capture
from ..policy import CostOf
from ..startup_stack import environment_strings
from . import abi, dyld
from .libsystem import host_arch, load_libsystem, task_arch
from .registers import state_to_registers

#: granularity of the page-by-page fallback of a refused read (4 KiB divides every
#: Darwin page size, so no readable page is skipped)
READ_PAGE = 0x1000
_TASK_FOR_PID_HELP = (
    "macOS lets a process read another's task port only as root, or when it is signed "
    "with the com.apple.security.cs.debugger entitlement and the target allows it "
    "(signed with get-task-allow, as development builds are); run as root, or have the "
    "target hand over its task port (or is there no process {pid}?)"
)


# what a call on the port of a task (or thread) that has exited returns
_TARGET_GONE = frozenset({abi.MACH_SEND_INVALID_DEST, abi.KERN_TERMINATED, abi.KERN_INVALID_TASK})
#: user address bits of macOS on arm64 (T0SZ 17) when the sysctl does not say: without a
#: mask a signed (PAC) return address would miss every mapping and lose its code window
DEFAULT_ARM64_ADDRESSABLE_BITS = 47
_SELF_HELP = (
    "capturing the calling task from inside it can deadlock a Python process (a thread "
    "suspended while waiting for the GIL); macminidump.write_core() and "
    "capture_process() capture this process from a helper process instead"
)


class _Gone(CaptureError):
    """A call answered that its task or thread no longer exists."""


# ------------------------------------------------------------------ the backend


_PRIVATE_MODES = (abi.SM_PRIVATE, abi.SM_COW, abi.SM_PRIVATE_ALIASED)


class MachTarget:
    """A Mach task behind the ``TargetOS`` interface.

    ``MachTarget(pid)`` is another process through ``task_for_pid`` (root, or the
    debugger entitlement against a ``get-task-allow`` target); ``MachTarget(task=port)`` a
    task port the caller holds (it stays the caller's: it is not released). The calling
    task is refused (``TargetError``): see :mod:`.handover`. Use as a context manager, or
    call ``close()``, to release the rights the target took. ``lib`` is the libSystem to
    call (default: the real one, macOS only); ``arch`` overrides the target's
    architecture (default: the task's own, which must be the capturing process's).
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        task: int | None = None,
        lib: Any = None,
        arch: Arch | str | None = None,
    ):
        if pid is not None and task is not None:
            raise CaptureError("give a pid or a task port, not both")
        if pid is None and task is None:
            raise TargetError(_SELF_HELP)
        self._lib = lib if lib is not None else load_libsystem()
        self._self_task = self._port("mach_task_self")
        self._owns_task = False
        self._task_suspended = False
        #: the main thread's sp, read by threads(): the environment lies above its stack
        self._main_sp: int | None = None
        #: a task that dies shows as failing calls (CaptureError), never as a quiet stop
        self.exited = False
        #: what the capture left out and why (threads that exited while being read)
        self.warnings: list[str] = []
        self._closed = False
        #: starts of the regions the last mappings() saw written (the ``dirty`` policy)
        self._modified: set[int] = set()
        if task is not None:
            self.task = int(task)
        elif pid is not None:
            port = abi.mach_port_name_t(abi.MACH_PORT_NULL)
            kr = self._call(
                "task_for_pid", f"task_for_pid({pid})", self._self_task, pid, ctypes.byref(port)
            )
            if kr != abi.KERN_SUCCESS or not port.value:
                raise TargetError(
                    f"task_for_pid({pid}) failed: {abi.kern_return_name(kr)}: "
                    + _TASK_FOR_PID_HELP.format(pid=pid)
                )
            self.task = port.value
            self._owns_task = True
        if self.task == self._self_task:
            raise TargetError(_SELF_HELP)
        try:
            self.arch = Arch(arch) if arch is not None else self._task_arch()
        except BaseException:
            self.close()
            raise

    def _task_arch(self) -> Arch:
        mine, theirs = host_arch(), task_arch(self._lib, self.task)
        if theirs is not mine:
            raise TargetError(
                f"the target runs as {theirs} and this process as {mine}"
                + (" (Rosetta)" if Arch.X86_64 in (mine, theirs) else "")
                + f": capture it from a {theirs} process (e.g. `arch -{theirs} python3 -m "
                "macminidump dump PID`): the thread states of another architecture are "
                "not readable from here"
            )
        return theirs

    # ---- calls into the library

    def _call(self, fn: str, what: str, *args: Any) -> int:
        """Call ``fn``; a Python exception from it becomes a one-line CaptureError."""
        try:
            return int(getattr(self._lib, fn)(*args))
        except (OSError, ctypes.ArgumentError, ValueError, TypeError) as e:
            raise CaptureError(f"{what} failed: {e}".replace("\n", " ")) from e

    def _check(self, fn: str, what: str, *args: Any) -> None:
        kr = self._call(fn, what, *args)
        if kr in _TARGET_GONE:
            raise _Gone(f"the target process is gone ({what}: {abi.kern_return_name(kr)})")
        if kr != abi.KERN_SUCCESS:
            raise CaptureError(f"{what} failed: {abi.kern_return_name(kr)}")

    def _try(self, fn: str, *args: Any) -> int:
        """The call's result, or -1 when it raised: for calls whose failure is tolerated."""
        try:
            return int(getattr(self._lib, fn)(*args))
        except (OSError, ctypes.ArgumentError, ValueError, TypeError):
            return -1

    def _port(self, fn: str) -> int:
        port = self._call(fn, f"{fn}()")
        if port == abi.MACH_PORT_NULL:
            raise CaptureError(f"{fn}() returned MACH_PORT_NULL")
        return port

    def _release(self, ports: Iterable[int]) -> None:
        # best effort: a right that cannot be released is nothing a capture can fix
        for port in ports:
            self._try("mach_port_deallocate", self._self_task, port)

    def _task_threads(self) -> list[int]:
        array = abi.thread_act_array_t()
        count = abi.mach_msg_type_number_t(0)
        self._check(
            "task_threads", "task_threads", self.task, ctypes.byref(array), ctypes.byref(count)
        )
        if not array:
            return []
        try:
            return [int(array[i]) for i in range(count.value)]
        finally:
            address = ctypes.cast(array, ctypes.c_void_p).value or 0
            size = count.value * ctypes.sizeof(abi.thread_act_t)
            self._try("vm_deallocate", self._self_task, address, size)

    # ---- lifecycle

    def close(self) -> None:
        """Resume what is still stopped and release the task port taken by task_for_pid."""
        if self._closed:
            return
        self._closed = True
        try:
            self.resume()
        finally:
            if self._owns_task:
                self._release([self.task])

    def __enter__(self) -> MachTarget:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stop(self) -> None:
        if self._closed:
            raise CaptureError("the target is closed")
        if self._task_suspended:
            raise CaptureError("the target is already stopped")
        self._check("task_suspend", "task_suspend", self.task)
        self._task_suspended = True

    def resume(self) -> None:
        """Undo what ``stop`` did."""
        if self._task_suspended:
            self._task_suspended = False
            try:
                self._check("task_resume", "task_resume", self.task)
            except _Gone:
                self.exited = True  # nothing left to resume; the reader's error says why

    # ---- threads

    def threads(self) -> Sequence[CapturedThread]:
        ports = self._task_threads()
        out = []
        try:
            for port in ports:
                try:
                    out.append(self._thread(port))
                except _Gone as e:
                    if not self._task_alive():
                        raise
                    self.warnings.append(
                        f"thread port {port:#x} exited during capture and was left out: "
                        + str(e).removeprefix("the target process is gone (")[:-1]
                    )
        finally:
            self._release(ports)
        if ports and not out:
            raise CaptureError("the target process is gone: every thread exited during capture")
        gpr = out[0].regsets.get(RegKind.GPR, {}) if out else {}
        self._main_sp = gpr.get(arch_info(self.arch).sp)
        return out

    def _task_alive(self) -> bool:
        info = abi.task_dyld_info()
        count = abi.mach_msg_type_number_t(abi.TASK_DYLD_INFO_COUNT)
        kr = self._try(
            "task_info",
            self.task,
            abi.TASK_DYLD_INFO,
            ctypes.cast(ctypes.byref(info), abi.task_info_t),
            ctypes.byref(count),
        )
        return kr not in _TARGET_GONE

    def _thread_id(self, port: int) -> int:
        ident = abi.thread_identifier_info()
        count = abi.mach_msg_type_number_t(abi.THREAD_IDENTIFIER_INFO_COUNT)
        self._check(
            "thread_info",
            f"thread_info(THREAD_IDENTIFIER_INFO) of thread port {port:#x}",
            port,
            abi.THREAD_IDENTIFIER_INFO,
            ctypes.cast(ctypes.byref(ident), abi.thread_info_t),
            ctypes.byref(count),
        )
        return int(ident.thread_id)

    def _thread(self, port: int) -> CapturedThread:
        tid = self._thread_id(port)
        name = None
        ext = abi.thread_extended_info()
        count = abi.mach_msg_type_number_t(abi.THREAD_EXTENDED_INFO_COUNT)
        kr = self._try(
            "thread_info",
            port,
            abi.THREAD_EXTENDED_INFO,
            ctypes.cast(ctypes.byref(ext), abi.thread_info_t),
            ctypes.byref(count),
        )
        if kr == abi.KERN_SUCCESS:  # a name is nice to have: none when it cannot be read
            name = ext.pth_name.decode("utf-8", "replace") or None
        regsets: dict[RegKind, dict[str, int]] = {}
        for kind, flavor in mach_arch(self.arch).flavors.items():
            state = (abi.natural_t * flavor.count)()
            state_count = abi.mach_msg_type_number_t(flavor.count)
            self._check(
                "thread_get_state",
                f"thread_get_state({flavor.name}) of thread {tid:#x}",
                port,
                flavor.flavor,
                ctypes.cast(state, abi.thread_state_t),
                ctypes.byref(state_count),
            )
            regsets[kind] = state_to_registers(self.arch, kind, bytes(state))
        return CapturedThread(id=tid, name=name, regsets=regsets)

    # ---- memory

    def mappings(self) -> Sequence[MemoryMapping]:
        out: list[MemoryMapping] = []
        address, depth = 0, 0
        while address < 1 << 64:
            addr = abi.mach_vm_address_t(address)
            size = abi.mach_vm_size_t(0)
            level = abi.natural_t(depth)
            info = abi.vm_region_submap_info_64()
            count = abi.mach_msg_type_number_t(abi.VM_REGION_SUBMAP_INFO_COUNT_64)
            kr = self._call(
                "mach_vm_region_recurse",
                f"mach_vm_region_recurse at {address:#x}",
                self.task,
                ctypes.byref(addr),
                ctypes.byref(size),
                ctypes.byref(level),
                ctypes.cast(ctypes.byref(info), abi.vm_region_recurse_info_t),
                ctypes.byref(count),
            )
            if kr == abi.KERN_INVALID_ADDRESS:
                break  # no region at or above address
            if kr != abi.KERN_SUCCESS:
                raise CaptureError(
                    f"mach_vm_region_recurse at {address:#x} failed: {abi.kern_return_name(kr)}"
                )
            if addr.value + size.value <= address or size.value == 0:
                raise CaptureError(f"mach_vm_region_recurse at {address:#x} went backwards")
            if info.is_submap:
                # look inside the submap (the shared region) at the next depth
                address, depth = addr.value, level.value + 1
                continue
            out.append(
                MemoryMapping(
                    start=addr.value,
                    end=addr.value + size.value,
                    protection=PROTECTIONS[info.protection & abi.VM_PROT_ALL],
                    tag=int(info.user_tag),
                )
            )
            if info.share_mode in _PRIVATE_MODES and (
                info.pages_dirtied or info.pages_swapped_out or info.pages_shared_now_private
            ):
                self._modified.add(addr.value)
            address, depth = addr.value + size.value, level.value
        return out

    def modified_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[MemoryMapping]:
        """Private (or copy-on-write) regions with pages the task dirtied, as the last
        ``mappings()`` saw them."""
        return [m for m in mappings if m.start in self._modified]

    def _read_into(self, buffer: Any, offset: int, address: int, size: int) -> int:
        got = abi.mach_vm_size_t(0)
        kr = self._try(
            "mach_vm_read_overwrite",
            self.task,
            address,
            size,
            ctypes.addressof(buffer) + offset,
            ctypes.byref(got),
        )
        return min(got.value, size) if kr == abi.KERN_SUCCESS else -1

    def read(self, address: int, size: int) -> bytes:
        """Up to ``size`` bytes: the whole range in one call, else page by page up to the
        first page the kernel refuses."""
        if size <= 0 or address >= 1 << 64:
            return b""
        size = min(size, (1 << 64) - address)
        buffer = ctypes.create_string_buffer(size)
        got = self._read_into(buffer, 0, address, size)
        if got == size:
            return buffer.raw
        done = 0
        while done < size:
            here = address + done
            chunk = min(size - done, READ_PAGE - here % READ_PAGE)
            got = self._read_into(buffer, done, here, chunk)
            if got <= 0:
                break
            done += got
            if got < chunk:
                break
        return buffer.raw[:done]

    # ---- images

    def images(self) -> Sequence[Image]:
        info = abi.task_dyld_info()
        count = abi.mach_msg_type_number_t(abi.TASK_DYLD_INFO_COUNT)
        self._check(
            "task_info",
            "task_info(TASK_DYLD_INFO)",
            self.task,
            abi.TASK_DYLD_INFO,
            ctypes.cast(ctypes.byref(info), abi.task_info_t),
            ctypes.byref(count),
        )
        return dyld.read_images(info, self.read)

    # ---- the rest of TargetOS

    def addressable_bits(self) -> AddressableBits | None:
        if self.arch != Arch.ARM64:
            return None
        value = ctypes.c_int(0)
        length = ctypes.c_size_t(ctypes.sizeof(value))
        rc = self._try(
            "sysctlbyname",
            abi.SYSCTL_VIRTUAL_ADDRESS_SIZE.encode(),
            ctypes.byref(value),
            ctypes.byref(length),
            None,
            0,
        )
        bits = value.value if rc == 0 and 1 <= value.value <= 64 else None
        if bits is None:
            bits = DEFAULT_ARM64_ADDRESSABLE_BITS
            self.warnings.append(
                f"sysctl {abi.SYSCTL_VIRTUAL_ADDRESS_SIZE} failed: assuming {bits} addressable bits"
            )
        return AddressableBits(low=bits, high=bits)

    def extra_ranges(self, mappings: Sequence[MemoryMapping]) -> Iterable[tuple[int, int]]:
        return ()

    def dont_dump(self, mappings: Sequence[MemoryMapping]) -> Sequence[tuple[int, int]]:
        return ()  # macOS has no MADV_DONTDUMP

    def environment(self, mappings: Sequence[MemoryMapping]) -> tuple[int, int] | None:
        """The strings above the main thread's stack (task_threads lists it first)."""
        sp = self._main_sp
        stack = next((m for m in mappings if sp is not None and m.contains(sp)), None)
        if stack is None:
            return None
        return environment_strings(self.read, stack.start, stack.end)

    def process_info(self) -> ProcessInfo | None:
        return None

    def auxv(self) -> Sequence[tuple[int, int]]:
        return ()

    def file_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[FileMapping]:
        return ()


def capture_mach(
    pid: int | None = None,
    *,
    task: int | None = None,
    crash: CrashContext | None = None,
    options: CaptureOptions | None = None,
    lib: Any = None,
    arch: Arch | str | None = None,
    cost: CostOf | None = None,
) -> Snapshot:
    """``MiniDumpWriteDump`` minus the file: capture another task into a Snapshot.

    ``capture_mach(pid)`` a process by pid, ``capture_mach(task=port)`` a task port the
    caller holds (a helper given the crashed process's port passes ``crash``). The calling
    process is captured by ``macminidump.capture_process()``/``write_core()``, through a
    helper. Write the result with ``macminidump.render_macho``. Or stream it:
    ``streaming.write_captured(MachTarget(...), path, "macho", options)``. ``cost``: the
    format's cost model, for a ``max_size`` budget.
    """
    with MachTarget(pid, task=task, lib=lib, arch=arch) as target:
        return capture(target, options, crash, cost)


__all__ = ["MachTarget", "capture_mach"]
