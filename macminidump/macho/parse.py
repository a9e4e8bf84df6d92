"""Mach-O core file → Snapshot, lazily.

``MachOCore`` is a thin reader over the schemas: the header, each load command with its
offset, each note decoded, and ``snapshot()``. Memory is never copied: regions are
windows of an mmap of the file. Every size a field claims is checked against the bytes
that exist before anything is allocated, and every failure is one ParseError naming
the file offset.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
from typing import Any, NamedTuple

from .. import memory_note, records
from ..arch import RegKind
from ..errors import MacMiniDumpError, ParseError
from ..limits import MAX_METADATA_BYTES
from ..mach_flavors import MACH_ARCHES
from ..model import (
    PROTECTIONS,
    AddressableBits,
    BufferSource,
    Image,
    MemorySelection,
    RawItem,
    Region,
    RegisterSet,
    Snapshot,
    Thread,
)
from ..reader import CoreReader
from ..schema_io import parse_at, plain, unpack_at
from . import codec, notes, schema
from .constants import (
    MH_CIGAM_64,
    MH_MAGIC,
    MH_MAGIC_64,
    X86_WRAPPER_OF,
    CpuType,
    FileType,
    LoadCommand,
    NoteOwner,
)

ARCH_OF_CPU = {int(m.cputype): arch for arch, m in MACH_ARCHES.items()}
_SEGMENT = codec.SEGMENT.struct
_NOTE = codec.NOTE.struct
_LC = codec.LOAD_COMMAND.struct
_FLAVOR = codec.THREAD_STATE_HEADER.struct
_NO_NAME = bytes(16)
_ADDRESS_END = 1 << 64
_PLAIN_SEGMENT = (int(LoadCommand.LC_SEGMENT_64), codec.SEGMENT.size)
_CMD_AND_SIZE = operator.itemgetter(0, 1)
_VMADDR, _FILEOFF, _FILESIZE = (
    operator.itemgetter(codec.SEGMENT.names.index(name))
    for name in ("vmaddr", "fileoff", "filesize")
)
_LC_THREAD, _LC_SEGMENT_64, _LC_NOTE = (
    int(LoadCommand.LC_THREAD),
    int(LoadCommand.LC_SEGMENT_64),
    int(LoadCommand.LC_NOTE),
)


class Command(NamedTuple):
    """Where a load command sits (a tuple: a large core has tens of thousands)."""

    cmd: int
    offset: int
    size: int


@records.frozen
class Note:
    owner: str
    offset: int  # of the payload
    size: int
    command_offset: int
    #: the payload decoded as plain data (None when the owner or version is unknown)
    decoded: Any = None


@records.frozen
class FlavorState:
    flavor: int
    count: int
    offset: int
    kind: RegKind | None  # None: kept raw
    values: dict[str, int] | None


class MachOCore(CoreReader):
    """A parsed Mach-O core. Holds an mmap of the file (or the bytes given) while alive.

    ``MachOCore.open(path)`` maps a file; ``MachOCore(data)`` reads bytes.
    """

    # ------------------------------------------------------------------ reading

    def _parse(self) -> None:
        buf = self.buffer
        if len(buf) < 32:
            raise ParseError(f"{len(buf)} bytes is too short for a Mach-O header", 0)
        magic = int.from_bytes(buf[0:4], "little")
        if magic == MH_CIGAM_64 or int.from_bytes(buf[0:4], "big") == MH_MAGIC:
            raise ParseError("big-endian Mach-O files are not supported", 0)
        if magic == MH_MAGIC:
            raise ParseError("32-bit Mach-O cores (armv7, riscv32) are not supported", 0)
        if magic != MH_MAGIC_64:
            raise ParseError(f"not a Mach-O file (magic {magic:#010x})", 0)
        self.header = plain(parse_at(schema.mach_header_64, buf, 0, "mach_header_64"))
        if self.header["filetype"] != FileType.CORE:
            kind = _name(FileType, self.header["filetype"])
            raise ParseError(f"a Mach-O {kind} file, not a core (MH_CORE)", 12)
        cputype = self.header["cputype"]
        if cputype not in ARCH_OF_CPU:
            raise ParseError(
                f"cputype {_name(CpuType, cputype)} ({cputype:#x}) is not supported "
                "(arm64 and x86_64 are)",
                4,
            )
        self.arch = ARCH_OF_CPU[cputype]
        ncmds, sizeofcmds = self.header["ncmds"], self.header["sizeofcmds"]
        end = 32 + sizeofcmds
        if end > len(buf):
            raise ParseError(f"sizeofcmds {sizeofcmds:#x} runs past the end of the file", 20)
        if ncmds * 8 > sizeofcmds:
            raise ParseError(f"{ncmds} load commands cannot fit in sizeofcmds {sizeofcmds:#x}", 16)
        self.records.spend(ncmds, 16, f"{ncmds:,} load commands")

        self.commands: list[Command] = []
        self.threads: list[list[FlavorState]] = []
        self.notes: list[Note] = []
        #: (command offset, the command's fields) of each segment with data
        self._segments: list[tuple[int, tuple[Any, ...]]] = []
        offset = 32
        file_size = len(buf)
        done = 0
        # The hot loop (10,000 segments in a large core) unpacks without unpack_at: every
        # read below is inside [offset, offset + cmdsize) <= end <= file_size, checked first.
        while done < ncmds:
            if offset + 8 > end:
                raise ParseError("load command header runs past sizeofcmds", offset)
            cmd, cmdsize = _LC.unpack_from(buf, offset)
            if cmdsize < 8 or offset + cmdsize > end:
                raise ParseError(
                    f"load command {cmd:#x} has size {cmdsize}, outside the load commands", offset
                )
            if cmd == _LC_SEGMENT_64 and cmdsize == _SEGMENT.size:
                run = self._segment_run(offset, min(ncmds - done, (end - offset) // cmdsize))
                if run:
                    done += run
                    offset += run * cmdsize
                    continue
            done += 1
            self.commands.append(Command(cmd, offset, cmdsize))
            if cmd == _LC_THREAD:
                self.threads.append(self._thread_states(offset + 8, offset + cmdsize))
            elif cmd == _LC_SEGMENT_64:
                if cmdsize < _SEGMENT.size:
                    raise ParseError(f"LC_SEGMENT_64 of {cmdsize} bytes", offset)
                fields = _SEGMENT.unpack_from(buf, offset)
                _, _, segname, vmaddr, _, fileoff, filesize, maxprot, initprot, _, _ = fields
                if fileoff + filesize > file_size:
                    raise ParseError(
                        f"segment data [{fileoff:#x}, +{filesize:#x}) runs past the end of the "
                        f"file ({len(buf):#x} bytes): truncated core?",
                        offset,
                    )
                # a segment with no data (filesize 0) is kept as it is; one with sections
                # becomes a region (cores have no use for section headers: they are dropped)
                if filesize > 0:
                    if vmaddr + filesize > _ADDRESS_END:
                        self._region(offset, fields)  # raises, as the model words it
                    # the Region is built by snapshot(): a check of the file needs none
                    self._segments.append((offset, fields))
            elif cmd == _LC_NOTE:
                if cmdsize < _NOTE.size:
                    raise ParseError(f"LC_NOTE of {cmdsize} bytes", offset)
                _, _, owner_raw, note_off, note_size = unpack_at(_NOTE, buf, offset, "LC_NOTE")
                if note_off + note_size > len(buf):
                    raise ParseError(
                        f"note payload [{note_off:#x}, +{note_size:#x}) runs past the end "
                        "of the file",
                        offset,
                    )
                owner = owner_raw.rstrip(b"\0").decode("latin-1")  # as schema.name16 decodes
                self.notes.append(
                    Note(
                        owner, note_off, note_size, offset, self._decode(owner, note_off, note_size)
                    )
                )
            offset += cmdsize

    def _segment_run(self, start: int, most: int) -> int:
        """Read the run of plain segment commands (LC_SEGMENT_64 of the declaration's size,
        no sections) at ``start``, at most ``most`` of them, in one pass: how many were
        read. 0 when one of them is not what the loop above would accept quietly: the loop
        then reads them one by one and names the first that is wrong, at its offset."""
        size = _SEGMENT.size
        rows = list(_SEGMENT.iter_unpack(memoryview(self.buffer)[start : start + most * size]))
        heads = list(map(_CMD_AND_SIZE, rows))
        count = len(list(itertools.takewhile(_PLAIN_SEGMENT.__eq__, heads)))
        del rows[count:]
        fileoffs = list(map(_FILEOFF, rows))
        filesizes = list(map(_FILESIZE, rows))
        if max(map(operator.add, fileoffs, filesizes)) > len(self.buffer):
            return 0
        if max(map(operator.add, map(_VMADDR, rows), filesizes)) > _ADDRESS_END:
            return 0
        offsets = range(start, start + count * size, size)
        self.commands += map(
            tuple.__new__,
            itertools.repeat(Command),
            zip(itertools.repeat(_LC_SEGMENT_64), offsets, itertools.repeat(size)),
        )
        if 0 in filesizes:  # those without data are kept as commands only
            self._segments += [(o, r) for o, r, n in zip(offsets, rows, filesizes) if n]
        else:
            self._segments += zip(offsets, rows)
        return count

    def _region(self, offset: int, fields: tuple[Any, ...]) -> Region:
        _, _, segname, vmaddr, _, fileoff, filesize, maxprot, initprot, _, _ = fields
        try:
            return Region.trusted(
                vmaddr,
                BufferSource(self.buffer, fileoff, filesize),
                PROTECTIONS[initprot & 7],
                PROTECTIONS[maxprot & 7],
                segname.rstrip(b"\0").decode("latin-1") if segname != _NO_NAME else "",
            )
        except MacMiniDumpError as e:
            raise ParseError(f"LC_SEGMENT_64: {e}", offset) from None

    @functools.cached_property
    def regions(self) -> list[Region]:
        """A region (a window of the buffer) per segment with data, in file order."""
        return [self._region(offset, fields) for offset, fields in self._segments]

    @property
    def segments(self) -> list[dict[str, Any]]:
        """Each LC_SEGMENT_64 by its declaration's field names, plus ``offset`` (its own).

        Read again from the file on each call: the parse loop keeps only what it needs.
        """
        return [
            {"offset": c.offset, **codec.SEGMENT.unpack(self.buffer, c.offset)}
            for c in self.commands
            if c.cmd == _LC_SEGMENT_64
        ]

    def _thread_states(self, start: int, end: int) -> list[FlavorState]:
        states = []
        offset = start
        while offset < end:
            flavor, count = unpack_at(_FLAVOR, self.buffer, offset, "thread state header")
            self.records.spend(1, offset, "thread states")
            body = offset + 8
            if body + 4 * count > end:
                raise ParseError(
                    f"thread state flavor {flavor} of {count} words overruns LC_THREAD", offset
                )
            known = codec.FLAVORS.get((self.header["cputype"], flavor))
            state_at, state_size = body, 4 * count
            inner = self._wrapped_flavor(flavor, count, body)
            if inner is not None:
                known = codec.FLAVORS.get((self.header["cputype"], inner))
                state_at, state_size = body + 8, 4 * count - 8
            kind = values = None
            if known is not None and known[3] == state_size:
                kind, flat, decl, _ = known
                if flat is not None:
                    values = flat.unpack(self.buffer, state_at)
                else:
                    where = f"flavor {flavor}"
                    end_at = state_at + state_size
                    values = plain(parse_at(decl, self.buffer, state_at, where, end_at))
            states.append(FlavorState(flavor, count, offset, kind, values))
            offset = body + 4 * count
        return states

    def _wrapped_flavor(self, flavor: int, count: int, body: int) -> int | None:
        """The inner flavor of one of xnu's x86_64 wrappers (x86_THREAD_STATE, ...), when
        its inner header names the 64-bit state and fills the wrapper exactly."""
        if self.header["cputype"] != CpuType.X86_64 or count < 2:
            return None
        inner, inner_count = unpack_at(_FLAVOR, self.buffer, body, "wrapped thread state header")
        if X86_WRAPPER_OF.get(inner) != flavor or inner_count + 2 != count:
            return None
        return int(inner)

    def _decode(self, owner: str, offset: int, size: int) -> Any:
        payload = bytes(self.buffer[offset : offset + size])
        if owner == NoteOwner.MAIN_BIN_SPEC:
            return notes.decode_main_bin_spec(payload, offset)
        if owner == NoteOwner.LOAD_BINARY:
            return notes.decode_load_binary(payload, offset)
        if owner == NoteOwner.ALL_IMAGE_INFOS:
            return notes.decode_all_image_infos(self.buffer, offset, size, self.records)
        if owner == NoteOwner.ADDRABLE_BITS:
            return notes.decode_addressable_bits(payload, offset)
        if owner == NoteOwner.PROCESS_METADATA:
            if size > MAX_METADATA_BYTES:
                # JSON builds ~25 bytes of objects per byte: a bound, not a record count
                raise ParseError(
                    f"process metadata of {size:,} bytes: more than the "
                    f"{MAX_METADATA_BYTES:,} this reader decodes",
                    offset,
                )
            return notes.decode_process_metadata(payload, offset)
        if owner == NoteOwner.KERN_VER_STR:
            return notes.decode_kern_ver_str(payload, offset)
        if owner == NoteOwner.MEMORY_SELECTION:
            return memory_note.decode(payload)
        return None

    # ------------------------------------------------------------------ model

    def _snapshot(self) -> Snapshot:
        buf = self.buffer
        region_offsets = {offset for offset, _ in self._segments}
        raw_commands = [
            RawItem("macho", c.cmd, bytes(buf[c.offset + 8 : c.offset + c.size]))
            for c in self.commands
            if c.cmd not in (_LC_THREAD, _LC_NOTE) and c.offset not in region_offsets
        ]

        metadata: list[notes.ThreadMetadata] | None = None
        bits: AddressableBits | None = None
        main: notes.MainBinSpec | None = None
        images: list[Image] = []
        seen_infos = False
        selection: MemorySelection | None = None
        raw_notes = []
        for note in self.notes:
            value = note.decoded
            if (
                note.owner == NoteOwner.PROCESS_METADATA
                and value is not None
                and metadata is None
                # entries for other threads than these (more, or fewer) say nothing: kept raw
                and len(value) == len(self.threads)
            ):
                metadata = value
            elif note.owner == NoteOwner.ADDRABLE_BITS and value is not None and bits is None:
                bits = value
            elif (
                note.owner == NoteOwner.MAIN_BIN_SPEC
                and value is not None
                and main is None
                # 0 (unknown) is what macMiniDump writes for a user process's executable
                and value.type in (notes.MainBinType.UNKNOWN, notes.MAIN_BIN_TYPE)
                and (value.address is not None or value.slide is not None)
            ):
                main = value
            elif note.owner == NoteOwner.ALL_IMAGE_INFOS and value is not None and not seen_infos:
                seen_infos = True
                images[:0] = value
            elif note.owner == NoteOwner.LOAD_BINARY and value is not None:
                images.append(value)
            elif (
                note.owner == NoteOwner.MEMORY_SELECTION and value is not None and selection is None
            ):
                selection = value
            else:
                raw_notes.append(
                    RawItem(
                        "macho",
                        0,
                        bytes(buf[note.offset : note.offset + note.size]),
                        owner=note.owner,
                    )
                )
        if main is not None:
            images = _mark_main(images, main)

        threads = []
        for index, states in enumerate(self.threads):
            meta = metadata[index] if metadata else notes.ThreadMetadata(index)
            regsets = []
            raw_states = []
            seen: set[RegKind] = set()
            for state in states:
                if state.kind is not None and state.kind not in seen and state.values is not None:
                    seen.add(state.kind)
                    regsets.append(RegisterSet(state.kind, state.values))
                else:
                    data = bytes(buf[state.offset + 8 : state.offset + 8 + 4 * state.count])
                    raw_states.append(RawItem("macho", state.flavor, data))
            threads.append(
                Thread(
                    id=meta.id,
                    name=meta.name,
                    crashed=meta.crashed,
                    regsets=tuple(regsets),
                    raw_states=tuple(raw_states),
                )
            )
        return Snapshot(
            arch=self.arch,
            threads=tuple(threads),
            regions=tuple(self.regions),
            images=tuple(images),
            addressable_bits=bits,
            memory_selection=selection,
            raw_notes=tuple(raw_notes),
            raw_commands=tuple(raw_commands),
        )


def _mark_main(images: list[Image], main: notes.MainBinSpec) -> list[Image]:
    """Mark the image the main bin spec names: by UUID, or by address when it has none."""
    for i, image in enumerate(images):
        same_uuid = image.uuid == main.uuid
        same_place = main.address is None or image.load_address in (None, main.address)
        if same_uuid and (main.uuid is not None or same_place):
            images[i] = records.evolve(
                image,
                main=True,
                slide=main.slide,
                load_address=image.load_address if image.load_address is not None else main.address,
            )
            return images
    images.insert(
        0, Image(path="", uuid=main.uuid, load_address=main.address, slide=main.slide, main=True)
    )
    return images


def _name(enum: Any, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return f"{value:#x}"


def parse_macho(path: str | os.PathLike[str], private: bool = False) -> Snapshot:
    """Read a Mach-O core into a Snapshot whose memory stays in the (mmapped) file."""
    return MachOCore.open(path, private).snapshot()


def parse_macho_bytes(data: bytes) -> Snapshot:
    return MachOCore(data).snapshot()
