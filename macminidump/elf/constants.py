"""Numbers of the ELF core format (Linux): IntEnums and constants only, no I/O, no construct.

Values follow ``<elf.h>`` (glibc) and the kernel's ``include/uapi/linux/elf.h`` /
``auxvec.h``. Note types are only meaningful together with the note's owner: type 1 is
``NT_PRSTATUS`` for owner "CORE" but ``NT_GNU_ABI_TAG`` for owner "GNU", so decoders must
key on (owner, type), as pyelftools does.
"""

from __future__ import annotations

import enum

#: e_ident[0:4]
ELFMAG = b"\x7fELF"
#: e_ident is 16 bytes; bytes 9..15 are padding
EI_NIDENT = 16
#: alignment of a note's name and desc (both ELF32 and ELF64 cores on Linux use 4)
NOTE_ALIGN = 4


class ElfClass(enum.IntEnum):
    ELFCLASSNONE = 0
    ELFCLASS32 = 1
    ELFCLASS64 = 2


class ElfData(enum.IntEnum):
    ELFDATANONE = 0
    ELFDATA2LSB = 1
    ELFDATA2MSB = 2


class ElfVersion(enum.IntEnum):
    EV_NONE = 0
    EV_CURRENT = 1


class ElfOsAbi(enum.IntEnum):
    # the kernel and gcore write SYSV (0) in cores, not LINUX
    ELFOSABI_SYSV = 0
    ELFOSABI_LINUX = 3


class ElfType(enum.IntEnum):
    ET_NONE = 0
    ET_REL = 1
    ET_EXEC = 2
    ET_DYN = 3
    ET_CORE = 4


class ElfMachine(enum.IntEnum):
    EM_X86_64 = 62
    EM_AARCH64 = 183


class SegmentType(enum.IntEnum):
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


class SegmentFlags(enum.IntFlag):
    PF_X = 1
    PF_W = 2
    PF_R = 4


class NoteOwner(str, enum.Enum):
    """The note name without its NUL. On disk, namesz counts the NUL ("CORE\\0" = 5)."""

    CORE = "CORE"
    LINUX = "LINUX"
    GNU = "GNU"
    GDB = "GDB"
    #: this package's own notes (memory_note.py)
    MACMINIDUMP = "MACMINIDUMP"

    def __str__(self) -> str:
        return self.value


#: n_type of the "MACMINIDUMP" note saying how the memory was chosen (memory_note.py).
#: No CORE or LINUX note has this number: readers that go by n_type alone (pyelftools,
#: pwntools' Corefile) took the earlier 1 for an NT_PRSTATUS and failed on the core.
NT_MEMORY_SELECTION = 0x4D4D0001


class CoreNoteType(enum.IntEnum):
    """n_type of the notes the kernel and gcore write in a core (owners CORE, LINUX, GDB)."""

    # owner "CORE"
    NT_PRSTATUS = 1
    NT_FPREGSET = 2  # x86_64: user_fpregs_struct (fxsave, 512 B); aarch64: user_fpsimd_state
    NT_PRPSINFO = 3
    NT_TASKSTRUCT = 4
    NT_AUXV = 6
    NT_SIGINFO = 0x53494749  # "SIGI"
    NT_FILE = 0x46494C45  # "FILE"
    # owner "LINUX"
    NT_PRXFPREG = 0x46E62B7F
    NT_X86_XSTATE = 0x202
    NT_ARM_TLS = 0x401
    NT_ARM_HW_BREAK = 0x402
    NT_ARM_HW_WATCH = 0x403
    NT_ARM_SYSTEM_CALL = 0x404
    NT_ARM_SVE = 0x405
    NT_ARM_PAC_MASK = 0x406
    NT_ARM_TAGGED_ADDR_CTRL = 0x409
    NT_ARM_PAC_ENABLED_KEYS = 0x40A
    # owner "GDB": gcore's XML target description (gdb 10+)
    NT_GDB_TDESC = 0xFF000000


class AuxvType(enum.IntEnum):
    """a_type of an auxiliary vector entry (NT_AUXV); the vector ends at AT_NULL."""

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


class LinuxSignal(enum.IntEnum):
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

#: si_code values (generic, <asm-generic/siginfo.h>)
SI_USER = 0
SI_KERNEL = 0x80
SI_QUEUE = -1
SI_TKILL = -6
