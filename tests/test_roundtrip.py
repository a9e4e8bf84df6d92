"""Encode/decode round trips, one property per invariant."""

from __future__ import annotations

import os
from pathlib import Path

import strategies
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macminidump.macho.parse import parse_macho, parse_macho_bytes
from macminidump.macho.render import render_macho, render_macho_bytes
from macminidump.model import Region, Snapshot, content_of
from macminidump.spec import dump_spec, snapshot_from_spec, spec_from_snapshot
from macminidump.writer import CHUNK, GATHER_GAP, SegmentPlacement, write_placements

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(strategies.snapshots())
def test_snapshot_to_bytes_to_snapshot_is_identity(snapshot: Snapshot) -> None:
    assert parse_macho_bytes(render_macho_bytes(snapshot)) == snapshot


@SETTINGS
@given(strategies.snapshots())
def test_bytes_to_snapshot_to_bytes_is_identity(snapshot: Snapshot) -> None:
    core = render_macho_bytes(snapshot)
    assert render_macho_bytes(parse_macho_bytes(core)) == core


@SETTINGS
@given(strategies.snapshots())
def test_spec_round_trip_is_identity(snapshot: Snapshot) -> None:
    assert snapshot_from_spec(spec_from_snapshot(snapshot)) == snapshot


@SETTINGS
@given(strategies.snapshots())
def test_yaml_text_round_trip_is_identity(snapshot: Snapshot) -> None:
    import yaml

    assert snapshot_from_spec(yaml.safe_load(dump_spec(snapshot))) == snapshot


@settings(max_examples=20, deadline=None)
@given(strategies.snapshots())
def test_file_and_memory_renderers_agree(snapshot: Snapshot) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "core")
        size = render_macho(snapshot, path)
        with open(path, "rb") as f:
            data = f.read()
        assert size == len(data)
        assert data == render_macho_bytes(snapshot)
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert parse_macho(path) == snapshot
        assert os.listdir(d) == ["core"]  # no temporary file left behind


@SETTINGS
@given(strategies.snapshots())
def test_layout_alignment(snapshot: Snapshot) -> None:
    from macminidump.macho.layout import FIRST_SEGMENT_ALIGN, layout_macho

    layout = layout_macho(snapshot)
    for offset, _payload in layout.note_payloads:
        assert offset % 16 == 0
    # the first segment at LLDB's 4096-byte boundary, every other one right after it
    placements = layout.segments
    if placements:
        assert placements[0].offset % FIRST_SEGMENT_ALIGN == 0
        assert placements[0].offset - FIRST_SEGMENT_ALIGN < max(
            [len(layout.head)] + [o + len(p) for o, p in layout.note_payloads]
        )
    for a, b in zip(placements, placements[1:]):
        assert b.offset == a.offset + a.region.size
    ends = sorted(
        [(o, o + len(p)) for o, p in layout.note_payloads]
        + [(p.offset, p.offset + p.region.size) for p in layout.segments]
    )
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ends, ends[1:]))
    assert not ends or ends[0][0] >= len(layout.head)


def _page_aligned_copy(core: bytes, page: int) -> bytes:
    """``core`` with every segment's data moved to its own page, as the kernel lays them out."""
    import struct

    ncmds, sizeofcmds = struct.unpack_from("<II", core, 16)
    out = bytearray(core)
    moves = []
    position, end = 32, 32 + sizeofcmds
    for _ in range(ncmds):
        cmd, cmdsize = struct.unpack_from("<II", core, position)
        if cmd == 0x19:  # LC_SEGMENT_64
            fileoff, filesize = struct.unpack_from("<QQ", core, position + 40)
            moves.append((position, fileoff, filesize))
        position += cmdsize
    assert position == end
    offset = -(-len(core) // page) * page
    for command, fileoff, filesize in moves:
        struct.pack_into("<Q", out, command + 40, offset)
        out.extend(bytes(offset - len(out)) + core[fileoff : fileoff + filesize])
        offset = -(-(offset + filesize) // page) * page
    return bytes(out)


@SETTINGS
@given(strategies.snapshots())
def test_parser_reads_page_aligned_segments(snapshot: Snapshot) -> None:
    """The kernel's and LLDB's cores put segments on pages: read them as well as packed ones."""
    packed = render_macho_bytes(snapshot)
    aligned = _page_aligned_copy(packed, 0x4000)
    assert parse_macho_bytes(aligned) == snapshot


def test_small_example_core_is_small(tmp_path: Path) -> None:
    """288 bytes of memory must not make a 49 KB file (every region padded to 16 KiB)."""
    from macminidump.spec import load_spec

    example = Path(__file__).parent.parent / "formats" / "examples" / "arm64-crash.yaml"
    size = render_macho(load_spec(example), tmp_path / "core")
    assert size <= 8 * 1024


def test_thousand_thread_core_within_twice_its_elf_twin(tmp_path: Path) -> None:
    """One small stack per thread: Mach-O and ELF cores hold the same bytes, so sizes agree."""
    from macminidump.elf.render import render_elf
    from macminidump.testing.synthetic import thread_spec

    spec = thread_spec(threads=1000, regions=10000)
    macho = render_macho(snapshot_from_spec(dict(spec, format="macho")), tmp_path / "m")
    elf = render_elf(snapshot_from_spec(dict(spec, format="elf")), tmp_path / "e")
    assert macho <= 2 * elf, (macho, elf)


@SETTINGS
@given(strategies.snapshots())
def test_memory_reads_match_regions(snapshot: Snapshot) -> None:
    parsed = parse_macho_bytes(render_macho_bytes(snapshot))
    for region in snapshot.regions:
        data = region.data.read(0, region.size)
        assert parsed.memory.read(region.address, region.size) == data
        assert parsed.memory.region_at(region.end - 1) is not None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.snapshots())
def test_independent_readers_accept_every_core(snapshot: Snapshot) -> None:
    """LIEF and macholib, two Mach-O readers that share no code with this one.

    Raw load commands are left out: they are another file's commands passed through,
    and the strategy draws any command number, which both readers rightly reject.
    """
    import tempfile

    from macminidump import records

    snapshot = records.evolve(snapshot, raw_commands=())

    import lief
    from macholib.MachO import MachO

    lief.logging.disable()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "core")
        render_macho(snapshot, path)
        parsed = lief.parse(path)
        assert isinstance(parsed, lief.MachO.Binary), "lief rejects the core"
        assert parsed.header.file_type == lief.MachO.Header.FILE_TYPE.CORE
        ncmds = 0 if not parsed.commands else len(parsed.commands)
        header = MachO(path).headers[0]
        assert ncmds == parsed.header.nb_cmds == header.header.ncmds == len(header.commands)
        segments = [c for c in parsed.commands if isinstance(c, lief.MachO.SegmentCommand)]
        assert sorted(s.virtual_address for s in segments) == sorted(
            r.address for r in snapshot.regions
        )


@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 7, 4096, CHUNK // 4, CHUNK // 4 + 1, CHUNK // 2, 9000]),
            st.sampled_from([0, 0, 1, 100, GATHER_GAP, GATHER_GAP + 1, 70000]),
        ),
        min_size=1,
        max_size=24,
    ),
    st.integers(0, 5000),
)
@settings(max_examples=60, deadline=None)
def test_write_placements_puts_every_byte_once(sizes_and_gaps: list, start: int) -> None:
    """Gathering neighbours into one write changes no byte: each region's bytes land at
    its offset, zeros between, and no two writes overlap."""
    placements, offset = [], start
    for i, (size, gap) in enumerate(sizes_and_gaps):
        data = bytes([i + 1]) * size
        placements.append(SegmentPlacement(Region(address=i << 32, data=data), offset))
        offset += size + gap
    out, writes = bytearray(offset), []

    def pwrite(data: bytes | memoryview, at: int) -> None:
        writes.append((at, len(data)))
        out[at : at + len(data)] = data

    write_placements(pwrite, placements)
    expected = bytearray(offset)
    for p in placements:
        expected[p.offset : p.offset + p.region.size] = content_of(p.region.data)
    assert out == expected
    ordered = sorted(writes)
    assert all(a + n <= b for (a, n), (b, _) in zip(ordered, ordered[1:]))
