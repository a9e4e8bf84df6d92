"""``macho_headers``: the one reader of a binary's own Mach-O headers, and the slide rule.

Checked against LIEF on the Zig-built fixtures (x86_64 has a ``__PAGEZERO``), from the
file and from memory alike; malformed headers give one ParseError naming the offset.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fixtures
import lief
import pytest

from macminidump.errors import ParseError
from macminidump.macho import schema
from macminidump.macho.constants import MH_MAGIC_64, FileType, LoadCommand
from macminidump.macho_headers import MachOHeaders, read_headers, read_headers_file
from macminidump.schema_io import build


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_headers_match_lief(arch: str) -> None:
    exe = fixtures.build_fixture(arch)
    headers = read_headers_file(exe)
    fat = lief.MachO.parse(exe)
    binary = fat.at(0) if fat is not None else None
    assert binary is not None and binary.uuid is not None, f"lief cannot read {exe}"
    assert headers.uuid == uuid.UUID(bytes=bytes(binary.uuid.uuid))
    assert headers.is_executable and headers.filetype == FileType.EXECUTE
    assert [
        (s.name, s.virtual_address, s.virtual_size, s.file_offset, s.file_size, s.init_protection)
        for s in binary.segments
    ] == [(s.name, s.vmaddr, s.vmsize, s.fileoff, s.filesize, s.initprot) for s in headers.segments]
    with open(exe, "rb") as f:
        data = f.read()
    # from "memory": the same walk over a read function
    assert read_headers(lambda offset, size: data[offset : offset + size]) == headers


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_slide_rule(arch: str) -> None:
    headers = read_headers_file(fixtures.build_fixture(arch))
    text = headers.text_vmaddr
    assert text is not None
    slide = 0x4000
    assert headers.slide_for(text + slide) == slide
    assert headers.place(text + slide, None) == (text + slide, slide)
    assert headers.place(None, slide) == (text + slide, slide)
    segments = headers.segments_at(slide)
    assert "__PAGEZERO" not in [s.name for s in segments]
    assert [s.name for s in segments] == [s.name for s in headers.loaded_segments]
    assert [s.address for s in segments] == [s.vmaddr + slide for s in headers.loaded_segments]
    if arch == "x86_64":
        assert headers.segments[0].name == "__PAGEZERO"  # what the rule is there for


def _binary(commands: list[bytes], ncmds: int | None = None, magic: int = MH_MAGIC_64) -> bytes:
    header = {
        "magic": magic,
        "cputype": 0x0100000C,
        "cpusubtype": 0,
        "filetype": FileType.DYLIB,
        "ncmds": len(commands) if ncmds is None else ncmds,
        "sizeofcmds": sum(map(len, commands)),
        "flags": 0,
        "reserved": 0,
    }
    return build(schema.mach_header_64, header) + b"".join(commands)


def _read(data: bytes) -> MachOHeaders:
    return read_headers(lambda offset, size: data[offset : offset + size])


def test_no_text_no_slide() -> None:
    headers = _read(_binary([]))
    assert headers.text_vmaddr is None and headers.slide_for(0x1000) is None
    assert not headers.is_executable
    with pytest.raises(ParseError, match="no __TEXT"):
        headers.place(0x1000, None)


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (b"", 0, r"mach_header_64 \(32 bytes\) is cut short"),
        (_binary([], magic=0xFEEDFACE), 0, "not a 64-bit little-endian Mach-O"),
        (_binary([], ncmds=1), 32, r"load command \(8 bytes\) is cut short"),
        (_binary([build(schema.load_command, {"cmd": 1, "cmdsize": 4})]), 32, "size 4 is out"),
        (_binary([build(schema.load_command, {"cmd": 1, "cmdsize": 64})]), 32, "size 64 is out"),
        (
            _binary([build(schema.load_command, {"cmd": LoadCommand.LC_UUID, "cmdsize": 8})]),
            32,
            r"LC_UUID \(24 bytes\) is cut short at 8",
        ),
    ],
)
def test_malformed(data: bytes, offset: int, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        _read(data)
    assert info.value.offset == offset


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ParseError, match="empty file") as info:
        read_headers_file(str(empty))
    assert info.value.path == str(empty)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + bytes(60))
    with pytest.raises(ParseError, match="not a 64-bit") as info:
        read_headers_file(str(junk))
    assert info.value.path == str(junk)
