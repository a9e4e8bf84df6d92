"""An ELF executable's or library's own headers, as loaded: segments and GNU build-id.

Not a core: this reads the ELF header, the program headers and the GNU build-id note of
a binary (from a target's memory for the Linux backend, from a core's memory for the
parser), the ELF twin of :mod:`macminidump.macho_headers`. A loaded ELF object keeps its
first file page at its load address, so offsets from the header are file offsets for
everything in that first PT_LOAD (the program headers and, in every toolchain's layout,
the build-id note). The layouts are :mod:`macminidump.elf.schema`'s declarations,
unpacked through the ``struct`` layouts generated from them (``elf/packed``), so the
Linux capture and the read-back check import no construct.
"""

from __future__ import annotations

import struct

from . import records
from .elf.constants import EHDR_SIZE, ELFMAG, NOTE_ALIGN, ElfClass, ElfData
from .elf.packed import ELF64_EHDR_FIELDS, ELF64_EHDR_FORMAT, ELF64_NHDR_FORMAT
from .errors import ParseError
from .linux_abi import SegmentType
from .linux_abi_packed import ELF64_PHDR_FORMAT
from .plain_typing import Callable

#: reads a binary: (offset from its header, size) -> up to size bytes, short where refused
Read = Callable[[int, int], bytes]

#: program header tables beyond this are not read (a real binary has a dozen entries)
MAX_PHNUM = 512
#: a build-id is a hash: 8 to 64 bytes in every toolchain (GNU ld: 16 or 20, lld: 8+)
MAX_BUILD_ID = 64
#: note segments beyond this are not scanned for the build-id (real ones hold a few
#: hundred bytes; a bound keeps a hostile core from making each image read much)
MAX_NOTES = 4 << 10
NT_GNU_BUILD_ID = 3
_GNU = b"GNU\0"
_U64 = (1 << 64) - 1

_EHDR = struct.Struct(ELF64_EHDR_FORMAT)
_PHDR = struct.Struct(ELF64_PHDR_FORMAT)
_NHDR = struct.Struct(ELF64_NHDR_FORMAT)


@records.frozen
class Segment:
    """A program header as the binary declares it (unrelocated addresses)."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@records.frozen
class ElfHeaders:
    e_type: int
    machine: int
    phoff: int
    phentsize: int
    segments: tuple[Segment, ...]
    #: the GNU build-id (NT_GNU_BUILD_ID in a PT_NOTE), None when there is none
    build_id: bytes | None

    @property
    def first_load_vaddr(self) -> int | None:
        """The page-aligned address of the lowest PT_LOAD: where the header lies, unrelocated."""
        loads = [s.vaddr for s in self.segments if s.type == SegmentType.PT_LOAD]
        return min(loads) & ~0xFFF if loads else None

    def bias_for(self, load_address: int) -> int:
        """The load bias (l_addr) of the object whose header is at ``load_address``."""
        return (load_address - (self.first_load_vaddr or 0)) & _U64

    @property
    def dynamic(self) -> Segment | None:
        return next((s for s in self.segments if s.type == SegmentType.PT_DYNAMIC), None)

    @property
    def header_size(self) -> int:
        """Bytes from the header that hold it, the program headers and the build-id note."""
        end = EHDR_SIZE
        end = max(end, self.phoff + self.phentsize * len(self.segments))
        for s in self.segments:
            if s.type == SegmentType.PT_NOTE and s.filesz <= MAX_NOTES:
                end = max(end, s.offset + s.filesz)
        return end


def read_headers(read: Read) -> ElfHeaders:
    """The headers of the 64-bit little-endian ELF object ``read`` reads; ParseError
    (naming the offset) when it is not one or its headers are cut short."""
    raw = read(0, EHDR_SIZE)
    if len(raw) < EHDR_SIZE or raw[:4] != ELFMAG:
        raise ParseError("not an ELF header (or cut short)", 0)
    if raw[4] != ElfClass.ELFCLASS64 or raw[5] != ElfData.ELFDATA2LSB:
        raise ParseError("not a 64-bit little-endian ELF object", 4)
    h = dict(zip(ELF64_EHDR_FIELDS, _EHDR.unpack_from(raw, 0)))
    phoff, phentsize, phnum = h["e_phoff"], h["e_phentsize"], h["e_phnum"]
    if phnum and phentsize < _PHDR.size:
        raise ParseError(f"e_phentsize {phentsize} < {_PHDR.size}", 54)
    if phnum > MAX_PHNUM:
        raise ParseError(f"{phnum} program headers (more than {MAX_PHNUM})", 56)
    table = read(phoff, phnum * phentsize)
    if len(table) < phnum * phentsize:
        raise ParseError(f"{phnum} program headers at {phoff:#x} are cut short", phoff)
    segments = []
    for i in range(phnum):
        p_type, flags, offset, vaddr, _paddr, filesz, memsz, _align = _PHDR.unpack_from(
            table, i * phentsize
        )
        segments.append(Segment(p_type, flags, offset, vaddr, filesz, memsz))
    build_id = None
    for s in segments:
        if s.type == SegmentType.PT_NOTE and s.filesz <= MAX_NOTES and build_id is None:
            build_id = _build_id(read(s.offset, s.filesz))
    return ElfHeaders(h["e_type"], h["e_machine"], phoff, phentsize, tuple(segments), build_id)


def _build_id(notes: bytes) -> bytes | None:
    """The desc of the first GNU NT_GNU_BUILD_ID note in a note segment's bytes."""
    offset = 0
    while offset + _NHDR.size <= len(notes):
        namesz, descsz, note_type = _NHDR.unpack_from(notes, offset)
        name_at = offset + _NHDR.size
        desc_at = name_at + -(-namesz // NOTE_ALIGN) * NOTE_ALIGN
        end = desc_at + -(-descsz // NOTE_ALIGN) * NOTE_ALIGN
        if desc_at + descsz > len(notes):
            return None
        name = notes[name_at : name_at + namesz]
        if note_type == NT_GNU_BUILD_ID and name == _GNU and 0 < descsz <= MAX_BUILD_ID:
            return bytes(notes[desc_at : desc_at + descsz])
        offset = end
    return None
