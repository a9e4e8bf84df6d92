"""Capture written once: what to save of a live process, for every OS.

A backend (Linux ptrace, Mach task ports, a fake for tests) implements the narrow
``TargetOS`` interface: stop and resume, list threads with their registers, list
memory mappings, read memory, list loaded images, and name the memory its platform's
debuggers need beyond stacks and code. ``capture`` does the rest, identically for all:
it keeps the target stopped only while it reads, walks each thread's frame-pointer
chain, and picks the regions a debugger needs for complete backtraces:

- each thread's stack, from sp (less the red zone) to the end of its mapping;
- ±256 bytes of code around every pc and return address (and arm64's lr, x86_64's
  [sp]: the return address of a frameless leaf or a thread sitting in a system call),
  so a core opened where the same libraries are missing still unwinds;
- whatever the backend names (Linux: the dynamic linker's list of libraries, the vDSO).

A backend knows its OS and nothing of file formats; the renderers know formats and
nothing of how the state was captured.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import attrs

from ..arch import Arch, RegKind, arch_info
from ..errors import CaptureError
from ..model import (
    AddressableBits,
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

CODE_WINDOW = 256
MAX_FRAMES = 4096


@attrs.frozen(kw_only=True)
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


@attrs.frozen(kw_only=True)
class CapturedThread:
    """One thread as a backend reads it."""

    id: int
    regsets: dict[RegKind, dict[str, int]]
    name: str | None = None
    #: format-specific extras the backend read (Linux: the XSAVE area)
    raw_states: tuple[RawItem, ...] = ()


@attrs.frozen(kw_only=True)
class CrashContext:
    """What a crash handler knows: which thread crashed, its state then, the signal.

    ``regsets`` replaces the crashed thread's current registers (which a handler would
    otherwise record from inside itself); kinds not given keep the thread's own.
    """

    thread_id: int
    regsets: dict[RegKind, dict[str, int]] = attrs.field(factory=dict)
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

    def process_info(self) -> ProcessInfo | None: ...

    def auxv(self) -> Sequence[tuple[int, int]]: ...

    def file_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[FileMapping]: ...


@attrs.frozen(kw_only=True)
class CaptureOptions:
    code_window: int = CODE_WINDOW
    #: cap on the bytes of one thread's stack (None: to the end of its mapping)
    max_stack: int | None = None
    #: extra ranges to save, e.g. a buffer the caller wants to see in the debugger
    extra: tuple[tuple[int, int], ...] = ()


@contextlib.contextmanager
def stopped(target: TargetOS) -> Iterator[None]:
    """The target stopped for the duration; resumed on every path, Ctrl-C included."""
    target.stop()
    try:
        yield
    finally:
        target.resume()


def capture(
    target: TargetOS,
    options: CaptureOptions | None = None,
    crash: CrashContext | None = None,
) -> Snapshot:
    options = options or CaptureOptions()
    with stopped(target):
        threads = list(target.threads())
        listed = target.mappings()
        mappings = _Mappings(listed)
        bits = target.addressable_bits()
        if crash is not None:
            threads = _apply_crash(threads, crash)
        ranges = list(options.extra)
        for thread in threads:
            ranges += _thread_ranges(target, thread, mappings, bits, options)
        ranges += target.extra_ranges(mappings.sorted)
        regions = _read_regions(target, _merge(ranges), mappings)
        images = tuple(target.images())
        process = target.process_info()
        auxv = tuple(target.auxv())
        files = tuple(target.file_mappings(mappings.sorted))
    if target.exited:
        raise CaptureError("the process exited during capture")
    model_threads = tuple(
        Thread(
            id=t.id,
            name=t.name,
            crashed=crash is not None and t.id == crash.thread_id,
            regsets=tuple(RegisterSet(k, v) for k, v in t.regsets.items()),
            raw_states=t.raw_states,
        )
        for t in threads
    )
    if crash is not None:
        # the crashing thread goes first, as the kernel writes it and gdb expects
        model_threads = tuple(sorted(model_threads, key=lambda t: not t.crashed))
    return Snapshot(
        arch=target.arch,
        threads=model_threads,
        regions=regions,
        images=images,
        addressable_bits=bits,
        process=process,
        signal=crash.signal if crash is not None else None,
        auxv=auxv,
        file_mappings=files,
    )


def _apply_crash(threads: list[CapturedThread], crash: CrashContext) -> list[CapturedThread]:
    if not any(t.id == crash.thread_id for t in threads):
        raise CaptureError(f"the crashed thread {crash.thread_id:#x} is not in the process")
    out = []
    for t in threads:
        if t.id == crash.thread_id:
            t = attrs.evolve(t, regsets={**t.regsets, **crash.regsets})
        out.append(t)
    return out


class _Mappings:
    """The target's mappings sorted by start, looked up by address in log time."""

    def __init__(self, mappings: Iterable[MemoryMapping]):
        self.sorted = sorted(mappings, key=lambda m: m.start)
        self._starts = [m.start for m in self.sorted]

    def at(self, address: int) -> MemoryMapping | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and self.sorted[i].contains(address):
            return self.sorted[i]
        return None

    def next_start(self, address: int) -> int | None:
        i = bisect.bisect_right(self._starts, address)
        return self._starts[i] if i < len(self._starts) else None


def _strip(address: int, bits: AddressableBits | None) -> int:
    return bits.strip(address) if bits is not None else address


def return_addresses(
    target: TargetOS,
    arch: Arch,
    gpr: dict[str, int],
    stack: MemoryMapping,
    bits: AddressableBits | None,
) -> list[int]:
    """Return addresses found by walking the frame-pointer chain within the stack.

    ``[fp]`` is the caller's fp and ``[fp + 8]`` the return address on both arm64 and
    x86_64; the walk stops at fp 0, outside the stack, at a chain that does not move
    up the stack (corrupt or looping), or after MAX_FRAMES.
    """
    info = arch_info(arch)
    out = []
    fp = _strip(gpr.get(info.fp, 0), bits)
    for _ in range(MAX_FRAMES):
        if fp == 0 or fp % 8 or not (stack.start <= fp and fp + 16 <= stack.end):
            break
        record = target.read(fp, 16)
        if len(record) < 16:
            break
        caller_fp = _strip(int.from_bytes(record[:8], "little"), bits)
        ret = _strip(int.from_bytes(record[8:], "little"), bits)
        if ret:
            out.append(ret)
        if caller_fp <= fp:
            break
        fp = caller_fp
    return out


def _thread_ranges(
    target: TargetOS,
    thread: CapturedThread,
    mappings: _Mappings,
    bits: AddressableBits | None,
    options: CaptureOptions,
) -> list[tuple[int, int]]:
    info = arch_info(target.arch)
    gpr = thread.regsets.get(RegKind.GPR, {})
    ranges = []
    sp = gpr.get(info.sp, 0)
    stack = mappings.at(sp) or mappings.at(sp - info.red_zone)
    code_addresses = [_strip(gpr.get(info.pc, 0), bits)]
    if stack is not None:
        start = max(stack.start, sp - info.red_zone)
        end = stack.end if options.max_stack is None else min(stack.end, sp + options.max_stack)
        ranges.append((start, end))
        walked = return_addresses(target, target.arch, gpr, stack, bits)
        if not walked:
            # No frame chain from here: libc's system-call wrappers reuse the frame
            # register, so a thread blocked in one has fp = 0. Scan its stack instead.
            walked = _scan_for_code(target, max(stack.start, sp), end, mappings, bits)
        code_addresses += walked
        if target.arch == Arch.X86_64 and stack.contains(sp) and sp + 8 <= stack.end:
            # a frameless leaf or a thread in a system call: its return address is at [sp]
            code_addresses.append(int.from_bytes(target.read(sp, 8).ljust(8, b"\0"), "little"))
    if target.arch == Arch.ARM64:
        code_addresses.append(_strip(gpr.get("lr", 0), bits))  # a leaf's caller
    for address in code_addresses:
        code = mappings.at(address)
        if code is None or not code.protection & Protection.EXECUTE:
            continue
        ranges.append(
            (
                max(code.start, address - options.code_window),
                min(code.end, address + options.code_window),
            )
        )
    return ranges


SCAN_BYTES = 0x4000
SCAN_HITS = 64


def _scan_for_code(
    target: TargetOS, start: int, end: int, mappings: _Mappings, bits: AddressableBits | None
) -> list[int]:
    """Words of the stack that point into executable memory: likely return addresses.

    Bounded (the first SCAN_BYTES above sp, SCAN_HITS hits), since each hit costs a
    code window in the core.
    """
    data = target.read(start, min(end - start, SCAN_BYTES))
    hits = []
    for offset in range(0, len(data) - 7, 8):
        value = _strip(int.from_bytes(data[offset : offset + 8], "little"), bits)
        mapping = mappings.at(value) if value > 0x1000 else None
        if mapping is not None and mapping.protection & Protection.EXECUTE:
            hits.append(value)
            if len(hits) == SCAN_HITS:
                break
    return hits


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _read_regions(
    target: TargetOS, ranges: list[tuple[int, int]], mappings: _Mappings
) -> tuple[Region, ...]:
    """Read each range, split at mapping boundaries (each part keeps its protection).

    Bytes that cannot be read are left out (a region ends where a read comes up short):
    a core never describes memory it does not hold.
    """
    regions = []
    for start, end in ranges:
        address = start
        while address < end:
            mapping = mappings.at(address)
            if mapping is None:
                following = mappings.next_start(address)
                address = end if following is None else min(end, following)
                continue
            stop = min(end, mapping.end)
            data = target.read(address, stop - address) if mapping.protection else b""
            if data:
                regions.append(Region(address=address, data=data, protection=mapping.protection))
            address = stop
    return tuple(regions)
