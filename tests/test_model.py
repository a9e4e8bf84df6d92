"""Invalid Snapshots fail where they are built, with a message naming the problem."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macminidump import (
    AddressableBits,
    BufferSource,
    Image,
    ModelError,
    Protection,
    Region,
    Snapshot,
    Thread,
)


def test_overlapping_regions_are_rejected() -> None:
    with pytest.raises(ModelError, match=r"regions overlap: \[0x1000, 0x1010\) and \[0x100f"):
        Snapshot(
            arch="arm64",
            regions=[Region(address=0x1000, data=bytes(16)), Region(address=0x100F, data=b"x")],
        )


def test_adjacent_regions_are_fine() -> None:
    s = Snapshot(
        arch="arm64",
        regions=[Region(address=0x1010, data=b"b"), Region(address=0x1000, data=bytes(16))],
    )
    assert s.memory.read(0x100F, 2) == b"\0b"


@pytest.mark.parametrize(
    ("arch", "regs", "message"),
    [
        ("arm64", {"gpr": {"rip": 1}}, "arm64 has no gpr register 'rip'"),
        ("x86_64", {"gpr": {"pc": 1}}, "x86_64 has no gpr register 'pc'"),
        ("arm64", {"exc": {"esr": 1 << 32}}, "esr = 4294967296 does not fit in 4 bytes"),
        ("arm64", {"gpr": {"x0": -1}}, "x0 = -1 does not fit"),
    ],
)
def test_bad_registers_are_rejected(arch: str, regs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        Snapshot(arch=arch, threads=[Thread(id=1, regsets=regs)])


def test_seventeen_byte_uuid_is_rejected() -> None:
    with pytest.raises(ModelError, match="a UUID is 16 bytes, not 17"):
        Image(path="/bin/x", uuid=b"\1" * 17, load_address=0x1000)
    assert Image(path="x", uuid=str(uuid.UUID(int=5)), slide=0).uuid == uuid.UUID(int=5)


def test_other_invariants() -> None:
    with pytest.raises(ModelError, match="two threads have id 0x7"):
        Snapshot(arch="arm64", threads=[Thread(id=7, regsets={}), Thread(id=7, regsets={})])
    with pytest.raises(ModelError, match="more than one thread is marked crashed"):
        Snapshot(
            arch="arm64",
            threads=[
                Thread(id=1, regsets={}, crashed=True),
                Thread(id=2, regsets={}, crashed=True),
            ],
        )
    with pytest.raises(ModelError, match="more than one image is marked main"):
        Snapshot(
            arch="arm64",
            images=[Image(path="a", slide=0, main=True), Image(path="b", slide=0, main=True)],
        )
    with pytest.raises(ModelError, match="is empty"):
        Region(address=0, data=b"")
    with pytest.raises(ModelError, match="outside 0..2"):
        Region(address=(1 << 64) - 1, data=b"ab")
    with pytest.raises(ModelError, match="not of the form"):
        Region(address=0, data=b"a", protection="rwz")
    with pytest.raises(ModelError, match="no load address, slide or segments"):
        Image(path="x")
    with pytest.raises(ModelError, match="within 1..64"):
        AddressableBits(0, 47)
    with pytest.raises(ModelError, match="two register sets of one kind"):
        Thread(id=1, regsets=[*Thread(id=1, regsets={"gpr": {}}).regsets] * 2)


def test_protection_text_round_trip() -> None:
    for n in range(8):
        assert Protection.parse(Protection(n).text()) == Protection(n)
    assert Protection.parse("r-x") == Protection.READ | Protection.EXECUTE


def test_memory_reads_span_adjacent_regions_and_fail_on_gaps() -> None:
    buffer = bytearray(b"....hello world....")
    s = Snapshot(
        arch="x86_64",
        regions=[
            Region(address=0x2000, data=BufferSource(buffer, 4, 5)),
            Region(address=0x2005, data=b" world\0"),
            Region(address=0x3000, data=b"x"),
        ],
    )
    assert s.memory.read(0x2000, 11) == b"hello world"
    assert s.memory.read_cstring(0x2006) == "world"
    with pytest.raises(ModelError, match="0x200c is not in the core's memory"):
        s.memory.read(0x2000, 13)
    assert s.memory.region_at(0x1FFF) is None
    assert s.memory.region_at(0x3000) is not None


def test_register_sets_have_a_canonical_order() -> None:
    a = Thread(id=1, regsets={"exc": {"far": 1}, "gpr": {"pc": 2}})
    b = Thread(id=1, regsets={"gpr": {"pc": 2}, "exc": {"far": 1}})
    assert a == b and hash(a) == hash(b)
    assert [r.kind.value for r in a.regsets] == ["gpr", "exc"]


def test_a_snapshot_pickles() -> None:
    """capture_process() of the calling process hands the helper's Snapshot back pickled."""
    import pickle

    s = Snapshot(
        arch="arm64",
        threads=[Thread(id=7, name="main", regsets={"gpr": {"pc": 0x1000, "sp": 0x2000}})],
        regions=[Region(address=0x2000, data=b"stack")],
        images=[Image(path="/bin/x", load_address=0x1000, main=True)],
    )
    again = pickle.loads(pickle.dumps(s, pickle.HIGHEST_PROTOCOL))
    assert again == s and again.threads[0].gpr["pc"] == 0x1000
    assert again.memory.read(0x2000, 5) == b"stack"


class _Index:
    """Not an int, though ``struct`` packs it as one."""

    def __index__(self) -> int:
        return 5

    def __repr__(self) -> str:
        return "_Index()"


def _first_misfit(arch: str, threads: list[Thread]) -> str | None:
    """The message of the first register that is unknown or does not fit, by the rule."""
    from macminidump.arch import arch_info

    table = arch_info(arch).registers
    for t in threads:
        for regset in t.regsets:
            for name, value in regset.values.items():
                width = table[regset.kind].get(name)
                if width is None:
                    return f"thread {t.id:#x}: {arch} has no {regset.kind} register {name!r}"
                if not isinstance(value, int) or not 0 <= value < (1 << (8 * width)):
                    return f"thread {t.id:#x}: {name} = {value!r} does not fit in {width} bytes"
    return None


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_register_sets_are_checked_alike_at_once_and_one_by_one(data: st.DataObject) -> None:
    """A Snapshot checks every register set at once (``_all_registers_fit``: a kind's
    values in one list) and set by set only when that fails: it is refused exactly when
    a register is unknown or does not fit, with the message of the first such register."""
    from macminidump import model
    from macminidump.arch import Arch, RegKind, arch_info

    table = arch_info(Arch.X86_64).registers
    bad = st.sampled_from([-1, 1.0, "1", None, True, _Index()])
    # the names of each kind, mostly all of them (a capture's), shared by the threads
    kinds = {}
    for kind in (RegKind.GPR, RegKind.FPR):
        kinds[kind] = sorted(table[kind])
        if data.draw(st.integers(0, 3)) == 0:
            kinds[kind] = data.draw(st.lists(st.sampled_from(kinds[kind]), unique=True))
    threads = []
    for tid in range(1, data.draw(st.integers(1, 4)) + 1):
        regsets = {}
        for kind, names in kinds.items():
            values: dict[str, Any] = {
                name: data.draw(st.integers(0, (1 << (8 * table[kind][name])) - 1))
                for name in names
            }
            if names and data.draw(st.integers(0, 2)) == 0:
                name = data.draw(st.sampled_from(names))
                too_wide = 1 << (8 * table[kind][name])
                values[name] = data.draw(st.one_of(bad, st.just(too_wide)))
            if data.draw(st.integers(0, 7)) == 0:
                values["pc"] = 1
            regsets[kind] = values
        threads.append(Thread(id=tid, regsets=regsets))
    message = _first_misfit("x86_64", threads)
    if message is None:
        Snapshot(arch="x86_64", threads=threads)
    else:
        assert not model._all_registers_fit(Arch.X86_64, threads)
        with pytest.raises(ModelError) as raised:
            Snapshot(arch="x86_64", threads=threads)
        assert str(raised.value) == message


def test_full_register_sets_are_checked_at_once() -> None:
    from macminidump import model
    from macminidump.arch import Arch, RegKind, arch_info

    table = arch_info(Arch.X86_64).registers
    full = {kind: {name: (1 << (8 * w)) - 1 for name, w in table[kind].items()} for kind in table}
    threads = [Thread(id=tid, regsets=full) for tid in (1, 2, 3)]
    assert model._all_registers_fit(Arch.X86_64, threads)
    Snapshot(arch="x86_64", threads=threads)
    # a bool is an int (it fits, as the rule says), though not checked at once
    true = {**full, RegKind.GPR: {**full[RegKind.GPR], "rax": True}}
    assert not model._all_registers_fit(Arch.X86_64, [*threads, Thread(id=4, regsets=true)])
    Snapshot(arch="x86_64", threads=[*threads, Thread(id=4, regsets=true)])
    wide = {**full, RegKind.FPR: {**full[RegKind.FPR], "xmm5": 1 << 128}}
    threads.append(Thread(id=4, regsets=wide))
    assert not model._all_registers_fit(Arch.X86_64, threads)
    with pytest.raises(ModelError, match=r"thread 0x4: xmm5 = \d+ does not fit in 16 bytes"):
        Snapshot(arch="x86_64", threads=threads)
