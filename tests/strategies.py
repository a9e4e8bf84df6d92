"""Hypothesis strategies that build valid Snapshots directly (no filtering).

Register sets are complete for the Mach-O flavors (a Mach-O core has a slot for every
one of them, so a parse gives back exactly what was rendered); images placed by address
carry no slide unless main (``all image infos`` has no field for one); images known only
by a slide come last (their ``load binary`` notes are read after ``all image infos``).
"""

from __future__ import annotations

import hypothesis.strategies as st

from macminidump.arch import Arch, RegKind
from macminidump.mach_flavors import MACH_ARCHES
from macminidump.macho import schema
from macminidump.macho.constants import LoadCommand, NoteOwner
from macminidump.macho.layout import FLAVORS
from macminidump.model import (
    AddressableBits,
    FileMapping,
    Image,
    ImageSegment,
    ProcessInfo,
    Protection,
    RawItem,
    Region,
    RegisterSet,
    SignalInfo,
    Snapshot,
    Thread,
)

U64 = st.integers(0, (1 << 64) - 1)
CPU = {arch: m.cputype for arch, m in MACH_ARCHES.items()}
protections = st.integers(0, 7).map(Protection)
# names as Mach-O stores them: 16 bytes, NUL padded (so no trailing NUL of their own)
names16 = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=16)


def macho_registers(arch: Arch, kind: RegKind) -> dict[str, int]:
    """Register name -> width in bytes, of the Mach-O flavor for ``kind``, in layout order."""
    flavor = dict(FLAVORS[arch])[kind]
    _, struct = schema.FLAVOR_STRUCTS[(int(CPU[arch]), int(flavor))]
    return {sc.name: sc.sizeof() for sc in struct.subcons if sc.name}


@st.composite
def register_sets(draw: st.DrawFn, arch: Arch) -> tuple[RegisterSet, ...]:
    sets = []
    for kind in (RegKind.GPR, RegKind.EXC, RegKind.FPR):
        if kind != RegKind.GPR and not draw(st.booleans()):
            continue
        values = {
            name: draw(st.integers(0, (1 << (8 * width)) - 1))
            for name, width in macho_registers(arch, kind).items()
        }
        sets.append(RegisterSet(kind, values))
    return tuple(sets)


def raw_states(arch: Arch) -> st.SearchStrategy[RawItem]:
    known = {int(f) for _, f in FLAVORS[arch]}
    return st.builds(
        RawItem,
        format=st.just("macho"),
        kind=st.integers(0, 64).filter(lambda f: f not in known),
        data=st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]),
    )


@st.composite
def threads(draw: st.DrawFn, arch: Arch) -> tuple[Thread, ...]:
    ids = draw(st.lists(U64, unique=True, max_size=4))
    crashed = draw(st.sampled_from([None, *range(len(ids))]))
    return tuple(
        Thread(
            id=tid,
            regsets=draw(register_sets(arch)),
            name=draw(st.none() | st.text(max_size=12)),
            crashed=i == crashed,
            raw_states=tuple(draw(st.lists(raw_states(arch), max_size=2))),
        )
        for i, tid in enumerate(ids)
    )


@st.composite
def regions(draw: st.DrawFn) -> tuple[Region, ...]:
    """Non-overlapping regions, in a random order (file order is not address order)."""
    out = []
    address = draw(st.integers(0, 1 << 40))
    for _ in range(draw(st.integers(0, 5))):
        address += draw(st.integers(0, 0x10000))
        data = draw(st.binary(min_size=1, max_size=300))
        protection = draw(protections)
        out.append(
            Region(
                address=address,
                data=data,
                protection=protection,
                max_protection=draw(st.just(protection) | protections),
                name=draw(st.just("") | names16),
            )
        )
        address += len(data)
    return tuple(draw(st.permutations(out)))


segments = st.builds(ImageSegment, names16, U64, U64)
paths = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=40)


@st.composite
def images(draw: st.DrawFn) -> tuple[Image, ...]:
    out = []
    has_main = draw(st.booleans())
    for i in range(draw(st.integers(0, 3))):
        main = has_main and i == 0
        load_address = draw(U64.filter(lambda v: v != (1 << 64) - 1))
        out.append(
            Image(
                path=draw(paths),
                uuid=draw(st.none() | st.uuids().filter(lambda u: u.int != 0)),
                load_address=load_address,
                slide=draw(st.none() | U64.filter(lambda v: v != (1 << 64) - 1)) if main else None,
                segments=tuple(draw(st.lists(segments, max_size=3))),
                main=main,
            )
        )
    # known only by a slide: written as `load binary` notes, read back after the others
    for _ in range(draw(st.integers(0, 2))):
        out.append(
            Image(
                path=draw(paths),
                uuid=draw(st.none() | st.uuids().filter(lambda u: u.int != 0)),
                slide=draw(U64.filter(lambda v: v != (1 << 64) - 1)),
            )
        )
    return tuple(out)


modeled_owners = {o.value for o in NoteOwner}
raw_notes = st.builds(
    RawItem,
    format=st.just("macho"),
    kind=st.just(0),
    data=st.binary(max_size=64),
    owner=names16.filter(lambda o: o not in modeled_owners),
)
modeled_commands = {LoadCommand.LC_THREAD, LoadCommand.LC_NOTE, LoadCommand.LC_SEGMENT_64}
raw_commands = st.builds(
    RawItem,
    format=st.just("macho"),
    kind=st.integers(0, 0xFFFFFFFF).filter(lambda c: c not in modeled_commands),
    data=st.binary(max_size=64),
)
addressable_bits = st.builds(AddressableBits, st.integers(1, 64), st.integers(1, 64))


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    arch = draw(st.sampled_from(list(Arch)))
    return Snapshot(
        arch=arch,
        threads=draw(threads(arch)),
        regions=draw(regions()),
        images=draw(images()),
        addressable_bits=draw(st.none() | addressable_bits),
        raw_notes=tuple(draw(st.lists(raw_notes, max_size=2))),
        raw_commands=tuple(draw(st.lists(raw_commands, max_size=2))),
    )


# --------------------------------------------------------------------------- ELF cores


def _elf_imports():  # type: ignore[no-untyped-def]
    from macminidump.elf import schema as elf_schema
    from macminidump.elf.constants import CoreNoteType
    from macminidump.linux_abi import FAULT_SIGNALS

    return elf_schema, FAULT_SIGNALS, CoreNoteType


def _elf_fpr_widths() -> dict[str, int]:
    from macminidump.arch import arch_info
    from macminidump.linux_abi import X86_64_FPREGS

    table = arch_info(Arch.X86_64).registers[RegKind.FPR]
    return {name: table[name] for name in X86_64_FPREGS}


@st.composite
def elf_threads(draw: st.DrawFn, crashed: bool) -> tuple[Thread, ...]:
    """Complete user_regs_struct gpr sets, fxsave fpr sets or none, an XSAVE area or none,
    raw notes of unknown types per thread; the crashed thread first, as ELF orders them."""
    from macminidump.elf.notes import default_owner
    from macminidump.linux_abi import X86_64_USER_REGS

    _, _, note_type = _elf_imports()
    modeled = {int(t) for t in note_type}
    count = draw(st.integers(1 if crashed else 0, 4))
    ids = draw(st.lists(st.integers(1, 0x7FFFFFFF), unique=True, min_size=count, max_size=count))
    fpr_widths = _elf_fpr_widths()
    out = []
    for i, tid in enumerate(ids):
        regsets = [RegisterSet(RegKind.GPR, {n: draw(U64) for n in X86_64_USER_REGS})]
        if draw(st.booleans()):
            regsets.append(
                RegisterSet(
                    RegKind.FPR,
                    {n: draw(st.integers(0, (1 << (8 * w)) - 1)) for n, w in fpr_widths.items()},
                )
            )
        xsave = draw(st.one_of(st.none(), st.binary(max_size=96)))
        raw = draw(
            st.lists(
                st.builds(
                    RawItem,
                    format=st.just("elf"),
                    kind=st.integers(0, 0xFFFFFFFF).filter(lambda k: k not in modeled),
                    data=st.binary(max_size=40),
                    owner=st.sampled_from(["", "LINUX"]),
                ).filter(lambda r: r.owner != default_owner(r.kind)),
                max_size=2,
            )
        )
        out.append(
            Thread(
                id=tid,
                regsets=tuple(regsets),
                crashed=crashed and i == 0,
                raw_states=raw,
                xsave=xsave,
            )
        )
    return tuple(out)


_text_no_nul = st.characters(exclude_categories=["Cs"], exclude_characters="\0")


def _fits(limit: int) -> st.SearchStrategy[str]:
    return st.text(_text_no_nul, max_size=limit).filter(lambda s: len(s.encode()) <= limit)


_i32 = st.integers(-(1 << 31), (1 << 31) - 1)
process_infos = st.builds(
    ProcessInfo,
    pid=_i32,
    ppid=_i32,
    pgrp=_i32,
    sid=_i32,
    uid=st.integers(0, (1 << 32) - 1),
    gid=st.integers(0, (1 << 32) - 1),
    name=_fits(15),
    args=_fits(79),
)


@st.composite
def signal_infos(draw: st.DrawFn) -> SignalInfo:
    _, fault_signals, _ = _elf_imports()
    signo = draw(st.integers(1, 64))
    code = draw(st.integers(-(1 << 31), (1 << 31) - 1) | st.sampled_from([0, 1, 2, 0x80, -6]))
    fault = signo in fault_signals and code > 0
    return SignalInfo(
        signo=signo,
        code=code,
        errno=draw(_i32),
        address=draw(U64) if fault else None,
    )


@st.composite
def file_mappings(draw: st.DrawFn) -> tuple[FileMapping, ...]:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, (1 << 63)))
        end = draw(st.integers(start + 1, 1 << 64))
        if end > (1 << 64) - 1:
            end = (1 << 64) - 1
        if end <= start:
            continue
        out.append(FileMapping(start, end, draw(st.integers(0, (1 << 40))) * 4096, draw(_fits(60))))
    return tuple(out)


@st.composite
def elf_regions(draw: st.DrawFn) -> tuple[Region, ...]:
    """ELF keeps protection only: no name, max_protection == protection."""
    return tuple(
        Region(address=r.address, data=r.data, protection=r.protection) for r in draw(regions())
    )


elf_raw_notes = st.builds(
    RawItem,
    format=st.just("elf"),
    kind=st.integers(0, 0xFFFFFFFF),
    data=st.binary(max_size=64),
    owner=st.sampled_from(["GDB", "GNU", "OTHER"]),
)

elf_raw_commands = st.builds(
    RawItem,
    format=st.just("elf"),
    kind=st.integers(0, 0xFFFFFFFF).filter(lambda k: k not in (1, 4)),
    data=st.binary(min_size=52, max_size=52),
)


@st.composite
def elf_snapshots(draw: st.DrawFn) -> Snapshot:
    """Snapshots an ELF core holds exactly: x86_64, no images, thread names or exc sets;
    a crash is a signal and its thread, first."""
    crashed = draw(st.booleans())
    return Snapshot(
        arch=Arch.X86_64,
        threads=draw(elf_threads(crashed)),
        regions=draw(elf_regions()),
        process=draw(st.none() | process_infos),
        signal=draw(signal_infos()) if crashed else None,
        auxv=draw(st.lists(st.tuples(st.integers(1, (1 << 64) - 1), U64), max_size=6)),
        file_mappings=draw(file_mappings()),
        raw_notes=tuple(draw(st.lists(elf_raw_notes, max_size=2))),
        raw_commands=tuple(draw(st.lists(elf_raw_commands, max_size=2))),
    )
