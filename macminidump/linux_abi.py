"""The Linux x86_64 process ABI: what a live process and its core both hold, declared once.

ptrace hands a tracer a thread's registers as ``user_regs_struct`` and the fxsave area,
and a signal as ``siginfo_t``; /proc/PID/auxv is the auxiliary vector. An ELF core holds
the very same structures (NT_PRSTATUS's ``pr_reg``, NT_FPREGSET, NT_SIGINFO, NT_AUXV), and
the XSAVE area is both ptrace's NT_X86_XSTATE register set and the core's note of that
type. The loaded program is itself ELF: its program header table (found through
AT_PHDR), ``.dynamic`` and glibc's ``r_debug``/``link_map`` are what the capture walks to
list the libraries, and the core's program headers are the same ``Elf64_Phdr``.

So these numbers and names live here, in neither of their users: the Linux backend
(``capture/linux/``, which must know nothing of core files) and the ELF core format
(``elf/``, which must know nothing of ptrace) both import them. Their layouts are declared
in :mod:`macminidump.linux_abi_schema` (construct, the project's source of truth); this
module, the one decoder of the fxsave area and the capture backend use the ``struct``
layouts generated from those declarations (:mod:`macminidump.linux_abi_packed`), so
that a dump imports no construct. Registers are named as :mod:`macminidump.arch` does.
"""

from __future__ import annotations

import struct

from .linux_abi_packed import (
    SIGINFO_FAULT_FIELDS,
    SIGINFO_FAULT_FORMAT,
    SIGINFO_FIELDS,
    SIGINFO_FORMAT,
    USER_FPREGS_STRUCT_FORMAT,
)
from .plain_enum import IntEnum, IntFlag

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any

# -- signals ----------------------------------------------------------------------------------


class LinuxSignal(IntEnum):
    """Signal numbers of Linux x86_64 and aarch64 (not the host's: macOS numbers differ)."""

    SIGHUP = 1
    SIGINT = 2
    SIGQUIT = 3
    SIGILL = 4
    SIGTRAP = 5
    SIGABRT = 6
    SIGBUS = 7
    SIGFPE = 8
    SIGKILL = 9
    SIGUSR1 = 10
    SIGSEGV = 11
    SIGUSR2 = 12
    SIGPIPE = 13
    SIGALRM = 14
    SIGTERM = 15
    SIGSTKFLT = 16
    SIGCHLD = 17
    SIGCONT = 18
    SIGSTOP = 19
    SIGTSTP = 20
    SIGTTIN = 21
    SIGTTOU = 22
    SIGURG = 23
    SIGXCPU = 24
    SIGXFSZ = 25
    SIGVTALRM = 26
    SIGPROF = 27
    SIGWINCH = 28
    SIGIO = 29
    SIGPWR = 30
    SIGSYS = 31


#: signals whose siginfo carries a fault address (si_addr at offset 16) when the kernel
#: raised them (si_code > 0); a kill()/tgkill() of the same signal carries _kill instead
FAULT_SIGNALS = frozenset(
    {
        LinuxSignal.SIGILL,
        LinuxSignal.SIGTRAP,
        LinuxSignal.SIGBUS,
        LinuxSignal.SIGFPE,
        LinuxSignal.SIGSEGV,
    }
)


def has_fault_address(signo: int, code: int) -> bool:
    """Whether siginfo_t holds ``si_addr`` for this signal (kernel-raised faults)."""
    return signo in FAULT_SIGNALS and code > 0


#: siginfo_t (PTRACE_GETSIGINFO, NT_SIGINFO): ``linux_abi_schema.siginfo``'s two layouts
SIGINFO = struct.Struct(SIGINFO_FORMAT)
SIGINFO_FAULT = struct.Struct(SIGINFO_FAULT_FORMAT)
SIGINFO_SIZE = SIGINFO.size


def siginfo_values(data: Any, offset: int = 0) -> tuple[int, int, int, int | None]:
    """siginfo_t (SIGINFO_SIZE bytes at ``offset``) -> (si_signo, si_errno, si_code,
    si_addr); si_addr is None unless ``has_fault_address``."""
    v = dict(zip(SIGINFO_FIELDS, SIGINFO.unpack_from(data, offset)))
    signo, errno, code = v["si_signo"], v["si_errno"], v["si_code"]
    if not has_fault_address(signo, code):
        return signo, errno, code, None
    fault = dict(zip(SIGINFO_FAULT_FIELDS, SIGINFO_FAULT.unpack_from(data, offset)))
    return signo, errno, code, fault["si_addr"]


# -- the auxiliary vector -------------------------------------------------------------------


class AuxvType(IntEnum):
    """a_type of an auxiliary vector entry; the vector ends at AT_NULL."""

    AT_NULL = 0
    AT_IGNORE = 1
    AT_EXECFD = 2
    AT_PHDR = 3
    AT_PHENT = 4
    AT_PHNUM = 5
    AT_PAGESZ = 6
    AT_BASE = 7
    AT_FLAGS = 8
    AT_ENTRY = 9
    AT_NOTELF = 10
    AT_UID = 11
    AT_EUID = 12
    AT_GID = 13
    AT_EGID = 14
    AT_PLATFORM = 15
    AT_HWCAP = 16
    AT_CLKTCK = 17
    AT_SECURE = 23
    AT_BASE_PLATFORM = 24
    AT_RANDOM = 25
    AT_HWCAP2 = 26
    AT_RSEQ_FEATURE_SIZE = 27
    AT_RSEQ_ALIGN = 28
    AT_EXECFN = 31
    AT_SYSINFO = 32  # i386 only
    AT_SYSINFO_EHDR = 33
    AT_MINSIGSTKSZ = 51


# -- registers (x86_64) ------------------------------------------------------------------------

#: struct user_regs_struct (x86_64), in kernel order, named as in arch.py
X86_64_USER_REGS = (
    "r15",
    "r14",
    "r13",
    "r12",
    "rbp",
    "rbx",
    "r11",
    "r10",
    "r9",
    "r8",
    "rax",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "orig_rax",
    "rip",
    "cs",
    "rflags",  # "eflags" in Linux
    "rsp",
    "ss",
    "fs_base",
    "gs_base",
    "ds",
    "es",
    "fs",
    "gs",
)

#: the fxsave area fields of user_fpregs_struct (x86_64, NT_FPREGSET), named as in arch.py
X86_64_FPREGS = (
    "fcw",
    "fsw",
    "ftw",
    "fop",
    "fpu_ip",
    "fpu_dp",
    "mxcsr",
    "mxcsrmask",
    *(f"stmm{i}" for i in range(8)),
    *(f"xmm{i}" for i in range(16)),
)

_FXSAVE = struct.Struct(USER_FPREGS_STRUCT_FORMAT)
FXSAVE_SIZE = _FXSAVE.size


def fxsave_registers(data: bytes) -> dict[str, int]:
    """The fxsave area (FXSAVE_SIZE bytes) -> arch.py's x86_64 fpr names (a new dict).

    ``ftw`` keeps its low byte (the abridged tag word; the high byte is reserved); the
    software-reserved bytes at the end are not registers.
    """
    key = bytes(data[:FXSAVE_SIZE])
    known = _FXSAVE_DECODED.get(key)
    if known is not None:
        return known.copy()
    values = list(_FXSAVE.unpack_from(key, 0))
    for i in _FXSAVE_WIDE:  # (positions known once)
        values[i] = int.from_bytes(values[i], "little")
    out = dict(zip(X86_64_FPREGS, values))
    out["ftw"] &= 0xFF
    if len(_FXSAVE_DECODED) >= _FXSAVE_KEPT:
        _FXSAVE_DECODED.clear()
    _FXSAVE_DECODED[key] = out.copy()
    return out


#: fxsave areas decoded lately, by their bytes: the threads of a process mostly hold the
#: same floating-point state (a 1,000-thread capture decodes 1,000 areas, and its
#: read-back 1,000 more, of a few distinct ones), and a copy costs a tenth of a decode
_FXSAVE_DECODED: dict[bytes, dict[str, int]] = {}
_FXSAVE_KEPT = 256


def forget_decoded() -> None:
    """Drop the remembered fxsave areas: register contents (an xmm register may hold a
    key) are not kept past the capture or the file that held them. Called when a
    capture resumes its target, and when an ELF core is written or its notes read."""
    _FXSAVE_DECODED.clear()


#: positions of the 16-byte fields (st and xmm registers) among the fxsave registers
_FXSAVE_WIDE = tuple(
    i
    for i, value in enumerate(_FXSAVE.unpack(bytes(FXSAVE_SIZE))[: len(X86_64_FPREGS)])
    if isinstance(value, bytes)
)


#: the XSAVE area's register set: PTRACE_GETREGSET's id and its core note's n_type
NT_X86_XSTATE = 0x202


# -- the loaded program's ELF structures ------------------------------------------------------


class SegmentType(IntEnum):
    PT_NULL = 0
    PT_LOAD = 1
    PT_DYNAMIC = 2
    PT_INTERP = 3
    PT_NOTE = 4
    PT_SHLIB = 5
    PT_PHDR = 6
    PT_TLS = 7
    PT_GNU_EH_FRAME = 0x6474E550
    PT_GNU_STACK = 0x6474E551
    PT_GNU_RELRO = 0x6474E552
    PT_GNU_PROPERTY = 0x6474E553


class SegmentFlags(IntFlag):
    PF_X = 1
    PF_W = 2
    PF_R = 4


class DynamicTag(IntEnum):
    """d_tag of the ``.dynamic`` entries the capture reads (the list ends at DT_NULL)."""

    DT_NULL = 0
    DT_DEBUG = 21  # the dynamic linker stores its r_debug's address here


#: the bytes of glibc's struct r_debug before r_debug_extended's r_next
R_DEBUG_SIZE = 40
