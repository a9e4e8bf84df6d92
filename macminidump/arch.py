"""Per-architecture register tables: data only, no file format and no OS.

Each architecture has three register sets, named by kind: ``gpr`` (general purpose),
``fpr`` (floating point / vector) and ``exc`` (exception state). A set lists every
register name any supported format knows, with its width in bytes. A format writes the
subset its layout holds; a register a Snapshot does not give is written as zero.
"""

from __future__ import annotations

from types import MappingProxyType

from . import records
from .plain_enum import Enum
from .plain_typing import Mapping


class Arch(str, Enum):
    ARM64 = "arm64"
    X86_64 = "x86_64"

    def __str__(self) -> str:
        return self.value


class RegKind(str, Enum):
    GPR = "gpr"
    FPR = "fpr"
    EXC = "exc"

    def __str__(self) -> str:
        return self.value


@records.frozen
class ArchInfo:
    arch: Arch
    pointer_size: int
    #: kind -> (register name -> width in bytes), in the order a debugger shows them
    registers: Mapping[RegKind, Mapping[str, int]]
    pc: str
    sp: str
    fp: str
    #: bytes below sp that a leaf function may use without moving sp
    red_zone: int
    #: VM page size of the platform (Mach-O cores do not pad segments to it)
    page_size: int

    def width(self, kind: RegKind, name: str) -> int | None:
        return self.registers[kind].get(name)


def _table(*groups: tuple[int, list[str]]) -> Mapping[str, int]:
    table: dict[str, int] = {}
    for width, names in groups:
        for name in names:
            table[name] = width
    return MappingProxyType(table)


_ARM64 = ArchInfo(
    arch=Arch.ARM64,
    pointer_size=8,
    registers=MappingProxyType(
        {
            RegKind.GPR: _table(
                (8, [f"x{i}" for i in range(29)] + ["fp", "lr", "sp", "pc"]),
                # flags: the word after cpsr (padding on arm64, pointer-auth flags on arm64e)
                (4, ["cpsr", "flags"]),
            ),
            RegKind.FPR: _table((16, [f"v{i}" for i in range(32)]), (4, ["fpsr", "fpcr"])),
            RegKind.EXC: _table((8, ["far"]), (4, ["esr", "exception"])),
        }
    ),
    pc="pc",
    sp="sp",
    fp="fp",
    red_zone=0,
    page_size=0x4000,
)

_X86_64_GPR = (
    ["rax", "rbx", "rcx", "rdx", "rdi", "rsi", "rbp", "rsp"]
    + [f"r{i}" for i in range(8, 16)]
    + ["rip", "rflags", "cs", "fs", "gs"]
    # Linux user_regs_struct adds these; Mach thread state has no slot for them
    + ["ss", "ds", "es", "fs_base", "gs_base", "orig_rax"]
)

_X86_64 = ArchInfo(
    arch=Arch.X86_64,
    pointer_size=8,
    registers=MappingProxyType(
        {
            RegKind.GPR: _table((8, _X86_64_GPR)),
            RegKind.FPR: _table(
                (2, ["fcw", "fsw"]),
                (1, ["ftw"]),
                (2, ["fop"]),
                # Mach stores ip/dp as 32-bit offsets with a selector; Linux fxsave as 64-bit
                (8, ["fpu_ip", "fpu_dp"]),
                (2, ["fpu_cs", "fpu_ds"]),
                (4, ["mxcsr", "mxcsrmask"]),
                (16, [f"stmm{i}" for i in range(8)] + [f"xmm{i}" for i in range(16)]),
            ),
            RegKind.EXC: _table((2, ["trapno", "cpu"]), (4, ["err"]), (8, ["faultvaddr"])),
        }
    ),
    pc="rip",
    sp="rsp",
    fp="rbp",
    red_zone=128,
    page_size=0x1000,
)

ARCHES: Mapping[Arch, ArchInfo] = MappingProxyType({Arch.ARM64: _ARM64, Arch.X86_64: _X86_64})


def arch_info(arch: Arch | str) -> ArchInfo:
    return ARCHES[Arch(arch)]
