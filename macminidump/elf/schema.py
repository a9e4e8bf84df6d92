"""construct declarations of Linux ELF cores: 64-bit little-endian, declarations only.

Readers and writers never compute an offset themselves; they go through these structs.
Conventions:

- Field names of register structs are the names in :mod:`macminidump.arch` (``rflags``,
  not Linux's ``eflags``; ``fpu_ip``/``fpu_dp``/``mxcsrmask``/``stmm*`` in the fxsave area).
- Padding and reserved bytes are kept as named ``bytes`` fields (``pad*``, ``ei_pad``,
  ``si_rest``, ``padding``), so ``build(parse(b)) == b`` for every input that parses.
  The exceptions are the alignment bytes after a note's name and desc (parsed and
  discarded, built as zeros) and the bytes after the strings of ``pr_fname``/``pr_psargs``
  (NUL padding: trailing NULs are stripped on parse and restored on build).
- Header fields with a known meaning (e_type, e_machine, p_type, auxv type, ...) parse to
  the IntEnum of :mod:`.constants` (or :mod:`macminidump.linux_abi`) when the value is
  known and to a plain ``int`` otherwise; both compare equal to the number, and building
  accepts either.
- The structures a live process holds too (``user_regs_struct``, the fxsave area,
  ``siginfo_t``, the auxiliary vector, ``Elf64_Phdr``) are declared once in
  :mod:`macminidump.linux_abi_schema`, which the Linux capture backend shares (through
  the generated :mod:`macminidump.linux_abi_packed`); they are imported
  here, where the core's structures are made of them.
- Parsing raises only ``construct.ConstructError`` subclasses: short input is a
  ``StreamError``, text that is not UTF-8 a ``StringError``. Variable lengths read from the
  input (note name/desc) are checked against the bytes left in the stream before reading.
- Never ``compile()`` these for parsing: compiled structs skip short-read checks.

Per-architecture structs are built by factories (``_prstatus``) from the architecture's
``pr_reg`` struct; aarch64 instances exist for the ones that differ.
"""

from __future__ import annotations

import io
from typing import Any

from construct import (
    Adapter,
    Aligned,
    Array,
    Bytes,
    Const,
    Construct,
    FixedSized,
    GreedyBytes,
    Int8sl,
    Int8ul,
    Int16ul,
    Int32sl,
    Int32ul,
    Int64sl,
    Int64ul,
    NullStripped,
    NullTerminated,
    Rebuild,
    StreamError,
    StringError,
    Struct,
    evaluate,
    len_,
    stream_read,
    this,
)

from ..linux_abi_schema import (
    auxv,
    auxv_entry,
    elf64_phdr,
    siginfo,
    user_fpregs_struct,
    user_regs_struct_x86_64,
)
from ..schema_io import EnumOrInt
from .constants import (
    ELFMAG,
    ElfClass,
    ElfData,
    ElfMachine,
    ElfOsAbi,
    ElfType,
    ElfVersion,
)

__all__ = [
    "AARCH64_USER_REGS",
    "elf64_ehdr",
    "elf64_phdr",
    "elf64_nhdr",
    "elf64_note",
    "timeval",
    "user_regs_struct_x86_64",
    "user_pt_regs_aarch64",
    "elf_prstatus_x86_64",
    "elf_prstatus_aarch64",
    "elf_prpsinfo_x86_64",
    "elf_prpsinfo_aarch64",
    "siginfo",
    "auxv_entry",
    "auxv",
    "nt_file_entry",
    "nt_file_header",
    "nt_file",
    "user_fpregs_struct",
]


# -- helpers -------------------------------------------------------------------------------


class _Utf8(Adapter):  # type: ignore[misc]
    """Strict UTF-8 text over a bytes construct; any decode/encode failure is a StringError.

    construct's own StringEncoded wraps errors too in 2.10.70, but not in every release
    pyproject allows, and this keeps the contract in one visible place.
    """

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StringError(f"not UTF-8: {obj!r} ({exc.reason})", path=path) from None

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise StringError(f"expected str, got {type(obj).__name__}", path=path)
        try:
            return obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StringError(f"cannot encode {obj!r} as UTF-8 ({exc.reason})", path=path) from None


def _padded_text(length: int) -> Construct:
    """A fixed-size NUL-padded UTF-8 string (like PaddedString(length, "utf8"), strict)."""
    return _Utf8(FixedSized(length, NullStripped(GreedyBytes)))


#: A NUL-terminated UTF-8 string (like CString("utf8"), strict)
_cstring = _Utf8(NullTerminated(GreedyBytes))


def _remaining(stream: Any) -> int | None:
    """Bytes left in a seekable stream, or None when the stream cannot tell."""
    try:
        if not stream.seekable():
            return None
        pos = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(pos)
        return int(end - pos)
    except (AttributeError, OSError, ValueError):
        return None


class _BoundedBytes(Bytes):  # type: ignore[misc]
    """Bytes whose length comes from the input: refuse, before reading, a length larger
    than the stream holds (a 4 GiB descsz must be a StreamError, not a MemoryError)."""

    def _parse(self, stream: Any, context: Any, path: str) -> bytes:
        length = evaluate(self.length, context)
        if length < 0:
            raise StreamError(f"negative length {length}", path=path)
        left = _remaining(stream)
        if left is not None and length > left:
            raise StreamError(f"length {length} exceeds the {left} bytes left", path=path)
        data: bytes = stream_read(stream, length, path)
        return data


# -- ELF file structure ---------------------------------------------------------------------

elf64_ehdr = Struct(
    "ei_mag" / Const(ELFMAG),
    "ei_class" / EnumOrInt(Int8ul, ElfClass),
    "ei_data" / EnumOrInt(Int8ul, ElfData),
    "ei_version" / EnumOrInt(Int8ul, ElfVersion),
    "ei_osabi" / EnumOrInt(Int8ul, ElfOsAbi),
    "ei_abiversion" / Int8ul,
    "ei_pad" / Bytes(7),
    "e_type" / EnumOrInt(Int16ul, ElfType),
    "e_machine" / EnumOrInt(Int16ul, ElfMachine),
    "e_version" / EnumOrInt(Int32ul, ElfVersion),
    "e_entry" / Int64ul,
    "e_phoff" / Int64ul,
    "e_shoff" / Int64ul,
    "e_flags" / Int32ul,
    "e_ehsize" / Int16ul,
    "e_phentsize" / Int16ul,
    "e_phnum" / Int16ul,
    "e_shentsize" / Int16ul,
    "e_shnum" / Int16ul,
    "e_shstrndx" / Int16ul,
)

_nhdr_fields = (
    "namesz" / Rebuild(Int32ul, len_(this.name)),
    "descsz" / Rebuild(Int32ul, len_(this.desc)),
    # CoreNoteType for owners CORE/LINUX; left an int because numbers collide across owners
    "type" / Int32ul,
)

#: the 12-byte note header alone (namesz and descsz exclude the alignment padding)
elf64_nhdr = Struct(
    "namesz" / Int32ul,
    "descsz" / Int32ul,
    "type" / Int32ul,
)

#: one whole note: header, then name and desc each padded to 4 bytes. ``name`` is the raw
#: owner bytes including its NUL (b"CORE\x00"); sizes are rebuilt from name and desc.
elf64_note = Struct(
    *_nhdr_fields,
    "name" / Aligned(4, _BoundedBytes(this.namesz)),
    "desc" / Aligned(4, _BoundedBytes(this.descsz)),
)


# -- registers ----------------------------------------------------------------------------

#: struct user_pt_regs (aarch64): regs[31], sp, pc, pstate, named as in arch.py
AARCH64_USER_REGS = (
    *(f"x{i}" for i in range(29)),
    "fp",  # x29
    "lr",  # x30
    "sp",
    "pc",
    "cpsr",  # pstate, a u64 in Linux
)

user_pt_regs_aarch64 = Struct(*(name / Int64ul for name in AARCH64_USER_REGS))

# -- process notes ------------------------------------------------------------------------

timeval = Struct(
    "tv_sec" / Int64sl,
    "tv_usec" / Int64sl,
)


def _prstatus(pr_reg: Construct) -> Struct:
    """struct elf_prstatus (64-bit) around an architecture's register struct."""
    return Struct(
        # struct elf_siginfo: note the order signo, code, errno (siginfo_t has errno second)
        "si_signo" / Int32sl,
        "si_code" / Int32sl,
        "si_errno" / Int32sl,
        "pr_cursig" / Int16ul,
        "pad0" / Bytes(2),
        "pr_sigpend" / Int64ul,
        "pr_sighold" / Int64ul,
        "pr_pid" / Int32sl,
        "pr_ppid" / Int32sl,
        "pr_pgrp" / Int32sl,
        "pr_sid" / Int32sl,
        "pr_utime" / timeval,
        "pr_stime" / timeval,
        "pr_cutime" / timeval,
        "pr_cstime" / timeval,
        "pr_reg" / pr_reg,
        "pr_fpvalid" / Int32sl,
        "pad1" / Bytes(4),
    )


#: NT_PRSTATUS, 336 bytes
elf_prstatus_x86_64 = _prstatus(user_regs_struct_x86_64)
#: NT_PRSTATUS, 392 bytes
elf_prstatus_aarch64 = _prstatus(user_pt_regs_aarch64)


def _prpsinfo() -> Struct:
    """struct elf_prpsinfo (64-bit; uid/gid are 32-bit on x86_64 and aarch64)."""
    return Struct(
        "pr_state" / Int8sl,
        "pr_sname" / Int8sl,  # a character: b"R", b"S", ...
        "pr_zomb" / Int8sl,
        "pr_nice" / Int8sl,
        "pad0" / Bytes(4),
        "pr_flag" / Int64ul,
        "pr_uid" / Int32ul,
        "pr_gid" / Int32ul,
        "pr_pid" / Int32sl,
        "pr_ppid" / Int32sl,
        "pr_pgrp" / Int32sl,
        "pr_sid" / Int32sl,
        "pr_fname" / _padded_text(16),  # comm: the kernel truncates it to 15 bytes
        "pr_psargs" / _padded_text(80),  # argv joined by spaces, truncated to 79 bytes
    )


#: NT_PRPSINFO, 136 bytes
elf_prpsinfo_x86_64 = _prpsinfo()
elf_prpsinfo_aarch64 = elf_prpsinfo_x86_64


nt_file_entry = Struct(
    "start" / Int64ul,
    "end" / Int64ul,
    "file_ofs" / Int64ul,  # in units of page_size, not bytes
)

#: the first 16 bytes of NT_FILE: check ``count`` against the note's size before parsing
nt_file_header = Struct(
    "count" / Int64ul,
    "page_size" / Int64ul,
)

#: NT_FILE: the file-backed mappings, then one NUL-terminated path per mapping
nt_file = Struct(
    "count" / Rebuild(Int64ul, len_(this.entries)),
    "page_size" / Int64ul,
    "entries" / Array(this.count, nt_file_entry),
    "filenames" / Array(this.count, _cstring),
)
