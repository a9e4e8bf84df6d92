"""libSystem as the Mach backend binds it: the function signatures, the loader, the host.

``SIGNATURES`` is the one list of the C functions the backend calls, with their ctypes
types: ``load_libsystem`` binds the real library with it, and the fake kernel
(``macminidump.testing.fake_mach``) checks every call's arguments against it. Loading
happens only when asked, so importing this module loads no library, on any OS.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ...arch import Arch
from ...errors import CaptureError, TargetError
from . import abi

LIBSYSTEM = "/usr/lib/libSystem.B.dylib"

#: name -> C prototype of every libSystem function the Mach backend calls, spelled with
#: the SDK's type names. ``SIGNATURES`` resolves them to ctypes; tests/test_mach_abi.py
#: compiles each prototype against the SDK's own declaration (for aarch64 and x86_64).
PROTOTYPES: Mapping[str, str] = MappingProxyType(
    {
        "mach_task_self": "mach_port_t (void)",
        "task_for_pid": "kern_return_t (mach_port_name_t, int, mach_port_name_t *)",
        "pid_for_task": "kern_return_t (mach_port_name_t, int *)",
        "task_suspend": "kern_return_t (task_t)",
        "task_resume": "kern_return_t (task_t)",
        "task_threads": ("kern_return_t (task_t, thread_act_array_t *, mach_msg_type_number_t *)"),
        "task_get_special_port": "kern_return_t (task_t, int, mach_port_t *)",
        "mach_ports_register": "kern_return_t (task_t, mach_port_array_t, mach_msg_type_number_t)",
        "mach_ports_lookup": (
            "kern_return_t (task_t, mach_port_array_t *, mach_msg_type_number_t *)"
        ),
        "mach_port_deallocate": "kern_return_t (task_t, mach_port_name_t)",
        "vm_deallocate": "kern_return_t (vm_map_t, vm_address_t, vm_size_t)",
        "thread_info": (
            "kern_return_t (thread_act_t, thread_flavor_t, thread_info_t, mach_msg_type_number_t *)"
        ),
        "thread_get_state": (
            "kern_return_t (thread_act_t, thread_state_flavor_t, thread_state_t, "
            "mach_msg_type_number_t *)"
        ),
        "mach_vm_region_recurse": (
            "kern_return_t (vm_map_read_t, mach_vm_address_t *, mach_vm_size_t *, natural_t *, "
            "vm_region_recurse_info_t, mach_msg_type_number_t *)"
        ),
        "mach_vm_read_overwrite": (
            "kern_return_t (vm_map_read_t, mach_vm_address_t, mach_vm_size_t, "
            "mach_vm_address_t, mach_vm_size_t *)"
        ),
        "task_info": (
            "kern_return_t (task_name_t, task_flavor_t, task_info_t, mach_msg_type_number_t *)"
        ),
        "mach_port_allocate": "kern_return_t (ipc_space_t, mach_port_right_t, mach_port_name_t *)",
        "mach_port_insert_right": (
            "kern_return_t (ipc_space_t, mach_port_name_t, mach_port_t, mach_msg_type_name_t)"
        ),
        "mach_port_mod_refs": (
            "kern_return_t (ipc_space_t, mach_port_name_t, mach_port_right_t, mach_port_delta_t)"
        ),
        "mach_msg": (
            "mach_msg_return_t (mach_msg_header_t *, mach_msg_option_t, mach_msg_size_t, "
            "mach_msg_size_t, mach_port_name_t, mach_msg_timeout_t, mach_port_name_t)"
        ),
        "posix_spawnattr_init": "int (posix_spawnattr_t *)",
        "posix_spawnattr_destroy": "int (posix_spawnattr_t *)",
        "posix_spawnattr_setexceptionports_np": (
            "int (posix_spawnattr_t *, exception_mask_t, mach_port_t, exception_behavior_t, "
            "thread_state_flavor_t)"
        ),
        "posix_spawnp": (
            "int (pid_t *, const char *, const posix_spawn_file_actions_t *, "
            "const posix_spawnattr_t *, char *const *, char *const *)"
        ),
        "sysctl": "int (int *, u_int, void *, size_t *, void *, size_t)",
        "sysctlbyname": "int (const char *, void *, size_t *, void *, size_t)",
    }
)

#: C names of the prototypes that are not abi aliases
_C_TYPES: Mapping[str, Any] = MappingProxyType(
    {"int": ctypes.c_int, "u_int": ctypes.c_uint, "size_t": ctypes.c_size_t}
)


def c_type(spelling: str) -> Any:
    """The ctypes type of a C type name of ``PROTOTYPES`` (``"mach_port_t *"``)."""
    depth = spelling.count("*")
    base = spelling.replace("const ", "").replace("*", "").strip()
    resolved: Any
    if depth and base in ("char", "void"):
        depth -= 1
        resolved = ctypes.c_char_p if base == "char" else ctypes.c_void_p
    else:
        resolved = _C_TYPES.get(base) or getattr(abi, base)
    for _ in range(depth):
        resolved = ctypes.POINTER(resolved)
    return resolved


def _signature(prototype: str) -> tuple[Any, tuple[Any, ...]]:
    restype, _, args = prototype.partition(" (")
    names = [a.strip() for a in args.rstrip(")").split(",")]
    return c_type(restype), tuple(c_type(a) for a in names if a and a != "void")


#: name -> (restype, argtypes) of every libSystem function the backend calls. The real
#: library is bound with these; the fake kernel checks each call's arguments against them.
SIGNATURES: Mapping[str, tuple[Any, tuple[Any, ...]]] = MappingProxyType(
    {name: _signature(prototype) for name, prototype in PROTOTYPES.items()}
)


def load_libsystem(path: str = LIBSYSTEM) -> Any:
    """libSystem through ctypes with every function of ``SIGNATURES`` typed (macOS only)."""
    if sys.platform != "darwin":
        raise TargetError(
            f"capturing through Mach task ports is macOS only (this is {sys.platform})"
        )
    try:
        lib = ctypes.CDLL(path, use_errno=True)
    except OSError as e:
        raise CaptureError(f"cannot load {path}: {e}") from None
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)
    return lib


def host_arch() -> Arch:
    """The architecture of this process (x86_64 under Rosetta)."""
    machine = platform.machine()
    if machine in ("arm64", "aarch64"):
        return Arch.ARM64
    if machine in ("x86_64", "AMD64"):
        return Arch.X86_64
    raise TargetError(f"unsupported host architecture {machine!r} (arm64 and x86_64 are)")


def task_arch(lib: Any, task: int) -> Arch:
    """The architecture ``task`` runs as: x86_64 when Rosetta translates it (``P_TRANSLATED``
    in its ``kinfo_proc``), else the machine's own."""
    pid = ctypes.c_int(0)
    kr = _call(lib, "pid_for_task", task, ctypes.byref(pid))
    if kr != abi.KERN_SUCCESS:
        raise CaptureError(
            f"pid_for_task of task port {task:#x} failed: {abi.kern_return_name(kr)}"
        )
    mib = (ctypes.c_int * 4)(abi.CTL_KERN, abi.KERN_PROC, abi.KERN_PROC_PID, pid.value)
    info = abi.kinfo_proc()
    size = ctypes.c_size_t(ctypes.sizeof(info))
    rc = _call(lib, "sysctl", mib, 4, ctypes.byref(info), ctypes.byref(size), None, 0)
    flag_end = abi.kinfo_proc.p_flag.offset + abi.kinfo_proc.p_flag.size
    if rc != 0 or size.value < flag_end:
        raise CaptureError(f"sysctl kern.proc.pid.{pid.value} failed: cannot tell its architecture")
    if info.p_flag & abi.P_TRANSLATED:
        return Arch.X86_64
    return native_arch(lib)


def native_arch(lib: Any) -> Arch:
    """The machine's architecture: arm64 also for a process Rosetta translates."""
    mine = host_arch()
    if mine is Arch.ARM64:
        return mine
    value = ctypes.c_int(0)
    length = ctypes.c_size_t(ctypes.sizeof(value))
    name = abi.SYSCTL_PROC_TRANSLATED.encode()
    rc = _call(lib, "sysctlbyname", name, ctypes.byref(value), ctypes.byref(length), None, 0)
    return Arch.ARM64 if rc == 0 and value.value == 1 else mine  # absent on Intel Macs


def _call(lib: Any, fn: str, *args: Any) -> int:
    try:
        return int(getattr(lib, fn)(*args))
    except (OSError, ctypes.ArgumentError, ValueError, TypeError) as e:
        raise CaptureError(f"{fn} failed: {e}".replace("\n", " ")) from e
