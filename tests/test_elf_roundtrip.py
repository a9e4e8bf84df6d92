"""ELF cores: Snapshot → bytes → Snapshot and bytes → Snapshot → bytes are identities."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import pytest
import strategies
from hypothesis import HealthCheck, given, settings

from macminidump.elf.constants import CoreNoteType, NoteOwner
from macminidump.elf.layout import layout_elf
from macminidump.elf.parse import ElfCore, parse_elf, parse_elf_bytes
from macminidump.elf.render import render_elf, render_elf_bytes
from macminidump.errors import ModelError, ParseError, RenderError
from macminidump.macho.render import render_macho_bytes
from macminidump.model import ProcessInfo, RawItem, Region, SignalInfo, Snapshot, Thread
from macminidump.spec import dump_spec, snapshot_from_spec, spec_from_snapshot

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(strategies.elf_snapshots())
def test_snapshot_to_bytes_to_snapshot_is_identity(snapshot: Snapshot) -> None:
    assert parse_elf_bytes(render_elf_bytes(snapshot)) == snapshot


@SETTINGS
@given(strategies.elf_snapshots())
def test_bytes_to_snapshot_to_bytes_is_identity(snapshot: Snapshot) -> None:
    core = render_elf_bytes(snapshot)
    assert render_elf_bytes(parse_elf_bytes(core)) == core


@SETTINGS
@given(strategies.elf_snapshots())
def test_spec_round_trip_is_identity(snapshot: Snapshot) -> None:
    import yaml

    assert snapshot_from_spec(spec_from_snapshot(snapshot, "elf")) == snapshot
    assert snapshot_from_spec(yaml.safe_load(dump_spec(snapshot, "elf"))) == snapshot


@settings(max_examples=20, deadline=None)
@given(strategies.elf_snapshots())
def test_file_and_memory_renderers_agree(snapshot: Snapshot) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "core")
        size = render_elf(snapshot, path)
        with open(path, "rb") as f:
            data = f.read()
        assert size == len(data) and data == render_elf_bytes(snapshot)
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert parse_elf(path) == snapshot
        assert os.listdir(d) == ["core"]


@SETTINGS
@given(strategies.elf_snapshots())
def test_note_order_is_the_kernels(snapshot: Snapshot) -> None:
    """Thread 0: PRSTATUS, PRPSINFO, SIGINFO, AUXV, FILE, FPREGSET, X86_XSTATE, raw;
    others: PRSTATUS, FPREGSET, X86_XSTATE, raw. Every thread's notes follow its own
    PRSTATUS (LLDB reads by position)."""
    layout = layout_elf(snapshot)
    kinds = [n.type for n in layout.notes[len(snapshot.raw_notes) :]]
    process = [
        t
        for t, present in (
            (CoreNoteType.NT_PRPSINFO, snapshot.process is not None),
            (CoreNoteType.NT_SIGINFO, snapshot.signal is not None),
            (CoreNoteType.NT_AUXV, bool(snapshot.auxv)),
            (CoreNoteType.NT_FILE, bool(snapshot.file_mappings)),
        )
        if present
    ]
    expected: list[int] = []
    for i, thread in enumerate(snapshot.threads):
        expected.append(CoreNoteType.NT_PRSTATUS)
        if i == 0:
            expected += process
        if thread.regset("fpr"):
            expected.append(CoreNoteType.NT_FPREGSET)
        if thread.xsave is not None:
            expected.append(CoreNoteType.NT_X86_XSTATE)
        expected += [r.kind for r in thread.raw_states]
    if not snapshot.threads:
        expected = [*process]
    assert kinds == expected


@SETTINGS
@given(strategies.elf_snapshots())
def test_memory_reads_match_regions(snapshot: Snapshot) -> None:
    parsed = parse_elf_bytes(render_elf_bytes(snapshot))
    for region in snapshot.regions:
        assert parsed.memory.read(region.address, region.size) == region.data.read(0, region.size)


def _thread(tid: int, crashed: bool = False) -> Thread:
    return Thread(id=tid, crashed=crashed, regsets={"gpr": {"rip": 0x1000, "rsp": 0x2000}})


def test_crashed_thread_goes_first_and_signal_on_every_thread() -> None:
    snap = Snapshot(
        arch="x86_64",
        threads=[_thread(10), _thread(11, crashed=True), _thread(12)],
        signal=SignalInfo(signo=11, code=1, address=0),
        process=ProcessInfo(pid=10, ppid=1, name="prog", args="prog -x"),
    )
    core = ElfCore(render_elf_bytes(snap))
    prstatus = [n.decoded for n in core.notes if n.type == CoreNoteType.NT_PRSTATUS]
    assert [p.pid for p in prstatus] == [11, 10, 12]
    assert all(p.cursig == 11 and p.si_signo == 11 for p in prstatus)
    assert all(p.ppid == 1 for p in prstatus)
    parsed = core.snapshot()
    assert parsed.crashed_thread is not None and parsed.crashed_thread.id == 11
    assert parsed.signal == snap.signal and parsed.process == snap.process


def test_long_process_strings_are_cut_as_the_kernel_cuts() -> None:
    snap = Snapshot(
        arch="x86_64",
        process=ProcessInfo(name="a-very-long-process-name", args="x" * 200),
    )
    parsed = parse_elf_bytes(render_elf_bytes(snap))
    assert parsed.process is not None
    assert parsed.process.name == "a-very-long-pro" and parsed.process.args == "x" * 79


@pytest.mark.parametrize(
    "snapshot, message",
    [
        (Snapshot(arch="arm64"), "x86_64 only"),
        (Snapshot(arch="x86_64", threads=[_thread(1 << 40)]), "int32"),
        (
            Snapshot(
                arch="x86_64",
                threads=[Thread(id=1, regsets={"gpr": {}, "exc": {"trapno": 14}})],
            ),
            "trapno has no slot",
        ),
        (
            Snapshot(
                arch="x86_64", threads=[Thread(id=1, regsets={"gpr": {}, "fpr": {"fpu_cs": 8}})]
            ),
            "fpu_cs has no slot",
        ),
        (Snapshot(arch="x86_64", auxv=[(0, 0), (6, 4096)]), "AT_NULL"),
        (Snapshot(arch="x86_64", signal=SignalInfo(signo=6, address=0x10)), "no fault address"),
        (Snapshot(arch="x86_64", raw_notes=[RawItem("macho", 0, b"", owner="x")]), "macho"),
        (Snapshot(arch="x86_64", raw_notes=[RawItem("elf", 1, b"")]), "NT_PRSTATUS"),
        (
            Snapshot(
                arch="x86_64",
                threads=[
                    Thread(id=1, regsets={"gpr": {}}, raw_states=[RawItem("elf", 0x202, b"")])
                ],
            ),
            "read back as the thread's xsave",
        ),
    ],
)
def test_impossible_cores_raise_render_error(snapshot: Snapshot, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_elf_bytes(snapshot)


def test_xsave_is_the_threads_x86_xstate_note() -> None:
    """A thread's XSAVE area is its NT_X86_XSTATE (owner LINUX) right after NT_FPREGSET; a
    second one stays raw; an XSAVE area is x86_64's; Mach-O cores have no place for it."""
    thread = Thread(
        id=7,
        regsets={"gpr": {"rip": 1}, "fpr": {"mxcsr": 0x1F80}},
        xsave=b"\x01" * 40,
        raw_states=[RawItem("elf", 0x202, b"\x02" * 8)],
    )
    snapshot = Snapshot(arch="x86_64", threads=[thread])
    notes = [(n.owner, n.type, n.desc) for n in layout_elf(snapshot).notes]
    assert notes == [
        ("CORE", CoreNoteType.NT_PRSTATUS, notes[0][2]),
        ("CORE", CoreNoteType.NT_FPREGSET, notes[1][2]),
        ("LINUX", CoreNoteType.NT_X86_XSTATE, b"\x01" * 40),
        ("LINUX", CoreNoteType.NT_X86_XSTATE, b"\x02" * 8),
    ]
    (again,) = parse_elf_bytes(render_elf_bytes(snapshot)).threads
    assert again.xsave == thread.xsave and again.raw_states == thread.raw_states
    with pytest.raises(ModelError, match="XSAVE"):
        Snapshot(arch="arm64", threads=[Thread(id=1, regsets={}, xsave=b"")])
    with pytest.raises(RenderError, match="XSAVE area has no place in a Mach-O core"):
        render_macho_bytes(snapshot)


def _sample_snapshot() -> Snapshot:
    return Snapshot(
        arch="x86_64",
        threads=[
            _thread(7, crashed=True),
            Thread(id=8, regsets={"gpr": {"rip": 0x1000}, "fpr": {"mxcsr": 0x1F80, "xmm0": 3}}),
        ],
        signal=SignalInfo(signo=11, code=1, address=0),
        process=ProcessInfo(pid=7, name="p"),
        auxv=[(6, 4096)],
        regions=[Region(address=0x2000, data=b"\x01" * 64)],
    )


def _sample() -> bytes:
    return render_elf_bytes(_sample_snapshot())


def _outcome(read: Callable[[bytes], object], data: bytes) -> str:
    try:
        read(data)
    except ParseError as e:
        return str(e)
    return "read"


def test_the_read_back_check_rejects_what_the_reader_rejects() -> None:
    """The renderer's check of a core without raw items (``ElfCore.read_back``) decodes
    less than the reader (not a thread's registers), and rejects the same files with the
    same error: every truncation and byte flip of a core's headers and notes."""
    check = ElfCore.read_back(_sample_snapshot())
    assert check is not ElfCore
    data = _sample()
    assert CoreNoteType.NT_FPREGSET in {note.type for note in ElfCore(data).notes}
    outcomes = set()
    for cut in range(0, len(data), 7):
        assert _outcome(check, data[:cut]) == _outcome(ElfCore, data[:cut])
    for i in range(len(data) - 64):
        for value in (0x01, 0xFF, 0x80):
            corrupt = bytearray(data)
            corrupt[i] ^= value
            outcome = _outcome(check, bytes(corrupt))
            assert outcome == _outcome(ElfCore, bytes(corrupt)), i
            outcomes.add(outcome.split("(")[0])
    assert "read" in outcomes
    assert any("NT_PRSTATUS of" in outcome for outcome in outcomes)


def test_every_truncation_is_one_parse_error() -> None:
    data = _sample()
    for cut in range(len(data)):
        try:
            parse_elf_bytes(data[:cut])
        except ParseError:
            pass


def test_every_byte_flip_is_parsed_or_one_parse_error() -> None:
    data = _sample()
    for i in range(len(data) - 64):  # the region's bytes are memory: any value parses
        for value in (0x00, 0xFF, 0x80):
            corrupt = bytearray(data)
            corrupt[i] ^= value or 0x01
            try:
                parse_elf_bytes(bytes(corrupt))
            except ParseError as e:
                assert e.offset is not None or e.message


def test_huge_claimed_sizes_fail_before_allocating() -> None:
    data = bytearray(_sample())
    # e_phnum = 0xfffe program headers cannot fit in the file
    data[56:58] = (0xFFFE).to_bytes(2, "little")
    with pytest.raises(ParseError, match="run past the end"):
        parse_elf_bytes(bytes(data))


def test_errors_name_the_offset() -> None:
    with pytest.raises(ParseError, match="at offset 0x0: not an ELF file"):
        parse_elf_bytes(b"\0" * 64)
    with pytest.raises(ParseError, match="32-bit"):
        parse_elf_bytes(b"\x7fELF\x01\x01" + bytes(58))


def test_unknown_owner_notes_stay_raw_and_are_written_back() -> None:
    snap = Snapshot(arch="x86_64", raw_notes=[RawItem("elf", 0xFF000000, b"<xml/>", owner="GDB")])
    parsed = parse_elf_bytes(render_elf_bytes(snap))
    assert parsed.raw_notes == snap.raw_notes
    assert NoteOwner.GDB.value == "GDB"
