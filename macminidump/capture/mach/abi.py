"""ctypes declarations of the macOS ABI the Mach backend uses: declarations only.

Nothing here loads a library or calls the kernel, so the module imports on any OS; a
later module (:mod:`.libsystem`) binds the functions of libSystem with these types.

Every number in this file is checked against the real macOS SDK headers by
``tests/test_mach_abi.py``, which compiles a probe with ``zig cc -target <arch>-macos``
for arm64 and x86_64 and compares the ``sizeof``/``offsetof``/alignment of every
Structure and field, the size and signedness of every type alias and the value of every
public integer constant. Adding a number here without the SDK agreeing fails that test.

Conventions:

- Structures are named after the SDK's struct tags. Each one is an :class:`SDKStructure`
  and says which C type it mirrors (``_c_type_``) and how its Python field names map to
  the C ones (``_c_prefix_``: the SDK spells Darwin's machine structs ``__x``, ``__pc``,
  which Python would mangle inside classes, so the Python names drop the ``__``).
- Addresses inside *another* process (dyld's image list, read from the target) are
  ``c_uint64``, never ``c_void_p``: they are numbers, not pointers to follow.
- Layouts that differ per architecture (thread states, ``__darwin_mcontext64``) are
  reached through :func:`layouts_for`, so both can be checked on any host.
- ctypes cannot over-align a structure before Python 3.13 (``_align_``). Where the SDK
  says ``__attribute__((aligned(16)))`` the declaration adds explicit tail padding so
  ``sizeof`` matches, lists the padding in ``_padding_`` and records the C alignment in
  ``_c_align_``. Buffers passed to the kernel need no more than 4-byte alignment.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from macminidump.arch import Arch, RegKind

from ... import records

# --------------------------------------------------------------------------------------
# Type aliases (LP64: identical on arm64 and x86_64 except where ArchLayouts says so)
# --------------------------------------------------------------------------------------

natural_t = ctypes.c_uint32
integer_t = ctypes.c_int32
kern_return_t = ctypes.c_int
#: ``int`` on arm64, ``unsigned int`` on x86_64 (see ``ArchLayouts.type_overrides``)
boolean_t = ctypes.c_int
mach_port_t = natural_t
mach_port_name_t = natural_t
task_t = mach_port_t
task_name_t = mach_port_t
thread_act_t = mach_port_t
vm_map_t = mach_port_t
vm_map_read_t = mach_port_t
mach_msg_type_number_t = natural_t
# Mach messages and ports (mach/message.h, mach/port.h)
mach_msg_return_t = kern_return_t
mach_msg_option_t = integer_t
mach_msg_size_t = natural_t
mach_msg_timeout_t = natural_t
mach_msg_id_t = integer_t
mach_msg_bits_t = ctypes.c_uint
mach_msg_type_name_t = ctypes.c_uint
mach_port_right_t = natural_t
mach_port_delta_t = integer_t
ipc_space_t = mach_port_t
# exceptions (mach/exception_types.h) and posix_spawn (spawn.h: opaque pointers)
exception_type_t = ctypes.c_int
exception_mask_t = ctypes.c_uint
exception_behavior_t = ctypes.c_int
mach_exception_data_type_t = ctypes.c_int64
posix_spawnattr_t = ctypes.c_void_p
posix_spawn_file_actions_t = ctypes.c_void_p
#: out-array of ``task_threads``: free it with ``mach_vm_deallocate``
thread_act_array_t = ctypes.POINTER(thread_act_t)
#: what mach_ports_register takes and mach_ports_lookup allocates (free: vm_deallocate)
mach_port_array_t = ctypes.POINTER(mach_port_t)
vm_address_t = ctypes.c_uint64
vm_size_t = ctypes.c_uint64
mach_vm_address_t = ctypes.c_uint64
mach_vm_size_t = ctypes.c_uint64
memory_object_offset_t = ctypes.c_uint64
vm_object_id_t = ctypes.c_uint64
vm32_object_id_t = ctypes.c_uint32
vm_prot_t = ctypes.c_int
vm_inherit_t = ctypes.c_uint
vm_behavior_t = ctypes.c_int
pid_t = ctypes.c_int
task_flavor_t = natural_t
thread_flavor_t = natural_t
thread_state_flavor_t = ctypes.c_int
task_info_t = ctypes.POINTER(integer_t)
thread_info_t = ctypes.POINTER(integer_t)
thread_state_t = ctypes.POINTER(natural_t)
vm_region_recurse_info_t = ctypes.POINTER(integer_t)
uuid_t = ctypes.c_uint8 * 16

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

# kern_return_t (mach/kern_return.h). KERN_RETURN_NAMES is built from every KERN_*
# name below but those of NOT_RETURN_CODES (sysctl names, mach_msg options).
KERN_SUCCESS = 0
KERN_INVALID_ADDRESS = 1
KERN_PROTECTION_FAILURE = 2
KERN_NO_SPACE = 3
KERN_INVALID_ARGUMENT = 4
KERN_FAILURE = 5
KERN_RESOURCE_SHORTAGE = 6
KERN_NOT_RECEIVER = 7
KERN_NO_ACCESS = 8
KERN_MEMORY_FAILURE = 9
KERN_MEMORY_ERROR = 10
KERN_ALREADY_IN_SET = 11
KERN_NOT_IN_SET = 12
KERN_NAME_EXISTS = 13
KERN_ABORTED = 14
KERN_INVALID_NAME = 15
KERN_INVALID_TASK = 16
KERN_INVALID_RIGHT = 17
KERN_INVALID_VALUE = 18
KERN_UREFS_OVERFLOW = 19
KERN_INVALID_CAPABILITY = 20
KERN_RIGHT_EXISTS = 21
KERN_INVALID_HOST = 22
KERN_MEMORY_PRESENT = 23
KERN_MEMORY_DATA_MOVED = 24
KERN_MEMORY_RESTART_COPY = 25
KERN_INVALID_PROCESSOR_SET = 26
KERN_POLICY_LIMIT = 27
KERN_INVALID_POLICY = 28
KERN_INVALID_OBJECT = 29
KERN_ALREADY_WAITING = 30
KERN_DEFAULT_SET = 31
KERN_EXCEPTION_PROTECTED = 32
KERN_INVALID_LEDGER = 33
KERN_INVALID_MEMORY_CONTROL = 34
KERN_INVALID_SECURITY = 35
KERN_NOT_DEPRESSED = 36
KERN_TERMINATED = 37
KERN_LOCK_SET_DESTROYED = 38
KERN_LOCK_UNSTABLE = 39
KERN_LOCK_OWNED = 40
KERN_LOCK_OWNED_SELF = 41
KERN_SEMAPHORE_DESTROYED = 42
KERN_RPC_SERVER_TERMINATED = 43
KERN_RPC_TERMINATE_ORPHAN = 44
KERN_RPC_CONTINUE_ORPHAN = 45
KERN_NOT_SUPPORTED = 46
KERN_NODE_DOWN = 47
KERN_NOT_WAITING = 48
KERN_OPERATION_TIMED_OUT = 49
KERN_CODESIGN_ERROR = 50
KERN_POLICY_STATIC = 51
KERN_INSUFFICIENT_BUFFER_SIZE = 52
KERN_DENIED = 53
KERN_MISSING_KC = 54
KERN_INVALID_KC = 55
KERN_NOT_FOUND = 56
KERN_INVALID_GUARD_OBJECT_SLOT = 57

# mach_msg_return_t codes a MIG call can return instead (dead task port, interrupted)
MACH_SEND_INVALID_DEST = 0x10000003
MACH_SEND_TIMED_OUT = 0x10000004
MACH_SEND_INTERRUPTED = 0x10000007
MACH_SEND_INVALID_RIGHT = 0x1000000A
MACH_SEND_MSG_TOO_SMALL = 0x10000008
MACH_RCV_INVALID_NAME = 0x10004002
MACH_RCV_TIMED_OUT = 0x10004003
MACH_RCV_TOO_LARGE = 0x10004004
MACH_RCV_INTERRUPTED = 0x10004005

MACH_PORT_NULL = 0
MACH_PORT_RIGHT_RECEIVE = 1

# mach_msg (mach/message.h)
MACH_SEND_MSG = 0x00000001
MACH_RCV_MSG = 0x00000002
MACH_RCV_TIMEOUT = 0x00000100
MACH_MSGH_BITS_COMPLEX = 0x80000000
MACH_MSGH_BITS_REMOTE_MASK = 0x0000001F
MACH_MSG_TYPE_MOVE_SEND_ONCE = 18
MACH_MSG_TYPE_MAKE_SEND = 20
MACH_MSG_PORT_DESCRIPTOR = 0

# exceptions (mach/exception_types.h)
EXC_BAD_ACCESS = 1
EXC_BAD_INSTRUCTION = 2
EXC_ARITHMETIC = 3
EXC_BREAKPOINT = 6
EXC_CRASH = 10
EXC_MASK_CRASH = 1 << EXC_CRASH
EXCEPTION_DEFAULT = 1
MACH_EXCEPTION_CODES = 0x80000000

# task_info (mach/task_info.h)
TASK_DYLD_INFO = 17
TASK_DYLD_INFO_COUNT = 5
TASK_DYLD_ALL_IMAGE_INFO_64 = 1

# thread_info (mach/thread_info.h)
THREAD_IDENTIFIER_INFO = 4
THREAD_IDENTIFIER_INFO_COUNT = 6
THREAD_EXTENDED_INFO = 5
THREAD_EXTENDED_INFO_COUNT = 28
MAXTHREADNAMESIZE = 64
TH_STATE_STOPPED = 2
TH_STATE_WAITING = 3

# mach_vm_region_recurse (mach/vm_region.h). The kernel fills as much of
# vm_region_submap_info_64 as the count passed in allows and returns the count it wrote.
VM_REGION_SUBMAP_INFO_V0_COUNT_64 = 16
VM_REGION_SUBMAP_INFO_V3_COUNT_64 = 21
VM_REGION_SUBMAP_INFO_COUNT_64 = VM_REGION_SUBMAP_INFO_V3_COUNT_64
# share_mode values
SM_COW = 1
SM_PRIVATE = 2
SM_TRUESHARED = 5
SM_PRIVATE_ALIASED = 6

# vm_prot_t (mach/vm_prot.h)
VM_PROT_READ = 1
VM_PROT_WRITE = 2
VM_PROT_EXECUTE = 4
VM_PROT_ALL = VM_PROT_READ | VM_PROT_WRITE | VM_PROT_EXECUTE

# user_tag values of vm_region_submap_info_64 (mach/vm_statistics.h)
VM_MEMORY_STACK = 30
VM_MEMORY_GUARD = 31
VM_MEMORY_DYLD = 60

# cpu types (mach/machine.h)
CPU_ARCH_ABI64 = 0x01000000
CPU_TYPE_X86 = 7
CPU_TYPE_ARM = 12
CPU_TYPE_X86_64 = CPU_TYPE_X86 | CPU_ARCH_ABI64
CPU_TYPE_ARM64 = CPU_TYPE_ARM | CPU_ARCH_ABI64
CPU_SUBTYPE_X86_64_ALL = 3
CPU_SUBTYPE_ARM64_ALL = 0


# sysctl (sys/sysctl.h): the addressable-bits query has no MIB constant, it goes by name
CTL_KERN = 1
# the MIB {CTL_KERN, KERN_PROC, KERN_PROC_PID, pid} gives one process's kinfo_proc
KERN_PROC = 14
KERN_PROC_PID = 1
#: names that share the prefixes of kern_return_t/mach_msg_return_t codes but are not codes
NOT_RETURN_CODES = frozenset(
    {"KERN_PROC", "KERN_PROC_PID", "MACH_SEND_MSG", "MACH_RCV_MSG", "MACH_RCV_TIMEOUT"}
)
#: kinfo_proc.kp_proc.p_flag: the process is an x86_64 one run by Rosetta (sys/proc.h)
P_TRANSLATED = 0x00020000
#: sysctlbyname name that is 1 in a process Rosetta translates (absent on Intel Macs)
SYSCTL_PROC_TRANSLATED = "sysctl.proc_translated"

# task special ports (mach/task_special_ports.h): the control port and, since macOS
# 11.3, the read port (enough to suspend, read registers and read memory)
TASK_KERNEL_PORT = 1
TASK_READ_PORT = 6
#: TASK_PORT_REGISTER_MAX of mach/mach_param.h (not in Zig's SDK, so private and unchecked):
#: mach_ports_register keeps this many ports, inherited by every task the caller creates
_TASK_PORT_REGISTER_MAX = 3
#: sysctlbyname name of the number of addressable virtual-address bits (arm64 kernels)
SYSCTL_VIRTUAL_ADDRESS_SIZE = "machdep.virtual_address_size"

# Thread-state flavors and their counts in 32-bit words. The SDK defines each set only
# when compiling for that architecture: ArchLayouts.arch_constants lists them per arch.
ARM_THREAD_STATE64 = 6
ARM_THREAD_STATE64_COUNT = 68
ARM_EXCEPTION_STATE64 = 7
ARM_EXCEPTION_STATE64_COUNT = 4
ARM_NEON_STATE64 = 17
ARM_NEON_STATE64_COUNT = 132
x86_THREAD_STATE64 = 4
x86_THREAD_STATE64_COUNT = 42
x86_FLOAT_STATE64 = 5
x86_FLOAT_STATE64_COUNT = 131
x86_EXCEPTION_STATE64 = 6
x86_EXCEPTION_STATE64_COUNT = 4

# --------------------------------------------------------------------------------------
# Structures
# --------------------------------------------------------------------------------------


class SDKStructure(ctypes.Structure):
    """A ctypes Structure that mirrors one SDK type (checked by tests/test_mach_abi.py)."""

    #: C spelling of the mirrored type, e.g. ``"task_dyld_info_data_t"``
    _c_type_: ClassVar[str]
    #: C field name = ``_c_prefix_ + python field name``
    _c_prefix_: ClassVar[str] = ""
    #: Python-only fields (explicit tail padding) that have no C counterpart
    _padding_: ClassVar[tuple[str, ...]] = ()
    #: the C alignment when it exceeds what ctypes can express (``aligned(16)``)
    _c_align_: ClassVar[int | None] = None

    @classmethod
    def c_field_name(cls, name: str) -> str:
        return cls._c_prefix_ + name


# ---- task / thread info -------------------------------------------------------------


class task_dyld_info(SDKStructure):
    """``TASK_DYLD_INFO``. Under ``#pragma pack(4)``: 20 bytes, not 24."""

    _c_type_ = "task_dyld_info_data_t"
    _pack_ = 4
    _layout_ = "ms"
    _fields_ = [
        ("all_image_info_addr", mach_vm_address_t),
        ("all_image_info_size", mach_vm_size_t),
        ("all_image_info_format", integer_t),
    ]


class thread_identifier_info(SDKStructure):
    """``THREAD_IDENTIFIER_INFO``: ``thread_id`` is what LLDB's ``process metadata`` wants."""

    _c_type_ = "thread_identifier_info_data_t"
    _fields_ = [
        ("thread_id", ctypes.c_uint64),
        ("thread_handle", ctypes.c_uint64),
        ("dispatch_qaddr", ctypes.c_uint64),
    ]


class thread_extended_info(SDKStructure):
    """``THREAD_EXTENDED_INFO``: the thread name is ``pth_name`` (NUL-terminated)."""

    _c_type_ = "thread_extended_info_data_t"
    _fields_ = [
        ("pth_user_time", ctypes.c_uint64),
        ("pth_system_time", ctypes.c_uint64),
        ("pth_cpu_usage", ctypes.c_int32),
        ("pth_policy", ctypes.c_int32),
        ("pth_run_state", ctypes.c_int32),
        ("pth_flags", ctypes.c_int32),
        ("pth_sleep_time", ctypes.c_int32),
        ("pth_curpri", ctypes.c_int32),
        ("pth_priority", ctypes.c_int32),
        ("pth_maxpriority", ctypes.c_int32),
        ("pth_name", ctypes.c_char * MAXTHREADNAMESIZE),
    ]


# ---- memory regions -----------------------------------------------------------------


class vm_region_submap_info_64(SDKStructure):
    """Under ``#pragma pack(4)``; v3 layout (84 bytes). Older kernels fill a prefix."""

    _c_type_ = "vm_region_submap_info_data_64_t"
    _pack_ = 4
    _layout_ = "ms"
    _fields_ = [
        # v0
        ("protection", vm_prot_t),
        ("max_protection", vm_prot_t),
        ("inheritance", vm_inherit_t),
        ("offset", memory_object_offset_t),
        ("user_tag", ctypes.c_uint),
        ("pages_resident", ctypes.c_uint),
        ("pages_shared_now_private", ctypes.c_uint),
        ("pages_swapped_out", ctypes.c_uint),
        ("pages_dirtied", ctypes.c_uint),
        ("ref_count", ctypes.c_uint),
        ("shadow_depth", ctypes.c_ushort),
        ("external_pager", ctypes.c_ubyte),
        ("share_mode", ctypes.c_ubyte),
        ("is_submap", boolean_t),
        ("behavior", vm_behavior_t),
        ("object_id", vm32_object_id_t),
        ("user_wired_count", ctypes.c_ushort),
        ("flags", ctypes.c_ushort),
        # v1
        ("pages_reusable", ctypes.c_uint),
        # v2
        ("object_id_full", vm_object_id_t),
        # v3
        ("pages_wired", ctypes.c_uint32),
        ("wire_tag", ctypes.c_uint16),
        ("__padding0", ctypes.c_uint16),
    ]


# ---- dyld's image list (read from the target's memory) ------------------------------


class dyld_image_info(SDKStructure):
    _c_type_ = "struct dyld_image_info"
    _fields_ = [
        ("imageLoadAddress", ctypes.c_uint64),
        ("imageFilePath", ctypes.c_uint64),
        ("imageFileModDate", ctypes.c_uint64),
    ]


class dyld_all_image_infos(SDKStructure):
    """64-bit layout, up to version 17+ (368 bytes, 16-byte aligned in C).

    Fields after ``libSystemInitialized`` exist only from the version noted by the SDK;
    read ``min(task_dyld_info.all_image_info_size, sizeof)`` bytes and check ``version``.
    """

    _c_type_ = "struct dyld_all_image_infos"
    _c_align_ = 16
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("infoArrayCount", ctypes.c_uint32),
        ("infoArray", ctypes.c_uint64),
        ("notification", ctypes.c_uint64),
        ("processDetachedFromSharedRegion", ctypes.c_bool),
        ("libSystemInitialized", ctypes.c_bool),  # v2
        ("dyldImageLoadAddress", ctypes.c_uint64),
        ("jitInfo", ctypes.c_uint64),  # v3
        ("dyldVersion", ctypes.c_uint64),  # v5
        ("errorMessage", ctypes.c_uint64),
        ("terminationFlags", ctypes.c_uint64),
        ("coreSymbolicationShmPage", ctypes.c_uint64),  # v6
        ("systemOrderFlag", ctypes.c_uint64),  # v7
        ("uuidArrayCount", ctypes.c_uint64),  # v8
        ("uuidArray", ctypes.c_uint64),
        ("dyldAllImageInfosAddress", ctypes.c_uint64),  # v9
        ("initialImageCount", ctypes.c_uint64),  # v10
        ("errorKind", ctypes.c_uint64),  # v11
        ("errorClientOfDylibPath", ctypes.c_uint64),
        ("errorTargetDylibPath", ctypes.c_uint64),
        ("errorSymbol", ctypes.c_uint64),
        ("sharedCacheSlide", ctypes.c_uint64),  # v12
        ("sharedCacheUUID", uuid_t),  # v13
        ("sharedCacheBaseAddress", ctypes.c_uint64),  # v15
        ("infoArrayChangeTimestamp", ctypes.c_uint64),
        ("dyldPath", ctypes.c_uint64),
        ("notifyPorts", mach_port_t * 8),
        ("reserved", ctypes.c_uint64 * 7),
        ("sharedCacheFSID", ctypes.c_uint64),  # v18
        ("sharedCacheFSObjID", ctypes.c_uint64),
        ("compact_dyld_image_info_addr", ctypes.c_uint64),  # v16
        ("compact_dyld_image_info_size", ctypes.c_uint64),
        ("platform", ctypes.c_uint32),
        ("aotInfoCount", ctypes.c_uint32),  # v17
        ("aotInfoArray", ctypes.c_uint64),
        ("aotInfoArrayChangeTimestamp", ctypes.c_uint64),
        ("aotSharedCacheBaseAddress", ctypes.c_uint64),
        ("aotSharedCacheUUID", uuid_t),
    ]


# ---- a process's sysctl entry -----------------------------------------------------


class kinfo_proc(SDKStructure):
    """``struct kinfo_proc`` up to ``kp_proc.p_flag`` (Rosetta's ``P_TRANSLATED``); the
    rest (``_rest``) is not read. Pointers are addresses in the kernel: numbers."""

    _c_type_ = "struct kinfo_proc"
    _c_prefix_ = "kp_proc."
    _padding_ = ("_rest",)
    _fields_ = [
        ("p_un", ctypes.c_uint8 * 16),
        ("p_vmspace", ctypes.c_uint64),
        ("p_sigacts", ctypes.c_uint64),
        ("p_flag", ctypes.c_int),
        ("_rest", ctypes.c_uint8 * 612),
    ]


# ---- Mach messages (exception delivery) -------------------------------------------


class mach_msg_header_t(SDKStructure):
    _c_type_ = "mach_msg_header_t"
    _fields_ = [
        ("msgh_bits", mach_msg_bits_t),
        ("msgh_size", mach_msg_size_t),
        ("msgh_remote_port", mach_port_t),
        ("msgh_local_port", mach_port_t),
        ("msgh_voucher_port", mach_port_name_t),
        ("msgh_id", mach_msg_id_t),
    ]


class mach_msg_body_t(SDKStructure):
    _c_type_ = "mach_msg_body_t"
    _fields_ = [("msgh_descriptor_count", mach_msg_size_t)]


class mach_msg_port_descriptor_t(SDKStructure):
    """Under ``#pragma pack(4)``, 12 bytes: ``name``, ``pad1``, then one word of bit
    fields (``pad2:16, disposition:8, type:8``), here ``_bits`` (ctypes declares it whole;
    bit fields have no offsetof to check)."""

    _c_type_ = "mach_msg_port_descriptor_t"
    _padding_ = ("_bits",)
    _fields_ = [("name", mach_port_t), ("pad1", mach_msg_size_t), ("_bits", ctypes.c_uint32)]


class NDR_record_t(SDKStructure):
    _c_type_ = "NDR_record_t"
    _fields_ = [
        (name, ctypes.c_uint8)
        for name in (
            "mig_vers",
            "if_vers",
            "reserved1",
            "mig_encoding",
            "int_rep",
            "char_rep",
            "float_rep",
            "reserved2",
        )
    ]


#: MIG message ids of mach_exc.defs (subsystem 2405; no SDK header has them): the request
#: and its reply
_MACH_EXCEPTION_RAISE_ID = 2405
_MACH_EXCEPTION_RAISE_REPLY_ID = _MACH_EXCEPTION_RAISE_ID + 100
#: NDR_record's int_rep on every Mac (NDR_INT_LITTLE_ENDIAN)
NDR_INT_LITTLE_ENDIAN = 1


class mach_exception_raise_request(ctypes.Structure):
    """What the kernel sends an ``EXCEPTION_DEFAULT | MACH_EXCEPTION_CODES`` exception port:
    MIG's ``__Request__mach_exception_raise_t`` from ``mach_exc.defs`` (``#pragma pack(4)``).
    The SDK ships no header declaring it; its parts are SDK-checked, and
    tests/test_mach_abi.py compiles this layout from the SDK's parts and compares."""

    _pack_ = 4
    _layout_ = "ms"
    _fields_ = [
        ("Head", mach_msg_header_t),
        ("msgh_body", mach_msg_body_t),
        ("thread", mach_msg_port_descriptor_t),
        ("task", mach_msg_port_descriptor_t),
        ("NDR", NDR_record_t),
        ("exception", exception_type_t),
        ("codeCnt", mach_msg_type_number_t),
        ("code", mach_exception_data_type_t * 2),
    ]


class mach_exception_raise_reply(ctypes.Structure):
    """MIG's ``__Reply__mach_exception_raise_t`` (``#pragma pack(4)``): header, NDR, RetCode."""

    _pack_ = 4
    _layout_ = "ms"
    _fields_ = [("Head", mach_msg_header_t), ("NDR", NDR_record_t), ("RetCode", kern_return_t)]


# ---- signal context (crash-handler side) --------------------------------------------


class sigaltstack(SDKStructure):
    _c_type_ = "stack_t"
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_size", ctypes.c_size_t),
        ("ss_flags", ctypes.c_int),
    ]


class ucontext64(SDKStructure):
    """64-bit ``ucontext_t`` (without ``_XOPEN_SOURCE``'s inline ``__mcontext_data``).

    ``uc_mcontext`` points to the architecture's ``__darwin_mcontext64``: cast it to
    ``POINTER(layouts_for(arch).mcontext64)``.
    """

    _c_type_ = "ucontext_t"
    _fields_ = [
        ("uc_onstack", ctypes.c_int),
        ("uc_sigmask", ctypes.c_uint32),
        ("uc_stack", sigaltstack),
        ("uc_link", ctypes.c_void_p),
        ("uc_mcsize", ctypes.c_size_t),
        ("uc_mcontext", ctypes.c_void_p),
    ]


# ---- arm64 thread state -------------------------------------------------------------


class arm_thread_state64(SDKStructure):
    """``ARM_THREAD_STATE64``. ``pad`` holds pointer-auth flags for arm64e (``__opaque_flags``)."""

    _c_type_ = "arm_thread_state64_t"
    _c_prefix_ = "__"
    _fields_ = [
        ("x", ctypes.c_uint64 * 29),
        ("fp", ctypes.c_uint64),
        ("lr", ctypes.c_uint64),
        ("sp", ctypes.c_uint64),
        ("pc", ctypes.c_uint64),
        ("cpsr", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class arm_exception_state64(SDKStructure):
    _c_type_ = "arm_exception_state64_t"
    _c_prefix_ = "__"
    _fields_ = [
        ("far", ctypes.c_uint64),
        ("esr", ctypes.c_uint32),
        ("exception", ctypes.c_uint32),
    ]


class arm_neon_state64(SDKStructure):
    """``ARM_NEON_STATE64``: ``__uint128_t`` registers make it 16-byte aligned, 528 bytes.

    ``v[i]`` is 16 little-endian bytes. ``_pad_tail`` is the C compiler's tail padding,
    which the count (132 words, not 130) includes.
    """

    _c_type_ = "arm_neon_state64_t"
    _c_prefix_ = "__"
    _c_align_ = 16
    _padding_ = ("_pad_tail",)
    _fields_ = [
        ("v", (ctypes.c_uint8 * 16) * 32),
        ("fpsr", ctypes.c_uint32),
        ("fpcr", ctypes.c_uint32),
        ("_pad_tail", ctypes.c_uint8 * 8),
    ]


class arm64_mcontext64(SDKStructure):
    """arm64 ``struct __darwin_mcontext64``: ``__es``, ``__ss``, ``__ns`` (816 bytes)."""

    _c_type_ = "struct __darwin_mcontext64"
    _c_prefix_ = "__"
    _c_align_ = 16
    _fields_ = [
        ("es", arm_exception_state64),
        ("ss", arm_thread_state64),
        ("ns", arm_neon_state64),
    ]


# ---- x86_64 thread state ------------------------------------------------------------


class x86_thread_state64(SDKStructure):
    _c_type_ = "x86_thread_state64_t"
    _c_prefix_ = "__"
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            ["rax", "rbx", "rcx", "rdx", "rdi", "rsi", "rbp", "rsp"]
            + [f"r{i}" for i in range(8, 16)]
            + ["rip", "rflags", "cs", "fs", "gs"]
        )
    ]


class x86_exception_state64(SDKStructure):
    _c_type_ = "x86_exception_state64_t"
    _c_prefix_ = "__"
    _fields_ = [
        ("trapno", ctypes.c_uint16),
        ("cpu", ctypes.c_uint16),
        ("err", ctypes.c_uint32),
        ("faultvaddr", ctypes.c_uint64),
    ]


class mmst_reg(SDKStructure):
    _c_type_ = "struct __darwin_mmst_reg"
    _c_prefix_ = "__"
    _fields_ = [("mmst_reg", ctypes.c_uint8 * 10), ("mmst_rsrv", ctypes.c_uint8 * 6)]


class xmm_reg(SDKStructure):
    _c_type_ = "struct __darwin_xmm_reg"
    _c_prefix_ = "__"
    _fields_ = [("xmm_reg", ctypes.c_uint8 * 16)]


class x86_float_state64(SDKStructure):
    """``x86_FLOAT_STATE64`` (fxsave-like). ``fpu_fcw``/``fpu_fsw`` are the raw 16-bit words
    of the SDK's bit-field structs ``__darwin_fp_control``/``__darwin_fp_status``."""

    _c_type_ = "x86_float_state64_t"
    _c_prefix_ = "__"
    _fields_ = [
        ("fpu_reserved", ctypes.c_int * 2),
        ("fpu_fcw", ctypes.c_uint16),
        ("fpu_fsw", ctypes.c_uint16),
        ("fpu_ftw", ctypes.c_uint8),
        ("fpu_rsrv1", ctypes.c_uint8),
        ("fpu_fop", ctypes.c_uint16),
        ("fpu_ip", ctypes.c_uint32),
        ("fpu_cs", ctypes.c_uint16),
        ("fpu_rsrv2", ctypes.c_uint16),
        ("fpu_dp", ctypes.c_uint32),
        ("fpu_ds", ctypes.c_uint16),
        ("fpu_rsrv3", ctypes.c_uint16),
        ("fpu_mxcsr", ctypes.c_uint32),
        ("fpu_mxcsrmask", ctypes.c_uint32),
        *[(f"fpu_stmm{i}", mmst_reg) for i in range(8)],
        *[(f"fpu_xmm{i}", xmm_reg) for i in range(16)],
        ("fpu_rsrv4", ctypes.c_uint8 * 96),
        ("fpu_reserved1", ctypes.c_int),
    ]


class x86_64_mcontext64(SDKStructure):
    """x86_64 ``struct __darwin_mcontext64``: ``__es``, ``__ss``, ``__fs`` (712 bytes)."""

    _c_type_ = "struct __darwin_mcontext64"
    _c_prefix_ = "__"
    _fields_ = [
        ("es", x86_exception_state64),
        ("ss", x86_thread_state64),
        ("fs", x86_float_state64),
    ]


# --------------------------------------------------------------------------------------
# Per-architecture view
# --------------------------------------------------------------------------------------


@records.frozen
class Flavor:
    """One thread-state flavor: what ``thread_get_state`` takes and an LC_THREAD holds."""

    kind: RegKind
    flavor: int
    #: size in 32-bit words (``*_COUNT``); must be sizeof(structure) / 4
    count: int
    structure: type[SDKStructure]

    def __attrs_post_init__(self) -> None:
        if self.count * 4 != ctypes.sizeof(self.structure):
            raise ValueError(f"{self.structure.__name__}: count {self.count} != sizeof / 4")


@records.frozen
class ArchLayouts:
    arch: Arch
    cpu_type: int
    cpu_subtype: int
    thread_state: type[SDKStructure]
    exception_state: type[SDKStructure]
    #: NEON state on arm64, x87/SSE state on x86_64
    float_state: type[SDKStructure]
    #: ``struct __darwin_mcontext64`` that ``ucontext64.uc_mcontext`` points to
    mcontext64: type[SDKStructure]
    ucontext: type[SDKStructure]
    #: flavors by kind, GPR first (the order an LC_THREAD must start with)
    flavors: Mapping[RegKind, Flavor]
    #: every Structure valid for this architecture, nested ones included
    structures: tuple[type[SDKStructure], ...]
    #: constants the SDK defines only when compiling for this architecture
    arch_constants: frozenset[str]
    #: aliases whose C type differs on this architecture from the module-level one
    type_overrides: Mapping[str, type[ctypes._SimpleCData[int]]]


_COMMON_STRUCTURES: tuple[type[SDKStructure], ...] = (
    task_dyld_info,
    thread_identifier_info,
    thread_extended_info,
    vm_region_submap_info_64,
    dyld_image_info,
    dyld_all_image_infos,
    kinfo_proc,
    mach_msg_header_t,
    mach_msg_body_t,
    mach_msg_port_descriptor_t,
    NDR_record_t,
    sigaltstack,
    ucontext64,
)

_LAYOUTS: Mapping[Arch, ArchLayouts] = MappingProxyType(
    {
        Arch.ARM64: ArchLayouts(
            arch=Arch.ARM64,
            cpu_type=CPU_TYPE_ARM64,
            cpu_subtype=CPU_SUBTYPE_ARM64_ALL,
            thread_state=arm_thread_state64,
            exception_state=arm_exception_state64,
            float_state=arm_neon_state64,
            mcontext64=arm64_mcontext64,
            ucontext=ucontext64,
            flavors=MappingProxyType(
                {
                    RegKind.GPR: Flavor(
                        RegKind.GPR,
                        ARM_THREAD_STATE64,
                        ARM_THREAD_STATE64_COUNT,
                        arm_thread_state64,
                    ),
                    RegKind.FPR: Flavor(
                        RegKind.FPR, ARM_NEON_STATE64, ARM_NEON_STATE64_COUNT, arm_neon_state64
                    ),
                    RegKind.EXC: Flavor(
                        RegKind.EXC,
                        ARM_EXCEPTION_STATE64,
                        ARM_EXCEPTION_STATE64_COUNT,
                        arm_exception_state64,
                    ),
                }
            ),
            structures=_COMMON_STRUCTURES
            + (arm_thread_state64, arm_exception_state64, arm_neon_state64, arm64_mcontext64),
            arch_constants=frozenset(
                {
                    "ARM_THREAD_STATE64",
                    "ARM_THREAD_STATE64_COUNT",
                    "ARM_EXCEPTION_STATE64",
                    "ARM_EXCEPTION_STATE64_COUNT",
                    "ARM_NEON_STATE64",
                    "ARM_NEON_STATE64_COUNT",
                }
            ),
            type_overrides=MappingProxyType({}),
        ),
        Arch.X86_64: ArchLayouts(
            arch=Arch.X86_64,
            cpu_type=CPU_TYPE_X86_64,
            cpu_subtype=CPU_SUBTYPE_X86_64_ALL,
            thread_state=x86_thread_state64,
            exception_state=x86_exception_state64,
            float_state=x86_float_state64,
            mcontext64=x86_64_mcontext64,
            ucontext=ucontext64,
            flavors=MappingProxyType(
                {
                    RegKind.GPR: Flavor(
                        RegKind.GPR,
                        x86_THREAD_STATE64,
                        x86_THREAD_STATE64_COUNT,
                        x86_thread_state64,
                    ),
                    RegKind.FPR: Flavor(
                        RegKind.FPR,
                        x86_FLOAT_STATE64,
                        x86_FLOAT_STATE64_COUNT,
                        x86_float_state64,
                    ),
                    RegKind.EXC: Flavor(
                        RegKind.EXC,
                        x86_EXCEPTION_STATE64,
                        x86_EXCEPTION_STATE64_COUNT,
                        x86_exception_state64,
                    ),
                }
            ),
            structures=_COMMON_STRUCTURES
            + (
                x86_thread_state64,
                x86_exception_state64,
                mmst_reg,
                xmm_reg,
                x86_float_state64,
                x86_64_mcontext64,
            ),
            arch_constants=frozenset(
                {
                    "x86_THREAD_STATE64",
                    "x86_THREAD_STATE64_COUNT",
                    "x86_FLOAT_STATE64",
                    "x86_FLOAT_STATE64_COUNT",
                    "x86_EXCEPTION_STATE64",
                    "x86_EXCEPTION_STATE64_COUNT",
                }
            ),
            type_overrides=MappingProxyType({"boolean_t": ctypes.c_uint}),
        ),
    }
)


def layouts_for(arch: Arch | str) -> ArchLayouts:
    """The structures, flavors and arch-only constants of ``arch`` (``"arm64"``/``"x86_64"``)."""
    return _LAYOUTS[Arch(arch)]


# --------------------------------------------------------------------------------------
# Names for messages
# --------------------------------------------------------------------------------------

#: kern_return_t / mach_msg_return_t value -> SDK name
KERN_RETURN_NAMES: Mapping[int, str] = MappingProxyType(
    {
        value: name
        for name, value in sorted(globals().items())
        if name.startswith(("KERN_", "MACH_SEND_", "MACH_RCV_"))
        and name not in NOT_RETURN_CODES
        and isinstance(value, int)
    }
)


def kern_return_name(kr: int) -> str:
    """``"KERN_INVALID_ARGUMENT (4)"``; unknown codes come back in hex."""
    name = KERN_RETURN_NAMES.get(kr)
    return f"{name} ({kr})" if name is not None else f"kern_return_t {kr:#x}"
