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

from ... import records
from ...elf_headers import ElfHeaders, read_headers
from ...errors import ParseError
from ...linux_abi import R_DEBUG_SIZE, AuxvType, DynamicTag, SegmentType
from ...linux_abi_packed import (
    ELF64_DYN_FORMAT,
    ELF64_PHDR_FORMAT,
    LINK_MAP_FORMAT,
    R_DEBUG_EXTENDED_FORMAT,
)
from ...model import Image
from ...plain_typing import Callable, Sequence
from ..base import MemoryMapping
from ..policy import PAGE

_PHDR = struct.Struct(ELF64_PHDR_FORMAT)
_DYN = struct.Struct(ELF64_DYN_FORMAT)
_R_DEBUG = struct.Struct(R_DEBUG_EXTENDED_FORMAT)
_LINK_MAP = struct.Struct(LINK_MAP_FORMAT)
PT_LOAD, PT_DYNAMIC, PT_PHDR = SegmentType.PT_LOAD, SegmentType.PT_DYNAMIC, SegmentType.PT_PHDR
#: an ELF file's first bytes (e_ident's magic): how a mapping is known to hold a header
ELF_MAGIC = b"\x7fELF"
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
        self.exe_base: int | None = None
        self.exe_bias: int | None = None
        self.entries: list[LinkMapEntry] = []
        #: what was read: the program header table, .dynamic, r_debug, link_maps, names
        self.ranges: list[tuple[int, int]] = []
        self.vdso: int | None = aux.get(AuxvType.AT_SYSINFO_EHDR)
        phdr = aux.get(AuxvType.AT_PHDR)
        phnum = aux.get(AuxvType.AT_PHNUM, 0)
        phent = aux.get(AuxvType.AT_PHENT, _PHDR.size)
        if not phdr or not phnum or phent < _PHDR.size:
            return
        table = read(phdr, phnum * phent)
        self.ranges.append((phdr, phdr + len(table)))
        headers = []
        for i in range(len(table) // phent):
            p_type, _, _, p_vaddr, _, _, p_memsz, _ = _PHDR.unpack_from(table, i * phent)
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
        for i in range(0, len(entries) - _DYN.size + 1, _DYN.size):
            tag, value = _DYN.unpack_from(entries, i)
            if tag == DynamicTag.DT_NULL:
                break
            if tag == DynamicTag.DT_DEBUG:
                r_debug = value
        # the whole PT_DYNAMIC, spare DT_NULL slots too: drgn reads all of it or nothing
        self.ranges.append((dyn_address, dyn_address + len(entries)))
        self._walk(r_debug)

    def _walk(self, r_debug: int) -> None:
        seen: set[int] = set()
        for _ in range(MAX_NAMESPACES):
            if not r_debug or r_debug in seen:
                return
            seen.add(r_debug)
            data = self._read(r_debug, _R_DEBUG.size)
            if len(data) < R_DEBUG_SIZE:
                return
            self.ranges.append((r_debug, r_debug + len(data)))
            # (zeros for r_next when only the 40 bytes of a plain r_debug are readable)
            version, _, first, _, _, _, _, r_next = _R_DEBUG.unpack(
                data.ljust(_R_DEBUG.size, b"\0")
            )
            self._walk_map(first, seen)
            if version < 2 or len(data) < _R_DEBUG.size:
                return
            r_debug = r_next

    def _walk_map(self, node: int, seen: set[int]) -> None:
        for _ in range(MAX_LINK_MAPS):
            if not node or node in seen:
                return
            seen.add(node)
            data = self._read(node, _LINK_MAP.size)
            if len(data) < _LINK_MAP.size:
                return
            self.ranges.append((node, node + _LINK_MAP.size))
            l_addr, l_name, l_ld, l_next, _ = _LINK_MAP.unpack(data)
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

    def with_build_ids(self, images: list[Image]) -> list[Image]:
        """Each image with the GNU build-id its header in memory names (a symbol server's
        and debuginfod's key to the exact binary)."""
        out = []
        for image in images:
            headers = None
            if image.load_address is not None:
                headers = loaded_headers(self._read, image.load_address)
            if headers is not None and headers.build_id is not None:
                image = records.evolve(image, build_id=headers.build_id)
            out.append(image)
        return out

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


def loaded_headers(read: Reader, address: int) -> ElfHeaders | None:
    """The headers of the ELF object loaded at ``address``; None where there is none or
    its headers cannot be read (left out of the core, never an error)."""
    try:
        return read_headers(lambda offset, size: read(address + offset, size))
    except ParseError:
        return None


def header_pages(read: Reader, mappings: Sequence[MemoryMapping]) -> list[tuple[int, int]]:
    """The first page of every mapped ELF file (its ELF header, program headers and
    build-id note, as the kernel dumps it) and its whole PT_DYNAMIC: elfutils finds
    modules and build-ids there, pwntools names a mapping only where a saved segment
    starts, drgn reads a library's dynamic section whole."""
    ranges = []
    for m in mappings:
        if m.offset != 0 or not m.path.startswith("/") or not m.protection & 1:
            continue
        headers = loaded_headers(read, m.start)
        if headers is None:
            continue
        ranges.append((m.start, min(m.end, m.start + max(PAGE, headers.header_size))))
        dynamic = headers.dynamic
        if dynamic is not None and dynamic.memsz <= MAX_DYNAMIC:
            start = (headers.bias_for(m.start) + dynamic.vaddr) & ((1 << 64) - 1)
            ranges.append((start, start + dynamic.memsz))
    return ranges
