"""ELF core file (Linux x86_64) → Snapshot, lazily.

``ElfCore`` is a thin reader over the schemas: the header, each program header with its
offset, each note decoded, and ``snapshot()``. Memory is never copied: regions are
windows of an mmap of the file. Every size a field claims is checked against the bytes
that exist before anything is read, and every failure is one ParseError naming the file
offset.

Reads the kernel's cores and gdb's ``gcore`` (which writes NT_PRPSINFO first, an
NT_SIGINFO per thread and a GDB target description). What the model does not hold is
kept raw so it is written back: notes of owner CORE/LINUX that follow a thread's
NT_PRSTATUS stay with that thread (``Thread.raw_states``; its first NT_X86_XSTATE is
its ``xsave``), other unknown notes go to ``Snapshot.raw_notes``, and program headers
other than PT_NOTE and PT_LOAD with data (PT_LOADs of no file bytes among them) to
``Snapshot.raw_commands``. A RawItem's owner is "" when it is the kernel's owner for the
type (see ``notes.default_owner``).
"""

from __future__ import annotations

import os
import struct

from .. import memory_note
from ..arch import Arch, RegKind
from ..elf_headers import ElfHeaders, read_headers
from ..errors import MacMiniDumpError, ParseError
from ..linux_abi import AuxvType, SegmentFlags, SegmentType
from ..linux_abi_packed import ELF64_PHDR_FORMAT
from ..model import (
    PROTECTIONS,
    AddressSpace,
    BufferSource,
    FileMapping,
    Image,
    MemorySelection,
    ProcessInfo,
    RawItem,
    Region,
    RegisterSet,
    SignalInfo,
    Snapshot,
    Thread,
)
from ..plain_typing import Callable, NamedTuple, Sequence
from ..reader import CoreReader
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
    ElfType,
    NoteOwner,
)
from .packed import ELF64_EHDR_FIELDS, ELF64_EHDR_FORMAT, ELF64_NHDR_FORMAT

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any

_EHDR = struct.Struct(ELF64_EHDR_FORMAT)
_PHDR = struct.Struct(ELF64_PHDR_FORMAT)
_NHDR = struct.Struct(ELF64_NHDR_FORMAT)
_PT_LOAD, _PT_NOTE = int(SegmentType.PT_LOAD), int(SegmentType.PT_NOTE)
_CORE, _LINUX = NoteOwner.CORE.value, NoteOwner.LINUX.value
_MACMINIDUMP = NoteOwner.MACMINIDUMP.value
_PRSTATUS = int(CoreNoteType.NT_PRSTATUS)
_PRPSINFO = int(CoreNoteType.NT_PRPSINFO)
_SIGINFO = int(CoreNoteType.NT_SIGINFO)
_AUXV = int(CoreNoteType.NT_AUXV)
_FILE = int(CoreNoteType.NT_FILE)
_FPREGSET = int(CoreNoteType.NT_FPREGSET)
_XSTATE = int(CoreNoteType.NT_X86_XSTATE)


class ProgramHeader(NamedTuple):
    """One program header and where it sits (a tuple: a large core has thousands)."""

    offset: int
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


class Note(NamedTuple):
    """One note and where it sits (a tuple: a 1,000-thread core has 3,000)."""

    owner: str
    type: int
    #: file offset of the note header and of its payload (desc)
    offset: int
    desc_offset: int
    size: int
    #: the payload decoded (Prstatus, ProcessInfo, SignalInfo, auxv pairs, file mappings,
    #: fxsave registers), or None when the type is unknown or kept raw
    decoded: Any = None


def _protection_of(p_flags: int) -> Any:
    bits = 0
    if p_flags & SegmentFlags.PF_R:
        bits |= 1
    if p_flags & SegmentFlags.PF_W:
        bits |= 2
    if p_flags & SegmentFlags.PF_X:
        bits |= 4
    return PROTECTIONS[bits]


_RWX = int(SegmentFlags.PF_R | SegmentFlags.PF_W | SegmentFlags.PF_X)
#: protection by p_flags' rwx bits: looked up, not computed (enum operators cost
#: microseconds, and a 1,000-thread core has thousands of segments)
_PROTECTION_OF = tuple(_protection_of(flags) for flags in range(_RWX + 1))


class ElfCore(CoreReader):
    """A parsed ELF core. Holds an mmap of the file (or the bytes given) while alive.

    ``ElfCore.open(path)`` maps a file; ``ElfCore(data)`` reads bytes.
    """

    # ------------------------------------------------------------------ reading

    def _parse(self) -> None:
        buf = self.buffer
        size = len(buf)
        if size < EHDR_SIZE:
            raise ParseError(f"{size} bytes is too short for an ELF header", 0)
        if bytes(buf[0:4]) != ELFMAG:
            raise ParseError(f"not an ELF file (magic {bytes(buf[0:4]).hex()})", 0)
        if buf[4] != ElfClass.ELFCLASS64:
            raise ParseError(
                f"ELF class {buf[4]}: 32-bit ELF cores are not supported (64-bit only)", 4
            )
        if buf[5] != ElfData.ELFDATA2LSB:
            raise ParseError(f"ELF data {buf[5]}: only little-endian cores are supported", 5)
        # (the magic is checked above and the size: nothing of the header can fail)
        self.header = dict(zip(ELF64_EHDR_FIELDS, _EHDR.unpack_from(buf, 0)))
        h = self.header
        if h["e_type"] != ElfType.ET_CORE:
            raise ParseError(f"an ELF file of type {h['e_type']}, not a core (ET_CORE)", 16)
        if h["e_machine"] != ElfMachine.EM_X86_64:
            raise ParseError(f"e_machine {h['e_machine']} is not supported (x86_64, 62, is)", 18)
        phoff, phnum, phentsize = h["e_phoff"], h["e_phnum"], h["e_phentsize"]
        if phnum == PN_XNUM:
            raise ParseError("more than 65534 program headers (PN_XNUM) is not supported", 56)
        if phnum and phentsize < PHDR_SIZE:
            raise ParseError(f"e_phentsize {phentsize} < {PHDR_SIZE}", 54)
        if phoff + phnum * phentsize > size:
            raise ParseError(
                f"{phnum} program headers at {phoff:#x} run past the end of the file", 32
            )

        self.records.spend(phnum, 56, f"{phnum:,} program headers")
        self.program_headers: list[ProgramHeader] = []
        self.notes: list[Note] = []
        self.regions: list[Region] = []
        # (a 1,000-thread core has a thousand segments: the lookups bound once, and
        # ProgramHeaders made without namedtuple's Python frame)
        unpack, new, keep = _PHDR.unpack_from, tuple.__new__, self.program_headers.append
        for i in range(phnum):
            at = phoff + i * phentsize
            ph = new(ProgramHeader, (at, *unpack(buf, at)))
            keep(ph)
            if ph.p_type not in (_PT_LOAD, _PT_NOTE) or not ph.p_filesz:
                continue
            if ph.p_offset + ph.p_filesz > size:
                raise ParseError(
                    f"segment data [{ph.p_offset:#x}, +{ph.p_filesz:#x}) runs past the end of "
                    f"the file ({size:#x} bytes): truncated core?",
                    at,
                )
            if ph.p_type == _PT_NOTE:
                try:
                    self._notes(ph.p_offset, ph.p_offset + ph.p_filesz)
                finally:
                    notes.forget_register_states()
            else:
                try:
                    protection = _PROTECTION_OF[ph.p_flags & _RWX]
                    self.regions.append(
                        Region.trusted(
                            ph.p_vaddr,
                            BufferSource(buf, ph.p_offset, ph.p_filesz),
                            protection,
                            protection,
                            "",
                        )
                    )
                except MacMiniDumpError as e:
                    raise ParseError(f"PT_LOAD: {e}", at) from None

    def _notes(self, start: int, end: int) -> None:
        buf = self.buffer
        offset = start
        header_size = _NHDR.size
        unpack_header = _NHDR.unpack_from
        budget = self.records
        decode = self._decode
        append = self.notes.append
        new_note = tuple.__new__  # (Note(...) without its __new__'s Python frame)
        owners: dict[bytes, str] = {}  # (three notes a thread, of two or three owners)
        while offset < end:
            if end - offset < header_size:
                if not any(buf[offset:end]):
                    break  # alignment padding at the end of the segment
                raise ParseError("note header runs past the end of the note segment", offset)
            # (within the segment, which lies within the file: checked by the caller)
            namesz, descsz, note_type = unpack_header(buf, offset)
            budget.spent += 1  # (spend(1, ...) inlined: its error raised by spend itself)
            if budget.spent > budget.limit:
                budget.spend(0, offset, "notes")
            name_at = offset + header_size
            desc_at = name_at + namesz + -namesz % NOTE_ALIGN  # (align(), inlined)
            if desc_at > end or desc_at + descsz > end:
                raise ParseError(
                    f"note of name size {namesz} and size {descsz} runs past the end of its "
                    f"segment ({end:#x})",
                    offset,
                )
            raw_owner = bytes(buf[name_at : name_at + namesz])
            owner = owners.get(raw_owner)
            if owner is None:
                owner = owners[raw_owner] = raw_owner.rstrip(b"\0").decode("latin-1")
            decoded = decode(owner, note_type, desc_at, descsz)
            append(new_note(Note, (owner, note_type, offset, desc_at, descsz, decoded)))
            offset = min(end, desc_at + descsz + -descsz % NOTE_ALIGN)

    def _decode(self, owner: str, note_type: int, offset: int, size: int) -> Any:
        if owner == _MACMINIDUMP and note_type == NT_MEMORY_SELECTION:
            return memory_note.decode(self.buffer[offset : offset + size])
        if owner != _CORE:
            return None
        buf = self.buffer
        if note_type == _PRSTATUS:
            return notes.decode_prstatus(buf, offset, size)
        if note_type == _PRPSINFO:
            return notes.decode_prpsinfo(buf, offset, size)
        if note_type == _SIGINFO:
            return notes.decode_siginfo(buf, offset, size)
        if note_type == _AUXV:
            self.records.spend(size // 16, offset, "NT_AUXV entries")
            return notes.decode_auxv(buf, offset, size)
        if note_type == _FILE:
            self.records.spend(size // 24, offset, "NT_FILE entries")
            return notes.decode_file(buf, offset, size)
        if note_type == _FPREGSET:
            return notes.decode_fpregset(buf, offset, size)
        return None

    @classmethod
    def read_back(cls, snapshot: Snapshot) -> Callable[[Any], object]:
        verify = super().read_back(snapshot)
        return _ElfCheck if verify is cls else verify

    def _desc(self, note: Note) -> bytes:
        return bytes(self.buffer[note.desc_offset : note.desc_offset + note.size])

    def _raw(self, note: Note) -> RawItem:
        owner = "" if note.owner == notes.default_owner(note.type) else note.owner
        return RawItem("elf", note.type, self._desc(note), owner=owner)

    # ------------------------------------------------------------------ model

    def _snapshot(self) -> Snapshot:
        process: ProcessInfo | None = None
        auxv: tuple[tuple[int, int], ...] | None = None
        mappings: tuple[FileMapping, ...] | None = None
        raw_notes: list[RawItem] = []
        selection: MemorySelection | None = None
        # per thread: its NT_PRSTATUS, fxsave registers and the notes that follow it
        groups: list[tuple[notes.Prstatus, list[Note]]] = []
        loose: list[Note] = []  # CORE/LINUX notes before the first NT_PRSTATUS
        for note in self.notes:
            if note.owner == _MACMINIDUMP and note.decoded is not None and selection is None:
                selection = note.decoded
            elif note.owner not in (_CORE, _LINUX):
                raw_notes.append(self._raw(note))
            elif note.owner == _CORE and note.type == _PRSTATUS:
                groups.append((note.decoded, []))
            elif (
                note.owner == _CORE and note.type == _PRPSINFO and process is None and note.decoded
            ):
                process = note.decoded
            elif note.owner == _CORE and note.type == _AUXV and auxv is None:
                auxv = note.decoded
            elif (
                note.owner == _CORE
                and note.type == _FILE
                and mappings is None
                and note.decoded is not None
            ):
                mappings = note.decoded
            elif groups:
                groups[-1][1].append(note)
            else:
                loose.append(note)

        signal: SignalInfo | None = None
        crashed = False
        if groups:
            first, first_notes = groups[0]
            if first.cursig:
                crashed = True
                for note in first_notes:
                    if note.type == _SIGINFO and note.owner == _CORE and note.decoded is not None:
                        if note.decoded.signo == first.cursig:
                            signal = note.decoded
                            first_notes.remove(note)
                            break
                if signal is None:  # kernels before 3.7 wrote no NT_SIGINFO
                    signal = SignalInfo(
                        signo=first.cursig, code=first.si_code, errno=first.si_errno
                    )
        else:
            for note in loose:
                if note.type == _SIGINFO and note.owner == _CORE and note.decoded is not None:
                    signal = note.decoded
                    loose.remove(note)
                    break
        raw_notes[:0] = [self._raw(n) for n in loose]

        threads = []
        for index, (prstatus, group) in enumerate(groups):
            regsets = [RegisterSet(RegKind.GPR, prstatus.registers)]
            raw_states = []
            xsave: bytes | None = None
            for note in group:
                if (
                    note.owner == _CORE
                    and note.type == _FPREGSET
                    and note.decoded is not None
                    and len(regsets) == 1
                ):
                    regsets.append(RegisterSet(RegKind.FPR, note.decoded))
                elif note.owner == _LINUX and note.type == _XSTATE and xsave is None:
                    xsave = self._desc(note)
                else:
                    raw_states.append(self._raw(note))
            threads.append(
                Thread(
                    id=prstatus.pid,
                    regsets=tuple(regsets),
                    crashed=crashed and index == 0,
                    raw_states=tuple(raw_states),
                    xsave=xsave,
                )
            )
        raw_commands = [
            RawItem(
                "elf",
                ph.p_type,
                bytes(self.buffer[ph.offset + P_TYPE_SIZE : ph.offset + PHDR_SIZE]),
            )
            for ph in self.program_headers
            if ph.p_type not in (_PT_LOAD, _PT_NOTE) or (ph.p_type == _PT_LOAD and not ph.p_filesz)
        ]
        return Snapshot(
            arch=Arch.X86_64,
            threads=tuple(threads),
            regions=tuple(self.regions),
            images=loaded_images(AddressSpace(self.regions), mappings or (), auxv or ()),
            process=process,
            signal=signal,
            auxv=auxv or (),
            file_mappings=mappings or (),
            memory_selection=selection,
            raw_notes=tuple(raw_notes),
            raw_commands=tuple(raw_commands),
        )


class _ElfCheck(ElfCore):
    """``ElfCore``'s pass over a core this package wrote (``read_back``'s check when the
    model is not built): every header, bound and note checked as the reader checks them,
    but a thread's notes not decoded, since nothing reads what they decode to. NT_PRSTATUS
    is checked as its decoding would reject it (``notes.check_prstatus``); the decoding of
    NT_FPREGSET rejects nothing. A 1,000-thread core has 2,000 of these notes."""

    def _decode(self, owner: str, note_type: int, offset: int, size: int) -> Any:
        if owner == _CORE:
            if note_type == _PRSTATUS:
                notes.check_prstatus(offset, size)
                return None
            if note_type == _FPREGSET:
                return None
        return ElfCore._decode(self, owner, note_type, offset, size)

    def _snapshot(self) -> Snapshot:
        raise TypeError("a core's check decodes too little to build its Snapshot")


def parse_elf(path: str | os.PathLike[str], private: bool = False) -> Snapshot:
    """Read an ELF core into a Snapshot whose memory stays in the (mmapped) file."""
    return ElfCore.open(path, private).snapshot()


def parse_elf_bytes(data: bytes) -> Snapshot:
    return ElfCore(data).snapshot()


def loaded_images(
    memory: AddressSpace, files: Sequence[FileMapping], auxv: Sequence[tuple[int, int]]
) -> tuple[Image, ...]:
    """The ELF objects whose header the core's memory holds (the kernel's and gcore's
    first page of each mapped ELF, macminidump's header pages): each with its path (from
    NT_FILE; "[vdso]" for the vDSO), load address, bias and GNU build-id. The executable
    is the one whose program headers are at AT_PHDR. An ELF core has no list of images:
    this is how gdb, elfutils and drgn find them too."""
    aux = dict(auxv)
    names = {m.start: m.path for m in files if m.offset == 0}
    vdso = aux.get(AuxvType.AT_SYSINFO_EHDR)
    if vdso is not None:
        names.setdefault(vdso, "[vdso]")
    images = []
    for address in sorted(names):
        if memory.region_at(address) is None:
            continue
        headers = loaded_headers(memory, address)
        if headers is None:
            continue
        images.append(
            Image(
                path=names[address],
                load_address=address,
                slide=headers.bias_for(address),
                build_id=headers.build_id,
                main=aux.get(AuxvType.AT_PHDR) == address + headers.phoff,
            )
        )
    return tuple(images)


def loaded_headers(memory: AddressSpace, address: int) -> ElfHeaders | None:
    """The headers of the ELF object at ``address`` in a core's memory; None where they
    are not all saved or are not an ELF object's."""

    def read(offset: int, size: int) -> bytes:
        try:
            return memory.read(address + offset, size)
        except MacMiniDumpError:
            return b""

    try:
        return read_headers(read)
    except ParseError:
        return None
