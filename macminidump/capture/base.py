"""Capture written once: what to save of a live process, for every OS.

A backend (Linux ptrace, Mach task ports, a fake for tests) implements the narrow
``TargetOS`` interface: stop and resume, list threads with their registers, list
memory mappings, read memory, list loaded images, and name the memory its platform's
debuggers need beyond stacks and code. ``capture`` does the rest, identically for all:
it keeps the target stopped only while it reads, walks each thread's frame-pointer
chain, and names the regions a debugger needs for complete backtraces:

- each thread's stack, from sp (less the red zone) to the end of its mapping, at most
  ``max_stack`` bytes (8 MiB unless asked);
- ±256 bytes of code around every pc and return address (and arm64's lr, x86_64's
  [sp]: the return address of a frameless leaf or a thread sitting in a system call),
  so a core opened where the same libraries are missing still unwinds;
- whatever the backend names (Linux: the dynamic linker's list of libraries, the vDSO).

The memory policy (``policy.py``: referenced, dirty or full memory, the caller's ranges,
a size budget and its order of priority, the memory never saved) chooses among those
and adds to them. ``captured`` keeps the target stopped while the file is written when
large regions stream from the target to the file (instead of through RAM); a capture
with nothing left to read resumes the target before the file is written.

A backend knows its OS and nothing of file formats; the renderers know formats and
nothing of how the state was captured.
"""

from __future__ import annotations

import _bisect as bisect  # (the C core: bisect.py adds nothing a dump uses)
import struct

from .. import gc_pause, records
from ..arch import Arch, ArchInfo, RegKind, arch_info
from ..errors import CaptureError
from ..model import (
    PROTECTIONS,
    AddressableBits,
    BytesSource,
    FileMapping,
    Image,
    ProcessInfo,
    Protection,
    RawItem,
    Region,
    RegisterSet,
    SignalInfo,
    Snapshot,
    Thread,
)
from ..plain_typing import Callable, Iterable, Iterator, Mapping, Protocol, Sequence
from . import policy
from .policy import (
    EXECUTE,
    CaptureOptions,
    CostOf,
    MappingIndex,
    Memory,
    Piece,
    Priority,
    Want,
)

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any

    from ..progress import Progress

CODE_WINDOW = 256
MAX_FRAMES = 4096


@records.frozen(kw_only=True)
class MemoryMapping:
    """A mapping of the target's address space, as its OS reports it."""

    start: int
    end: int
    protection: Protection
    path: str = ""
    offset: int = 0
    #: Mach's user tag (VM_MEMORY_STACK = 30, ...); None where the OS has none
    tag: int | None = None

    def contains(self, address: int) -> bool:
        return self.start <= address < self.end


@records.frozen(kw_only=True)
class CapturedThread:
    """One thread as a backend reads it."""

    id: int
    regsets: dict[RegKind, dict[str, int]]
    name: str | None = None
    #: x86_64: the XSAVE area (see ``model.Thread.xsave``)
    xsave: bytes | None = None
    #: parts of a core file kept as they are (a core the kernel is writing: core_handler)
    raw_states: tuple[RawItem, ...] = ()


@records.frozen(kw_only=True)
class CrashContext:
    """What a crash handler knows: which thread crashed, its state then, the signal.

    ``regsets`` replaces the crashed thread's current registers (which a handler would
    otherwise record from inside itself); kinds not given keep the thread's own.
    """

    thread_id: int
    regsets: dict[RegKind, dict[str, int]] = records.field(factory=dict)
    signal: SignalInfo | None = None


class TargetOS(Protocol):
    """The narrow interface every backend implements. Calls come in this order:
    ``stop()``, then any of the readers, then ``resume()`` exactly once (also on errors).
    A ``stop()`` that raises must itself leave the target running: it is not resumed."""

    arch: Arch

    @property
    def exited(self) -> bool:
        """True once the target was seen to die while stopped (its state is then moot)."""
        ...

    def stop(self) -> None: ...

    def resume(self) -> None: ...

    def threads(self) -> Sequence[CapturedThread]: ...

    def mappings(self) -> Sequence[MemoryMapping]: ...

    def read(self, address: int, size: int) -> bytes:
        """Up to ``size`` bytes; fewer (maybe none) where the memory cannot be read."""
        ...

    def images(self) -> Sequence[Image]: ...

    def addressable_bits(self) -> AddressableBits | None: ...

    def extra_ranges(self, mappings: Sequence[MemoryMapping]) -> Iterable[tuple[int, int]]:
        """Half-open ranges the platform's debuggers need besides stacks and code."""
        ...

    def modified_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[MemoryMapping]:
        """The private mappings the process wrote (heap, stacks, data, anonymous memory):
        what the ``dirty`` policy saves. Asked only by that policy (it may cost a walk)."""
        ...

    def dont_dump(self, mappings: Sequence[MemoryMapping]) -> Sequence[tuple[int, int]]:
        """Ranges the process marked never to be dumped (Linux: MADV_DONTDUMP): no policy
        saves them, whatever asked for them."""
        ...

    def environment(self, mappings: Sequence[MemoryMapping]) -> tuple[int, int] | None:
        """Where the environment strings lie (left out unless ``keep_environment``)."""
        ...

    def process_info(self) -> ProcessInfo | None: ...

    def auxv(self) -> Sequence[tuple[int, int]]: ...

    def file_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[FileMapping]: ...


def capture(
    target: TargetOS,
    options: CaptureOptions | None = None,
    crash: CrashContext | None = None,
    cost: CostOf | None = None,
) -> Snapshot:
    """A Snapshot of ``target``; its memory read while the target was stopped (all in RAM:
    to stream a large capture to a file, render inside ``captured`` instead)."""
    with captured(target, options, crash, cost, lazy=False) as snapshot:
        return snapshot


def captured(
    target: TargetOS,
    options: CaptureOptions | None = None,
    crash: CrashContext | None = None,
    cost: CostOf | None = None,
    *,
    lazy: bool = True,
    progress: Progress | None = None,
    while_stopped: Callable[[], object] | None = None,
) -> _Captured:
    """The Snapshot of ``target``: large regions (``lazy``) read from the target only when
    the renderer streams them, so memory never piles up here. The target stays stopped
    while such a region is in the snapshot; without one it is resumed before the body.

    ``cost``: the file format's cost model, needed for a ``max_size`` budget.
    ``while_stopped``: the caller's own preparation, called once the target's state is
    read and before its memory is chosen, where a backend's background read (Linux's
    smaps) is still running: ``write_captured`` imports the renderer there.
    """
    options = options or CaptureOptions()
    if options.max_size is not None and cost is None:
        raise CaptureError("a size budget needs the file format's cost model")

    def capture_stopped() -> tuple[tuple[Region, ...], Callable[[], Snapshot]]:
        return _read_stopped(target, options, crash, cost, lazy, progress, while_stopped)

    return _Captured(target, capture_stopped, progress)


class _Captured:
    """``with captured(...) as snapshot``: the collector paused and the target stopped from
    ``__enter__``, which captures (``capture_stopped``: the regions read, and how to make
    the Snapshot of all that was read), to ``__exit__``; on every path both are undone,
    Ctrl-C included. When no region streams from the target, nothing more is read from
    it: it is resumed before the Snapshot is made and checked, and the process goes on
    while the file is written, paused only for as long as its state is read. (A class,
    not a contextlib generator: a dump imports no contextlib, which with what it imports
    costs a dump ~3 ms; see tests/test_imports.py.)"""

    def __init__(
        self,
        target: TargetOS,
        capture_stopped: Callable[[], tuple[tuple[Region, ...], Callable[[], Snapshot]]],
        progress: Progress | None,
    ):
        self.target = target
        self._capture_stopped = capture_stopped
        self._progress = progress
        self._paused = gc_pause.paused()
        #: whether the target is stopped and still to be resumed (a stop that raises
        #: leaves it running: it is not resumed)
        self._holding = False

    def __enter__(self) -> Snapshot:
        self._paused.__enter__()
        try:
            self.target.stop()
            self._holding = True
            try:
                regions, snapshot = self._capture_stopped()
                if not any(isinstance(r.data, TargetSource) for r in regions):
                    self._resume()
                    self._check_alive()
                return snapshot()
            except BaseException:
                self._resume()  # (once: not again if it was resumed above)
                raise
        except BaseException:
            self._paused.__exit__()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            try:
                if exc_type is None and self._progress is not None:
                    self._progress.done()
            finally:
                self._resume()
        finally:
            self._paused.__exit__()
        if exc_type is None:
            self._check_alive()

    def _resume(self) -> None:
        if self._holding:
            self._holding = False
            self.target.resume()

    def _check_alive(self) -> None:
        if self.target.exited:
            raise CaptureError("the process exited during capture")


def _read_stopped(
    target: TargetOS,
    options: CaptureOptions,
    crash: CrashContext | None,
    cost: CostOf | None,
    lazy: bool,
    progress: Progress | None,
    while_stopped: Callable[[], object] | None,
) -> tuple[tuple[Region, ...], Callable[[], Snapshot]]:
    """All a capture reads of the stopped ``target``: its regions, and the Snapshot of it
    all, made (and checked) when called; for a 1,000-thread process that takes ~30 ms,
    which the target need not wait for."""
    threads = list(target.threads())
    mappings = MappingIndex(target.mappings())
    bits = target.addressable_bits()
    if crash is not None:
        threads = _apply_crash(threads, crash)
    first = next((t for t in threads if crash is not None and t.id == crash.thread_id), None)
    first = first or (threads[0] if threads else None)
    wants: list[Want] = []
    each = _ThreadWants(target, mappings, bits, options)
    for thread in threads:
        wants += each.wants(thread, thread is first)
    wants += [Want(a, b, Priority.HEADERS) for a, b in target.extra_ranges(mappings.sorted)]
    wants += policy.included(options, mappings)
    wants += policy.mapping_wants(target, options, mappings.sorted)
    images = tuple(target.images())
    process = target.process_info()
    auxv = tuple(target.auxv())
    files = tuple(target.file_mappings(mappings.sorted))
    if while_stopped is not None:
        while_stopped()
    excluded = policy.never_saved(target, options, mappings.sorted)
    fields: dict[str, Any] = dict(
        arch=target.arch,
        images=images,
        addressable_bits=bits,
        process=process,
        signal=crash.signal if crash is not None else None,
        auxv=auxv,
        file_mappings=files,
        # optional in TargetOS: a backend that can leave something out says so here
        warnings=tuple(getattr(target, "warnings", ())),
    )
    # (the skeleton and its layout only for a budget: a Snapshot is validated when
    # built, which costs as much as the capture of a 1,000-thread process)
    budget_cost = None
    if cost is not None and options.max_size:
        fields["threads"] = _model_threads(threads, crash)
        reserved = policy.reserved_selection(options)
        budget_cost = cost(Snapshot(**fields, memory_selection=reserved))
    choice = policy.fit(wants, mappings, options, excluded, budget_cost)
    regions = _read_regions(target, choice.pieces, lazy, progress, each.windows)
    if target.exited:
        raise CaptureError("the process exited during capture")

    def snapshot() -> Snapshot:
        if "threads" not in fields:
            fields["threads"] = _model_threads(threads, crash)
        return Snapshot(**fields, regions=regions, memory_selection=choice.selection)

    return regions, snapshot


def _model_threads(threads: list[CapturedThread], crash: CrashContext | None) -> tuple[Thread, ...]:
    # (typed already: a 1,000-thread capture makes 1,000 threads of 2,000 register sets)
    regset, thread = RegisterSet.trusted, Thread.trusted
    crashed_id = crash.thread_id if crash is not None else None
    model_threads = tuple(
        [
            thread(
                t.id,
                tuple([regset(k, v) for k, v in t.regsets.items()]),
                t.name,
                t.id == crashed_id,
                tuple(t.raw_states),
                t.xsave,
            )
            for t in threads
        ]
    )
    if crash is not None:
        # the crashing thread goes first, as the kernel writes it and gdb expects
        model_threads = tuple(sorted(model_threads, key=lambda t: not t.crashed))
    return model_threads


def _apply_crash(threads: list[CapturedThread], crash: CrashContext) -> list[CapturedThread]:
    if not any(t.id == crash.thread_id for t in threads):
        raise CaptureError(f"the crashed thread {crash.thread_id:#x} is not in the process")
    out = []
    for t in threads:
        if t.id == crash.thread_id:
            t = records.evolve(t, regsets={**t.regsets, **crash.regsets})
        out.append(t)
    return out


def _strip(address: int, bits: AddressableBits | None) -> int:
    return bits.strip(address) if bits is not None else address


#: bytes of a stack read at once for the frame walk (frames above are read one by one)
WALK_WINDOW = 0x10000


class StackWindow:
    """A thread's stack read once, so the frame walk and the scan for return addresses
    run in memory: one read per thread, not one per 16-byte frame record, and the saved
    stack comes from the same bytes (``_read_regions``). Reads outside the window go to
    the target."""

    def __init__(self, target: TargetOS, start: int, end: int):
        self.target = target
        self.start = start
        self.data = target.read(start, end - start) if end > start else b""

    def holds(self, start: int, end: int) -> bool:
        return self.start <= start and end <= self.start + len(self.data)

    def read(self, address: int, size: int) -> bytes:
        offset = address - self.start
        if 0 <= offset and offset + size <= len(self.data):
            return self.data[offset : offset + size]
        return self.target.read(address, size)

    def frame(self, fp: int) -> tuple[int, int] | None:
        """The frame record at ``fp``: (the caller's fp, the return address)."""
        offset = fp - self.start
        if 0 <= offset and offset + 16 <= len(self.data):
            return _FRAME_RECORD.unpack_from(self.data, offset)  # type: ignore[return-value]
        record = self.target.read(fp, 16)
        return _FRAME_RECORD.unpack(record) if len(record) == 16 else None


#: a frame record: the caller's fp, then the return address (64-bit little-endian)
_FRAME_RECORD = struct.Struct("<QQ")


def return_addresses(
    target: TargetOS | StackWindow,
    arch: Arch | ArchInfo,
    gpr: Mapping[str, int],
    stack: MemoryMapping,
    bits: AddressableBits | None,
) -> list[int]:
    """Return addresses found by walking the frame-pointer chain within the stack.

    ``[fp]`` is the caller's fp and ``[fp + 8]`` the return address on both arm64 and
    x86_64; the walk stops at fp 0, outside the stack, at a chain that does not move
    up the stack (corrupt or looping), or after MAX_FRAMES.
    """
    info = arch if isinstance(arch, ArchInfo) else arch_info(arch)  # (a walk a thread)
    out = []
    fp = _strip(gpr.get(info.fp, 0), bits)
    low, high = stack.start, stack.end - 16
    window = target if isinstance(target, StackWindow) else StackWindow(target, 0, 0)
    # records within the window read in place (StackWindow.frame's test, inlined: a
    # capture walks a few frames of each of its threads); the rest through frame()
    data, start = window.data, window.start
    last = start + len(data) - 16
    unpack = _FRAME_RECORD.unpack_from
    for _ in range(MAX_FRAMES):
        if fp == 0 or fp % 8 or not low <= fp <= high:
            break
        if start <= fp <= last:
            caller_fp, ret = unpack(data, fp - start)
        else:
            record = window.frame(fp)
            if record is None:
                break
            caller_fp, ret = record
        if bits is not None:
            caller_fp, ret = bits.strip(caller_fp), bits.strip(ret)
        if ret:
            out.append(ret)
        if caller_fp <= fp:
            break
        fp = caller_fp
    return out


class _ThreadWants:
    """What each thread needs saved (``wants``), for one capture: what the threads share
    (their stacks as read, the code window of each address) is kept across them."""

    def __init__(
        self,
        target: TargetOS,
        mappings: MappingIndex,
        bits: AddressableBits | None,
        options: CaptureOptions,
    ):
        self.target, self.mappings, self.bits, self.options = target, mappings, bits, options
        self.arch = target.arch
        self.info = info = arch_info(self.arch)
        #: each thread's stack as read for its walk (``_read_regions`` takes saved bytes
        #: from them)
        self.windows: list[StackWindow] = []
        #: address -> the code window wanted around it (None: not in code); threads of a
        #: process share most return addresses, and each is wanted once
        self.code_wanted: dict[int, Want | None] = {}
        # what every thread asks, looked up once (a capture has a thousand threads)
        self._x86, self._arm = self.arch == Arch.X86_64, self.arch == Arch.ARM64
        self._references = options.memory != Memory.STACKS
        self._sp, self._pc, self._red_zone = info.sp, info.pc, info.red_zone

    def wants(self, thread: CapturedThread, first: bool) -> list[Want]:
        """The thread's stack from sp (the part near sp first), code around its pc and
        return addresses, and under ``referenced`` what its registers and stack words
        point to. ``first``: the crashed thread (or, without a crash, the first one),
        kept first."""
        target, mappings, bits, options = self.target, self.mappings, self.bits, self.options
        new = tuple.__new__  # (Want(...) without its __new__'s Python frame)
        gpr = thread.regsets.get(RegKind.GPR, _NO_REGISTERS)
        wants: list[Want] = []
        sp = gpr.get(self._sp, 0)
        red_zone = self._red_zone
        stack = mappings.at(sp) or mappings.at(sp - red_zone)
        code_addresses = [_strip(gpr.get(self._pc, 0), bits)]
        saved_stack = None
        if stack is not None:
            start = max(stack.start, sp - red_zone)
            end = stack.end if options.max_stack is None else min(stack.end, sp + options.max_stack)
            near = min(end, max(sp, start) + policy.NEAR_SP)
            priority = Priority.CRASHED_STACK if first else Priority.STACKS
            wants.append(new(Want, (start, near, priority)))
            if near < end:
                wants.append(new(Want, (near, end, Priority.REST)))
            saved_stack = (start, end)
            # from the start of sp's page: a backend may save the stack from there
            # (extra_ranges), and the saved bytes then come from this one read too
            low = max(stack.start, start - start % PAGE)
            window = StackWindow(target, low, min(end, low + WALK_WINDOW))
            self.windows.append(window)
            walked = return_addresses(window, self.info, gpr, stack, bits)
            if not walked:
                # No frame chain from here: libc's system-call wrappers reuse the frame
                # register, so a thread blocked in one has fp = 0. Scan its stack instead.
                walked = _scan_for_code(window, max(stack.start, sp), end, mappings, bits)
            code_addresses += walked
            if self._x86 and stack.start <= sp and sp + 8 <= stack.end:
                # a frameless leaf or a thread in a system call: its return address is at [sp]
                code_addresses.append(int.from_bytes(window.read(sp, 8).ljust(8, b"\0"), "little"))
        if self._arm:
            code_addresses.append(_strip(gpr.get("lr", 0), bits))  # a leaf's caller
        code_wanted = self.code_wanted
        for address in code_addresses:
            if address in code_wanted:
                continue
            code = mappings.at(address)
            if code is None or not int(code.protection) & EXECUTE:
                code_wanted[address] = None
                continue
            want = code_wanted[address] = new(
                Want,
                (
                    max(code.start, address - options.code_window),
                    min(code.end, address + options.code_window),
                    Priority.HEADERS,
                ),
            )
            wants.append(want)
        if self._references:
            values = [_strip(v, bits) for v in gpr.values()]
            wants += policy.referenced(target, mappings, values, saved_stack, 2 if first else 1)
        return wants


#: the registers of a thread without a set of that kind
_NO_REGISTERS: Mapping[str, int] = {}


SCAN_BYTES = 0x4000
SCAN_HITS = 64


def _scan_for_code(
    target: TargetOS | StackWindow,
    start: int,
    end: int,
    mappings: MappingIndex,
    bits: AddressableBits | None,
) -> list[int]:
    """Words of the stack that point into executable memory: likely return addresses.

    Bounded (the first SCAN_BYTES above sp, SCAN_HITS hits), since each hit costs a
    code window in the core.
    """
    data = target.read(start, min(end - start, SCAN_BYTES))
    return mappings.in_code(data, SCAN_HITS, bits.strip if bits is not None else None)


def _read_regions(
    target: TargetOS,
    pieces: Sequence[Piece],
    lazy: bool,
    progress: Progress | None,
    windows: Sequence[StackWindow] = (),
) -> tuple[Region, ...]:
    """Each chosen piece as a region: small ones read now (from a stack ``windows`` already
    holds, else from the target), large ones (``lazy``) read when the file is written.
    Bytes that cannot be read are left out (a region ends where a read comes up short): a
    core never describes memory it does not hold."""
    regions = []
    windows = sorted(windows, key=lambda w: w.start)
    window_starts = [w.start for w in windows]
    for piece in pieces:
        size = piece.end - piece.start
        if lazy and size >= policy.LAZY_MIN:
            size = _readable_length(target, piece.start, size)
            if size:
                source = TargetSource(target, piece.start, size, progress)
                regions.append(
                    Region(address=piece.start, data=source, protection=piece.protection)
                )
            continue
        i = bisect.bisect_right(window_starts, piece.start) - 1
        if i >= 0 and windows[i].holds(piece.start, piece.end):
            data = windows[i].read(piece.start, size)
        else:
            data = target.read(piece.start, size)
        if data:
            # (typed already: a 1,000-thread capture saves over a thousand regions)
            protection = PROTECTIONS[int(piece.protection)]
            regions.append(
                Region.trusted(piece.start, BytesSource(data), protection, protection, "")
            )
    if progress is not None:
        progress.expect(sum(r.size for r in regions if isinstance(r.data, TargetSource)))
    return tuple(regions)


PAGE = policy.PAGE


def _readable_length(target: TargetOS, start: int, size: int) -> int:
    """How much of [start, start + size) reads, found by probing single bytes: a mapped
    file ends early where the file does (a read past it faults), the rest reads whole."""
    if target.read(start + size - 1, 1):
        return size
    low, high = 0, (size - 1) // PAGE  # pages [0, low) read; page high does not
    if not target.read(start, 1):
        return 0
    low = 1
    while low < high:
        mid = (low + high) // 2
        if target.read(start + mid * PAGE, 1):
            low = mid + 1
        else:
            high = mid
    return min(size, low * PAGE)


class TargetSource:
    """A region's bytes, read from the stopped target while the file is written."""

    __slots__ = ("target", "address", "length", "progress")

    def __init__(self, target: TargetOS, address: int, length: int, progress: Progress | None):
        self.target, self.address, self.length, self.progress = target, address, length, progress

    @property
    def size(self) -> int:
        return self.length

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.length - offset))
        data = self.target.read(self.address + offset, length)
        if len(data) != length:
            raise CaptureError(
                f"memory at {self.address + offset + len(data):#x} could not be read "
                "while the core was written"
            )
        if self.progress is not None:
            self.progress.advance(length)
        return data

    def chunks(self, chunk_size: int) -> Iterator[bytes | memoryview]:
        """The bytes in order. A backend with ``read_into`` (optional in TargetOS) fills
        one reused buffer: each chunk is then valid until the next is asked for, as the
        writer uses them."""
        read_into = getattr(self.target, "read_into", None)
        if read_into is None:
            for offset in range(0, self.length, chunk_size):
                yield self.read(offset, chunk_size)
            return
        view = memoryview(bytearray(min(chunk_size, self.length)))
        for offset in range(0, self.length, chunk_size):
            want = min(chunk_size, self.length - offset)
            got = read_into(self.address + offset, view[:want])
            if got != want:
                raise CaptureError(
                    f"memory at {self.address + offset + got:#x} could not be read "
                    "while the core was written"
                )
            if self.progress is not None:
                self.progress.advance(want)
            yield view[:want]

    def __repr__(self) -> str:
        return f"TargetSource(<{self.length} bytes at {self.address:#x}>)"
