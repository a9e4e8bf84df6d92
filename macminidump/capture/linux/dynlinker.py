"""The dynamic linker's list of libraries, read from a stopped process's memory.

``LibraryList`` finds the executable's program headers through the auxiliary vector,
its load bias, its ``.dynamic`` section and there ``DT_DEBUG`` (glibc's ``r_debug``),
then walks every namespace's ``link_map`` chain. It records the ranges it read
(``ranges``): gdb and LLDB read the same structures from a core to list its libraries.
``images`` turns the list into the model's images; a static executable, or one whose
ld.so has not run yet, gets its images from the mappings instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from ...model import Image
from ..base import MemoryMapping

AT_PHDR, AT_PHENT, AT_PHNUM, AT_SYSINFO_EHDR = 3, 4, 5, 33
PT_LOAD, PT_DYNAMIC, PT_PHDR = 1, 2, 6
DT_NULL, DT_DEBUG = 0, 21
ELF_MAGIC = b"\x7fELF"
#: r_debug is 40 bytes; glibc 2.35+ appends r_next (r_debug_extended, r_version >= 2)
R_DEBUG_SIZE = 48
LINK_MAP_SIZE = 40  # l_addr, l_name, l_ld, l_next, l_prev
MAX_LINK_MAPS = 8192
MAX_NAMESPACES = 64
MAX_NAME = 4096
MAX_DYNAMIC = 64 * 1024

#: reads up to ``size`` bytes at an address (fewer where unreadable)
Reader = Callable[[int, int], bytes]


class LinkMapEntry:
    """One ``struct link_map``: where it lies, l_addr (the bias), l_name, l_ld."""

    __slots__ = ("address", "bias", "name", "dynamic")

    def __init__(self, address: int, bias: int, name: bytes, dynamic: int):
        self.address, self.bias, self.name, self.dynamic = address, bias, name, dynamic


def read_cstring(read: Reader, address: int) -> bytes | None:
    """The NUL-terminated string at ``address`` (up to MAX_NAME), None if unreadable."""
    data = b""
    chunk = 256
    while len(data) < MAX_NAME:
        part = read(address + len(data), chunk)
        nul = part.find(b"\0")
        if nul >= 0:
            return data + part[:nul]
        if len(part) < chunk:
            return None
        data += part
        chunk = min(chunk * 4, MAX_NAME)
    return None


class LibraryList:
    """The executable's place, r_debug and the link_map chain, read once per stop."""

    def __init__(
        self,
        read: Reader,
        auxv: Sequence[tuple[int, int]],
        mappings: Callable[[], Sequence[MemoryMapping]],
    ):
        aux = dict(auxv)
        self._read = read
        self.vdso: int | None = aux.get(AT_SYSINFO_EHDR)
        self.exe_base: int | None = None
        self.exe_bias: int | None = None
        self.entries: list[LinkMapEntry] = []
        #: what was read: the program header table, .dynamic, r_debug, link_maps, names
        self.ranges: list[tuple[int, int]] = []
        phdr, phnum, phent = aux.get(AT_PHDR), aux.get(AT_PHNUM, 0), aux.get(AT_PHENT, 56)
        if not phdr or not phnum or phent < 56:
            return
        table = read(phdr, phnum * phent)
        self.ranges.append((phdr, phdr + len(table)))
        headers = []
        for i in range(len(table) // phent):
            p_type, _, _, p_vaddr, _, _, p_memsz, _ = struct.unpack_from(
                "<IIQQQQQQ", table, i * phent
            )
            headers.append((p_type, p_vaddr, p_memsz))
        bias = next((phdr - v for t, v, _ in headers if t == PT_PHDR), None)
        loads = [v for t, v, _ in headers if t == PT_LOAD]
        if bias is None and loads:
            # no PT_PHDR: the header lies at the start of the mapping holding the table
            start = next((m.start for m in mappings() if m.contains(phdr)), None)
            bias = start - (min(loads) & ~0xFFF) if start is not None else None
        if bias is None:
            return
        bias &= (1 << 64) - 1
        self.exe_bias = bias
        self.exe_base = (bias + (min(loads) & ~0xFFF if loads else 0)) & ((1 << 64) - 1)
        dynamic = next(((bias + v, n) for t, v, n in headers if t == PT_DYNAMIC), None)
        if dynamic is None:
            return  # a static executable
        dyn_address, dyn_size = dynamic[0] & ((1 << 64) - 1), min(dynamic[1], MAX_DYNAMIC)
        entries = read(dyn_address, dyn_size)
        r_debug = 0
        for i in range(0, len(entries) - 15, 16):
            tag, value = struct.unpack_from("<qQ", entries, i)
            if tag == DT_NULL:
                entries = entries[: i + 16]
                break
            if tag == DT_DEBUG:
                r_debug = value
        # the whole .dynamic (a few hundred bytes, the DT_DEBUG slot among them)
        self.ranges.append((dyn_address, dyn_address + len(entries)))
        self._walk(r_debug)

    def _walk(self, r_debug: int) -> None:
        seen: set[int] = set()
        for _ in range(MAX_NAMESPACES):
            if not r_debug or r_debug in seen:
                return
            seen.add(r_debug)
            data = self._read(r_debug, R_DEBUG_SIZE)
            if len(data) < 40:
                return
            self.ranges.append((r_debug, r_debug + len(data)))
            (version,) = struct.unpack_from("<i", data, 0)
            (link_map,) = struct.unpack_from("<Q", data, 8)
            self._walk_map(link_map, seen)
            if version < 2 or len(data) < 48:
                return
            (r_debug,) = struct.unpack_from("<Q", data, 40)

    def _walk_map(self, node: int, seen: set[int]) -> None:
        for _ in range(MAX_LINK_MAPS):
            if not node or node in seen:
                return
            seen.add(node)
            data = self._read(node, LINK_MAP_SIZE)
            if len(data) < LINK_MAP_SIZE:
                return
            self.ranges.append((node, node + LINK_MAP_SIZE))
            l_addr, l_name, l_ld, l_next, _ = struct.unpack("<5Q", data)
            name = read_cstring(self._read, l_name) if l_name else b""
            if l_name and name is not None:
                self.ranges.append((l_name, l_name + len(name) + 1))
            self.entries.append(LinkMapEntry(node, l_addr, name or b"", l_ld))
            node = l_next

    def images(self, mappings: Sequence[MemoryMapping], exe: str | None) -> list[Image]:
        """The executable, then every library (the vDSO named ``[vdso]``)."""
        images = []
        if self.exe_base is not None:
            images.append(
                Image(path=exe or "", load_address=self.exe_base, slide=self.exe_bias, main=True)
            )
        seen = {self.exe_base}
        if self.entries:
            listed = self.entries
            for entry in listed[1:] if listed[0].name == b"" else listed:
                base = _header_address(mappings, entry.dynamic, entry.bias)
                if base in seen:
                    continue
                seen.add(base)
                path = entry.name.decode("utf-8", "replace")
                if base == self.vdso:
                    path = "[vdso]"
                images.append(Image(path=path, load_address=base, slide=entry.bias))
        else:
            # no library list (a static executable, or ld.so not done yet): the maps
            for m in mappings:
                if m.offset == 0 and m.start not in seen and (m.path.startswith("/")):
                    if m.path == exe or self._read(m.start, 4) != ELF_MAGIC:
                        continue
                    seen.add(m.start)
                    images.append(Image(path=m.path, load_address=m.start))
            if self.vdso is not None and self.vdso not in seen:
                images.append(Image(path="[vdso]", load_address=self.vdso))
        return images

    def debugger_ranges(self, mappings: Sequence[MemoryMapping]) -> list[tuple[int, int]]:
        """What gdb and LLDB read to list the libraries: these structures and the vDSO."""
        ranges = list(self.ranges)
        for m in mappings:
            if m.path == "[vdso]" or (self.vdso is not None and m.contains(self.vdso)):
                ranges.append((m.start, m.end))
        return ranges


def _header_address(mappings: Sequence[MemoryMapping], dynamic: int, bias: int) -> int:
    """Where a library's ELF header lies: the offset-0 mapping of the file whose mapping
    holds its dynamic section; its bias (l_addr) when that is not found."""
    holder = next((m for m in mappings if m.contains(dynamic)), None)
    if holder is not None and holder.path:
        first = [
            m
            for m in mappings
            if m.path == holder.path and m.offset == 0 and m.start <= holder.start
        ]
        if first:
            return max(m.start for m in first)
    return bias
