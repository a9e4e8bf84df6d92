"""``DyingTarget``: a process the kernel is dumping, behind the ``TargetOS`` interface.

When /proc/sys/kernel/core_pattern pipes crashes to a program, the crashing process
stays in the kernel's dump code, every thread stopped, until the program has read the
kernel's core from its stdin. Until then its /proc files and its memory can be read (as
minicoredumper does), and no ptrace is needed, nor possible: its threads cannot be
stopped again. ``stop`` and ``resume`` have nothing to do; the threads' registers are
the kernel's (the caller passes them, decoded from the notes at the head of the pipe);
everything else comes from /proc: mappings, memory (``/proc/PID/mem``), the dynamic
linker's list of libraries, what the ``dirty`` policy needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ...arch import Arch, RegKind
from ...errors import CaptureError, TargetError
from ...model import FileMapping, Image, ProcessInfo
from ..base import CapturedThread, MemoryMapping
from . import procfs
from .dynlinker import LibraryList
from .target import consumer_ranges, debugger_file_mappings


class DyingTarget:
    arch = Arch.X86_64
    exited = False

    def __init__(
        self,
        pid: int,
        threads: Sequence[CapturedThread],
        auxv: Sequence[tuple[int, int]],
        process: ProcessInfo | None,
    ):
        self.pid = pid
        self._threads = list(threads)
        self._auxv = list(auxv)
        self._process = process
        self._where = procfs.directory(pid)
        self._libraries: LibraryList | None = None
        self._mappings: list[MemoryMapping] | None = None
        #: /proc/PID/smaps, read once, from ``stop`` on (see ``procfs.SmapsLater``)
        self._smaps: procfs.SmapsLater | None = None
        try:
            self._mem = os.open(f"{self._where}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise TargetError(f"cannot read the memory of process {pid}: {e.strerror}") from None

    def close(self) -> None:
        if self._mem >= 0:
            os.close(self._mem)
            self._mem = -1

    def stop(self) -> None:
        self._smaps = procfs.SmapsLater(self._where)

    def resume(self) -> None:
        pass

    def threads(self) -> Sequence[CapturedThread]:
        return self._threads

    def mappings(self) -> Sequence[MemoryMapping]:
        if self._mappings is None:
            self._mappings = procfs.maps(self._where)
            if not self._mappings:
                raise CaptureError(f"process {self.pid} has no mappings left to read")
        return self._mappings

    def read(self, address: int, size: int) -> bytes:
        """Up to ``size`` bytes; fewer where the memory cannot be read. (/proc/PID/mem
        takes offsets as signed: addresses at or above 2^63 are kernel space anyway.)"""
        if size <= 0 or not 0 <= address < 1 << 63:
            return b""
        out = bytearray()
        while len(out) < size:
            try:
                data = os.pread(self._mem, min(size - len(out), 1 << 20), address + len(out))
            except OSError:
                break
            if not data:
                break
            out += data
        return bytes(out)

    def read_into(self, address: int, buffer: memoryview) -> int:
        """``read`` into ``buffer``: how a large region streams without copies."""
        done = 0
        while done < len(buffer) and 0 <= address + done < 1 << 63:
            try:
                got = os.preadv(self._mem, [buffer[done:]], address + done)
            except OSError:
                break
            if got <= 0:
                break
            done += got
        return done

    def images(self) -> Sequence[Image]:
        libraries = self._library_list()
        images = libraries.images(self.mappings(), procfs.executable(self._where))
        return libraries.with_build_ids(images)

    def _library_list(self) -> LibraryList:
        if self._libraries is None:
            self._libraries = LibraryList(self.read, self._auxv, self.mappings)
        return self._libraries

    def addressable_bits(self) -> None:
        return None

    def extra_ranges(self, mappings: Sequence[MemoryMapping]) -> Iterable[tuple[int, int]]:
        sps = [t.regsets.get(RegKind.GPR, {}).get("rsp", 0) for t in self._threads]
        return consumer_ranges(self._library_list(), self.read, mappings, self._auxv, sps)

    def _smaps_text(self) -> bytes:
        if self._smaps is None:
            self._smaps = procfs.SmapsLater(self._where)
        return self._smaps.text() or b""

    def dont_dump(self, mappings: Sequence[MemoryMapping]) -> Sequence[tuple[int, int]]:
        return procfs.dont_dump_in(self._smaps_text())

    def environment(self, mappings: Sequence[MemoryMapping]) -> tuple[int, int] | None:
        return procfs.environment(self._where)

    def modified_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[MemoryMapping]:
        written = procfs.written_in(self._smaps_text())
        return [m for m in mappings if m.start in written]

    def process_info(self) -> ProcessInfo | None:
        return self._process

    def auxv(self) -> Sequence[tuple[int, int]]:
        return self._auxv

    def file_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[FileMapping]:
        return debugger_file_mappings(mappings)
