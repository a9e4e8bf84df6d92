"""Properties of the Mach-O construct declarations in ``macminidump.macho.schema``."""

from __future__ import annotations

import statistics
import struct
import time
from typing import Any

import pytest
from construct import (
    BytesInteger,
    Const,
    ConstError,
    Construct,
    ConstructError,
    FormatField,
    Int32ul,
    Padded,
    Renamed,
    StreamError,
    StringError,
    Struct,
)
from hypothesis import given
from hypothesis import strategies as st

from macminidump.arch import Arch, RegKind, arch_info
from macminidump.macho import schema
from macminidump.macho.constants import (
    UINT64_MAX,
    ArmFlavor,
    CpuType,
    LoadCommand,
    NoteOwner,
    X86Flavor,
)
from macminidump.schema_io import fixed_format

# name -> documented size in bytes
FIXED_SIZES = {
    "mach_header_64": 32,
    "load_command": 8,
    "segment_command_64": 72,
    "section_64": 80,
    "note_command": 40,
    "uuid_command": 24,
    "thread_state_header": 8,
    "arm_thread_state64": 272,
    "arm_exception_state64": 16,
    "arm_neon_state64": 528,
    "x86_thread_state64": 168,
    "x86_float_state64": 524,
    "x86_exception_state64": 16,
    "note_version": 4,
    "main_bin_spec_v1": 40,
    "main_bin_spec_v2": 48,
    "all_image_infos_header": 24,
    "image_entry": 48,
    "segment_vmaddr": 32,
    "addrable_bits_v3": 16,
    "addrable_bits_v4": 16,
}
VARIABLE = ["load_binary_v1", "kern_ver_str", "thread_state_entry"]
ALL_STRUCTS = sorted(FIXED_SIZES) + VARIABLE
FIXED_FORMAT_STRUCTS = [
    "segment_command_64",
    "note_command",
    "image_entry",
    "segment_vmaddr",
    "mach_header_64",
]

# (cputype, flavor) -> count in 32-bit words, as LLDB expects it
FLAVOR_COUNTS = {
    (CpuType.ARM64, ArmFlavor.THREAD_STATE64): 68,
    (CpuType.ARM64, ArmFlavor.EXCEPTION_STATE64): 4,
    (CpuType.ARM64, ArmFlavor.NEON_STATE64): 132,
    (CpuType.X86_64, X86Flavor.THREAD_STATE64): 42,
    (CpuType.X86_64, X86Flavor.FLOAT_STATE64): 131,
    (CpuType.X86_64, X86Flavor.EXCEPTION_STATE64): 4,
}
ARCH_OF_CPU = {CpuType.ARM64: Arch.ARM64, CpuType.X86_64: Arch.X86_64}
# Mach keeps these narrower than arch.py, which also covers Linux's 64-bit fxsave fields
NARROWER_THAN_ARCH = {(Arch.X86_64, "fpu_ip"): 4, (Arch.X86_64, "fpu_dp"): 4}

_INT_BITS = {"B": 8, "H": 16, "I": 32, "L": 32, "Q": 64}


def decl(name: str) -> Any:
    return getattr(schema, name)


# ------------------------------------------------------------------------- strategies


def field_strategy(inner: Construct) -> st.SearchStrategy[Any]:
    if isinstance(inner, schema.Name16Adapter):
        return st.text(st.characters(max_codepoint=0xFF), max_size=16).filter(
            lambda s: not s.endswith("\0")
        )
    if isinstance(inner, schema.Utf8CStringAdapter):
        return st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))
    if type(inner) is FormatField:
        return st.integers(0, 2 ** _INT_BITS[inner.fmtstr[1]] - 1)
    if isinstance(inner, BytesInteger):
        return st.integers(0, 2 ** (8 * inner.length) - 1)
    if isinstance(inner.length, int):  # Bytes
        return st.binary(min_size=inner.length, max_size=inner.length)
    raise AssertionError(f"no strategy for {inner!r}")


def values(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for ``name``, without Const fields (build fills them in)."""
    if name == "thread_state_entry":
        return st.builds(
            lambda flavor, words: {"flavor": flavor, "count": len(words) // 4, "state": words},
            st.integers(0, 2**32 - 1),
            st.integers(0, 140).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
        )
    fields = {}
    for sc in decl(name).subcons:
        if isinstance(sc, Renamed) and not isinstance(sc.subcon, Const):
            fields[sc.name] = field_strategy(sc.subcon)
    return st.fixed_dictionaries(fields)


def consts(name: str) -> dict[str, Any]:
    return {
        sc.name: sc.subcon.value
        for sc in decl(name).subcons
        if isinstance(sc, Renamed) and isinstance(sc.subcon, Const)
    }


def canonical(name: str, raw: bytes) -> bytes:
    """``raw`` (of the struct's size) with padding zeroed and constants set: valid input."""
    out = bytearray(raw)
    offset = 0
    for sc in decl(name).subcons:
        size = sc.sizeof()
        inner = sc.subcon if isinstance(sc, Renamed) else sc
        if isinstance(inner, Padded):
            out[offset : offset + size] = bytes(size)
        elif isinstance(inner, Const):
            out[offset : offset + size] = inner.build(None)
        offset += size
    assert offset == len(out)
    return bytes(out)


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("name", sorted(FIXED_SIZES))
def test_sizeof_matches_documented_size(name: str) -> None:
    assert decl(name).sizeof() == FIXED_SIZES[name]


@pytest.mark.parametrize(("key", "count"), FLAVOR_COUNTS.items())
def test_flavor_counts(key: tuple[int, int], count: int) -> None:
    _, st_decl = schema.FLAVOR_STRUCTS[key]
    assert st_decl.sizeof() == 4 * count


def test_flavor_structs_keys_and_kinds() -> None:
    assert set(schema.FLAVOR_STRUCTS) == set(FLAVOR_COUNTS)
    for key, (kind, _) in schema.FLAVOR_STRUCTS.items():
        assert type(key[0]) is int and type(key[1]) is int
        assert RegKind(kind)
    for cpu in ARCH_OF_CPU:
        kinds = sorted(k for (c, _), (k, _) in schema.FLAVOR_STRUCTS.items() if c == cpu)
        assert kinds == ["exc", "fpr", "gpr"]


# ------------------------------------------------------------------- register names


@pytest.mark.parametrize("key", sorted(FLAVOR_COUNTS))
def test_register_fields_are_arch_registers(key: tuple[int, int]) -> None:
    kind, st_decl = schema.FLAVOR_STRUCTS[key]
    arch = ARCH_OF_CPU[CpuType(key[0])]
    table = arch_info(arch).registers[RegKind(kind)]
    names = [sc.name for sc in st_decl.subcons if isinstance(sc, Renamed)]
    assert names, "no named fields"
    assert len(names) == len(set(names))
    for sc in st_decl.subcons:
        if not isinstance(sc, Renamed):
            assert isinstance(sc, Padded)
            continue
        assert sc.name in table, f"{sc.name} is not an {arch} {kind} register"
        expected = NARROWER_THAN_ARCH.get((arch, sc.name), table[sc.name])
        assert sc.sizeof() == expected, sc.name


def test_arm64_register_sets_are_complete() -> None:
    # arm64's Mach layouts hold every register arch.py lists
    info = arch_info(Arch.ARM64)
    for (cpu, _), (kind, st_decl) in schema.FLAVOR_STRUCTS.items():
        if cpu == CpuType.ARM64:
            names = [sc.name for sc in st_decl.subcons if isinstance(sc, Renamed)]
            assert names == list(info.registers[RegKind(kind)])


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", ALL_STRUCTS)
@given(data=st.data())
def test_parse_build_roundtrip(name: str, data: st.DataObject) -> None:
    obj = data.draw(values(name))
    raw = decl(name).build(obj)
    parsed = decl(name).parse(raw)
    assert parsed == {**obj, **consts(name)}
    assert decl(name).build(parsed) == raw
    if name in FIXED_SIZES:
        assert len(raw) == FIXED_SIZES[name]


@pytest.mark.parametrize("name", sorted(FIXED_SIZES))
@given(data=st.data())
def test_valid_bytes_roundtrip(name: str, data: st.DataObject) -> None:
    size = FIXED_SIZES[name]
    raw = canonical(name, data.draw(st.binary(min_size=size, max_size=size)))
    assert decl(name).build(decl(name).parse(raw)) == raw


@given(
    head=st.binary(min_size=36, max_size=36),
    path=st.binary().map(lambda b: b.replace(b"\0", b"")),
)
def test_load_binary_raw_roundtrip(head: bytes, path: bytes) -> None:
    raw = b"\1\0\0\0" + head[4:] + path + b"\0"
    try:
        parsed = schema.load_binary_v1.parse(raw)
    except StringError:  # not UTF-8
        with pytest.raises(UnicodeDecodeError):
            path.decode("utf-8")
        return
    assert schema.load_binary_v1.build(parsed) == raw


def test_padding_builds_as_zeros_and_is_skipped() -> None:
    raw = bytearray(
        schema.arm_neon_state64.build({f"v{i}": 0 for i in range(32)} | {"fpsr": 1, "fpcr": 2})
    )
    assert raw[-8:] == bytes(8)
    raw[-8:] = b"\xff" * 8
    parsed = schema.arm_neon_state64.parse(bytes(raw))
    assert parsed.fpsr == 1 and parsed.fpcr == 2


def test_u128_registers_are_little_endian() -> None:
    values_ = {f"v{i}": 0 for i in range(32)} | {"fpsr": 0, "fpcr": 0, "v0": 0x0102}
    raw = schema.arm_neon_state64.build(values_)
    assert raw[:2] == b"\x02\x01"


def test_known_header_bytes() -> None:
    raw = struct.pack("<8I", 0xFEEDFACF, CpuType.ARM64, 0, 4, 2, 112, 0, 0)
    hdr = schema.mach_header_64.parse(raw)
    assert (hdr.magic, hdr.cputype, hdr.filetype, hdr.ncmds) == (0xFEEDFACF, CpuType.ARM64, 4, 2)


def test_note_command_layout() -> None:
    raw = schema.note_command.build(
        {
            "cmd": LoadCommand.LC_NOTE,
            "cmdsize": 40,
            "data_owner": NoteOwner.ADDRABLE_BITS.value,
            "offset": 0x1000,
            "size": 16,
        }
    )
    assert raw == (
        struct.pack("<II", 0x31, 40) + b"addrable bits\0\0\0" + struct.pack("<QQ", 0x1000, 16)
    )


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("owner", list(NoteOwner))
def test_note_owners_fit_a_name(owner: NoteOwner) -> None:
    raw = schema.name16.build(owner.value)
    assert len(raw) == 16
    assert schema.name16.parse(raw) == owner.value


@given(st.binary(min_size=16, max_size=16))
def test_any_16_bytes_decode_and_roundtrip(raw: bytes) -> None:
    name = schema.name16.parse(raw)
    assert isinstance(name, str)
    assert schema.name16.build(name) == raw


def test_name_keeps_bytes_after_interior_nul() -> None:
    raw = b"__TEXT\0junk" + bytes(5)
    assert schema.name16.parse(raw) == "__TEXT\0junk"
    assert schema.name16.build("__TEXT\0junk") == raw


@pytest.mark.parametrize("bad", ["x" * 17, "\u0100", "abc\0", b"__TEXT", None])
def test_bad_names_raise_construct_error(bad: Any) -> None:
    with pytest.raises(StringError):
        schema.name16.build(bad)
    seg = {
        "cmd": 0x19,
        "cmdsize": 72,
        "segname": bad,
        **dict.fromkeys(["vmaddr", "vmsize", "fileoff", "filesize"], 0),
        **dict.fromkeys(["maxprot", "initprot", "nsects", "flags"], 0),
    }
    with pytest.raises(ConstructError):
        schema.segment_command_64.build(seg)


def test_name_of_exactly_16_bytes() -> None:
    assert schema.name16.build("0123456789abcdef") == b"0123456789abcdef"


# ---------------------------------------------------------------------------- strings


def test_invalid_utf8_path_is_a_construct_error() -> None:
    raw = b"\1\0\0\0" + bytes(32) + b"\xff\xfe/x\0"
    with pytest.raises(StringError):
        schema.load_binary_v1.parse(raw)


def test_unterminated_path_is_a_construct_error() -> None:
    with pytest.raises(StreamError):
        schema.load_binary_v1.parse(b"\1\0\0\0" + bytes(32) + b"/usr/lib/dyld")


@pytest.mark.parametrize("bad", ["a\0b", "\udc80", b"/x"])
def test_bad_paths_raise_construct_error(bad: Any) -> None:
    obj = {"uuid": bytes(16), "load_address": UINT64_MAX, "slide": 0, "path": bad}
    with pytest.raises(StringError):
        schema.load_binary_v1.build(obj)


def test_kern_ver_str() -> None:
    raw = schema.kern_ver_str.build({"version_string": "Darwin Kernel Version 23.0.0"})
    assert raw == b"\1\0\0\0Darwin Kernel Version 23.0.0\0"
    assert schema.kern_ver_str.parse(raw).version_string == "Darwin Kernel Version 23.0.0"


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize("name", ALL_STRUCTS)
@given(raw=st.binary(max_size=600))
def test_garbage_raises_only_construct_error(name: str, raw: bytes) -> None:
    try:
        decl(name).parse(raw)
    except ConstructError:
        pass


@pytest.mark.parametrize("name", ALL_STRUCTS)
@given(data=st.data())
def test_truncated_input_raises_construct_error(name: str, data: st.DataObject) -> None:
    raw = decl(name).build(data.draw(values(name)))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(ConstructError):
        decl(name).parse(raw[:cut])


@pytest.mark.parametrize(
    "name", ["main_bin_spec_v1", "main_bin_spec_v2", "load_binary_v1", "addrable_bits_v3"]
)
def test_wrong_version_is_const_error(name: str) -> None:
    with pytest.raises(ConstError):
        decl(name).parse(b"\x09\0\0\0" + bytes(60))


def test_note_version_peeks() -> None:
    raw = schema.addrable_bits_v4.build({"low_bits": 47, "high_bits": 47, "unused": 0})
    assert schema.note_version.parse(raw).version == 4


def test_thread_state_entry_huge_count_is_stream_error() -> None:
    with pytest.raises(StreamError):
        schema.thread_state_entry.parse(struct.pack("<II", 6, 0xFFFF_FFFF) + bytes(64))


# ----------------------------------------------------------------------- fixed_format


def _decode_raw_name(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("latin-1")


@pytest.mark.parametrize("name", FIXED_FORMAT_STRUCTS)
@given(data=st.data())
def test_fixed_format_agrees_with_construct(name: str, data: st.DataObject) -> None:
    fmt = fixed_format(decl(name))
    assert fmt.size == FIXED_SIZES[name]
    raw = data.draw(st.binary(min_size=fmt.size, max_size=fmt.size))
    parsed = decl(name).parse(raw)
    unpacked = fmt.unpack(raw)
    fields = decl(name).subcons
    assert len(unpacked) == len(fields)
    for sc, value in zip(fields, unpacked, strict=True):
        if isinstance(sc.subcon, schema.Name16Adapter):
            assert isinstance(value, bytes) and len(value) == 16
            assert _decode_raw_name(value) == parsed[sc.name]
        else:
            assert value == parsed[sc.name], sc.name
    assert fmt.pack(*unpacked) == raw


@pytest.mark.parametrize(
    "bad",
    [
        schema.arm_neon_state64,  # BytesInteger
        schema.x86_float_state64,  # Padding
        schema.main_bin_spec_v1,  # Const
        schema.load_binary_v1,  # C string
        schema.thread_state_entry,  # Bytes sized by the context
        Int32ul,  # not a Struct
        Struct("a" / Struct("b" / Int32ul)),
        Struct("a" / FormatField(">", "L")),
        Struct("a" / FormatField("<", "d")),
    ],
)
def test_fixed_format_rejects_other_fields(bad: Construct) -> None:
    with pytest.raises(TypeError):
        fixed_format(bad)


def test_fixed_format_is_fast() -> None:
    """fixed_format unpacks a segment command much faster than construct parses the same
    bytes (the reason it exists). Measured against construct in the same run, rounds
    interleaved, so a loaded machine slows both."""
    decl = schema.segment_command_64
    fmt = fixed_format(decl)
    one = decl.build(
        {
            "cmd": 0x19,
            "cmdsize": 72,
            "segname": "",
            "vmaddr": 0x1000,
            "vmsize": 0x1000,
            "fileoff": 0x4000,
            "filesize": 0x1000,
            "maxprot": 3,
            "initprot": 3,
            "nsects": 0,
            "flags": 0,
        }
    )
    count = 1_000
    blob = one * count
    offsets = range(0, count * fmt.size, fmt.size)

    def fixed() -> list[Any]:
        return [fmt.unpack_from(blob, offset) for offset in offsets]

    def baseline() -> list[Any]:
        return [decl.parse(blob[offset : offset + fmt.size]) for offset in offsets]

    rows, parsed = fixed(), baseline()
    names = [sc.name for sc in decl.subcons]
    assert len(rows) == len(parsed) == count
    assert dict(zip(names, rows[-1]))["vmaddr"] == parsed[-1].vmaddr == 0x1000
    times: dict[str, list[float]] = {"fixed": [], "construct": []}
    for _ in range(7):
        for name, run in (("fixed", fixed), ("construct", baseline)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    fast, slow = statistics.median(times["fixed"]), statistics.median(times["construct"])
    # 27x in a clean CI run on this 2-core machine (more on a faster one); unpacking
    # through construct would give about 1x, so 5x separates the two whatever the noise
    assert slow / fast >= 5, (
        f"fixed_format {fast * 1e3:.2f} ms vs construct {slow * 1e3:.2f} ms "
        f"for {count} records (medians of 7)"
    )


def _x86_core_with_thread(body: bytes) -> bytes:
    """A Mach-O x86_64 core holding one LC_THREAD of ``body`` and nothing else."""
    command = struct.pack("<II", LoadCommand.LC_THREAD, 8 + len(body)) + body
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, CpuType.X86_64, 3, 4, 1, len(command), 0, 0)
    return header + command


def test_parser_unwraps_the_kernels_x86_64_flavors() -> None:
    """xnu writes x86_THREAD_STATE / FLOAT_STATE / EXCEPTION_STATE (7/8/9), each an inner
    header and the 64-bit state: all three decode; a wrapper whose inner flavor does not
    match (or does not fill it) stays raw, written back unchanged."""
    from macminidump.macho.parse import parse_macho_bytes

    gpr = struct.pack("<21Q", *range(1, 22))
    fpr = bytearray(524)
    fpr[32:36] = (0x1F80).to_bytes(4, "little")  # mxcsr
    exc = struct.pack("<HHIQ", 14, 0, 6, 0xDEAD)

    def wrapped(outer: int, inner: int, state: bytes) -> bytes:
        return struct.pack("<IIII", outer, len(state) // 4 + 2, inner, len(state) // 4) + state

    body = (
        wrapped(X86Flavor.THREAD_STATE, X86Flavor.THREAD_STATE64, gpr)
        + wrapped(X86Flavor.FLOAT_STATE, X86Flavor.FLOAT_STATE64, bytes(fpr))
        + wrapped(X86Flavor.EXCEPTION_STATE, X86Flavor.EXCEPTION_STATE64, exc)
    )
    thread = parse_macho_bytes(_x86_core_with_thread(body)).threads[0]
    assert thread.gpr["rax"] == 1 and thread.gpr["gs"] == 21
    assert thread.regset("fpr")["mxcsr"] == 0x1F80
    assert dict(thread.exception) == {"trapno": 14, "cpu": 0, "err": 6, "faultvaddr": 0xDEAD}
    assert thread.raw_states == ()

    mismatched = wrapped(X86Flavor.EXCEPTION_STATE, X86Flavor.THREAD_STATE64, exc)
    thread = parse_macho_bytes(_x86_core_with_thread(mismatched)).threads[0]
    assert thread.regsets == () and [r.kind for r in thread.raw_states] == [9]
    assert thread.raw_states[0].data == mismatched[8:]
