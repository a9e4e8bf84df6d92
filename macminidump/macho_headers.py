"""A Mach-O executable's or library's own headers, and where its segments land once loaded.

Not a core: this reads the header and load commands of a binary (from its file for a
spec, from a target's memory for the Mach backend, from fixtures for the fake kernel),
for its file type, UUID and segments. It is the one load-command walker for binaries and
the one home of the loading rule: the slide is the load address minus ``__TEXT``'s
vmaddr, and ``__PAGEZERO`` (the unmapped guard below an executable) is not loaded.
The layouts are :mod:`macminidump.macho.schema`'s declarations, unpacked through their
``struct`` fast path (a process has hundreds of images).
"""

from __future__ import annotations

import mmap
import os
import struct
import uuid as uuid_mod
from collections.abc import Callable
from typing import Any

from . import records
from .errors import ParseError
from .macho import schema
from .macho.constants import MH_MAGIC_64, FileType, LoadCommand
from .model import ImageSegment
from .schema_io import fixed_format

#: reads a binary: (offset from its header, size) -> up to size bytes, short where refused
Read = Callable[[int, int], bytes]

#: load commands beyond this are not read (a real binary's are a few KiB)
MAX_COMMANDS_SIZE = 1 << 20
_U64 = 1 << 64

_HEADER = fixed_format(schema.mach_header_64)
_LOAD_COMMAND = fixed_format(schema.load_command)
_SEGMENT = fixed_format(schema.segment_command_64)
_UUID = fixed_format(schema.uuid_command)


@records.frozen
class FileSegment:
    """A segment as the binary declares it, before any slide."""

    name: str
    vmaddr: int
    vmsize: int
    fileoff: int
    filesize: int
    initprot: int


@records.frozen
class MachOHeaders:
    cputype: int
    filetype: int
    uuid: uuid_mod.UUID | None
    segments: tuple[FileSegment, ...]

    @property
    def is_executable(self) -> bool:
        return self.filetype == FileType.EXECUTE

    @property
    def text_vmaddr(self) -> int | None:
        """The unslid address of the header (``__TEXT``'s vmaddr); None without ``__TEXT``."""
        return next((s.vmaddr for s in self.segments if s.name == "__TEXT"), None)

    def slide_for(self, load_address: int) -> int | None:
        """The slide of the binary loaded at ``load_address``; None without ``__TEXT``."""
        text = self.text_vmaddr
        return None if text is None else (load_address - text) % _U64

    def place(self, load_address: int | None, slide: int | None) -> tuple[int, int]:
        """(load address, slide) from either one (both given: taken as given)."""
        text = self.text_vmaddr
        if text is None:
            raise ParseError("the binary has no __TEXT segment")
        if slide is None:
            if load_address is None:
                raise ValueError("place() needs a load address or a slide")
            slide = (load_address - text) % _U64
        if load_address is None:
            load_address = (text + slide) % _U64
        return load_address, slide

    @property
    def loaded_segments(self) -> tuple[FileSegment, ...]:
        """The segments that occupy the process's memory: all but ``__PAGEZERO``."""
        return tuple(s for s in self.segments if s.name != "__PAGEZERO")

    def segments_at(self, slide: int) -> tuple[ImageSegment, ...]:
        """The loaded segments at their addresses in a process, for ``Image.segments``."""
        return tuple(
            ImageSegment(s.name, (s.vmaddr + slide) % _U64, s.vmsize) for s in self.loaded_segments
        )


def read_headers(read: Read) -> MachOHeaders:
    """The headers of the binary ``read`` reads; ParseError (naming the offset) if malformed."""
    raw = read(0, _HEADER.size)
    magic, cputype, _sub, filetype, ncmds, sizeofcmds, _flags, _res = _unpack(
        _HEADER, raw, 0, len(raw), "mach_header_64"
    )
    if magic != MH_MAGIC_64:
        raise ParseError(f"not a 64-bit little-endian Mach-O file (magic {magic:#x})", 0)
    commands = read(0, _HEADER.size + min(sizeofcmds, MAX_COMMANDS_SIZE))
    uuid = None
    segments = []
    offset = _HEADER.size
    for _ in range(ncmds):
        cmd, cmdsize = _unpack(_LOAD_COMMAND, commands, offset, len(commands), "load command")
        end = offset + cmdsize
        if cmdsize < _LOAD_COMMAND.size or end > len(commands):
            raise ParseError(f"load command size {cmdsize} is out of bounds", offset)
        if cmd == LoadCommand.LC_UUID:
            uuid = uuid_mod.UUID(bytes=_unpack(_UUID, commands, offset, end, "LC_UUID")[2])
        elif cmd == LoadCommand.LC_SEGMENT_64:
            _c, _s, name, vmaddr, vmsize, fileoff, filesize, _max, initprot, *_ = _unpack(
                _SEGMENT, commands, offset, end, "LC_SEGMENT_64"
            )
            segments.append(
                FileSegment(
                    name.rstrip(b"\0").decode("latin-1"),
                    vmaddr,
                    vmsize,
                    fileoff,
                    filesize,
                    initprot,
                )
            )
        offset = end
    return MachOHeaders(cputype, filetype, uuid, tuple(segments))


def _unpack(fmt: struct.Struct, data: bytes, offset: int, end: int, what: str) -> tuple[Any, ...]:
    if offset + fmt.size > end:
        raise ParseError(f"{what} ({fmt.size} bytes) is cut short at {end - offset}", offset)
    return fmt.unpack_from(data, offset)


def read_headers_file(path: str) -> MachOHeaders:
    """The headers of the binary at ``path``; ParseError naming the file if unreadable."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ParseError("empty file is not a Mach-O binary", path=path)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return read_headers(lambda offset, size: mm[offset : offset + size])
    except OSError as e:
        raise ParseError(f"cannot read binary: {e.strerror}", path=path) from None
    except ParseError as e:
        e.path = path
        raise
