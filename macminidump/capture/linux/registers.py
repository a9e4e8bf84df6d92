"""A stopped thread's registers through ptrace -> arch.py's register dicts (x86_64).

``ThreadRegisters.read`` asks for user_regs_struct (PTRACE_GETREGS), the fxsave area
(PTRACE_GETFPREGS) and the XSAVE area (PTRACE_GETREGSET NT_X86_XSTATE), and decodes the
first two as ``linux_abi`` declares them. ``trim_xstate`` keeps the XSAVE features
debuggers know (``model.Thread.xsave``), as gcore does.
"""

from __future__ import annotations

import ctypes
import struct

from ...arch import RegKind
from ...linux_abi import FXSAVE_SIZE, NT_X86_XSTATE, X86_64_USER_REGS, fxsave_registers
from ...linux_abi_packed import USER_REGS_STRUCT_X86_64_FORMAT
from .ptrace import (
    PTRACE_GETFPREGS,
    PTRACE_GETREGS,
    PTRACE_GETREGSET,
    IoVec,
    read_request,
    request,
)

_USER_REGS = struct.Struct(USER_REGS_STRUCT_X86_64_FORMAT)
#: large enough for every XSAVE layout seen (11,008 B with AMX)
XSTATE_BUFFER = 64 * 1024
#: XSAVE component sizes (standard format) as gdb computes what a core's xstate holds
XSTATE_SSE_SIZE, XSTATE_AVX_SIZE, XSTATE_MPX_SIZE = 576, 832, 1088
XSTATE_AVX512_SIZE, XSTATE_PKRU_SIZE = 2688, 2696
#: AMX TILECFG and TILEDATA: gdb does not know them, gcore masks them out
XFEATURE_AMX = (1 << 17) | (1 << 18)
#: offsets in the XSAVE area: software-reserved xcr0 copy, XSTATE_BV and XCOMP_BV
XSAVE_XCR0_OFFSET, XSAVE_XSTATE_BV_OFFSET, XSAVE_XCOMP_BV_OFFSET = 464, 512, 520


def gpr(data: bytes | memoryview) -> dict[str, int]:
    """user_regs_struct -> arch.py's x86_64 gpr names."""
    return dict(zip(X86_64_USER_REGS, _USER_REGS.unpack_from(data, 0)))


class ThreadRegisters:
    """Reads threads' registers into one buffer, reused for every thread of a capture."""

    def __init__(self) -> None:
        self._buffer = ctypes.create_string_buffer(XSTATE_BUFFER)
        self._address = ctypes.addressof(self._buffer)
        self._pointer = ctypes.c_void_p(self._address)
        self._iov = IoVec(self._address, XSTATE_BUFFER)
        self._iov_pointer = ctypes.c_void_p(ctypes.addressof(self._iov))
        #: the buffer's bytes, read without ctypes.string_at's Python frame (two reads
        #: a thread) and unpacked in place
        self._view = memoryview(self._buffer).cast("B")

    def read(self, tid: int) -> tuple[dict[RegKind, dict[str, int]], bytes | None] | None:
        """(register sets by kind, the XSAVE area or None); None when the thread is gone.

        The fxsave area or the XSAVE area is missing where the kernel refuses it."""
        address, view = self._address, self._view
        if not read_request(PTRACE_GETREGS, tid, 0, self._pointer):
            return None
        regsets = {RegKind.GPR: gpr(view)}
        iov = self._iov
        iov.iov_len = XSTATE_BUFFER
        xsave = None
        if read_request(PTRACE_GETREGSET, tid, NT_X86_XSTATE, self._iov_pointer):
            xsave = bytes(view[: min(iov.iov_len, XSTATE_BUFFER)])
        if xsave is not None and len(xsave) >= FXSAVE_SIZE:
            # the XSAVE area starts with the fxsave image: the same registers as
            # PTRACE_GETFPREGS gives (only its software-reserved tail differs), one
            # system call a thread fewer
            regsets[RegKind.FPR] = fxsave_registers(xsave)
        elif request(PTRACE_GETFPREGS, tid, 0, address) == 0:
            regsets[RegKind.FPR] = fxsave_registers(ctypes.string_at(address, FXSAVE_SIZE))
        return regsets, xsave


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


#: xcr0 (as its 8 bytes) -> the largest XSAVE area it leaves untrimmed (-1: with AMX)
_UNTRIMMED: dict[bytes, int] = {}


def trim_xstate(data: bytes) -> bytes:
    """The XSAVE area as gcore writes it: AMX bits masked out of xcr0 and XSTATE_BV, and
    cut to the size those features take (2,688 B with AVX-512; 11,008 B from ptrace on a
    CPU with AMX would make gdb warn "Unexpected size")."""
    if len(data) < XSAVE_XCOMP_BV_OFFSET:
        return data
    # no AMX (so none in XSTATE_BV either) and no more than the size: nothing to trim,
    # the common case, and the same xcr0 for every thread of a process
    key = data[XSAVE_XCR0_OFFSET : XSAVE_XCR0_OFFSET + 8]
    untrimmed = _UNTRIMMED.get(key)
    if untrimmed is None:
        xcr0 = int.from_bytes(key, "little")
        untrimmed = -1 if xcr0 & XFEATURE_AMX else _xstate_size(xcr0)
        if len(_UNTRIMMED) < 64:
            _UNTRIMMED[key] = untrimmed
    if len(data) <= untrimmed:
        return data
    out = bytearray(data)
    for offset in (XSAVE_XCR0_OFFSET, XSAVE_XSTATE_BV_OFFSET):
        value = int.from_bytes(out[offset : offset + 8], "little") & ~XFEATURE_AMX
        out[offset : offset + 8] = value.to_bytes(8, "little")
    xcr0 = int.from_bytes(out[XSAVE_XCR0_OFFSET : XSAVE_XCR0_OFFSET + 8], "little")
    return bytes(out[: min(len(out), _xstate_size(xcr0))])
