"""What a core needs to know of a Mach-O executable or library file: UUID and segments.

Used by the spec to fill in a binary's UUID and segment addresses from the file itself.
"""

from __future__ import annotations

import mmap
import os
import uuid as uuid_mod

import attrs

from ..errors import ParseError
from ..schema_io import parse_at
from . import schema
from .constants import MH_MAGIC_64, LoadCommand


@attrs.frozen
class FileSegment:
    name: str
    vmaddr: int
    vmsize: int
    fileoff: int
    filesize: int


@attrs.frozen
class BinaryInfo:
    path: str
    cputype: int
    filetype: int
    uuid: uuid_mod.UUID | None
    segments: tuple[FileSegment, ...]

    @property
    def text_vmaddr(self) -> int:
        """The unslid address of the header (``__TEXT``'s vmaddr)."""
        for s in self.segments:
            if s.name == "__TEXT":
                return s.vmaddr
        raise ParseError("the binary has no __TEXT segment", path=self.path)


def read_binary_info(path: str) -> BinaryInfo:
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ParseError("empty file is not a Mach-O binary", path=path)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _read(mm, path)
    except OSError as e:
        raise ParseError(f"cannot read binary: {e.strerror}", path=path) from None


def _read(buf: mmap.mmap, path: str) -> BinaryInfo:
    try:
        header = parse_at(schema.mach_header_64, buf, 0, "mach_header_64")
        if header.magic != MH_MAGIC_64:
            raise ParseError(f"not a 64-bit little-endian Mach-O file (magic {header.magic:#x})", 0)
        uuid = None
        segments = []
        offset = 32
        end = 32 + header.sizeofcmds
        for _ in range(header.ncmds):
            lc = parse_at(schema.load_command, buf, offset, "load command", end)
            if lc.cmdsize < 8 or offset + lc.cmdsize > end:
                raise ParseError(f"load command size {lc.cmdsize} is out of bounds", offset)
            if lc.cmd == LoadCommand.LC_UUID:
                uuid = uuid_mod.UUID(
                    bytes=bytes(parse_at(schema.uuid_command, buf, offset, "LC_UUID").uuid)
                )
            elif lc.cmd == LoadCommand.LC_SEGMENT_64:
                seg = parse_at(schema.segment_command_64, buf, offset, "LC_SEGMENT_64")
                segments.append(
                    FileSegment(seg.segname, seg.vmaddr, seg.vmsize, seg.fileoff, seg.filesize)
                )
            offset += lc.cmdsize
    except ParseError as e:
        e.path = path
        raise
    return BinaryInfo(path, header.cputype, header.filetype, uuid, tuple(segments))
