"""``LinuxTarget``: one live Linux x86_64 process behind the ``TargetOS`` interface.

It holds the process in ptrace stops (``ptrace.Tracee``) for the capture only, reads its
threads' registers (``registers``), its memory, its /proc files (``procfs``) and the
dynamic linker's list of libraries (``dynlinker``). ``capture_pid`` is the shortcut.
"""

from __future__ import annotations

import _bisect as bisect  # (the C core: bisect.py adds nothing a dump uses)

from ...arch import Arch, RegKind, arch_info
from ...errors import CaptureError
from ...linux_abi import AuxvType, forget_decoded
from ...model import FileMapping, Image, ProcessInfo, Snapshot
from ...plain_typing import Iterable, Sequence
from .. import policy
from ..base import CapturedThread, CaptureOptions, MemoryMapping, capture
from . import procfs, ptrace, registers
from .dynlinker import LibraryList, Reader, header_pages
from .held import Held

PAGE = policy.PAGE
ENTRY_WINDOW = 64
RED_ZONE = arch_info(Arch.X86_64).red_zone


class LinuxTarget:
    """One live Linux x86_64 process (see the package doc).

    ``held`` stops and resumes it (``tracee`` is the ptrace state of its threads); given
    one already stopped, the first ``stop`` continues from that stop. A subclass (the
    crash supervisor's) changes how the threads are stopped and released by overriding
    ``stop`` and ``resume``.
    """

    arch = Arch.X86_64

    def __init__(
        self, pid: int, stop_timeout: float = ptrace.STOP_TIMEOUT, held: Held | None = None
    ):
        if held is not None and held.pid != pid:
            raise CaptureError(f"process {held.pid} is held, not process {pid}")
        self.held = held if held is not None else Held(pid, stop_timeout)
        #: the caller stopped it already: the first stop() takes that stop over
        self._stopped_ahead = self.held.stopped
        self.pid = pid
        self.tracee = self.held.tracee
        self._auxv: list[tuple[int, int]] | None = None
        self._libraries: LibraryList | None = None
        self._registers = registers.ThreadRegisters()
        #: each thread's sp, as threads() read it (its stack is saved from a page start)
        self._stack_pointers: dict[int, int] = {}
        #: the mappings, read once while stopped
        self._mappings: list[MemoryMapping] | None = None

    @property
    def stop_seconds(self) -> float:
        """How long the last stop() took, in seconds."""
        return self.held.stop_seconds

    @property
    def exited(self) -> bool:
        """Whether the target was seen exiting (killed) while it was stopped."""
        return self.tracee.exited

    @property
    def exit_status(self) -> int | None:
        """The leader's wait status when this target reaped it (see ``Tracee``)."""
        return self.tracee.exit_status

    # -- stop / resume -----------------------------------------------------------------

    def stop(self) -> None:
        ahead, self._stopped_ahead = self._stopped_ahead, False
        if not (ahead and self.held.stopped):
            self.held.stop()

    def resume(self) -> None:
        self._mappings = None
        forget_decoded()  # (the registers' decodes: not kept past the stop)
        self.held.resume()

    def _smaps_text(self) -> bytes:
        """/proc/PID/smaps of this stop. Read only after every thread stopped: a mapping
        marked MADV_DONTDUMP after an earlier read would be saved."""
        if self.held.smaps is None:  # (not stopped through ``held`` or a subclass's stop)
            self.held.smaps = procfs.SmapsLater(self._proc())
        text = self.held.smaps.text()
        if text is None:  # a live process always has mappings
            raise self.tracee.gone()
        return text

    def _proc(self) -> str:
        return self.held.proc()

    # -- threads -------------------------------------------------------------------------

    def threads(self) -> Sequence[CapturedThread]:
        self.tracee.check_tracer()
        self._stack_pointers.clear()  # (a target is stopped again for each capture)
        names = procfs.ThreadNames(self.pid)
        try:
            return [self._thread(tid, names) for tid in self.tracee.stopped()]
        finally:
            names.close()

    def _thread(self, tid: int, names: procfs.ThreadNames) -> CapturedThread:
        read = self._registers.read(tid)
        if read is None:
            raise self.tracee.gone()
        regsets, xsave = read
        self._stack_pointers[tid] = regsets[RegKind.GPR]["rsp"]
        return CapturedThread(
            id=tid,
            regsets=regsets,
            name=names.name(tid),
            xsave=registers.trim_xstate(xsave) if xsave is not None else None,
        )

    # -- memory ----------------------------------------------------------------------------

    def mappings(self) -> Sequence[MemoryMapping]:
        # read once a stop: the capture and the library list both ask, and a stopped
        # process maps nothing new
        if self._mappings is None:
            found = procfs.maps(self._proc())
            if not found:  # a live process always has mappings
                raise self.tracee.gone()
            self._mappings = found
        return self._mappings

    def modified_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[MemoryMapping]:
        written = procfs.written_in(self._smaps_text())
        return [m for m in mappings if m.start in written]

    def read(self, address: int, size: int) -> bytes:
        data = ptrace.read_memory(self.tracee.live_thread(), address, size)
        if data is None:
            raise self.tracee.gone()
        return data

    def read_into(self, address: int, buffer: memoryview) -> int:
        """``read`` into ``buffer``: how a large region streams without copies."""
        got = ptrace.read_memory_into(self.tracee.live_thread(), address, buffer)
        if got is None:
            raise self.tracee.gone()
        return got

    # -- images and what debuggers need to find them ---------------------------------------

    def addressable_bits(self) -> None:
        return None

    def auxv(self) -> Sequence[tuple[int, int]]:
        if self._auxv is None:
            pairs = procfs.auxv(self._proc())
            if pairs is None:
                raise self.tracee.gone()
            self._auxv = pairs
        return self._auxv

    def _library_list(self) -> LibraryList:
        if self._libraries is None:
            self._libraries = LibraryList(self.read, self.auxv(), self.mappings)
        return self._libraries

    def images(self) -> Sequence[Image]:
        self.tracee.check_alive()
        libraries = self._library_list()
        images = libraries.images(self.mappings(), procfs.executable(self._proc()))
        return libraries.with_build_ids(images)

    def extra_ranges(self, mappings: Sequence[MemoryMapping]) -> Iterable[tuple[int, int]]:
        return consumer_ranges(
            self._library_list(), self.read, mappings, self.auxv(), self._stack_pointers.values()
        )

    def dont_dump(self, mappings: Sequence[MemoryMapping]) -> Sequence[tuple[int, int]]:
        return procfs.dont_dump_in(self._smaps_text())

    def environment(self, mappings: Sequence[MemoryMapping]) -> tuple[int, int] | None:
        return procfs.environment(procfs.directory(self.pid))

    # -- process facts ----------------------------------------------------------------------

    def process_info(self) -> ProcessInfo:
        self.tracee.check_alive()
        where = procfs.directory(self.pid)
        stat = procfs.stat(where)
        status = procfs.status(where)
        if stat is None or not status:
            raise self.tracee.gone()
        comm, fields = stat
        return ProcessInfo(
            pid=self.pid,
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            sid=int(fields[3]),
            uid=int((status.get("Uid") or "0").split()[0]),
            gid=int((status.get("Gid") or "0").split()[0]),
            name=comm,
            args=procfs.command_line(self._proc()),
        )

    def file_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[FileMapping]:
        return debugger_file_mappings(mappings)


def consumer_ranges(
    libraries: LibraryList,
    read: Reader,
    mappings: Sequence[MemoryMapping],
    auxv: Sequence[tuple[int, int]],
    stack_pointers: Iterable[int],
) -> list[tuple[int, int]]:
    """What the consumers of an ELF core read besides stacks and code: the library list's
    structures and the vDSO (gdb, LLDB, drgn), the header page and PT_DYNAMIC of every
    mapped ELF file (elfutils and pwntools find modules and build-ids there), a few bytes
    at the entry point (pwntools' ``Corefile.exe``), and each stack from the start of the
    page holding sp less the red zone (elfutils reads a segment counting from its page
    start, so a stack segment must start on one)."""
    ranges = libraries.debugger_ranges(mappings)
    ranges += header_pages(read, mappings)
    entry = dict(auxv).get(AuxvType.AT_ENTRY)
    if entry:
        ranges.append((entry, entry + ENTRY_WINDOW))
    # mappings come sorted by address (/proc/PID/maps): a binary search per thread, not a
    # scan (1,000 threads have 2,000 mappings)
    starts = [m.start for m in mappings]
    for sp in stack_pointers:
        low = sp - RED_ZONE
        page = low & -PAGE
        i = bisect.bisect_right(starts, low) - 1
        stack = mappings[i] if i >= 0 and mappings[i].contains(low) else None
        if stack is not None and page >= stack.start:
            ranges.append((page, low))
    return ranges


def debugger_file_mappings(mappings: Sequence[MemoryMapping]) -> list[FileMapping]:
    """Read-only file-backed mappings: gdb serves bytes of every NT_FILE mapping not in
    the core from the file on disk, which is wrong for writable ones (globals)."""
    return [
        FileMapping(m.start, m.end, m.offset, m.path)
        for m in mappings
        if m.path.startswith("/")
        and not m.path.endswith(" (deleted)")
        and m.protection & 1
        and not m.protection & 2
    ]


def capture_pid(pid: int, options: CaptureOptions | None = None) -> Snapshot:
    """A Snapshot of live process ``pid``: stopped for the capture only, then resumed."""
    return capture(LinuxTarget(pid), options)
