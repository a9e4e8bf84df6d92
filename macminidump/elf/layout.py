"""Snapshot → Layout: every byte of an ELF core except bulk memory, and where it all goes.

A pure function. File order, as the kernel writes it: the ELF header, the program
headers (one PT_NOTE, one PT_LOAD per region, then any program headers kept raw from a
parsed file), the notes, then the memory of each region (16-byte aligned, packed: gdb
and LLDB need no page alignment, and a minimal core's regions are small).

Note order (LLDB gives each note to the thread whose NT_PRSTATUS precedes it):

- raw process-level notes first (a GDB target description, notes kept from a parse),
  then this package's record of how the memory was chosen (memory_note.py);
- thread 0 (the crashed thread, moved first): PRSTATUS, PRPSINFO, SIGINFO (a crash
  only), AUXV, FILE, FPREGSET, X86_XSTATE (its ``xsave``), then its raw notes;
- every other thread: PRSTATUS, FPREGSET, X86_XSTATE, raw notes.
"""

from __future__ import annotations

import struct
from types import MappingProxyType

from .. import memory_note, records
from ..arch import Arch, RegKind
from ..errors import RenderError
from ..linux_abi import SegmentFlags, SegmentType
from ..linux_abi_packed import ELF64_PHDR_FORMAT
from ..model import PROTECTIONS, Protection, RawItem, Snapshot, Thread
from ..plain_typing import Mapping, NamedTuple
from ..writer import CoreCost, SegmentPlacement, align
from . import notes
from .constants import (
    EHDR_SIZE,
    ELFMAG,
    NOTE_ALIGN,
    NT_MEMORY_SELECTION,
    P_TYPE_SIZE,
    PHDR_SIZE,
    PN_XNUM,
    CoreNoteType,
    ElfClass,
    ElfData,
    ElfMachine,
    ElfOsAbi,
    ElfType,
    ElfVersion,
    NoteOwner,
)
from .packed import ELF64_EHDR_FIELDS, ELF64_EHDR_FORMAT, ELF64_NHDR_FORMAT

SEGMENT_ALIGN = 16

_EHDR = struct.Struct(ELF64_EHDR_FORMAT)
_PHDR = struct.Struct(ELF64_PHDR_FORMAT)
_NHDR = struct.Struct(ELF64_NHDR_FORMAT)


class NoteEntry(NamedTuple):
    """One note of the plan (a tuple: a 1,000-thread core has 3,000)."""

    owner: str
    type: int
    desc: bytes


@records.frozen
class Layout:
    #: ELF header, program headers and notes, contiguous from offset 0
    head: bytes
    notes: tuple[NoteEntry, ...]
    segments: tuple[SegmentPlacement, ...]
    file_size: int


def _segment_flags(protection: Protection) -> int:
    flags = 0
    if protection & Protection.READ:
        flags |= SegmentFlags.PF_R
    if protection & Protection.WRITE:
        flags |= SegmentFlags.PF_W
    if protection & Protection.EXECUTE:
        flags |= SegmentFlags.PF_X
    return int(flags)


#: p_flags by int(protection): looked up, not computed (enum operators cost microseconds,
#: and a 1,000-thread core has thousands of segments)
_SEGMENT_FLAGS = tuple(_segment_flags(p) for p in PROTECTIONS)


def ordered_threads(snapshot: Snapshot) -> tuple[Thread, ...]:
    """The crashed thread first (the kernel's order), the others as given."""
    crashed = snapshot.crashed_thread
    if crashed is None:
        return snapshot.threads
    return (crashed, *(t for t in snapshot.threads if t is not crashed))


_XSTATE = (NoteOwner.LINUX.value, int(CoreNoteType.NT_X86_XSTATE))
#: the registers of a thread without a set of that kind
_NO_REGISTERS: Mapping[str, int] = MappingProxyType({})


def _raw_note(raw: RawItem, where: str) -> NoteEntry:
    if raw.format != "elf":
        raise RenderError(f"{where}: raw note {raw.kind:#x} came from a {raw.format} file")
    owner = raw.owner or notes.default_owner(raw.kind)
    if (owner, raw.kind) == (NoteOwner.CORE.value, int(CoreNoteType.NT_PRSTATUS)):
        raise RenderError(f"{where}: a raw NT_PRSTATUS would be read back as a thread")
    if "\0" in owner or not 0 <= raw.kind <= 0xFFFFFFFF:
        raise RenderError(f"{where}: raw note owner {owner!r} / type {raw.kind:#x} does not fit")
    return NoteEntry(owner, raw.kind, raw.data)


def _process_notes(snapshot: Snapshot) -> list[NoteEntry]:
    core = NoteOwner.CORE.value
    out = []
    if snapshot.process is not None:
        out.append(
            NoteEntry(core, CoreNoteType.NT_PRPSINFO, notes.encode_prpsinfo(snapshot.process))
        )
    if snapshot.signal is not None:
        out.append(NoteEntry(core, CoreNoteType.NT_SIGINFO, notes.encode_siginfo(snapshot.signal)))
    if snapshot.auxv:
        out.append(NoteEntry(core, CoreNoteType.NT_AUXV, notes.encode_auxv(snapshot.auxv)))
    if snapshot.file_mappings:
        out.append(NoteEntry(core, CoreNoteType.NT_FILE, notes.encode_file(snapshot.file_mappings)))
    return out


def note_plan(snapshot: Snapshot) -> list[NoteEntry]:
    """Every note, in file order (see the module docstring)."""
    core = NoteOwner.CORE.value
    plan = [_raw_note(raw, "snapshot") for raw in snapshot.raw_notes]
    if snapshot.memory_selection is not None:
        selection = memory_note.encode(snapshot.memory_selection)
        plan.append(NoteEntry(NoteOwner.MACMINIDUMP.value, NT_MEMORY_SELECTION, selection))
    threads = ordered_threads(snapshot)
    # (a 1,000-thread core: the names looked up once, each thread's sets found in one
    # pass over them, its name for an error made only for one)
    prstatus, fpregset = CoreNoteType.NT_PRSTATUS, CoreNoteType.NT_FPREGSET
    linux, xstate = NoteOwner.LINUX.value, CoreNoteType.NT_X86_XSTATE
    gpr_kind, fpr_kind, exc_kind = RegKind.GPR, RegKind.FPR, RegKind.EXC
    process, signal = snapshot.process, snapshot.signal
    encode_prstatus, encode_fpregset = notes.encode_prstatus, notes.encode_fpregset
    append = plan.append
    new = tuple.__new__  # (NoteEntry(...) without its __new__'s Python frame)
    for index, thread in enumerate(threads):
        gpr: Mapping[str, int] = _NO_REGISTERS
        fpr: Mapping[str, int] = _NO_REGISTERS
        for regset in thread.regsets:
            kind = regset.kind
            if kind == gpr_kind:
                gpr = regset.values
            elif kind == fpr_kind:
                fpr = regset.values
            elif kind == exc_kind and any(regset.values.values()):
                name = next(n for n, v in regset.values.items() if v)
                raise RenderError(
                    f"thread {thread.id:#x}: register {name} has no slot in an ELF core"
                )
        if thread.id > 0x7FFFFFFF:
            raise RenderError(
                f"thread {thread.id:#x}: an ELF core's thread id (pr_pid) is a positive int32"
            )
        status = encode_prstatus(thread.id, gpr, process, signal, bool(fpr))
        append(new(NoteEntry, (core, prstatus, status)))
        if index == 0:
            plan += _process_notes(snapshot)
        if fpr:
            append(new(NoteEntry, (core, fpregset, encode_fpregset(thread.id, fpr))))
        xsave = thread.xsave
        if xsave is not None:
            append(new(NoteEntry, (linux, xstate, xsave)))
        if not thread.raw_states:
            continue  # (a capture's threads: no list made for none)
        raw = [_raw_note(item, f"thread {thread.id:#x}") for item in thread.raw_states]
        if xsave is None and any((n.owner, n.type) == _XSTATE for n in raw):
            raise RenderError(
                f"thread {thread.id:#x}: a raw NT_X86_XSTATE would be read back as the "
                "thread's xsave"
            )
        plan += raw
    if not threads:
        plan += _process_notes(snapshot)
    return plan


def _note_bytes(entry: NoteEntry) -> bytes:
    """The note as the file holds it."""
    return b"".join(_note_parts(entry, {}))


def _note_parts(entry: NoteEntry, names: dict[str, tuple[int, bytes]]) -> tuple[bytes, ...]:
    """The note as the file holds it, in parts to be joined; ``names``: each owner's name
    as written (NUL terminated: its size, then its bytes with their padding), shared by
    the notes of a layout (three a thread, of two owners)."""
    owner = entry.owner
    known = names.get(owner)
    if known is None:
        name = owner.encode("utf-8") + b"\0"
        known = names[owner] = (len(name), name + bytes(-len(name) % NOTE_ALIGN))
    namesz, name_padded = known
    desc = entry.desc
    # the header through its struct and the padding as the reader skips it (NOTE_ALIGN):
    # what the struct refuses goes to construct, which names it
    try:
        header = _NHDR.pack(namesz, len(desc), entry.type)
    except struct.error:
        from . import schema  # (construct, for its message: a type or size too large)

        name = name_padded[:namesz]
        return (bytes(schema.elf64_note.build(dict(name=name, type=entry.type, desc=desc))),)
    pad_desc = -len(desc) % NOTE_ALIGN
    if pad_desc:
        return header, name_padded, desc, bytes(pad_desc)
    return header, name_padded, desc


def _raw_phdr(raw: RawItem) -> bytes:
    size = PHDR_SIZE - P_TYPE_SIZE
    if raw.format != "elf" or len(raw.data) != size or not 0 <= raw.kind <= 0xFFFFFFFF:
        raise RenderError(
            f"raw program header {raw.kind:#x} is not an ELF program header "
            f"({raw.format}, {len(raw.data)} bytes; {size} after p_type)"
        )
    return raw.kind.to_bytes(P_TYPE_SIZE, "little") + raw.data


def layout_elf(snapshot: Snapshot) -> Layout:
    if snapshot.arch != Arch.X86_64:
        raise RenderError(f"ELF cores are written for x86_64 only, not {snapshot.arch}")
    plan = note_plan(snapshot)
    names: dict[str, tuple[int, bytes]] = {}
    parts: list[bytes] = []
    for entry in plan:
        parts += _note_parts(entry, names)
    notes_size = sum(map(len, parts))
    raw_phdrs = [_raw_phdr(r) for r in snapshot.raw_commands]
    phnum = 1 + len(snapshot.regions) + len(raw_phdrs)
    if phnum >= PN_XNUM:
        raise RenderError(f"{phnum} program headers: more than an ELF header can count")
    notes_at = EHDR_SIZE + PHDR_SIZE * phnum
    end = notes_at + notes_size
    offset = align(end, SEGMENT_ALIGN)
    phdrs = [_PHDR.pack(SegmentType.PT_NOTE, SegmentFlags.PF_R, notes_at, 0, 0, notes_size, 0, 4)]
    placements = []
    # (a 1,000-thread core has a thousand regions: the lookups bound once, each size
    # asked once, the alignment inline)
    pack, load, flags_of = _PHDR.pack, int(SegmentType.PT_LOAD), _SEGMENT_FLAGS
    new_placement = tuple.__new__
    for region in snapshot.regions:
        size = region.data.size
        # p_memsz == p_filesz: never describe memory not saved
        phdrs.append(
            pack(load, flags_of[region.protection], offset, region.address, 0, size, size, 1)
        )
        placements.append(new_placement(SegmentPlacement, (region, offset)))
        end = offset + size
        offset = end + -end % SEGMENT_ALIGN
    fields = dict(
        ei_mag=ELFMAG,
        ei_class=ElfClass.ELFCLASS64,
        ei_data=ElfData.ELFDATA2LSB,
        ei_version=ElfVersion.EV_CURRENT,
        ei_osabi=ElfOsAbi.ELFOSABI_SYSV,
        ei_abiversion=0,
        ei_pad=bytes(7),
        e_type=ElfType.ET_CORE,
        e_machine=ElfMachine.EM_X86_64,
        e_version=ElfVersion.EV_CURRENT,
        e_entry=0,
        e_phoff=EHDR_SIZE,
        e_shoff=0,
        e_flags=0,
        e_ehsize=EHDR_SIZE,
        e_phentsize=PHDR_SIZE,
        e_phnum=phnum,
        e_shentsize=0,
        e_shnum=0,
        e_shstrndx=0,
    )
    header = _EHDR.pack(*(fields[name] for name in ELF64_EHDR_FIELDS))
    head = b"".join([header, *phdrs, *raw_phdrs, *parts])  # (3 MB of notes copied once)
    assert len(head) == notes_at + notes_size
    return Layout(head, tuple(plan), tuple(placements), end)


def core_cost(skeleton: Snapshot) -> CoreCost:
    """The cost model a size budget needs (capture/policy.py): ``skeleton`` is the core
    without memory; each region adds a program header and its bytes, 16-byte aligned."""
    return CoreCost(layout_elf(skeleton).file_size + SEGMENT_ALIGN, PHDR_SIZE, SEGMENT_ALIGN)
