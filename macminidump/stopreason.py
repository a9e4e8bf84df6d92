"""A thread's exception state, in words: what `inspect` prints as the stop reason."""

from __future__ import annotations

from collections.abc import Mapping

from .arch import Arch
from .linux_abi import LinuxSignal

# Mach exception types (mach/exception_types.h)
MACH_EXCEPTIONS = {
    1: "EXC_BAD_ACCESS",
    2: "EXC_BAD_INSTRUCTION",
    3: "EXC_ARITHMETIC",
    4: "EXC_EMULATION",
    5: "EXC_SOFTWARE",
    6: "EXC_BREAKPOINT",
    7: "EXC_SYSCALL",
    8: "EXC_MACH_SYSCALL",
    9: "EXC_RPC_ALERT",
    10: "EXC_CRASH",
    11: "EXC_RESOURCE",
    12: "EXC_GUARD",
    13: "EXC_CORPSE_NOTIFY",
}

# ARMv8 ESR_ELx.EC exception classes that user code meets
ESR_CLASSES = {
    0x00: "unknown reason",
    0x01: "WFI/WFE trapped",
    0x07: "SIMD/FP access trapped",
    0x0E: "illegal execution state",
    0x15: "SVC (system call)",
    0x18: "MSR/MRS trapped",
    0x20: "instruction abort (lower EL)",
    0x21: "instruction abort (same EL)",
    0x22: "PC alignment fault",
    0x24: "data abort (lower EL)",
    0x25: "data abort (same EL)",
    0x26: "SP alignment fault",
    0x2C: "floating-point exception",
    0x30: "breakpoint (lower EL)",
    0x32: "software step (lower EL)",
    0x34: "watchpoint (lower EL)",
    0x3C: "BRK instruction",
}

# x86 exception vectors
X86_TRAPS = {
    0: "#DE divide error",
    1: "#DB debug",
    3: "#BP breakpoint",
    4: "#OF overflow",
    5: "#BR bound range",
    6: "#UD invalid opcode",
    7: "#NM device not available",
    8: "#DF double fault",
    11: "#NP segment not present",
    12: "#SS stack fault",
    13: "#GP general protection",
    14: "#PF page fault",
    16: "#MF x87 floating point",
    17: "#AC alignment check",
    19: "#XM SIMD floating point",
}


def describe_exception(arch: Arch, exc: Mapping[str, int]) -> str | None:
    """One line for a thread's exception state; None when there is none to speak of."""
    if not exc:
        return None
    if arch == Arch.ARM64:
        return _arm64(exc)
    return _x86_64(exc)


def _arm64(exc: Mapping[str, int]) -> str | None:
    esr, far, exception = exc.get("esr", 0), exc.get("far", 0), exc.get("exception", 0)
    if not esr and not far and not exception:
        return None
    parts = []
    if exception:
        parts.append(MACH_EXCEPTIONS.get(exception, f"exception {exception}"))
    ec = esr >> 26
    what = ESR_CLASSES.get(ec, f"exception class {ec:#x}")
    if ec in (0x24, 0x25):
        what += ", write" if esr & (1 << 6) else ", read"
    parts.append(f"{what} (ESR {esr:#x})")
    if ec in (0x20, 0x21, 0x22, 0x24, 0x25, 0x34):
        parts.append(f"fault address {far:#x}")
    return ": ".join(parts[:1]) + (", " + ", ".join(parts[1:]) if len(parts) > 1 else "")


def _x86_64(exc: Mapping[str, int]) -> str | None:
    trapno, err, fault = exc.get("trapno", 0), exc.get("err", 0), exc.get("faultvaddr", 0)
    if not trapno and not err and not fault:
        return None
    what = X86_TRAPS.get(trapno, f"trap {trapno}")
    if trapno == 14:
        access = "instruction fetch" if err & 0x10 else ("write" if err & 2 else "read")
        present = "protection violation" if err & 1 else "page not present"
        return f"{what}: {access}, {present}, fault address {fault:#x}"
    return f"{what} (error code {err:#x})"


# Linux signals (x86_64 and aarch64 numbers, not the host's: linux_abi) and si_code names
LINUX_SIGNALS = {int(s): s.name for s in LinuxSignal}

SI_CODES = {
    0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER", -3: "SI_MESGQ",
    -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL",
}  # fmt: skip

FAULT_CODES = {
    4: {1: "ILL_ILLOPC", 2: "ILL_ILLOPN", 3: "ILL_ILLADR", 4: "ILL_ILLTRP", 5: "ILL_PRVOPC",
        6: "ILL_PRVREG", 7: "ILL_COPROC", 8: "ILL_BADSTK"},
    5: {1: "TRAP_BRKPT", 2: "TRAP_TRACE", 3: "TRAP_BRANCH", 4: "TRAP_HWBKPT"},
    7: {1: "BUS_ADRALN", 2: "BUS_ADRERR", 3: "BUS_OBJERR", 4: "BUS_MCEERR_AR",
        5: "BUS_MCEERR_AO"},
    8: {1: "FPE_INTDIV", 2: "FPE_INTOVF", 3: "FPE_FLTDIV", 4: "FPE_FLTOVF", 5: "FPE_FLTUND",
        6: "FPE_FLTRES", 7: "FPE_FLTINV", 8: "FPE_FLTSUB"},
    11: {1: "SEGV_MAPERR", 2: "SEGV_ACCERR", 3: "SEGV_BNDERR", 4: "SEGV_PKUERR"},
}  # fmt: skip


def describe_signal(signo: int, code: int = 0, address: int | None = None) -> str:
    """``SIGSEGV (SEGV_MAPERR), fault address 0x0``: a Linux signal as gdb would name it."""
    name = LINUX_SIGNALS.get(signo, f"signal {signo}")
    code_name = FAULT_CODES.get(signo, {}).get(code) if code > 0 else None
    code_name = code_name or SI_CODES.get(code, f"code {code}")
    text = f"{name} ({code_name})"
    if address is not None:
        text += f", fault address {address:#x}"
    return text
