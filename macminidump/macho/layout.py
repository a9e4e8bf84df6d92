"""Snapshot → Layout: every byte of a Mach-O core except bulk memory, and where it all goes.

A pure function. Command sizes never depend on offsets, so offsets are computed once,
and the renderer and the load commands read the same immutable Layout.

File order: header, load commands (threads, notes, segments, raw commands), note payloads
(16-byte aligned), then segment data: the first at a 4096-byte boundary, the rest back to
back, as LLDB's own writer lays them out.
"""

from __future__ import annotations

import functools
import itertools
import operator
import struct
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .. import memory_note, records
from ..arch import Arch, RegKind
from ..errors import RenderError
from ..mach_flavors import MACH_ARCHES
from ..model import Region, Snapshot, Thread
from ..schema_io import build
from ..writer import CoreCost, SegmentPlacement, align
from . import codec, notes, schema
from .constants import (
    MH_MAGIC_64,
    X86_WRAPPER_OF,
    ArmFlavor,
    FileType,
    LoadCommand,
    NoteOwner,
    X86Flavor,
)

#: arch -> (cputype, cpusubtype)
CPU = {arch: (m.cputype, m.cpusubtype) for arch, m in MACH_ARCHES.items()}

#: The flavors written per register kind, in the order written. GPR must come first:
#: LLDB 16 reads only the first recognized x86_64 flavor.
FLAVORS: dict[Arch, tuple[tuple[RegKind, int], ...]] = {
    Arch.ARM64: (
        (RegKind.GPR, ArmFlavor.THREAD_STATE64),
        (RegKind.EXC, ArmFlavor.EXCEPTION_STATE64),
        (RegKind.FPR, ArmFlavor.NEON_STATE64),
    ),
    Arch.X86_64: (
        (RegKind.GPR, X86Flavor.THREAD_STATE64),
        (RegKind.FPR, X86Flavor.FLOAT_STATE64),
        (RegKind.EXC, X86Flavor.EXCEPTION_STATE64),
    ),
}

#: Flavors written inside xnu's wrapper (see X86_WRAPPER_OF). LLVM's object tools reject
#: a bare x86_FLOAT_STATE64 ("unknown flavor (5)") and accept x86_FLOAT_STATE; LLDB 23
#: steps over a wrapper it does not read and on to the exception state, but reads no
#: registers from a wrapped GPR state (x86_THREAD_STATE) and skips a wrapped exception
#: state (x86_EXCEPTION_STATE), so those two stay bare (both tools accept them bare).
WRAPPED = frozenset({(Arch.X86_64, X86Flavor.FLOAT_STATE64)})

HEADER_SIZE = 32
NOTE_ALIGN = 16
#: LLDB's writer (``ObjectFileMachO::SaveCore``) starts segment data at a 4096-byte
#: boundary on every architecture, then packs the segments back to back. LLDB 16 and 23,
#: LIEF, macholib and llvm-objdump 16 all read segments at any byte offset (checked by
#: tests/test_roundtrip.py and tests/test_lldb_macho.py), so nothing pads a segment to a
#: page: a core of many small regions stays small (formats/macho-core.md).
FIRST_SEGMENT_ALIGN = 0x1000

_SEGMENT = codec.SEGMENT.struct
_LOAD_COMMAND = codec.LOAD_COMMAND.struct
_LC_THREAD = int(LoadCommand.LC_THREAD)
_LC_SEGMENT_64 = int(LoadCommand.LC_SEGMENT_64)
_DATA_SIZE = operator.attrgetter("data.size")
_NAME = operator.attrgetter("name")
_ADDRESS = operator.attrgetter("address")
_PROTECTION = operator.attrgetter("protection")
_MAX_PROTECTION = operator.attrgetter("max_protection")


@records.frozen
class Layout:
    #: header and every load command, contiguous from offset 0
    head: bytes
    #: (file offset, payload) of each note
    note_payloads: tuple[tuple[int, bytes], ...]
    segments: tuple[SegmentPlacement, ...]
    file_size: int


class _FlavorPlan(NamedTuple):
    """How one register kind of an architecture is written (worked out once per arch)."""

    kind: RegKind
    flavor: int
    names: tuple[str, ...]
    #: every slot at 0: a register set not given in full is completed with zeros
    zeros: dict[str, int]
    #: the state's values in slot order, from a dict holding every name
    take: Callable[[Mapping[str, int]], tuple[int, ...]]
    flat: codec.FlatCodec | None
    decl: Any
    #: the state's header (flavor, count), inside its wrapper's header when wrapped
    header: bytes


@functools.cache
def _flavor_plans(arch: Arch) -> tuple[_FlavorPlan, ...]:
    cputype = int(CPU[arch][0])
    plans = []
    for kind, flavor in FLAVORS[arch]:
        _, flat, decl, size = codec.FLAVORS[(cputype, int(flavor))]
        names = tuple(sc.name for sc in decl.subcons if sc.name)
        header = codec.THREAD_STATE_HEADER.pack(dict(flavor=int(flavor), count=size // 4))
        if (arch, flavor) in WRAPPED:
            wrapper = X86_WRAPPER_OF[X86Flavor(flavor)]
            count = (len(header) + size) // 4
            header = codec.THREAD_STATE_HEADER.pack(dict(flavor=int(wrapper), count=count)) + header
        take = operator.itemgetter(*names)
        plans.append(
            _FlavorPlan(kind, int(flavor), names, dict.fromkeys(names, 0), take, flat, decl, header)
        )
    return tuple(plans)


def thread_command(arch: Arch, thread: Thread) -> bytes:
    body = bytearray()
    for plan in _flavor_plans(arch):
        values = thread.regset(plan.kind)
        # every thread gets a GPR flavor (a thread without one is invisible to LLDB)
        if not values and plan.kind != RegKind.GPR:
            continue
        for name in values.keys() - plan.zeros.keys():
            # registers of another format (e.g. Linux's fs_base) have no slot here
            if values[name]:
                raise RenderError(
                    f"thread {thread.id:#x}: register {name} has no slot in a Mach-O core"
                )
        fields = {**plan.zeros, **values}
        what = f"thread {thread.id:#x}: {plan.kind} registers"
        try:
            if plan.flat is not None:
                try:
                    state = plan.flat.struct.pack(*plan.take(fields))
                except struct.error:
                    state = plan.flat.pack(fields)  # raises, naming the field
            else:
                state = build(plan.decl, fields, what)
        except ValueError as e:
            raise RenderError(f"{what}: {e}") from None
        body += plan.header
        body += state
    if thread.xsave is not None:
        # (x86_AVX_STATE64 and friends hold it in another layout: not written yet)
        raise RenderError(f"thread {thread.id:#x}: its XSAVE area has no place in a Mach-O core")
    for raw in thread.raw_states:
        if raw.format != "macho" or len(raw.data) % 4:
            raise RenderError(f"thread {thread.id:#x}: raw state {raw.kind} is not a Mach-O flavor")
        body += codec.THREAD_STATE_HEADER.pack(dict(flavor=raw.kind, count=len(raw.data) // 4))
        body += raw.data
    return _LOAD_COMMAND.pack(_LC_THREAD, 8 + len(body)) + body


def _note_plan(snapshot: Snapshot) -> list[tuple[str, int, object]]:
    """(owner, payload size, payload or a function of its offset) for each note, in order.

    A raw note kept from a parsed file replaces the note of the same owner this module
    would generate, so a foreign note this package could not model is not shadowed.
    """
    raw_owners = {raw.owner for raw in snapshot.raw_notes}
    plan: list[tuple[str, int, object]] = []

    def add(owner: NoteOwner, payload: object, size: int | None = None) -> None:
        if owner.value not in raw_owners:
            assert isinstance(payload, bytes) or size is not None
            plan.append((owner.value, len(payload) if size is None else size, payload))  # type: ignore[arg-type]

    if snapshot.addressable_bits is not None:
        add(NoteOwner.ADDRABLE_BITS, notes.encode_addressable_bits(snapshot.addressable_bits))
    if snapshot.threads:
        add(
            NoteOwner.PROCESS_METADATA,
            notes.encode_process_metadata(
                [notes.ThreadMetadata(t.id, t.name, t.crashed) for t in snapshot.threads]
            ),
        )
    main = snapshot.main_image
    if main is not None:
        add(NoteOwner.MAIN_BIN_SPEC, notes.encode_main_bin_spec(main))
    # Images placed by address or segments go in `all image infos`; one known only by its
    # slide has no slot there and gets a `load binary` note (as yaml2macho-core writes).
    placed = tuple(i for i in snapshot.images if i.load_address is not None or i.segments)
    if placed:
        add(
            NoteOwner.ALL_IMAGE_INFOS,
            lambda offset: notes.encode_all_image_infos(placed, offset),
            notes.all_image_infos_size(placed),
        )
    for image in snapshot.images:
        if image not in placed:
            payload = notes.encode_load_binary(image)
            plan.append((NoteOwner.LOAD_BINARY.value, len(payload), payload))
    if snapshot.memory_selection is not None:
        add(NoteOwner.MEMORY_SELECTION, memory_note.encode(snapshot.memory_selection))
    for raw in snapshot.raw_notes:
        if raw.format != "macho":
            raise RenderError(f"note {raw.owner!r} came from a {raw.format} file")
        if len(raw.owner.encode("latin-1", "replace")) > 16 or raw.owner.endswith("\0"):
            raise RenderError(f"note owner {raw.owner!r} does not fit in 16 bytes")
        plan.append((raw.owner, len(raw.data), raw.data))
    return plan


def _pack(flat: codec.FlatCodec, what: str, values: dict[str, Any]) -> bytes:
    try:
        return flat.pack(values)
    except ValueError as e:
        raise RenderError(f"{what}: {e}") from None


def layout_macho(snapshot: Snapshot) -> Layout:
    threads = [thread_command(snapshot.arch, t) for t in snapshot.threads]
    plan = _note_plan(snapshot)
    raw_commands = []
    for raw in snapshot.raw_commands:
        if raw.format != "macho":
            raise RenderError(f"load command {raw.kind:#x} came from a {raw.format} file")
        raw_commands.append(
            _pack(
                codec.LOAD_COMMAND,
                f"load command {raw.kind:#x}",
                dict(cmd=raw.kind, cmdsize=8 + len(raw.data)),
            )
            + raw.data
        )
    seg_size = codec.SEGMENT.size
    note_size = codec.NOTE.size
    sizeofcmds = (
        sum(map(len, threads))
        + note_size * len(plan)
        + seg_size * len(snapshot.regions)
        + sum(map(len, raw_commands))
    )
    ncmds = len(threads) + len(plan) + len(snapshot.regions) + len(raw_commands)

    offset = align(HEADER_SIZE + sizeofcmds, NOTE_ALIGN)
    note_cmds = bytearray()
    payloads = []
    for owner, size, payload in plan:
        data = payload(offset) if callable(payload) else payload
        assert isinstance(data, bytes) and len(data) == size, owner
        note_cmds += _pack(
            codec.NOTE,
            f"note {owner!r}",
            dict(
                cmd=LoadCommand.LC_NOTE,
                cmdsize=note_size,
                data_owner=owner,
                offset=offset,
                size=size,
            ),
        )
        payloads.append((offset, data))
        offset = align(offset + size, NOTE_ALIGN)

    offset = align(offset, FIRST_SEGMENT_ALIGN)
    seg_cmds, placements, offset = _segments(snapshot.regions, offset)
    end = max([HEADER_SIZE + sizeofcmds, offset if placements else 0])
    end = max([end] + [o + len(d) for o, d in payloads])

    cputype, cpusubtype = CPU[snapshot.arch]
    header = build(
        schema.mach_header_64,
        dict(
            magic=MH_MAGIC_64,
            cputype=cputype,
            cpusubtype=cpusubtype,
            filetype=FileType.CORE,
            ncmds=ncmds,
            sizeofcmds=sizeofcmds,
            flags=0,
            reserved=0,
        ),
    )
    head = header + b"".join(threads) + bytes(note_cmds) + seg_cmds + b"".join(raw_commands)
    assert len(head) == HEADER_SIZE + sizeofcmds
    return Layout(head, tuple(payloads), tuple(placements), end)


def _segments(
    regions: tuple[Region, ...], offset: int
) -> tuple[bytes, list[SegmentPlacement], int]:
    """The LC_SEGMENT_64 commands of ``regions``, their data packed back to back from
    ``offset``, and where the data ends. Packed in bulk (10,000 regions in a large spec);
    a region the bulk pack refuses (a name that does not fit, say) is packed on its own
    through the declaration's codec, which names the field."""
    sizes = list(map(_DATA_SIZE, regions))
    offsets = list(itertools.accumulate(sizes, initial=offset))
    end = offsets.pop()
    names = list(map(_NAME, regions))
    try:
        if any(names):
            raise ValueError("named segments are packed one by one")
        count = len(regions)
        commands = b"".join(
            map(
                _SEGMENT.pack,
                itertools.repeat(_LC_SEGMENT_64, count),
                itertools.repeat(_SEGMENT.size, count),
                itertools.repeat(b"", count),
                map(_ADDRESS, regions),
                sizes,  # vmsize == filesize: for a larger vmsize LLDB serves the next file bytes
                offsets,
                sizes,
                map(_MAX_PROTECTION, regions),
                map(_PROTECTION, regions),
                itertools.repeat(0, count),
                itertools.repeat(0, count),
            )
        )
    except (struct.error, ValueError):
        commands = b"".join(map(_segment_command, regions, offsets))
    return commands, list(map(SegmentPlacement, regions, offsets)), end


def _segment_command(region: Region, offset: int) -> bytes:
    size = region.data.size
    try:
        return codec.SEGMENT.pack(
            dict(
                cmd=_LC_SEGMENT_64,
                cmdsize=_SEGMENT.size,
                segname=region.name,
                vmaddr=region.address,
                vmsize=size,
                fileoff=offset,
                filesize=size,
                maxprot=int(region.max_protection),
                initprot=int(region.protection),
                nsects=0,
                flags=0,
            )
        )
    except ValueError as e:
        raise RenderError(f"region at {region.address:#x}: {e}") from None


def core_cost(skeleton: Snapshot) -> CoreCost:
    """The cost model a size budget needs (capture/policy.py): ``skeleton`` is the core
    without memory; each region adds a segment command and its bytes, packed (the
    commands may push the first segment one boundary further)."""
    fixed = layout_macho(skeleton).file_size + 2 * FIRST_SEGMENT_ALIGN
    return CoreCost(fixed, codec.SEGMENT.size, 1)
