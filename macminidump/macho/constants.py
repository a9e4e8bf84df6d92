"""Mach-O numbers: magics, CPU types, file types, load commands, thread flavors, notes.

Constants and enums only; layouts live in :mod:`macminidump.macho.schema`.
Values are Apple's (``<mach-o/loader.h>``, ``<mach/machine.h>``, ``<mach/thread_status.h>``)
and the LC_NOTE owner strings LLDB and xnu use.
"""

from __future__ import annotations

from ..plain_enum import Enum, IntEnum, IntFlag

#: 64-bit Mach-O magic, as a little-endian u32 reads it from a little-endian file
MH_MAGIC_64 = 0xFEEDFACF
#: 32-bit Mach-O magic
MH_MAGIC = 0xFEEDFACE
#: 64-bit magic of a file in the other byte order (big-endian here): not supported
MH_CIGAM_64 = 0xCFFAEDFE
#: universal ("fat") file magic, stored big-endian
FAT_MAGIC = 0xCAFEBABE

#: "unknown" for addresses and slides in LC_NOTE payloads
UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFF


class CpuType(IntEnum):
    X86 = 7
    ARM = 12
    RISCV = 24
    X86_64 = 0x0100_0007
    ARM64 = 0x0100_000C


class CpuSubtype(IntEnum):
    ARM64_ALL = 0
    X86_64_ALL = 3


class FileType(IntEnum):
    EXECUTE = 2
    CORE = 4
    DYLIB = 6
    DYLINKER = 7
    BUNDLE = 8


class LoadCommand(IntEnum):
    LC_SEGMENT = 0x1
    LC_SYMTAB = 0x2
    LC_THREAD = 0x4
    LC_UNIXTHREAD = 0x5
    LC_LOAD_DYLIB = 0xC
    LC_ID_DYLIB = 0xD
    LC_LOAD_DYLINKER = 0xE
    LC_SEGMENT_64 = 0x19
    LC_UUID = 0x1B
    LC_NOTE = 0x31
    LC_BUILD_VERSION = 0x32
    LC_MAIN = 0x8000_0028


class ArmFlavor(IntEnum):
    THREAD_STATE64 = 6
    EXCEPTION_STATE64 = 7
    NEON_STATE64 = 17


class X86Flavor(IntEnum):
    THREAD_STATE64 = 4
    FLOAT_STATE64 = 5
    EXCEPTION_STATE64 = 6
    #: xnu's wrapper flavors: an inner flavor header (x86_state_hdr) and a union whose
    #: 64-bit member is the largest, so a wrapper's count is its inner count + 2
    THREAD_STATE = 7
    FLOAT_STATE = 8
    EXCEPTION_STATE = 9


#: the wrapper flavor of each x86_64 state (xnu's x86_thread_state_t and kin)
X86_WRAPPER_OF = {
    X86Flavor.THREAD_STATE64: X86Flavor.THREAD_STATE,
    X86Flavor.FLOAT_STATE64: X86Flavor.FLOAT_STATE,
    X86Flavor.EXCEPTION_STATE64: X86Flavor.EXCEPTION_STATE,
}


class VmProt(IntFlag):
    READ = 1
    WRITE = 2
    EXECUTE = 4


class NoteOwner(str, Enum):
    """LC_NOTE ``data_owner`` strings (at most 16 bytes, NUL-padded on disk)."""

    MAIN_BIN_SPEC = "main bin spec"
    LOAD_BINARY = "load binary"
    ALL_IMAGE_INFOS = "all image infos"
    ADDRABLE_BITS = "addrable bits"
    PROCESS_METADATA = "process metadata"
    KERN_VER_STR = "kern ver str"
    #: this package's: how a capture chose the memory saved (memory_note.py)
    MEMORY_SELECTION = "macminidump mem"

    def __str__(self) -> str:
        return self.value


class MainBinType(IntEnum):
    """``type`` of a ``main bin spec`` note."""

    UNKNOWN = 0
    KERNEL = 1
    #: address is dyld's header; forces LLDB's dyld loader
    USER_PROCESS = 2
    STANDALONE = 3
    #: address is ``dyld_all_image_infos`` (LLDB 21+)
    DYLD_ALL_IMAGE_INFOS = 4
