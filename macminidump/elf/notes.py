"""ELF core note payloads ⇄ model values, one encoder/decoder pair per note type.

Payload layouts are declared in ``schema``; this module turns them into model objects
and back through the ``struct`` layouts generated from the declarations (``packed``,
``linux_abi_packed``), with the glue the variable parts need (siginfo's fault address,
the auxv array up to AT_NULL, NT_FILE's strings, NT_PRPSINFO's NUL-padded strings), so a
dump imports no construct. Encoders raise ``RenderError`` naming the value that does not
fit; decoders take the whole file and the payload's absolute offset, so a ``ParseError``
names where in the file the bad payload sits. Whatever the struct path refuses (a value
too large, a payload cut short) goes to construct and the declarations, imported then,
so the error is theirs, word for word. A note whose strings are not UTF-8 (a process name
set with ``prctl``, a file name) decodes to ``None`` and the caller keeps it raw.
"""

from __future__ import annotations

import _operator as operator  # (the C core: operator.py re-declares it in Python, ~0.4 ms)
import struct

from .. import records
from ..errors import ParseError, RenderError
from ..linux_abi import (
    FXSAVE_SIZE,
    SIGINFO_SIZE,
    X86_64_FPREGS,
    X86_64_USER_REGS,
    AuxvType,
    forget_decoded,
    fxsave_registers,
    has_fault_address,
    siginfo_values,
)
from ..linux_abi_packed import (
    AUXV_ENTRY_FIELDS,
    AUXV_ENTRY_FORMAT,
    SIGINFO_FAULT_FIELDS,
    SIGINFO_FAULT_FORMAT,
    SIGINFO_FIELDS,
    SIGINFO_FORMAT,
    USER_FPREGS_STRUCT_FIELDS,
    USER_FPREGS_STRUCT_FORMAT,
)
from ..model import FileMapping, ProcessInfo, SignalInfo
from ..plain_typing import Callable, Iterable, Mapping, NamedTuple, Sequence
from ..struct_io import format_codes, unpack_at
from .constants import CoreNoteType, NoteOwner
from .packed import (
    ELF_PRPSINFO_X86_64_FIELDS,
    ELF_PRPSINFO_X86_64_FORMAT,
    ELF_PRPSINFO_X86_64_SIZE,
    ELF_PRSTATUS_X86_64_FIELDS,
    ELF_PRSTATUS_X86_64_FORMAT,
    ELF_PRSTATUS_X86_64_SIZE,
    NT_FILE_ENTRY_FIELDS,
    NT_FILE_ENTRY_FORMAT,
    NT_FILE_HEADER_FIELDS,
    NT_FILE_HEADER_FORMAT,
)

#: NT_FILE offsets are in pages of this size (the kernel's PAGE_SIZE on x86_64)
FILE_PAGE_SIZE = 4096
#: the kernel keeps comm to 15 bytes and the command line to 79 (each NUL-terminated)
FNAME_MAX = 15
PSARGS_MAX = 79

PRSTATUS_SIZE = ELF_PRSTATUS_X86_64_SIZE
PRPSINFO_SIZE = ELF_PRPSINFO_X86_64_SIZE

_LINUX_TYPES = frozenset(
    {
        int(CoreNoteType.NT_PRXFPREG),
        int(CoreNoteType.NT_X86_XSTATE),
        *range(int(CoreNoteType.NT_ARM_TLS), int(CoreNoteType.NT_ARM_PAC_ENABLED_KEYS) + 1),
    }
)

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any


def default_owner(note_type: int) -> str:
    """The owner the kernel gives a note type: "LINUX" for the extended register sets,
    "CORE" for the rest. A RawItem with owner "" means this owner."""
    return NoteOwner.LINUX.value if note_type in _LINUX_TYPES else NoteOwner.CORE.value


if TYPE_CHECKING:
    Leaves = Callable[[Any], Sequence[Any]]


def _leaves(paths: Sequence[tuple[str, ...]]) -> Leaves:
    """values -> the leaf values in the order of ``paths`` (each a path of names into
    nested mappings), as one expression made from the declaration's own field names
    (``v["pr_reg"]["rax"], ...``): a note a thread, so no loop a field."""
    if all(len(path) == 1 for path in paths):
        names = [path[0] for path in paths]
        return operator.itemgetter(*names) if len(names) > 1 else lambda v: (v[names[0]],)
    leaves = ", ".join("v" + "".join(f"[{name!r}]" for name in path) for path in paths)
    function: Leaves = eval(f"lambda v: ({leaves},)", {})  # noqa: S307 (names: a schema's)
    return function


@records.frozen
class _Flat:
    """A generated layout's struct path (see ``_build``)."""

    fmt: struct.Struct
    leaves: Leaves
    #: the byte fields' values, and the lengths they must have: struct pads or cuts
    #: bytes where construct refuses
    byte_fields: Leaves | None
    byte_sizes: tuple[int, ...]
    #: the byte fields' lengths by name
    widths: dict[str, int]
    #: the declaration's name in ``schema``: construct builds what the struct refuses
    declaration: str


def _flat(fmt_text: str, fields: Sequence[str], declaration: str) -> _Flat:
    fmt = struct.Struct(fmt_text)
    codes = format_codes(fmt_text)
    sized = [(i, int(c[:-1])) for i, c in enumerate(codes) if c.endswith("s")]
    positions = [i for i, _ in sized]
    byte_fields = (
        None
        if not sized
        else operator.itemgetter(*positions)
        if len(sized) > 1
        else lambda items: (items[positions[0]],)
    )
    paths = [tuple(field.split(".")) for field in fields]
    widths = {fields[i]: size for i, size in sized}
    return _Flat(fmt, _leaves(paths), byte_fields, tuple(widths.values()), widths, declaration)


def _build(flat: _Flat, values: Any, what: str, declared: Any = None) -> bytes:
    # A declaration of integers and fixed bytes (nested structs too) packs through its
    # generated struct: a note per thread of a 1,000-thread process costs microseconds,
    # not a millisecond. Whatever the struct refuses goes to construct, which names the
    # field (given ``declared``, the values as the declaration takes them, where the
    # struct's differ).
    if type(values) is dict or isinstance(values, Mapping):
        try:
            items = flat.leaves(values)
            if flat.byte_fields is None or (
                tuple(map(len, flat.byte_fields(items))) == flat.byte_sizes
            ):
                return flat.fmt.pack(*items)
        except (struct.error, KeyError, TypeError):
            pass  # construct names the field
    return _build_declared(flat.declaration, values if declared is None else declared, what)


def _build_declared(declaration: str, values: Any, what: str) -> bytes:
    """``values`` built by ``schema``'s construct declaration (the error path: imports
    construct); a RenderError naming ``what`` and the field it cannot hold."""
    import construct

    from . import schema

    try:
        return bytes(getattr(schema, declaration).build(values))
    except (construct.ConstructError, ValueError, TypeError, OverflowError) as e:
        detail = str(e).splitlines()[-1] if str(e) else type(e).__name__
        raise RenderError(f"{what}: {detail}") from None


def _parse_declared(declaration: str, buffer: Any, offset: int, what: str, limit: int) -> Any:
    """``schema``'s construct declaration parsed (the path for a payload the struct path
    cannot read: imports construct, so the ParseError is construct's own)."""
    from ..schema_io import parse_at
    from . import schema

    return parse_at(getattr(schema, declaration), buffer, offset, what, limit)


def _within(buffer: Any, offset: int, size: int) -> bool:
    return 0 <= offset and offset + size <= len(buffer)


def _clip(text: str, limit: int, what: str) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes on a character boundary, as the kernel cuts."""
    if "\0" in text:
        raise RenderError(f"{what} {text!r} contains NUL")
    try:
        raw = text.encode("utf-8", "strict")[:limit]
    except UnicodeEncodeError:
        # a lone surrogate (a spec's "\ud800", a str from the API): no UTF-8 holds it
        raise RenderError(f"{what} {text!r} is not valid Unicode text") from None
    return raw.decode("utf-8", "ignore")


# --------------------------------------------------------------------------- NT_PRSTATUS


class Prstatus(NamedTuple):
    """NT_PRSTATUS decoded: one thread's id, signal and general purpose registers (a
    tuple: a core of 1,000 threads decodes 1,000)."""

    pid: int
    ppid: int
    pgrp: int
    sid: int
    cursig: int
    si_signo: int
    si_code: int
    si_errno: int
    sigpend: int
    sighold: int
    registers: dict[str, int]
    fpvalid: int


_ZERO_TIME = {"tv_sec": 0, "tv_usec": 0}
_USER_REGS_OF = operator.itemgetter(*X86_64_USER_REGS)
_FPREGS_OF = operator.itemgetter(*X86_64_FPREGS)


def _every(names: Sequence[str], getter: Leaves, registers: Mapping[str, int]) -> dict[str, int]:
    """``names`` -> their values in ``registers``, 0 for those it lacks (a capture has
    them all: one itemgetter, not a lookup a register)."""
    try:
        return dict(zip(names, getter(registers)))
    except KeyError:
        return {name: registers.get(name, 0) for name in names}


def encode_prstatus(
    thread_id: int,
    gpr: Mapping[str, int],
    process: ProcessInfo | None,
    signal: SignalInfo | None,
    fpvalid: bool,
) -> bytes:
    """The kernel's NT_PRSTATUS: pid is the thread id; the crash signal goes in every
    thread's ``pr_cursig`` and ``si_signo`` (gdb reports the signal only then)."""
    signo = signal.signo if signal is not None else 0
    # a note a thread: the values straight into the struct's order (a copy of the zeros
    # and padding, the fields set by position); what it refuses takes the path below,
    # whose error names the field
    items = _PRSTATUS_ZEROS.copy()
    items[_SI_SIGNO_AT] = items[_CURSIG_AT] = signo
    items[_PID_AT] = thread_id
    if process is not None:
        items[_PPID_AT], items[_PGRP_AT], items[_SID_AT] = process.ppid, process.pgrp, process.sid
    try:
        items[_PRSTATUS_REGISTERS] = _USER_REGS_OF(gpr)
    except KeyError:
        items[_PRSTATUS_REGISTERS] = [gpr.get(name, 0) for name in X86_64_USER_REGS]
    items[_FPVALID_AT] = 1 if fpvalid else 0
    try:
        return _PRSTATUS.fmt.pack(*items)
    except (struct.error, TypeError):
        pass
    values: dict[str, Any] = dict(
        si_signo=signo,
        si_code=0,
        si_errno=0,
        pr_cursig=signo,
        pad0=bytes(2),
        pr_sigpend=0,
        pr_sighold=0,
        pr_pid=thread_id,
        pr_ppid=process.ppid if process else 0,
        pr_pgrp=process.pgrp if process else 0,
        pr_sid=process.sid if process else 0,
        pr_utime=_ZERO_TIME,
        pr_stime=_ZERO_TIME,
        pr_cutime=_ZERO_TIME,
        pr_cstime=_ZERO_TIME,
        pr_reg=_every(X86_64_USER_REGS, _USER_REGS_OF, gpr),
        pr_fpvalid=1 if fpvalid else 0,
        pad1=bytes(4),
    )
    return _build(_PRSTATUS, values, f"thread {thread_id:#x}: NT_PRSTATUS")


def check_prstatus(offset: int, size: int) -> None:
    """What ``decode_prstatus`` rejects of a payload that lies within the file: a size
    other than x86_64's (any bytes of that size decode)."""
    if size != PRSTATUS_SIZE:
        raise ParseError(f"NT_PRSTATUS of {size} bytes (x86_64's is {PRSTATUS_SIZE})", offset)


def decode_prstatus(buffer: Any, offset: int, size: int) -> Prstatus:
    check_prstatus(offset, size)
    # through the generated struct (one unpack, not construct's walk per thread)
    values = unpack_at(_PRSTATUS.fmt, buffer, offset, "NT_PRSTATUS")
    pid, ppid, pgrp, sid, cursig, signo, code, errno, sigpend, sighold, fpvalid = (
        _PRSTATUS_FIELDS_OF(values)
    )
    registers = dict(zip(X86_64_USER_REGS, values[_PRSTATUS_REGISTERS]))
    return Prstatus(
        pid, ppid, pgrp, sid, cursig, signo, code, errno, sigpend, sighold, registers, fpvalid
    )


_PRSTATUS = _flat(ELF_PRSTATUS_X86_64_FORMAT, ELF_PRSTATUS_X86_64_FIELDS, "elf_prstatus_x86_64")
#: what decode_prstatus reads of NT_PRSTATUS besides the registers
_PRSTATUS_FIELDS = (
    "pr_pid",
    "pr_ppid",
    "pr_pgrp",
    "pr_sid",
    "pr_cursig",
    "si_signo",
    "si_code",
    "si_errno",
    "pr_sigpend",
    "pr_sighold",
    "pr_fpvalid",
)


def _prstatus_decoder() -> tuple[Leaves, slice]:
    """A getter of _PRSTATUS_FIELDS and the registers' slice in the unpacked values."""
    at = {field: i for i, field in enumerate(ELF_PRSTATUS_X86_64_FIELDS)}
    registers = [at["pr_reg." + name] for name in X86_64_USER_REGS]
    if registers != list(range(registers[0], registers[0] + len(registers))):
        raise TypeError("pr_reg is not user_regs_struct's registers in order")
    fields = operator.itemgetter(*(at[name] for name in _PRSTATUS_FIELDS))
    return fields, slice(registers[0], registers[-1] + 1)


_PRSTATUS_FIELDS_OF, _PRSTATUS_REGISTERS = _prstatus_decoder()
_PRSTATUS_AT = {field: i for i, field in enumerate(ELF_PRSTATUS_X86_64_FIELDS)}
_SI_SIGNO_AT, _CURSIG_AT, _PID_AT, _PPID_AT, _PGRP_AT, _SID_AT, _FPVALID_AT = (
    _PRSTATUS_AT[name]
    for name in ("si_signo", "pr_cursig", "pr_pid", "pr_ppid", "pr_pgrp", "pr_sid", "pr_fpvalid")
)
#: every NT_PRSTATUS field zero, its padding NUL bytes: what encode_prstatus starts from
_PRSTATUS_ZEROS: list[Any] = [
    bytes(_PRSTATUS.widths[name]) if name in _PRSTATUS.widths else 0
    for name in ELF_PRSTATUS_X86_64_FIELDS
]


# --------------------------------------------------------------------------- NT_PRPSINFO


def encode_prpsinfo(process: ProcessInfo) -> bytes:
    values: dict[str, Any] = dict(
        pr_state=0,
        pr_sname=ord("R"),
        pr_zomb=0,
        pr_nice=0,
        pad0=bytes(4),
        pr_flag=0,
        pr_uid=process.uid,
        pr_gid=process.gid,
        pr_pid=process.pid,
        pr_ppid=process.ppid,
        pr_pgrp=process.pgrp,
        pr_sid=process.sid,
        pr_fname=_clip(process.name, FNAME_MAX, "process name"),
        pr_psargs=_clip(process.args, PSARGS_MAX, "process arguments"),
    )
    # the strings as their NUL-padded bytes (the declaration's fixed-size text)
    padded = dict(values)
    try:
        for name in ("pr_fname", "pr_psargs"):
            padded[name] = values[name].encode("utf-8").ljust(_PRPSINFO.widths[name], b"\0")
    except UnicodeEncodeError:
        return _build_declared(_PRPSINFO.declaration, values, "NT_PRPSINFO")
    return _build(_PRPSINFO, padded, "NT_PRPSINFO", values)


_PRPSINFO = _flat(ELF_PRPSINFO_X86_64_FORMAT, ELF_PRPSINFO_X86_64_FIELDS, "elf_prpsinfo_x86_64")


def decode_prpsinfo(buffer: Any, offset: int, size: int) -> ProcessInfo | None:
    """None when the note is not x86_64's size or its strings are not UTF-8 (kept raw)."""
    if size != PRPSINFO_SIZE:
        return None
    if not _within(buffer, offset, size):
        try:
            _parse_declared(_PRPSINFO.declaration, buffer, offset, "NT_PRPSINFO", offset + size)
        except ParseError:
            return None
    v = dict(zip(ELF_PRPSINFO_X86_64_FIELDS, _PRPSINFO.fmt.unpack_from(buffer, offset)))
    try:
        # NUL padding stripped, strict UTF-8: what the declaration's text fields parse to
        name = v["pr_fname"].rstrip(b"\0").decode("utf-8")
        args = v["pr_psargs"].rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        return None  # only a string can fail in a note of the right size
    return ProcessInfo(
        pid=v["pr_pid"],
        ppid=v["pr_ppid"],
        pgrp=v["pr_pgrp"],
        sid=v["pr_sid"],
        uid=v["pr_uid"],
        gid=v["pr_gid"],
        name=name,
        args=args,
    )


# --------------------------------------------------------------------------- NT_SIGINFO


def encode_siginfo(signal: SignalInfo) -> bytes:
    fault = has_fault_address(signal.signo, signal.code)
    if signal.address is not None and not fault:
        raise RenderError(
            f"signal {signal.signo} with code {signal.code} carries no fault address "
            f"(address {signal.address:#x} given)"
        )
    # the union's two layouts: with si_addr for a kernel-raised fault, without otherwise
    flat = _SIGINFO_FAULT if fault else _SIGINFO
    values: dict[str, Any] = dict(
        si_signo=signal.signo,
        si_errno=signal.errno,
        si_code=signal.code,
        pad0=bytes(4),
        si_addr=(signal.address or 0) if fault else None,
        si_rest=bytes(flat.widths["si_rest"]),
    )
    return _build(flat, values, "NT_SIGINFO")


_SIGINFO = _flat(SIGINFO_FORMAT, SIGINFO_FIELDS, "siginfo")
_SIGINFO_FAULT = _flat(SIGINFO_FAULT_FORMAT, SIGINFO_FAULT_FIELDS, "siginfo")


def decode_siginfo(buffer: Any, offset: int, size: int) -> SignalInfo | None:
    """None when the note is not siginfo_t's 128 bytes (kept raw)."""
    if size != SIGINFO_SIZE:
        return None
    if not _within(buffer, offset, size):
        _parse_declared("siginfo", buffer, offset, "NT_SIGINFO", offset + size)
    signo, errno, code, address = siginfo_values(buffer, offset)
    return SignalInfo(signo=signo, code=code, errno=errno, address=address)


# --------------------------------------------------------------------------- NT_AUXV


def encode_auxv(auxv: Iterable[tuple[int, int]]) -> bytes:
    entries = []
    for kind, value in auxv:
        if kind == AuxvType.AT_NULL:
            raise RenderError("auxv holds AT_NULL (0) before its end: readers would stop there")
        entries.append(dict(type=kind, value=value))
    entries.append(dict(type=AuxvType.AT_NULL, value=0))
    # the declaration's array of entries up to and including AT_NULL, an entry at a time
    pack, leaves = _AUXV_ENTRY.fmt.pack, _AUXV_ENTRY.leaves
    try:
        return b"".join([pack(*leaves(entry)) for entry in entries])
    except (struct.error, TypeError):
        return _build_declared("auxv", entries, "NT_AUXV")


_AUXV_ENTRY = _flat(AUXV_ENTRY_FORMAT, AUXV_ENTRY_FIELDS, "auxv_entry")
_AUXV_PAIR = operator.itemgetter(AUXV_ENTRY_FIELDS.index("type"), AUXV_ENTRY_FIELDS.index("value"))


def decode_auxv(buffer: Any, offset: int, size: int) -> tuple[tuple[int, int], ...]:
    """The entries before AT_NULL; bytes after AT_NULL (the kernel's spare slots) are not read."""
    if _within(buffer, offset, size):
        entry = _AUXV_ENTRY.fmt
        pairs: list[tuple[int, int]] = []
        for values in entry.iter_unpack(buffer[offset : offset + size - size % entry.size]):
            kind, value = _AUXV_PAIR(values)
            if kind == AuxvType.AT_NULL:
                return tuple(pairs)
            pairs.append((kind, value))
    # no AT_NULL: the declaration says what is wrong
    entries = _parse_declared("auxv", buffer, offset, "NT_AUXV", offset + size)
    return tuple((int(e.type), e.value) for e in entries[:-1])


# --------------------------------------------------------------------------- NT_FILE


def encode_file(mappings: Iterable[FileMapping]) -> bytes:
    entries = []
    names = []
    for m in mappings:
        if m.offset % FILE_PAGE_SIZE:
            raise RenderError(
                f"file mapping at {m.start:#x}: offset {m.offset:#x} is not a multiple of "
                f"the page size {FILE_PAGE_SIZE:#x} (NT_FILE counts pages)"
            )
        if "\0" in m.path:
            raise RenderError(f"file mapping at {m.start:#x}: path {m.path!r} contains NUL")
        entries.append(dict(start=m.start, end=m.end, file_ofs=m.offset // FILE_PAGE_SIZE))
        names.append(m.path)
    values = dict(page_size=FILE_PAGE_SIZE, entries=entries, filenames=names)
    # the declaration's header, array of entries and array of NUL-terminated UTF-8 paths
    header = dict(count=len(entries), page_size=FILE_PAGE_SIZE)
    pack, leaves = _FILE_ENTRY.fmt.pack, _FILE_ENTRY.leaves
    try:
        parts = [_FILE_HEADER.fmt.pack(*_FILE_HEADER.leaves(header))]
        parts += [pack(*leaves(entry)) for entry in entries]
        parts += [name.encode("utf-8") + b"\0" for name in names]
    except (struct.error, TypeError, AttributeError, UnicodeEncodeError):
        return _build_declared("nt_file", values, "NT_FILE")
    return b"".join(parts)


_FILE_HEADER = _flat(NT_FILE_HEADER_FORMAT, NT_FILE_HEADER_FIELDS, "nt_file_header")
_FILE_ENTRY = _flat(NT_FILE_ENTRY_FORMAT, NT_FILE_ENTRY_FIELDS, "nt_file_entry")


def decode_file(buffer: Any, offset: int, size: int) -> tuple[FileMapping, ...] | None:
    """None when a path is not UTF-8 (the note is kept raw)."""
    header, entry = _FILE_HEADER.fmt, _FILE_ENTRY.fmt
    if size < header.size or not _within(buffer, offset, size):
        return _decode_file_declared(buffer, offset, size)
    h = dict(zip(NT_FILE_HEADER_FIELDS, header.unpack_from(buffer, offset)))
    count = h["count"]
    if count * entry.size + header.size > size:
        raise ParseError(f"NT_FILE claims {count} mappings in {size} bytes", offset)
    entries_at = offset + header.size
    names_at = entries_at + count * entry.size
    strings = bytes(buffer[names_at : offset + size])
    names = []
    at = 0
    for _ in range(count):
        end = strings.find(b"\0", at)
        if end < 0:
            return _decode_file_declared(buffer, offset, size)  # (its error: a path cut short)
        try:
            names.append(strings[at:end].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        at = end + 1
    entries = [
        dict(zip(NT_FILE_ENTRY_FIELDS, values))
        for values in entry.iter_unpack(buffer[entries_at:names_at])
    ]
    return _file_mappings(offset, h["page_size"], entries, names)


def _decode_file_declared(buffer: Any, offset: int, size: int) -> tuple[FileMapping, ...] | None:
    """decode_file through construct: what the struct path cannot read gets its error."""
    count = _parse_declared("nt_file_header", buffer, offset, "NT_FILE", offset + size).count
    if count * _FILE_ENTRY.fmt.size + _FILE_HEADER.fmt.size > size:
        raise ParseError(f"NT_FILE claims {count} mappings in {size} bytes", offset)
    try:
        v = _parse_declared("nt_file", buffer, offset, "NT_FILE", offset + size)
    except ParseError as e:
        if "UTF-8" in e.message:
            return None
        raise
    return _file_mappings(offset, v.page_size, v.entries, v.filenames)


def _file_mappings(
    offset: int, page_size: int, entries: Sequence[Mapping[str, int]], names: Sequence[str]
) -> tuple[FileMapping, ...]:
    out = []
    for entry, name in zip(entries, names):
        start, end = entry["start"], entry["end"]
        if not start < end:
            raise ParseError(f"NT_FILE mapping [{start:#x}, {end:#x}) is empty", offset)
        file_offset = entry["file_ofs"] * page_size
        if file_offset >> 64:
            # a file offset is 64 bits wherever it is written back (a spec, NT_FILE)
            raise ParseError(
                f"NT_FILE mapping at {start:#x}: file offset {entry['file_ofs']:#x} pages of "
                f"{page_size:#x} bytes does not fit in 64 bits",
                offset,
            )
        out.append(FileMapping(start, end, file_offset, name))
    return tuple(out)


# --------------------------------------------------------------------------- NT_FPREGSET


#: the fxsave fields held as 16 bytes (st and xmm registers)
_WIDE_FPREGS = tuple(name for name in X86_64_FPREGS if name.startswith(("stmm", "xmm")))


def encode_fpregset(thread_id: int, fpr: Mapping[str, int]) -> bytes:
    """The fxsave area; ``fpu_cs``/``fpu_ds`` (32-bit selectors) have no slot in it."""
    for name in ("fpu_cs", "fpu_ds"):
        if fpr.get(name, 0):
            raise RenderError(
                f"thread {thread_id:#x}: register {name} has no slot in an ELF core "
                "(64-bit fxsave keeps only fpu_ip/fpu_dp)"
            )
    try:
        # a capture's complete set, straight into the struct (a note a thread); the
        # threads of a process mostly hold one floating-point state, encoded once
        registers = _FPREGS_OF(fpr)
        known = _FPREGSET_ENCODED.get(registers)
        if known is not None:
            return known
        items = list(registers)
        for i in _WIDE_AT:
            items[i] = items[i].to_bytes(16, "little")
        encoded = _FPREGSET.fmt.pack(*items, _FPREGSET_PADDING)
        if len(_FPREGSET_ENCODED) >= 256:
            _FPREGSET_ENCODED.clear()
        _FPREGSET_ENCODED[registers] = encoded
        return encoded
    except (KeyError, AttributeError, TypeError, OverflowError, struct.error):
        pass  # missing registers are zeros; what does not fit is named below
    values: dict[str, Any] = _every(X86_64_FPREGS, _FPREGS_OF, fpr)
    for name in _WIDE_FPREGS:
        value = values[name]
        try:
            values[name] = value.to_bytes(16, "little")
        except (AttributeError, OverflowError):
            # (construct would see only bytes: the register is named here)
            raise RenderError(
                f"thread {thread_id:#x}: register {name} = {value!r} "
                "is not an unsigned 16-byte integer"
            ) from None
    values["padding"] = _FPREGSET_PADDING
    return _build(_FPREGSET, values, f"thread {thread_id:#x}: NT_FPREGSET")


_FPREGSET = _flat(USER_FPREGS_STRUCT_FORMAT, USER_FPREGS_STRUCT_FIELDS, "user_fpregs_struct")
_FPREGSET_PADDING = bytes(_FPREGSET.widths["padding"])
if USER_FPREGS_STRUCT_FIELDS != (*X86_64_FPREGS, "padding"):
    raise TypeError("user_fpregs_struct is not X86_64_FPREGS in order, then its padding")
#: the registers' values (in X86_64_FPREGS order) -> their note, lately encoded
_FPREGSET_ENCODED: dict[tuple[int, ...], bytes] = {}

#: positions of the 16-byte registers among X86_64_FPREGS
_WIDE_AT = tuple(X86_64_FPREGS.index(name) for name in _WIDE_FPREGS)


def forget_register_states() -> None:
    """Drop every remembered register state (see ``linux_abi.forget_decoded``)."""
    _FPREGSET_ENCODED.clear()
    forget_decoded()


def decode_fpregset(buffer: Any, offset: int, size: int) -> dict[str, int] | None:
    """The fxsave fields by arch.py name (``linux_abi.fxsave_registers``); None when the
    note is not 512 bytes (kept raw). Rejects nothing: any 512 bytes are an fxsave area."""
    if size != FXSAVE_SIZE:
        return None
    return fxsave_registers(bytes(buffer[offset : offset + size]))
