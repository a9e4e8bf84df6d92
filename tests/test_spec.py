"""Specs: yaml2macho-core's inputs load unchanged; mistakes are named by their path."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import hypothesis
import pytest
import yaml
from hypothesis import strategies as st

from macminidump import SpecError, load_spec, render_macho_bytes, snapshot_from_spec
from macminidump import spec as bulk
from macminidump.arch import Arch, RegKind, arch_info
from macminidump.macho.parse import parse_macho_bytes
from macminidump.model import Region, RegisterSet
from macminidump.spec import read_spec, spec_format

CORPUS = Path(__file__).resolve().parent / "corpus" / "macho" / "yaml"
EXAMPLES = Path(__file__).resolve().parents[1] / "formats" / "examples"
YAML2MACHO = sorted(glob.glob(str(CORPUS / "yaml2macho-core_*.yaml")))


def test_corpus_is_present() -> None:
    # the corpus is part of the checkout (tests/corpus): its absence is an error
    assert len(YAML2MACHO) == 5, f"expected LLVM's yaml2macho-core inputs in {CORPUS}"


@pytest.mark.parametrize("path", YAML2MACHO, ids=os.path.basename)
def test_yaml2macho_core_inputs(path: str) -> None:
    with open(path) as f:
        cpu = yaml.safe_load(f)["cpu"]
    if cpu != "arm64":
        with pytest.raises(SpecError, match=rf"\$\.cpu: '{cpu}' is a CPU macminidump does not"):
            load_spec(path)
        return
    snapshot = load_spec(path)
    parsed = parse_macho_bytes(render_macho_bytes(snapshot))
    spec = read_spec(path)
    assert len(parsed.threads) == len(spec.get("threads", []))
    for thread, given in zip(parsed.threads, spec.get("threads", [])):
        for regset in given["regsets"]:
            values = thread.regset(regset["flavor"])
            for reg in regset["registers"]:
                assert values[reg["name"]] == reg["value"]
    for region in spec.get("memory-regions", []):
        key = next(k for k in ("UInt8", "UInt32", "UInt64") if k in region)
        width = {"UInt8": 1, "UInt32": 4, "UInt64": 8}[key]
        expected = b"".join(v.to_bytes(width, "little") for v in region[key])
        assert parsed.memory.read(region["addr"], len(expected)) == expected


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_build(path: Path) -> None:
    from macminidump.elf.parse import parse_elf_bytes
    from macminidump.elf.render import render_elf_bytes
    from macminidump.spec import read_spec, spec_format

    snapshot = load_spec(path)
    assert snapshot.threads
    elf = spec_format(read_spec(path)) == "elf"
    render, parse = (
        (render_elf_bytes, parse_elf_bytes) if elf else (render_macho_bytes, parse_macho_bytes)
    )
    core = render(snapshot)
    # partial register sets come back complete (zeros): compare what was given, and bytes
    parsed = parse(core)
    assert render(parsed) == core
    for given, back in zip(snapshot.threads, parsed.threads):
        for regset in given.regsets:
            assert dict(regset.values).items() <= dict(back.regset(regset.kind)).items()
    assert parsed.regions == snapshot.regions


BASE = {"cpu": "arm64", "threads": [{"regsets": [{"flavor": "gpr", "registers": []}]}]}


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ({"cpu": "sparc"}, "$.cpu", "'sparc' is an unknown CPU"),
        ({"cpu": "riscv"}, "$.cpu", "CPU macminidump does not write"),
        ({"thredas": []}, "$.thredas", "unknown key"),
        ({"format": "pe"}, "$.format", "unknown format 'pe'"),
        (
            {"threads": [{"regsets": [{"flavor": "gpr", "registers": [{"name": "rip"}]}]}]},
            "$.threads[0].regsets[0].registers[0].name",
            "arm64 has no gpr register 'rip'",
        ),
        (
            {"threads": [{"regsets": [{"flavor": "vec", "registers": []}]}]},
            "$.threads[0].regsets[0].flavor",
            "unknown flavor 'vec'",
        ),
        (
            {
                "threads": [
                    {"regsets": [{"flavor": "exc", "registers": [{"name": "esr", "value": -1}]}]}
                ]
            },
            "$.threads[0].regsets[0].registers[0].value",
            "does not fit in 32 bits",
        ),
        (
            {"memory-regions": [{"addr": 16, "UInt8": [1], "hex": "00"}]},
            "$.memory-regions[0]",
            "exactly one of",
        ),
        ({"memory-regions": [{"addr": 16, "hex": "0g"}]}, "$.memory-regions[0].hex", "hex"),
        (
            {"memory-regions": [{"addr": 0, "hex": "0000"}, {"addr": 1, "hex": "00"}]},
            "$",
            "regions overlap",
        ),
        (
            {"memory-regions": [{"addr": 0, "hex": "00", "protection": "rwq"}]},
            "$.memory-regions[0]",
            "rwx",
        ),
        ({"binaries": [{"uuid": "not-a-uuid", "slide": 0}]}, "$.binaries[0]", "is not a UUID"),
        ({"binaries": [{"name": "/nonexistent/prog", "slide": 0}]}, "$.binaries[0]", "no 'uuid'"),
        (
            {"binaries": [{"uuid": "A2948DDE-33A4-3969-86DF-6988E5C79FEA"}]},
            "$.binaries[0]",
            "needs",
        ),
        ({"addressable-bits": {"num-bits": 0}}, "$.addressable-bits", "within 1..64"),
        (
            {"threads": [{"thread-id": "twelve", "regsets": []}]},
            "$.threads[0].thread-id",
            "integer",
        ),
    ],
)
def test_errors_name_the_key(patch: dict, path: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        snapshot_from_spec({**BASE, **patch})
    assert info.value.path == path
    assert message in info.value.message, str(info.value)
    assert "\n" not in str(info.value)


def test_yaml2macho_conventions() -> None:
    spec = {
        **BASE,
        "addressable-bits": {"num-bits": 39, "lowmem-num-bits": 10},
        "binaries": [
            {
                "uuid": "A2948DDE-33A4-3969-86DF-6988E5C79FEA",
                "virtual-address": (1 << 64) - 1,  # UINT64_MAX: not given
                "slide": 0x4000,
            }
        ],
    }
    s = snapshot_from_spec(spec)
    assert s.addressable_bits is not None
    assert (s.addressable_bits.low, s.addressable_bits.high) == (39, 39)
    assert s.images[0].slide == 0x4000 and s.images[0].load_address is None
    # a binary known only by its slide is written as a `load binary` note, and read back
    assert parse_macho_bytes(render_macho_bytes(s)).images == s.images
    half = snapshot_from_spec({**BASE, "addressable-bits": {"highmem-num-bits": 52}})
    assert half.addressable_bits is not None
    assert (half.addressable_bits.low, half.addressable_bits.high) == (64, 52)


def test_files_and_formats(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cpu: [arm64\n")
    with pytest.raises(SpecError, match=r"not valid YAML \(line 2"):
        read_spec(bad)
    with pytest.raises(SpecError, match="cannot read spec"):
        read_spec(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="a spec is a mapping"):
        read_spec(tmp_path / "list.yaml")
    assert spec_format({"cpu": "arm64"}) == "macho"
    json_spec = tmp_path / "s.json"
    json_spec.write_text('{"cpu": "x86_64", "threads": []}')
    assert load_spec(json_spec).arch.value == "x86_64"


def test_binary_read_from_file(tmp_path: Path) -> None:
    """With a real Mach-O file, the UUID and segments come from it; the slide gives the rest."""
    import fixtures

    from macminidump.macho_headers import read_headers_file

    exe = fixtures.build_fixture("arm64")
    info = read_headers_file(exe)
    assert info.text_vmaddr is not None
    s = snapshot_from_spec(
        {"cpu": "arm64", "binaries": [{"name": exe, "slide": 0x8000, "main": True}]}
    )
    image = s.images[0]
    assert image.uuid == info.uuid and image.uuid is not None
    assert image.load_address == info.text_vmaddr + 0x8000
    text = next(seg for seg in image.segments if seg.name == "__TEXT")
    assert text.address == image.load_address
    assert not any(seg.name == "__PAGEZERO" for seg in image.segments)
    via_va = snapshot_from_spec(
        {"cpu": "arm64", "binaries": [{"name": exe, "virtual-address": image.load_address}]}
    )
    assert via_va.images[0].slide == 0x8000
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + bytes(60))
    with pytest.raises(SpecError, match=r"\$\.binaries\[0\]\.name: .*not a 64-bit"):
        snapshot_from_spec({"cpu": "arm64", "binaries": [{"name": str(junk), "slide": 0}]})


# Large specs take a path that checks regions and register sets in bulk (spec._plain_region,
# spec._plain_registers); anything unusual goes the one-by-one way, which names the key.
# Each row is a value the bulk checks must not let through.
_REGS = [{"name": "x0", "value": 1}, {"name": "x1", "value": 2}]


def _gpr(registers: object) -> dict:
    return {"threads": [{"regsets": [{"flavor": "gpr", "registers": registers}]}]}


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ({"memory-regions": [{"addr": 16, "UInt64": [1, True]}]}, "UInt64[1]", "not an integer"),
        ({"memory-regions": [{"addr": 16, "UInt64": [1.0]}]}, "UInt64[0]", "not an integer"),
        ({"memory-regions": [{"addr": 16, "UInt32": [1 << 32]}]}, "UInt32[0]", "32 bits"),
        ({"memory-regions": [{"addr": 16, "UInt8": [-1]}]}, "UInt8[0]", "8 bits"),
        ({"memory-regions": [{"addr": 16, "UInt8": []}]}, "UInt8", "at least one byte"),
        ({"memory-regions": [{"addr": 16, "hex": ""}]}, "hex", "at least one byte"),
        ({"memory-regions": [{"addr": 16, "UInt8": 7}]}, "UInt8", "expected a list"),
        ({"memory-regions": [{"addr": -1, "UInt8": [1]}]}, "addr", "does not fit"),
        ({"memory-regions": [{"addr": True, "UInt8": [1]}]}, "addr", "not an integer"),
        ({"memory-regions": [{"addr": (1 << 64) - 1, "UInt8": [1, 2]}]}, "", "outside 0..2^64"),
        ({"memory-regions": [{"addr": 0, "hex": "00", "max-protection": "rwz"}]}, "", "rwx"),
        ({"memory-regions": [{"addr": 0, "hex": "00", "protection": 3}]}, "protection", "string"),
        ({"memory-regions": [{"addr": 0, "hex": "00", "name": 5}]}, "name", "not a string"),
        ({"memory-regions": [{"addr": 0, "hex": "00", "size": 5}]}, "size", "unknown key"),
        ({"memory-regions": [{"addr": 0, "UInt8": [1], "UInt32": [1]}]}, "", "exactly one"),
    ],
)
def test_bulk_region_checks_leave_every_mistake_to_be_named(
    patch: dict, path: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        snapshot_from_spec({**BASE, **patch})
    assert info.value.path == "$.memory-regions[0]" + (f".{path}" if path else "")
    assert message in info.value.message, str(info.value)


@pytest.mark.parametrize(
    ("registers", "path", "message"),
    [
        ([*_REGS, {"name": "x2", "value": True}], "registers[2].value", "not an integer"),
        ([*_REGS, {"name": "x2", "value": -1}], "registers[2].value", "64 bits"),
        ([{"name": "cpsr", "value": 1 << 32}], "registers[0].value", "32 bits"),
        ([*_REGS, {"name": "x1", "value": 3}], "registers[2].name", "given twice"),
        ([*_REGS, {"name": "rip", "value": 3}], "registers[2].name", "no gpr register 'rip'"),
        ([{"name": "x0", "value": 1, "size": 8}], "registers[0].size", "unknown key"),
        ([{"name": "x0"}], "registers[0].value", "not an integer"),
        ([["x0", 1]], "registers[0]", "expected a mapping"),
        ([{"name": 5, "value": 1}], "registers[0].name", "not a string"),
        (0, "registers", "expected a list"),
    ],
)
def test_bulk_register_checks_leave_every_mistake_to_be_named(
    registers: object, path: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        snapshot_from_spec({**BASE, **_gpr(registers)})
    assert info.value.path == f"$.threads[0].regsets[0].{path}"
    assert message in info.value.message, str(info.value)


@pytest.mark.parametrize(
    ("thread", "path", "message"),
    [
        ({"raw-states": 0}, "raw-states", "expected a list"),
        ({"crashed": "yes"}, "crashed", "true or false"),
        ({"crashed": 1}, "crashed", "true or false"),
        ({"thread-id": -1}, "thread-id", "does not fit"),
        ({"name": 5}, "name", "not a string"),
        ({"regsets": [{"flavor": 1}]}, "regsets[0].flavor", "unknown flavor"),
        ({"regsets": [{"flavor": "gpr", "values": []}]}, "regsets[0].values", "unknown key"),
    ],
)
def test_thread_mistakes_are_named(thread: dict, path: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        snapshot_from_spec({**BASE, "threads": [{"regsets": [], **thread}]})
    assert info.value.path == f"$.threads[0].{path}"
    assert message in info.value.message, str(info.value)


_PROTECTION_TEXTS = ["---", "r--", "rw-", "r-x", "rwx", "-w-", "--x", "-wx"]


_ENCODINGS = ["UInt8", "UInt32", "UInt64", "hex"]
_OPTIONAL = ["protection", "max-protection", "name"]


@st.composite
def _region_shapes(draw: st.DrawFn) -> tuple[str, ...]:
    """The keys of a region as a spec writes it, in some order: addr, one encoding of the
    bytes, and any of the optional keys."""
    optional = draw(st.lists(st.sampled_from(_OPTIONAL), unique=True))
    return tuple(draw(st.permutations(["addr", draw(st.sampled_from(_ENCODINGS)), *optional])))


@st.composite
def _region_entries(draw: st.DrawFn, shape: tuple[str, ...]) -> tuple[dict, Region]:
    """A region written with the keys ``shape``, and the Region the model's own
    constructor makes of the same values."""
    (encoding,) = (k for k in shape if k in _ENCODINGS)
    width = {"UInt8": 1, "UInt32": 4, "UInt64": 8, "hex": 1}[encoding]
    words = draw(st.lists(st.integers(0, (1 << (8 * width)) - 1), min_size=1, max_size=6))
    data = b"".join(w.to_bytes(width, "little") for w in words)
    address = draw(st.integers(0, (1 << 64) - len(data)))
    values: dict = {"addr": address, encoding: data.hex() if encoding == "hex" else words}
    kwargs: dict = {"address": address, "data": data}
    for key, field in (("protection", "protection"), ("max-protection", "max_protection")):
        if key in shape:
            values[key] = kwargs[field] = draw(st.sampled_from(_PROTECTION_TEXTS))
    if "name" in shape:
        values["name"] = kwargs["name"] = draw(st.text(max_size=16))
    return {k: values[k] for k in shape}, Region(**kwargs)


@st.composite
def _region_lists(draw: st.DrawFn) -> list[tuple[dict, Region]]:
    """Regions written alike (as a generated spec writes them), or each its own way."""
    shapes = draw(st.lists(_region_shapes(), min_size=1, max_size=3))
    count = draw(st.integers(1, 5))
    return [draw(_region_entries(shapes[i % len(shapes)])) for i in range(count)]


@hypothesis.given(_region_lists())
@hypothesis.settings(max_examples=300, deadline=None)
def test_bulk_regions_equal_the_models_own(cases: list[tuple[dict, Region]]) -> None:
    entries = [entry for entry, _ in cases]
    expected = tuple(region for _, region in cases)
    # one at a time, and all at once when they are written alike: the bulk paths, checked
    # to be the ones taken (else the one-by-one path would answer and prove nothing)
    one_by_one = tuple(bulk._plain_region(entry) for entry in entries)
    assert one_by_one == expected
    together = bulk._plain_regions(entries)
    if len({tuple(entry) for entry in entries}) == 1:
        assert together == expected
    else:
        assert together is None
    for got in (one_by_one, together or one_by_one):
        assert [(r and r.max_protection, r and r.name) for r in got] == [
            (r.max_protection, r.name) for r in expected
        ]
    if len(entries) == 1:
        (region,) = snapshot_from_spec({**BASE, "memory-regions": entries}).regions
        assert region == expected[0]


@hypothesis.given(st.data())
@hypothesis.settings(max_examples=200, deadline=None)
def test_bulk_register_sets_equal_the_models_own(data: st.DataObject) -> None:
    widths = arch_info(Arch.ARM64).registers[RegKind.GPR]
    names = data.draw(st.lists(st.sampled_from(sorted(widths)), unique=True))
    values = {n: data.draw(st.integers(0, (1 << (8 * widths[n])) - 1)) for n in names}
    registers = [{"name": n, "value": v} for n, v in values.items()]
    if registers:  # the bulk path, not the one-by-one
        assert bulk._plain_registers(registers, bulk._bounds(Arch.ARM64, RegKind.GPR)) == values
    (thread,) = snapshot_from_spec({**BASE, **_gpr(registers)}).threads
    assert thread.regsets == (RegisterSet(RegKind.GPR, values),)
    assert list(thread.gpr) == names
