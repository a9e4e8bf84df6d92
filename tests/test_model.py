"""Invalid Snapshots fail where they are built, with a message naming the problem."""

from __future__ import annotations

import uuid

import pytest

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
