"""Mach thread-state flavors: the one table of their numbers and register layouts.

Data only. For each architecture, the three flavors that ``thread_get_state`` returns
and a Mach-O core's LC_THREAD holds (GPR first, the order an LC_THREAD must start
with), each laid out field by field: a register named as :mod:`macminidump.arch` names
it with its width in bytes, or reserved bytes (``None``). Everything is little-endian.

Made from this table: the construct declarations of :mod:`macminidump.macho.schema` and
the Mach backend's state <-> register conversion (``capture/mach/registers.py``).
``tests/test_mach_flavors.py`` proves the table equal, field for field, to the ctypes
mirror of the SDK (``capture/mach/abi.py``), which ``tests/test_mach_abi.py`` checks
against the SDK headers themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import records
from .arch import Arch, RegKind
from .macho.constants import ArmFlavor, CpuSubtype, CpuType, X86Flavor

#: a register (name, width in bytes) or reserved bytes (None, width)
Field = tuple[str | None, int]


@records.frozen
class FlavorLayout:
    kind: RegKind
    #: the flavor number (``ARM_THREAD_STATE64`` = 6, ...)
    flavor: int
    #: the SDK's name of the flavor, for messages
    name: str
    fields: tuple[Field, ...]
    #: (register name, byte offset, width) of every register, in order
    slots: tuple[tuple[str, int, int], ...] = records.field(init=False)
    #: size in bytes; the flavor's count is in 32-bit words (``size // 4``)
    size: int = records.field(init=False)

    def __attrs_post_init__(self) -> None:
        slots, offset = [], 0
        for name, width in self.fields:
            if name is not None:
                slots.append((name, offset, width))
            offset += width
        if offset % 4:
            raise ValueError(f"{self.name}: {offset} bytes is not a whole number of words")
        object.__setattr__(self, "slots", tuple(slots))
        object.__setattr__(self, "size", offset)

    @property
    def count(self) -> int:
        return self.size // 4


@records.frozen
class MachArch:
    arch: Arch
    cputype: int
    cpusubtype: int
    #: by kind, GPR first
    flavors: Mapping[RegKind, FlavorLayout]


def _regs(width: int, names: list[str]) -> list[Field]:
    return [(name, width) for name in names]


_ARM64 = MachArch(
    Arch.ARM64,
    CpuType.ARM64,
    CpuSubtype.ARM64_ALL,
    MappingProxyType(
        {
            RegKind.GPR: FlavorLayout(
                RegKind.GPR,
                ArmFlavor.THREAD_STATE64,
                "ARM_THREAD_STATE64",
                # flags: the word after cpsr (padding on arm64, pointer-auth flags on arm64e)
                (
                    *_regs(8, [f"x{i}" for i in range(29)] + ["fp", "lr", "sp", "pc"]),
                    *_regs(4, ["cpsr", "flags"]),
                ),
            ),
            RegKind.FPR: FlavorLayout(
                RegKind.FPR,
                ArmFlavor.NEON_STATE64,
                "ARM_NEON_STATE64",
                # the C struct's tail padding (alignment 16) is counted: LLDB rejects 130
                (*_regs(16, [f"v{i}" for i in range(32)]), *_regs(4, ["fpsr", "fpcr"]), (None, 8)),
            ),
            RegKind.EXC: FlavorLayout(
                RegKind.EXC,
                ArmFlavor.EXCEPTION_STATE64,
                "ARM_EXCEPTION_STATE64",
                (("far", 8), ("esr", 4), ("exception", 4)),
            ),
        }
    ),
)

_X86_64 = MachArch(
    Arch.X86_64,
    CpuType.X86_64,
    CpuSubtype.X86_64_ALL,
    MappingProxyType(
        {
            RegKind.GPR: FlavorLayout(
                RegKind.GPR,
                X86Flavor.THREAD_STATE64,
                "x86_THREAD_STATE64",
                tuple(
                    _regs(
                        8,
                        ["rax", "rbx", "rcx", "rdx", "rdi", "rsi", "rbp", "rsp"]
                        + [f"r{i}" for i in range(8, 16)]
                        + ["rip", "rflags", "cs", "fs", "gs"],
                    )
                ),
            ),
            RegKind.FPR: FlavorLayout(
                RegKind.FPR,
                X86Flavor.FLOAT_STATE64,
                "x86_FLOAT_STATE64",
                # fcw/fsw: the raw control/status words; fpu_ip/fpu_dp: 32-bit offsets
                # (arch.py allows 8 bytes for Linux's fxsave); stmm*: the 80-bit x87 value
                # in the low 10 bytes of 16
                (
                    (None, 8),  # fpu_reserved[2]
                    ("fcw", 2),
                    ("fsw", 2),
                    ("ftw", 1),
                    (None, 1),  # fpu_rsrv1
                    ("fop", 2),
                    ("fpu_ip", 4),
                    ("fpu_cs", 2),
                    (None, 2),  # fpu_rsrv2
                    ("fpu_dp", 4),
                    ("fpu_ds", 2),
                    (None, 2),  # fpu_rsrv3
                    ("mxcsr", 4),
                    ("mxcsrmask", 4),
                    *_regs(16, [f"stmm{i}" for i in range(8)] + [f"xmm{i}" for i in range(16)]),
                    (None, 96),  # fpu_rsrv4
                    (None, 4),  # fpu_reserved1
                ),
            ),
            RegKind.EXC: FlavorLayout(
                RegKind.EXC,
                X86Flavor.EXCEPTION_STATE64,
                "x86_EXCEPTION_STATE64",
                (("trapno", 2), ("cpu", 2), ("err", 4), ("faultvaddr", 8)),
            ),
        }
    ),
)

MACH_ARCHES: Mapping[Arch, MachArch] = MappingProxyType({Arch.ARM64: _ARM64, Arch.X86_64: _X86_64})


def mach_arch(arch: Arch | str) -> MachArch:
    return MACH_ARCHES[Arch(arch)]


def flavor_layout(arch: Arch | str, kind: RegKind | str) -> FlavorLayout:
    return MACH_ARCHES[Arch(arch)].flavors[RegKind(kind)]
