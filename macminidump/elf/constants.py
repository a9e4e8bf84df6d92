"""Numbers of the ELF core format (Linux): IntEnums and constants only, no I/O.

Values follow ``<elf.h>`` (glibc) and the kernel's ``include/uapi/linux/elf.h``; the
numbers a live process shows too (signals, auxv types, program header types and flags)
are in :mod:`macminidump.linux_abi`. Note types are only meaningful together with the
note's owner: type 1 is ``NT_PRSTATUS`` for owner "CORE" but ``NT_GNU_ABI_TAG`` for
owner "GNU", so decoders must key on (owner, type), as pyelftools does.
"""

from __future__ import annotations

import struct

from ..linux_abi import NT_X86_XSTATE
from ..linux_abi_packed import ELF64_PHDR_FORMAT, ELF64_PHDR_SIZE
from ..plain_enum import Enum, IntEnum
from .packed import ELF64_EHDR_SIZE

#: e_ident[0:4]
ELFMAG = b"\x7fELF"
#: the ELF header's and a program header's sizes (of their declarations, ``schema``)
EHDR_SIZE = ELF64_EHDR_SIZE
PHDR_SIZE = ELF64_PHDR_SIZE
#: a program header kept raw (a RawItem: p_type is its kind) is the bytes after p_type,
#: its first field
P_TYPE_SIZE = struct.calcsize("<" + ELF64_PHDR_FORMAT[1])
#: alignment of a note's name and desc (both ELF32 and ELF64 cores on Linux use 4)
NOTE_ALIGN = 4
#: e_phnum's escape value: more headers need the section-0 extension (not written)
PN_XNUM = 0xFFFF


class ElfClass(IntEnum):
    ELFCLASSNONE = 0
    ELFCLASS32 = 1
    ELFCLASS64 = 2


class ElfData(IntEnum):
    ELFDATANONE = 0
    ELFDATA2LSB = 1
    ELFDATA2MSB = 2


class ElfVersion(IntEnum):
    EV_NONE = 0
    EV_CURRENT = 1


class ElfOsAbi(IntEnum):
    # the kernel and gcore write SYSV (0) in cores, not LINUX
    ELFOSABI_SYSV = 0
    ELFOSABI_LINUX = 3


class ElfType(IntEnum):
    ET_NONE = 0
    ET_REL = 1
    ET_EXEC = 2
    ET_DYN = 3
    ET_CORE = 4


class ElfMachine(IntEnum):
    EM_X86_64 = 62
    EM_AARCH64 = 183


class NoteOwner(str, Enum):
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


class CoreNoteType(IntEnum):
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
    NT_X86_XSTATE = NT_X86_XSTATE  # the XSAVE area (linux_abi: also ptrace's regset id)
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
