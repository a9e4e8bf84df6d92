#!/usr/bin/env python3
"""Write the seed corpora: small valid Mach-O cores rendered from specs, and YAML specs.

Run from anywhere: ``python fuzz/make_corpus.py``. The output is deterministic, so the
binary seeds in ``fuzz/corpus/macho/`` only change when the renderer does. Every core is
checked to parse back and to stay under 64 KiB (libFuzzer mutates small inputs faster).
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from typing import Any

import yaml

from macminidump.macho.parse import MachOCore
from macminidump.macho.render import render_macho_bytes
from macminidump.spec import snapshot_from_spec

HERE = os.path.dirname(os.path.abspath(__file__))
MACHO_DIR = os.path.join(HERE, "corpus", "macho")
SPEC_DIR = os.path.join(HERE, "corpus", "spec")
#: third-party cores and specs (tests/corpus/macho/SOURCES.md says where from)
SHARED = os.path.join(os.path.dirname(HERE), "tests", "corpus", "macho")
FUZZED = "NOT-A-REAL-CORE_clusterfuzz-ia_fuzz-5651817880354816_BE-macho64-filetype4.bin"
LIMIT = 64 * 1024

UUID_MAIN = "6B5E9A4C-1D2F-4E3A-9B8C-7D6E5F4A3B2C"
UUID_LIB = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"
UUID_DYLD = "11223344-5566-7788-99AA-BBCCDDEEFF00"


def _regs(names: list[str], base: int, mask: int = (1 << 64) - 1) -> list[dict[str, Any]]:
    return [{"name": n, "value": (base + 0x111 * i) & mask} for i, n in enumerate(names)]


ARM_GPR = [f"x{i}" for i in range(29)] + ["fp", "lr", "sp", "pc"]
X86_GPR = ["rax", "rbx", "rcx", "rdx", "rdi", "rsi", "rbp", "rsp"]
X86_GPR += [f"r{i}" for i in range(8, 16)] + ["rip", "rflags", "cs", "fs", "gs"]


def _load_binary_note(path: str, address: int) -> str:
    head = struct.pack("<I16sQQ", 1, bytes(range(16)), address, 2**64 - 1)
    return (head + path.encode() + b"\0").hex()


def _kern_ver_note(text: str) -> str:
    return (struct.pack("<I", 1) + text.encode() + b"\0").hex()


def _main_bin_v1_kernel() -> str:
    # type 1 (kernel): not the main binary of a user process, so it stays a raw note
    return struct.pack("<IIQ16sII", 1, 1, 0xFFFFFFF007004000, bytes(16), 14, 0).hex()


def _segment_with_section() -> str:
    # LC_SEGMENT_64 body (after cmd/cmdsize) with nsects = 1 and no file data
    seg = struct.pack("<16sQQQQIIII", b"__SECTS", 0x7000_0000, 0x1000, 0, 0, 1, 1, 1, 0)
    sect = struct.pack(
        "<16s16sQQIIIIIIII", b"__text", b"__SECTS", 0x7000_0000, 0x10, 0, 4, 0, 0, 0, 0, 0, 0
    )
    return (seg + sect).hex()


SPECS: dict[str, dict[str, Any]] = {
    "arm64-minimal": {
        "cpu": "arm64",
        "threads": [{"regsets": [{"flavor": "gpr", "registers": _regs(["pc", "sp"], 0x1000)}]}],
    },
    "arm64-full": {
        "cpu": "arm64",
        "addressable-bits": {"num-bits": 47},
        "threads": [
            {
                "thread-id": 0x1234,
                "name": "main",
                "crashed": True,
                "regsets": [
                    {"flavor": "gpr", "registers": _regs(ARM_GPR, 0x1_0000_3F00)},
                    {"flavor": "exc", "registers": _regs(["far", "esr", "exception"], 0x92, 0xFF)},
                    {
                        "flavor": "fpr",
                        "registers": _regs([f"v{i}" for i in range(4)] + ["fpsr", "fpcr"], 7, 0xFF),
                    },
                ],
                "raw-states": [{"kind": 99, "hex": "01000000" * 3}],
            },
            {
                "thread-id": 0x1235,
                "regsets": [{"flavor": "gpr", "registers": _regs(["pc", "sp", "lr"], 0x2000)}],
            },
        ],
        "memory-regions": [
            {"addr": 0x16FDFF000, "protection": "rw-", "hex": "00112233445566778899aabbccddeeff"},
            {"addr": 0x100003F00, "protection": "r-x", "max-protection": "rwx", "UInt32": [1, 2]},
        ],
        "binaries": [
            {
                "name": "/usr/local/bin/prog",
                "uuid": UUID_MAIN,
                "virtual-address": 0x100000000,
                "slide": 0,
                "main": True,
                "segments": [
                    {"name": "__TEXT", "addr": 0x100000000, "size": 0x4000},
                    {"name": "__DATA", "addr": 0x100004000, "size": 0x4000},
                ],
            },
            {
                "name": "/usr/lib/dyld",
                "uuid": UUID_DYLD,
                "virtual-address": 0x180000000,
                "segments": [{"name": "__TEXT", "addr": 0x180000000, "size": 0x8000}],
            },
        ],
        "raw-notes": [
            {"owner": "kern ver str", "hex": _kern_ver_note("Darwin Kernel Version 23.0.0")},
            {"owner": "my note", "hex": "deadbeef"},
        ],
        "raw-commands": [{"kind": 0x1B, "hex": bytes(range(16)).hex()}],
    },
    "arm64-bits-v4-slide-only": {
        "cpu": "arm64",
        "addressable-bits": {"lowmem-num-bits": 39, "highmem-num-bits": 55},
        "threads": [
            {"thread-id": 7, "regsets": [{"flavor": "gpr", "registers": _regs(["pc"], 0x40)}]}
        ],
        "binaries": [
            {
                "name": "/bin/a.out",
                "uuid": UUID_MAIN,
                "slide": 0x4000,
                "main": True,
                "segments": [{"name": "__TEXT", "addr": 0x100004000, "size": 0x4000}],
            },
            {"name": "/usr/lib/libSystem.B.dylib", "uuid": UUID_LIB, "virtual-address": 0x1A000},
        ],
        "raw-notes": [
            {"owner": "load binary", "hex": _load_binary_note("/usr/lib/dyld", 0x180000000)},
            {"owner": "main bin spec", "hex": _main_bin_v1_kernel()},
        ],
    },
    "arm64-one-region-sections": {
        "cpu": "arm64",
        "threads": [{"regsets": [{"flavor": "gpr", "registers": _regs(["pc", "sp"], 0x80)}]}],
        "memory-regions": [{"addr": 0x16FDF0000, "name": "stack", "UInt64": [1, 2, 3, 4]}],
        "raw-commands": [{"kind": 0x19, "hex": _segment_with_section()}],
    },
    "x86_64-minimal": {
        "cpu": "x86_64",
        "threads": [{"regsets": [{"flavor": "gpr", "registers": _regs(["rip", "rsp"], 0x1000)}]}],
    },
    "x86_64-full": {
        "cpu": "x86_64",
        "addressable-bits": {"lowmem-num-bits": 47, "highmem-num-bits": 48},
        "threads": [
            {
                "thread-id": 0x2A,
                "name": "worker",
                "regsets": [
                    {"flavor": "gpr", "registers": _regs(X86_GPR, 0x7FF7_0000_0000)},
                    {
                        "flavor": "fpr",
                        "registers": [
                            {"name": "fcw", "value": 0x37F},
                            {"name": "mxcsr", "value": 0x1F80},
                            {"name": "xmm0", "value": 0x0123456789ABCDEF0123456789ABCDEF},
                            {"name": "stmm7", "value": 1},
                        ],
                    },
                ],
            },
            {
                "thread-id": 0x2B,
                "crashed": True,
                "regsets": [
                    {"flavor": "gpr", "registers": _regs(["rip", "rsp", "rbp"], 0x1_0000_0F00)},
                    {
                        "flavor": "exc",
                        "registers": [
                            {"name": "trapno", "value": 14},
                            {"name": "err", "value": 6},
                            {"name": "faultvaddr", "value": 0x10},
                        ],
                    },
                ],
                "raw-states": [{"kind": 7, "hex": "00" * 8}],
            },
        ],
        "memory-regions": [
            {"addr": 0x7FF7BFEFF000, "protection": "rw-", "hex": "ab" * 64},
            {"addr": 0x100000F00, "protection": "r-x", "name": "__TEXT", "UInt8": [0xC3, 0x90]},
            {"addr": 0x200000000, "protection": "r--", "UInt64": [0xFFFFFFFFFFFFFFFF]},
        ],
        "binaries": [
            {
                "name": "/Users/me/prog",
                "uuid": UUID_MAIN,
                "virtual-address": 0x100000000,
                "main": True,
                "segments": [{"name": "__TEXT", "addr": 0x100000000, "size": 0x1000}],
            },
            {
                "name": "/usr/lib/libc++.1.dylib",
                "uuid": UUID_LIB,
                "virtual-address": 0x7FF800000000,
                "slide": 0x1000,
            },
        ],
        "raw-notes": [{"owner": "process metadata", "hex": b'{"threads":[]}'.hex()}],
        "raw-commands": [{"kind": 0x32, "hex": "01000000" + "00000e00" * 3}],
    },
    "x86_64-images-only": {
        "cpu": "x86_64",
        "addressable-bits": {"num-bits": 48},
        "binaries": [
            {
                "name": "/usr/lib/dyld",
                "uuid": UUID_DYLD,
                "virtual-address": 0x7FF81000_0000,
                "segments": [
                    {"name": "__TEXT", "addr": 0x7FF810000000, "size": 0x1000},
                    {"name": "__DATA_CONST", "addr": 0x7FF810001000, "size": 0x1000},
                    {"name": "__LINKEDIT", "addr": 0x7FF810002000, "size": 0x1000},
                ],
            }
        ],
    },
}

#: hand-written YAML spec seeds (the shared LLDB specs are copied beside them)
YAML_SEEDS = {
    "mini-x86_64.yaml": """\
cpu: x86_64
addressable-bits: {num-bits: 47}
threads:
  - thread-id: 0x10
    name: main
    crashed: true
    regsets:
      - flavor: gpr
        registers: [{name: rip, value: 0x100000f00}, {name: rsp, value: 0x7ff7bfeff000}]
      - flavor: exc
        registers: [{name: trapno, value: 14}, {name: faultvaddr, value: 0}]
memory-regions:
  - {addr: 0x7ff7bfeff000, protection: rw-, hex: "00112233"}
  - {addr: 0x100000f00, protection: r-x, name: __TEXT, UInt8: [0xc3]}
binaries:
  - name: /bin/prog
    uuid: 6B5E9A4C-1D2F-4E3A-9B8C-7D6E5F4A3B2C
    virtual-address: 0x100000000
    main: true
    segments: [{name: __TEXT, addr: 0x100000000, size: 0x1000}]
""",
    "mini-arm64-raw.yaml": """\
cpu: arm64
addressable-bits: {lowmem-num-bits: 39, highmem-num-bits: 55}
threads:
  - regsets:
      - flavor: gpr
        registers: [{name: pc, value: 0x100003f5c}, {name: cpsr, value: 0x80001000}]
      - flavor: fpr
        registers: [{name: v0, value: 1}, {name: fpcr, value: 0}]
    raw-states: [{kind: 99, hex: "01000000"}]
binaries:
  - {name: /usr/lib/dyld, uuid: 11223344-5566-7788-99AA-BBCCDDEEFF00, slide: 0x4000}
raw-notes:
  - {owner: my note, hex: deadbeef}
raw-commands:
  - {kind: 0x1b, hex: 000102030405060708090a0b0c0d0e0f}
""",
    "elf-format.yaml": """\
format: elf
cpu: x86_64
threads:
  - regsets: [{flavor: gpr, registers: [{name: fs_base, value: 0x7f0000000000}]}]
memory-regions:
  - {addr: 0x1000, UInt32: [1, 2, 3]}
""",
}


def main() -> int:
    os.makedirs(MACHO_DIR, exist_ok=True)
    os.makedirs(SPEC_DIR, exist_ok=True)
    for name, spec in SPECS.items():
        data = render_macho_bytes(snapshot_from_spec(spec))
        MachOCore(data).snapshot()  # every seed must parse
        if len(data) >= LIMIT:
            raise SystemExit(f"{name}: {len(data)} bytes is over the {LIMIT}-byte seed limit")
        with open(os.path.join(MACHO_DIR, f"{name}.core"), "wb") as f:
            f.write(data)
        print(f"macho/{name}.core: {len(data)} bytes")
    fuzzed = os.path.join(SHARED, "fuzzed", FUZZED)
    if os.path.exists(fuzzed):
        shutil.copyfile(fuzzed, os.path.join(MACHO_DIR, FUZZED))
        print(f"macho/{FUZZED}: copied")
    shared_yaml = os.path.join(SHARED, "yaml")
    if os.path.isdir(shared_yaml):
        for name in sorted(os.listdir(shared_yaml)):
            if name.endswith(".yaml"):
                shutil.copyfile(os.path.join(shared_yaml, name), os.path.join(SPEC_DIR, name))
                print(f"spec/{name}: copied")
    for name, text in YAML_SEEDS.items():
        yaml.safe_load(text)
        with open(os.path.join(SPEC_DIR, name), "w", encoding="utf-8") as f:
            f.write(text)
        print(f"spec/{name}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
