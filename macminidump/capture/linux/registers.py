"""A thread's registers as ptrace gives them -> arch.py's register dicts (x86_64).

``gpr`` decodes user_regs_struct, ``fpr`` the fxsave area (user_fpregs_struct);
``trim_xstate`` cuts the XSAVE area to what gdb expects of a core (as gcore writes it).
"""

from __future__ import annotations

import struct

from ...elf.schema import X86_64_USER_REGS as USER_REGS

USER_REGS_SIZE = len(USER_REGS) * 8
FPREGS_SIZE = 512
#: large enough for every XSAVE layout seen (11,008 B with AMX)
XSTATE_BUFFER = 64 * 1024
#: XSAVE component sizes (standard format) as gdb computes what a core's xstate holds
XSTATE_SSE_SIZE, XSTATE_AVX_SIZE, XSTATE_MPX_SIZE = 576, 832, 1088
XSTATE_AVX512_SIZE, XSTATE_PKRU_SIZE = 2688, 2696
#: AMX TILECFG and TILEDATA: gdb does not know them, gcore masks them out
XFEATURE_AMX = (1 << 17) | (1 << 18)
#: offsets in the XSAVE area: software-reserved xcr0 copy, XSTATE_BV and XCOMP_BV
XSAVE_XCR0_OFFSET, XSAVE_XSTATE_BV_OFFSET, XSAVE_XCOMP_BV_OFFSET = 464, 512, 520

_USER_REGS = struct.Struct(f"<{len(USER_REGS)}Q")
_FXSAVE = struct.Struct("<HHHHQQII48Q")
_VECTOR_NAMES = tuple(f"stmm{i}" for i in range(8)) + tuple(f"xmm{i}" for i in range(16))


def gpr(data: bytes) -> dict[str, int]:
    """user_regs_struct -> arch.py's x86_64 gpr names."""
    return dict(zip(USER_REGS, _USER_REGS.unpack_from(data, 0)))


def fpr(data: bytes) -> dict[str, int]:
    """user_fpregs_struct (the fxsave area) -> arch.py's x86_64 fpr names."""
    fcw, fsw, ftw, fop, ip, dp, mxcsr, mask, *halves = _FXSAVE.unpack_from(data, 0)
    out = {
        "fcw": fcw,
        "fsw": fsw,
        "ftw": ftw & 0xFF,  # the abridged tag byte; the next byte is reserved
        "fop": fop,
        "fpu_ip": ip,
        "fpu_dp": dp,
        "mxcsr": mxcsr,
        "mxcsrmask": mask,
    }
    for i, name in enumerate(_VECTOR_NAMES):  # st0-7 (16-byte slots), then xmm0-15
        out[name] = halves[2 * i] | halves[2 * i + 1] << 64
    return out


def _xstate_size(xcr0: int) -> int:
    """The XSAVE area size gdb expects for ``xcr0`` (its X86_XSTATE_SIZE)."""
    if xcr0 & (1 << 9):
        return XSTATE_PKRU_SIZE
    if xcr0 & 0xE0:
        return XSTATE_AVX512_SIZE
    if xcr0 & 0x18:
        return XSTATE_MPX_SIZE
    if xcr0 & 0x4:
        return XSTATE_AVX_SIZE
    return XSTATE_SSE_SIZE


def trim_xstate(data: bytes) -> bytes:
    """The XSAVE area as gcore writes it: AMX bits masked out of xcr0 and XSTATE_BV, and
    cut to the size those features take (2,688 B with AVX-512; 11,008 B from ptrace on a
    CPU with AMX would make gdb warn "Unexpected size")."""
    if len(data) < XSAVE_XCOMP_BV_OFFSET:
        return data
    out = bytearray(data)
    for offset in (XSAVE_XCR0_OFFSET, XSAVE_XSTATE_BV_OFFSET):
        value = int.from_bytes(out[offset : offset + 8], "little") & ~XFEATURE_AMX
        out[offset : offset + 8] = value.to_bytes(8, "little")
    xcr0 = int.from_bytes(out[XSAVE_XCR0_OFFSET : XSAVE_XCR0_OFFSET + 8], "little")
    return bytes(out[: min(len(out), _xstate_size(xcr0))])
