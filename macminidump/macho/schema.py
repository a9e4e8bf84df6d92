"""Mach-O core layouts as construct declarations: the one place that knows field offsets.

Declarations only: no file reading, no business logic. Everything is little-endian and
spelled out (``Int32ul``, never native order). Parsing malformed or short input raises
only :class:`construct.ConstructError` subclasses (never ``struct.error``,
``UnicodeDecodeError`` or ``IndexError``); callers turn those into ``ParseError``.
Building needs every named field present (construct raises ``KeyError`` otherwise) except
the ``version`` constants, which may be omitted.

Fixed-size names (``segname``, ``sectname``, ``data_owner``) are 16 bytes on disk and a
``str`` here: parsing strips *trailing* NULs and decodes latin-1, so any 16 bytes decode
and the mapping is lossless, including names with bytes after an interior NUL (those
keep the ``"\\x00"`` in the string, where a C reader such as LLDB stops at the first NUL).
Building encodes latin-1 and pads with NULs; a name longer than 16 bytes, with a
character above U+00FF or ending in ``"\\x00"`` (which parsing could not give back) raises
:class:`construct.StringError`. Round trips are therefore byte-exact for every name, and
in particular for the usual ones with nothing after the first NUL.

Register-state structs are made from the flavor table (:mod:`macminidump.mach_flavors`),
so they use exactly the register names of :mod:`macminidump.arch`. Reserved areas are
``Padding``: written as zeros, skipped (not checked) on parse, and absent from parsed
results.

:func:`macminidump.schema_io.fixed_format` turns a flat declaration into a
:class:`struct.Struct` for hot paths, so these declarations stay the single source of
truth for layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from construct import (
    Adapter,
    Bytes,
    BytesInteger,
    Const,
    Construct,
    GreedyBytes,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    NullTerminated,
    Padding,
    StringError,
    Struct,
    this,
)

from macminidump.arch import Arch, RegKind
from macminidump.mach_flavors import MACH_ARCHES, FlavorLayout

__all__ = [
    "NAME_SIZE",
    "Name16Adapter",
    "Utf8CStringAdapter",
    "name16",
    "utf8_cstring",
    "mach_header_64",
    "load_command",
    "segment_command_64",
    "section_64",
    "note_command",
    "uuid_command",
    "thread_state_header",
    "thread_state_entry",
    "arm_thread_state64",
    "arm_exception_state64",
    "arm_neon_state64",
    "x86_thread_state64",
    "x86_float_state64",
    "x86_exception_state64",
    "FLAVOR_STRUCTS",
    "note_version",
    "main_bin_spec_v1",
    "main_bin_spec_v2",
    "load_binary_v1",
    "all_image_infos_header",
    "image_entry",
    "segment_vmaddr",
    "addrable_bits_v3",
    "addrable_bits_v4",
    "kern_ver_str",
]

NAME_SIZE = 16


# --------------------------------------------------------------------------- adapters


class Name16Adapter(Adapter):
    """A 16-byte NUL-padded name <-> ``str`` (see the module docstring for the rules).

    ``schema_io.fixed_format`` yields these fields as the raw 16 bytes; decode them the same
    way with ``raw.rstrip(b"\\0").decode("latin-1")``.
    """

    def __init__(self) -> None:
        super().__init__(Bytes(NAME_SIZE))

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return bytes(obj).rstrip(b"\0").decode("latin-1")

    def _encode(self, obj: object, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise StringError(f"name must be a str, not {type(obj).__name__}", path=path)
        try:
            raw = obj.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise StringError(f"name {obj!r} is not latin-1: {exc}", path=path) from None
        if len(raw) > NAME_SIZE:
            raise StringError(f"name {obj!r} is longer than {NAME_SIZE} bytes", path=path)
        if raw.endswith(b"\0"):
            raise StringError(f"name {obj!r} ends in NUL and would not round-trip", path=path)
        return raw.ljust(NAME_SIZE, b"\0")


class Utf8CStringAdapter(Adapter):
    """A NUL-terminated UTF-8 string <-> ``str``.

    Like ``CString("utf8")``, but invalid UTF-8 raises :class:`construct.StringError`
    instead of ``UnicodeDecodeError``, and building a string that contains NUL (which
    would end it early) or a lone surrogate raises ``StringError`` too. A missing
    terminator raises ``StreamError``.
    """

    def __init__(self) -> None:
        super().__init__(NullTerminated(GreedyBytes, term=b"\0"))

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        try:
            return bytes(obj).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StringError(f"invalid UTF-8 in string: {exc}", path=path) from None

    def _encode(self, obj: object, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise StringError(f"string must be a str, not {type(obj).__name__}", path=path)
        if "\0" in obj:
            raise StringError(f"string {obj!r} contains NUL", path=path)
        try:
            return obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StringError(
                f"string {obj!r} is not encodable as UTF-8: {exc}", path=path
            ) from None


name16 = Name16Adapter()
utf8_cstring = Utf8CStringAdapter()
_uuid16 = Bytes(16)
_u128 = BytesInteger(16, swapped=True)


# ------------------------------------------------------------------ header and commands

#: 32 bytes. ``magic`` is a plain u32 so the parser can report a bad magic itself.
mach_header_64 = Struct(
    "magic" / Int32ul,
    "cputype" / Int32ul,
    "cpusubtype" / Int32ul,
    "filetype" / Int32ul,
    "ncmds" / Int32ul,
    "sizeofcmds" / Int32ul,
    "flags" / Int32ul,
    "reserved" / Int32ul,
)

#: 8 bytes: the prefix of every load command; ``cmdsize`` includes these 8 bytes.
load_command = Struct(
    "cmd" / Int32ul,
    "cmdsize" / Int32ul,
)

#: 72 bytes (LC_SEGMENT_64 without its sections).
segment_command_64 = Struct(
    "cmd" / Int32ul,
    "cmdsize" / Int32ul,
    "segname" / name16,
    "vmaddr" / Int64ul,
    "vmsize" / Int64ul,
    "fileoff" / Int64ul,
    "filesize" / Int64ul,
    "maxprot" / Int32ul,
    "initprot" / Int32ul,
    "nsects" / Int32ul,
    "flags" / Int32ul,
)

#: 80 bytes; ``nsects`` of these follow a segment_command_64 (cores write none).
section_64 = Struct(
    "sectname" / name16,
    "segname" / name16,
    "addr" / Int64ul,
    "size" / Int64ul,
    "offset" / Int32ul,
    "align" / Int32ul,
    "reloff" / Int32ul,
    "nreloc" / Int32ul,
    "flags" / Int32ul,
    "reserved1" / Int32ul,
    "reserved2" / Int32ul,
    "reserved3" / Int32ul,
)

#: 40 bytes (LC_NOTE). ``offset`` is the absolute file offset of the payload.
note_command = Struct(
    "cmd" / Int32ul,
    "cmdsize" / Int32ul,
    "data_owner" / name16,
    "offset" / Int64ul,
    "size" / Int64ul,
)

#: 24 bytes (LC_UUID).
uuid_command = Struct(
    "cmd" / Int32ul,
    "cmdsize" / Int32ul,
    "uuid" / _uuid16,
)

#: 8 bytes: one flavor header inside an LC_THREAD body; ``count`` is in u32 words.
thread_state_header = Struct(
    "flavor" / Int32ul,
    "count" / Int32ul,
)

#: One LC_THREAD body entry: header plus ``count * 4`` raw state bytes.
thread_state_entry = Struct(
    "flavor" / Int32ul,
    "count" / Int32ul,
    "state" / Bytes(this.count * 4),
)


# --------------------------------------------------------------------- register states

_INTEGERS = {1: Int8ul, 2: Int16ul, 4: Int32ul, 8: Int64ul, 16: _u128}


def _state(layout: FlavorLayout) -> Struct:
    """A thread-state flavor's declaration, made from the one flavor table."""
    return Struct(
        *[
            Padding(width) if name is None else name / _INTEGERS[width]
            for name, width in layout.fields
        ]
    )


_STATES = {
    (m.arch, kind): _state(layout)
    for m in MACH_ARCHES.values()
    for kind, layout in m.flavors.items()
}

#: 272 bytes = 68 words (ARM_THREAD_STATE64).
arm_thread_state64 = _STATES[Arch.ARM64, RegKind.GPR]
#: 16 bytes = 4 words (ARM_EXCEPTION_STATE64).
arm_exception_state64 = _STATES[Arch.ARM64, RegKind.EXC]
#: 528 bytes = 132 words (ARM_NEON_STATE64), tail padding included.
arm_neon_state64 = _STATES[Arch.ARM64, RegKind.FPR]
#: 168 bytes = 42 words (x86_THREAD_STATE64).
x86_thread_state64 = _STATES[Arch.X86_64, RegKind.GPR]
#: 524 bytes = 131 words (x86_FLOAT_STATE64, Apple's ``_STRUCT_X86_FLOAT_STATE64``).
x86_float_state64 = _STATES[Arch.X86_64, RegKind.FPR]
#: 16 bytes = 4 words (x86_EXCEPTION_STATE64).
x86_exception_state64 = _STATES[Arch.X86_64, RegKind.EXC]

#: (cputype, flavor) -> (register-set kind "gpr"/"fpr"/"exc", struct). The flavor's count
#: in words is ``struct.sizeof() // 4``.
FLAVOR_STRUCTS: Mapping[tuple[int, int], tuple[str, Construct]] = MappingProxyType(
    {
        (int(m.cputype), int(layout.flavor)): (kind.value, _STATES[m.arch, kind])
        for m in MACH_ARCHES.values()
        for kind, layout in m.flavors.items()
    }
)


# ---------------------------------------------------------------------- LC_NOTE payloads

#: 4 bytes: peek at the version of a versioned payload before choosing its struct.
note_version = Struct(
    "version" / Int32ul,
)

#: 40 bytes ("main bin spec" v1).
main_bin_spec_v1 = Struct(
    "version" / Const(1, Int32ul),
    "type" / Int32ul,
    "address" / Int64ul,
    "uuid" / _uuid16,
    "log2_pagesize" / Int32ul,
    "unused" / Int32ul,
)

#: 48 bytes ("main bin spec" v2). ``address``/``slide`` use UINT64_MAX for "unknown".
main_bin_spec_v2 = Struct(
    "version" / Const(2, Int32ul),
    "type" / Int32ul,
    "address" / Int64ul,
    "slide" / Int64ul,
    "uuid" / _uuid16,
    "log2_pagesize" / Int32ul,
    "platform" / Int32ul,
)

#: 36 bytes + NUL-terminated UTF-8 path ("load binary" v1).
load_binary_v1 = Struct(
    "version" / Const(1, Int32ul),
    "uuid" / _uuid16,
    "load_address" / Int64ul,
    "slide" / Int64ul,
    "path" / utf8_cstring,
)

#: 24 bytes ("all image infos" v1 header). ``entries_fileoff`` is absolute.
all_image_infos_header = Struct(
    "version" / Const(1, Int32ul),
    "imgcount" / Int32ul,
    "entries_fileoff" / Int64ul,
    "entries_size" / Int32ul,
    "unused" / Int32ul,
)

#: 48 bytes: one image of "all image infos". Offsets are absolute; ``unused`` is LLDB's
#: ``currently_executing``. Never write ``filepath_offset = UINT64_MAX`` (crashes LLDB 16).
image_entry = Struct(
    "filepath_offset" / Int64ul,
    "uuid" / _uuid16,
    "load_address" / Int64ul,
    "seg_addrs_offset" / Int64ul,
    "segment_count" / Int32ul,
    "unused" / Int32ul,
)

#: 32 bytes: one segment address of an image_entry.
segment_vmaddr = Struct(
    "segname" / name16,
    "vmaddr" / Int64ul,
    "unused" / Int64ul,
)

#: 16 bytes ("addrable bits" v3: the only version LLDB 16 reads).
addrable_bits_v3 = Struct(
    "version" / Const(3, Int32ul),
    "num_bits" / Int32ul,
    "unused" / Int64ul,
)

#: 16 bytes ("addrable bits" v4, LLDB 18+).
addrable_bits_v4 = Struct(
    "version" / Const(4, Int32ul),
    "low_bits" / Int32ul,
    "high_bits" / Int32ul,
    "unused" / Int32ul,
)

#: 4 bytes + NUL-terminated string ("kern ver str" v1).
kern_ver_str = Struct(
    "version" / Const(1, Int32ul),
    "version_string" / utf8_cstring,
)
