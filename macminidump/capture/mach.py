"""Live capture on macOS through Mach task ports: the ``TargetOS`` backend for Darwin.

``MachTarget`` reads a task (the calling process, another process by pid, or a task port
the caller already holds) with the Mach calls of libSystem, bound with ctypes from the
declarations in :mod:`macminidump.capture.mach_abi`:

- stop/resume: ``task_suspend``/``task_resume`` for another task; for the calling task,
  ``thread_suspend`` of every thread but the calling one (``mach_thread_self``), which
  ``resume`` undoes thread by thread;
- threads: ``task_threads``, ``thread_info`` (``THREAD_IDENTIFIER_INFO`` for the id LLDB
  shows, ``THREAD_EXTENDED_INFO`` for the name), ``thread_get_state`` for the GPR, float
  and exception flavors;
- memory: ``mach_vm_region_recurse`` (descending into submaps) and
  ``mach_vm_read_overwrite`` (page by page where a whole read is refused);
- images: ``task_info(TASK_DYLD_INFO)`` locates dyld's ``dyld_all_image_infos`` in the
  target, which lists every image; each image's Mach-O header and load commands are read
  from the target's memory for its UUID and segments; dyld itself comes from
  ``dyldImageLoadAddress``;
- addressable bits (arm64): ``sysctlbyname("machdep.virtual_address_size")``.

Every port right received (task_for_pid, task_threads, mach_thread_self) is released with
``mach_port_deallocate`` and the array ``task_threads`` allocates with ``vm_deallocate``.

The library object is injected (``lib=``): by default libSystem through ``ctypes.CDLL``
(macOS only), in tests ``testing.fake_mach.FakeMachKernel``, which implements the same
functions at the ctypes level. Importing this module loads no library, on any OS.

For a crash, ``crash_context_from_mcontext``/``crash_context_from_ucontext`` turn the
state a signal handler receives into a :class:`~macminidump.capture.base.CrashContext`.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any

from ..arch import Arch, RegKind, arch_info
from ..errors import CaptureError, TargetError
from ..model import (
    PROTECTIONS,
    AddressableBits,
    FileMapping,
    Image,
    ImageSegment,
    ProcessInfo,
    SignalInfo,
    Snapshot,
)
from . import mach_abi as abi
from .base import CapturedThread, CaptureOptions, CrashContext, MemoryMapping, capture

LIBSYSTEM = "/usr/lib/libSystem.B.dylib"

_P = ctypes.POINTER

#: name -> (restype, argtypes) of every libSystem function MachTarget calls. The real
#: library is bound with these; the fake kernel checks each call's arguments against them.
SIGNATURES: Mapping[str, tuple[Any, tuple[Any, ...]]] = MappingProxyType(
    {
        "mach_task_self": (abi.mach_port_t, ()),
        "mach_thread_self": (abi.mach_port_t, ()),
        "task_for_pid": (abi.kern_return_t, (abi.task_t, abi.pid_t, _P(abi.mach_port_name_t))),
        "task_suspend": (abi.kern_return_t, (abi.task_t,)),
        "task_resume": (abi.kern_return_t, (abi.task_t,)),
        "thread_suspend": (abi.kern_return_t, (abi.thread_act_t,)),
        "thread_resume": (abi.kern_return_t, (abi.thread_act_t,)),
        "task_threads": (
            abi.kern_return_t,
            (abi.task_t, _P(abi.thread_act_array_t), _P(abi.mach_msg_type_number_t)),
        ),
        "mach_port_deallocate": (abi.kern_return_t, (abi.task_t, abi.mach_port_name_t)),
        "vm_deallocate": (abi.kern_return_t, (abi.vm_map_t, abi.vm_address_t, abi.vm_size_t)),
        "thread_info": (
            abi.kern_return_t,
            (abi.thread_act_t, abi.thread_flavor_t, abi.thread_info_t, _P(abi.natural_t)),
        ),
        "thread_get_state": (
            abi.kern_return_t,
            (
                abi.thread_act_t,
                abi.thread_state_flavor_t,
                abi.thread_state_t,
                _P(abi.mach_msg_type_number_t),
            ),
        ),
        "mach_vm_region_recurse": (
            abi.kern_return_t,
            (
                abi.vm_map_read_t,
                _P(abi.mach_vm_address_t),
                _P(abi.mach_vm_size_t),
                _P(abi.natural_t),
                abi.vm_region_recurse_info_t,
                _P(abi.mach_msg_type_number_t),
            ),
        ),
        "mach_vm_read_overwrite": (
            abi.kern_return_t,
            (
                abi.vm_map_read_t,
                abi.mach_vm_address_t,
                abi.mach_vm_size_t,
                abi.mach_vm_address_t,
                _P(abi.mach_vm_size_t),
            ),
        ),
        "task_info": (
            abi.kern_return_t,
            (abi.task_name_t, abi.task_flavor_t, abi.task_info_t, _P(abi.mach_msg_type_number_t)),
        ),
        "sysctlbyname": (
            ctypes.c_int,
            (
                ctypes.c_char_p,
                ctypes.c_void_p,
                _P(ctypes.c_size_t),
                ctypes.c_void_p,
                ctypes.c_size_t,
            ),
        ),
    }
)

#: granularity of the page-by-page fallback of a refused read (4 KiB divides every
#: Darwin page size, so no readable page is skipped)
READ_PAGE = 0x1000
#: longest image path read from the target (MAXPATHLEN is 1024; be generous)
MAX_PATH = 4096
_TASK_FOR_PID_HELP = (
    "macOS lets a process read another's task port only as root, or when it is signed "
    "with the com.apple.security.cs.debugger entitlement and the target allows it "
    "(signed with get-task-allow, as development builds are); run as root, or have the "
    "target hand over its task port (or is there no process {pid}?)"
)


# what a call on the port of a task that has exited returns
_TARGET_GONE = frozenset({abi.MACH_SEND_INVALID_DEST, abi.KERN_TERMINATED, abi.KERN_INVALID_TASK})


def load_libsystem(path: str = LIBSYSTEM) -> Any:
    """libSystem through ctypes with every function of ``SIGNATURES`` typed (macOS only)."""
    if sys.platform != "darwin":
        raise TargetError(
            f"capturing through Mach task ports is macOS only (this is {sys.platform})"
        )
    try:
        lib = ctypes.CDLL(path, use_errno=True)
    except OSError as e:
        raise CaptureError(f"cannot load {path}: {e}") from None
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)
    return lib


def host_arch() -> Arch:
    machine = platform.machine()
    if machine in ("arm64", "aarch64"):
        return Arch.ARM64
    if machine in ("x86_64", "AMD64"):
        return Arch.X86_64
    raise TargetError(f"unsupported host architecture {machine!r} (arm64 and x86_64 are)")


# ------------------------------------------------------------------ register conversion

_RENAMES = {
    "pad": "flags",
    "fpu_fcw": "fcw",
    "fpu_fsw": "fsw",
    "fpu_ftw": "ftw",
    "fpu_fop": "fop",
    "fpu_mxcsr": "mxcsr",
    "fpu_mxcsrmask": "mxcsrmask",
}


@functools.cache
def register_slots(arch: Arch | str, kind: RegKind | str) -> tuple[tuple[str, int, int], ...]:
    """(register name of arch.py, byte offset, width) of each register in the flavor's state.

    Arrays ``x``/``v`` give ``x0``…``x28``/``v0``…``v31``; x86_64's ``fpu_*`` fields are
    named as arch.py names them (``fpu_fcw`` → ``fcw``, ``fpu_xmm3`` → ``xmm3``, the whole
    16 bytes of an ``stmm`` slot); padding and reserved fields have no register.
    """
    arch, kind = Arch(arch), RegKind(kind)
    structure = abi.layouts_for(arch).flavors[kind].structure
    table = arch_info(arch).registers[kind]
    slots = []
    for field_name, field_type, *_ in structure._fields_:
        offset = getattr(structure, field_name).offset
        if field_name in ("x", "v") and issubclass(field_type, ctypes.Array):
            element: Any = field_type
            width = ctypes.sizeof(element._type_)
            for i in range(element._length_):
                slots.append((f"{field_name}{i}", offset + i * width, width))
            continue
        name = _RENAMES.get(field_name, field_name)
        if name.startswith(("fpu_stmm", "fpu_xmm")):
            name = name[len("fpu_") :]
        if name in table:
            slots.append((name, offset, ctypes.sizeof(field_type)))
    return tuple(slots)


def state_to_registers(arch: Arch | str, kind: RegKind | str, state: bytes) -> dict[str, int]:
    """A flavor's raw state (``thread_get_state`` output, an mcontext part) → register dict."""
    return {
        name: int.from_bytes(state[offset : offset + width], "little")
        for name, offset, width in register_slots(arch, kind)
    }


def registers_to_state(arch: Arch | str, kind: RegKind | str, values: Mapping[str, int]) -> bytes:
    """The inverse of ``state_to_registers``: missing registers are zero."""
    structure = abi.layouts_for(arch).flavors[RegKind(kind)].structure
    out = bytearray(ctypes.sizeof(structure))
    for name, offset, width in register_slots(arch, kind):
        out[offset : offset + width] = int(values.get(name, 0)).to_bytes(width, "little")
    return bytes(out)


# ------------------------------------------------------------------ crash context


def crash_context_from_mcontext(
    arch: Arch | str,
    thread_id: int,
    mcontext: bytes | bytearray | memoryview | ctypes.Structure,
    signal: SignalInfo | None = None,
) -> CrashContext:
    """The crashed thread's state from its ``struct __darwin_mcontext64``.

    A signal handler installed with ``sigaction`` and ``SA_SIGINFO`` gets
    ``void handler(int signo, siginfo_t *info, void *context)``; ``context`` is a
    ``ucontext_t *`` whose ``uc_mcontext`` points to the mcontext and whose ``uc_mcsize``
    gives its size (larger than ``sizeof(__darwin_mcontext64)`` when AVX/SVE state
    follows; the leading part is the same). Pass ``bytes`` of at least
    ``sizeof(layouts_for(arch).mcontext64)`` (``ctypes.string_at(uc_mcontext,
    uc_mcsize)``), or the mcontext structure itself; or call
    :func:`crash_context_from_ucontext` with the ``context`` pointer. ``thread_id`` is the
    crashed thread's id as ``pthread_threadid_np`` (or ``THREAD_IDENTIFIER_INFO``) gives
    it: in a handler, the calling thread's.

    arm64 decodes ``__es`` (far, esr, exception), ``__ss`` (x0–x28, fp, lr, sp, pc, cpsr)
    and ``__ns`` (v0–v31, fpsr, fpcr); x86_64 ``__es``, ``__ss`` and ``__fs``.
    """
    layouts = abi.layouts_for(arch)
    size = ctypes.sizeof(layouts.mcontext64)
    if isinstance(mcontext, ctypes.Structure):
        if not isinstance(mcontext, layouts.mcontext64):
            raise CaptureError(
                f"{type(mcontext).__name__} is not the {Arch(arch)} __darwin_mcontext64"
            )
        raw = bytes(mcontext)
    else:
        raw = bytes(mcontext)
    if len(raw) < size:
        raise CaptureError(
            f"an {Arch(arch)} __darwin_mcontext64 is {size} bytes, the context has {len(raw)}"
        )
    kinds: dict[Any, RegKind] = {f.structure: kind for kind, f in layouts.flavors.items()}
    regsets: dict[RegKind, dict[str, int]] = {}
    for field_name, field_type, *_ in layouts.mcontext64._fields_:
        offset = getattr(layouts.mcontext64, field_name).offset
        part = raw[offset : offset + ctypes.sizeof(field_type)]
        regsets[kinds[field_type]] = state_to_registers(arch, kinds[field_type], part)
    return CrashContext(thread_id=thread_id, regsets=regsets, signal=signal)


def crash_context_from_ucontext(
    ucontext: int,
    thread_id: int,
    arch: Arch | str | None = None,
    signal: SignalInfo | None = None,
) -> CrashContext:
    """``crash_context_from_mcontext`` from the address of a ``ucontext_t`` in *this*
    process: the third argument of an ``SA_SIGINFO`` signal handler."""
    arch = Arch(arch) if arch is not None else host_arch()
    if not ucontext:
        raise CaptureError("the signal handler's ucontext pointer is NULL")
    uc = abi.ucontext64.from_address(ucontext)
    size = ctypes.sizeof(abi.layouts_for(arch).mcontext64)
    if not uc.uc_mcontext or uc.uc_mcsize < size:
        raise CaptureError(
            f"ucontext at {ucontext:#x}: uc_mcontext {uc.uc_mcontext or 0:#x} of "
            f"{uc.uc_mcsize} bytes holds no {arch} __darwin_mcontext64 ({size} bytes)"
        )
    return crash_context_from_mcontext(
        arch, thread_id, ctypes.string_at(uc.uc_mcontext, size), signal
    )


# ------------------------------------------------------------------ the backend


def _flavor_names(arch: Arch) -> dict[int, str]:
    names = abi.layouts_for(arch).arch_constants
    return {getattr(abi, n): n for n in names if not n.endswith("_COUNT")}


class MachTarget:
    """A Mach task behind the ``TargetOS`` interface.

    ``MachTarget()`` is the calling process; ``MachTarget(pid)`` another process through
    ``task_for_pid`` (root, or the debugger entitlement against a ``get-task-allow``
    target); ``MachTarget(task=port)`` a task port the caller holds (it stays the
    caller's: it is not released). Use as a context manager, or call ``close()``, to
    release the rights the target took. ``lib`` is the libSystem to call (default: the
    real one, macOS only); ``arch`` the target's architecture (default: this machine's;
    capturing a task of another architecture is not supported).
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
        self._lib = lib if lib is not None else load_libsystem()
        self.arch = Arch(arch) if arch is not None else host_arch()
        self._layouts = abi.layouts_for(self.arch)
        self._flavor_names = _flavor_names(self.arch)
        self._self_task = self._port("mach_task_self")
        self._owns_task = False
        self._task_suspended = False
        #: a task that dies shows as failing calls (CaptureError), never as a quiet stop
        self.exited = False
        self._suspended_threads: list[int] = []
        self._held_threads: list[int] = []
        self._closed = False
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
        else:
            self.task = self._self_task
        #: capturing the calling process: threads are suspended one by one, not the task
        self.is_self = self.task == self._self_task

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
            raise CaptureError(f"the target process is gone ({what}: {abi.kern_return_name(kr)})")
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
        if self._task_suspended or self._held_threads:
            raise CaptureError("the target is already stopped")
        if not self.is_self:
            self._check("task_suspend", "task_suspend", self.task)
            self._task_suspended = True
            return
        me = self._port("mach_thread_self")
        try:
            ports = self._task_threads()
        except BaseException:
            self._release([me])
            raise
        self._held_threads = ports
        try:
            for port in ports:
                if port == me:
                    continue  # suspending the calling thread would never return
                self._check("thread_suspend", f"thread_suspend of thread port {port:#x}", port)
                self._suspended_threads.append(port)
        except BaseException:
            try:
                self.resume()
            except CaptureError:
                pass  # the first failure is the one to report
            raise
        finally:
            self._release([me])

    def resume(self) -> None:
        """Undo exactly what ``stop`` did; every thread is tried even when one fails."""
        errors = []
        if self._task_suspended:
            self._task_suspended = False
            try:
                self._check("task_resume", "task_resume", self.task)
            except CaptureError as e:
                errors.append(str(e))
        suspended, self._suspended_threads = self._suspended_threads, []
        held, self._held_threads = self._held_threads, []
        for port in suspended:
            try:
                self._check("thread_resume", f"thread_resume of thread port {port:#x}", port)
            except CaptureError as e:
                errors.append(str(e))
        self._release(held)
        if errors:
            raise CaptureError("; ".join(errors))

    # ---- threads

    def threads(self) -> Sequence[CapturedThread]:
        ports = self._task_threads()
        try:
            return [self._thread(port) for port in ports]
        finally:
            self._release(ports)

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
        for kind, flavor in self._layouts.flavors.items():
            state = flavor.structure()
            state_count = abi.mach_msg_type_number_t(flavor.count)
            self._check(
                "thread_get_state",
                f"thread_get_state({self._flavor_names[flavor.flavor]}) of thread {tid:#x}",
                port,
                flavor.flavor,
                ctypes.cast(ctypes.byref(state), abi.thread_state_t),
                ctypes.byref(state_count),
            )
            regsets[kind] = state_to_registers(self.arch, kind, bytes(state))
        return CapturedThread(id=tid, name=name, regsets=regsets)

    def calling_thread_id(self) -> int:
        """The id (``THREAD_IDENTIFIER_INFO``) of the thread calling this: a crash handler's."""
        me = self._port("mach_thread_self")
        try:
            return self._thread_id(me)
        finally:
            self._release([me])

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
            address, depth = addr.value + size.value, level.value
        return out

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

    def _read_exact(self, address: int, size: int, what: str) -> bytes:
        data = self.read(address, size)
        if len(data) != size:
            raise CaptureError(
                f"cannot read {what} at {address:#x}: mach_vm_read_overwrite gave "
                f"{len(data)} of {size} bytes"
            )
        return data

    def _read_cstring(self, address: int) -> str:
        out = bytearray()
        while len(out) < MAX_PATH:
            here = address + len(out)
            chunk = self.read(here, min(256, READ_PAGE - here % READ_PAGE))
            if not chunk:
                break
            end = chunk.find(b"\0")
            if end >= 0:
                out += chunk[:end]
                break
            out += chunk
        return out.decode("utf-8", "replace")

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
        if info.all_image_info_format != abi.TASK_DYLD_ALL_IMAGE_INFO_64:
            raise CaptureError("the target's dyld image list is 32-bit: not supported")
        full = ctypes.sizeof(abi.dyld_all_image_infos)
        size = min(info.all_image_info_size, full)
        raw = self._read_exact(info.all_image_info_addr, size, "dyld_all_image_infos")
        infos = abi.dyld_all_image_infos.from_buffer_copy(raw.ljust(full, b"\0"))
        entries: list[tuple[int, int]] = []  # (load address, path address)
        if infos.infoArray and infos.infoArrayCount:
            # infoArray is NULL while dyld rewrites the list: then only dyld is known
            entry_size = ctypes.sizeof(abi.dyld_image_info)
            table = self._read_exact(
                infos.infoArray, infos.infoArrayCount * entry_size, "the dyld_image_info array"
            )
            for i in range(infos.infoArrayCount):
                e = abi.dyld_image_info.from_buffer_copy(table, i * entry_size)
                entries.append((int(e.imageLoadAddress), int(e.imageFilePath)))
        dyld_field = abi.dyld_all_image_infos.dyldImageLoadAddress
        has_dyld = size >= dyld_field.offset + dyld_field.size
        dyld = int(infos.dyldImageLoadAddress) if has_dyld else 0
        if dyld and all(load != dyld for load, _ in entries):
            has_path = size >= abi.dyld_all_image_infos.dyldPath.offset + 8
            entries.append((dyld, int(infos.dyldPath) if has_path else 0))
        images = []
        for load_address, path_address in entries:
            path = self._read_cstring(path_address) if path_address else ""
            if not path and load_address == dyld:
                path = "/usr/lib/dyld"
            images.append(self._image(load_address, path or f"<image at {load_address:#x}>"))
        return images

    def _image(self, load_address: int, path: str) -> Image:
        """The image at ``load_address`` from its Mach-O header and load commands in memory;
        only its address when the header cannot be read."""
        header_size = ctypes.sizeof(abi.mach_header_64)
        raw = self.read(load_address, header_size)
        if len(raw) < header_size:
            return Image(path=path, load_address=load_address)
        header = abi.mach_header_64.from_buffer_copy(raw)
        if header.magic != abi.MH_MAGIC_64:
            return Image(path=path, load_address=load_address)
        commands = self.read(load_address + header_size, min(header.sizeofcmds, 1 << 20))
        uuid = None
        segments: list[tuple[str, int, int]] = []
        offset = 0
        for _ in range(header.ncmds):
            if offset + 8 > len(commands):
                break
            lc = abi.load_command.from_buffer_copy(commands, offset)
            if lc.cmdsize < 8 or offset + lc.cmdsize > len(commands):
                break
            if lc.cmd == abi.LC_UUID and lc.cmdsize >= ctypes.sizeof(abi.uuid_command):
                uuid = bytes(abi.uuid_command.from_buffer_copy(commands, offset).uuid)
            elif lc.cmd == abi.LC_SEGMENT_64 and lc.cmdsize >= ctypes.sizeof(
                abi.segment_command_64
            ):
                seg = abi.segment_command_64.from_buffer_copy(commands, offset)
                name = seg.segname.decode("ascii", "replace")
                segments.append((name, int(seg.vmaddr), int(seg.vmsize)))
            offset += lc.cmdsize
        text = next((vmaddr for name, vmaddr, _ in segments if name == "__TEXT"), None)
        slide = (load_address - text) % (1 << 64) if text is not None else None
        return Image(
            path=path,
            uuid=uuid,
            load_address=load_address,
            slide=slide,
            segments=tuple(
                ImageSegment(name, (vmaddr + (slide or 0)) % (1 << 64), vmsize)
                for name, vmaddr, vmsize in segments
                if name != "__PAGEZERO"
            ),
            main=header.filetype == abi.MH_EXECUTE,
        )

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
        if rc != 0 or not 1 <= value.value <= 64:
            return None
        return AddressableBits(low=value.value, high=value.value)

    def extra_ranges(self, mappings: Sequence[MemoryMapping]) -> Iterable[tuple[int, int]]:
        return ()

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
) -> Snapshot:
    """``MiniDumpWriteDump`` minus the file: capture a task into a Snapshot.

    ``capture_mach()`` is the calling process (a crash handler passes ``crash``),
    ``capture_mach(pid)`` another one, ``capture_mach(task=port)`` a task port the
    caller holds. Write the result with ``macminidump.render_macho``.
    """
    with MachTarget(pid, task=task, lib=lib, arch=arch) as target:
        return capture(target, options, crash)


__all__ = [
    "SIGNATURES",
    "MachTarget",
    "capture_mach",
    "crash_context_from_mcontext",
    "crash_context_from_ucontext",
    "host_arch",
    "load_libsystem",
    "register_slots",
    "registers_to_state",
    "state_to_registers",
]
