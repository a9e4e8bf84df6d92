"""Specs: yaml2macho-core's inputs load unchanged; mistakes are named by their path."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
import yaml

from macminidump import SpecError, load_spec, render_macho_bytes, snapshot_from_spec
from macminidump.macho.parse import parse_macho_bytes
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
