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

_P = ctypes.POINTER

#: name -> (restype, argtypes) of every libSystem function MachTarget calls. The real
#: library is bound with these; the fake kernel checks each call's arguments against them.
SIGNATURES: Mapping[str, tuple[Any, tuple[Any, ...]]] = MappingProxyType(
    {
        "mach_task_self": (abi.mach_port_t, ()),
        "mach_thread_self": (abi.mach_port_t, ()),
        "task_for_pid": (abi.kern_return_t, (abi.task_t, abi.pid_t, _P(abi.mach_port_name_t))),
        "task_suspend": (abi.kern_return_t, (abi.task_t,)),
        "task_resume": (abi.kern_return_t, (abi.task_t,)),
        "thread_suspend": (abi.kern_return_t, (abi.thread_act_t,)),
        "thread_resume": (abi.kern_return_t, (abi.thread_act_t,)),
        "task_threads": (
            abi.kern_return_t,
            (abi.task_t, _P(abi.thread_act_array_t), _P(abi.mach_msg_type_number_t)),
        ),
        "mach_port_deallocate": (abi.kern_return_t, (abi.task_t, abi.mach_port_name_t)),
        "vm_deallocate": (abi.kern_return_t, (abi.vm_map_t, abi.vm_address_t, abi.vm_size_t)),
        "thread_info": (
            abi.kern_return_t,
            (abi.thread_act_t, abi.thread_flavor_t, abi.thread_info_t, _P(abi.natural_t)),
        ),
        "thread_get_state": (
            abi.kern_return_t,
            (
                abi.thread_act_t,
                abi.thread_state_flavor_t,
                abi.thread_state_t,
                _P(abi.mach_msg_type_number_t),
            ),
        ),
        "mach_vm_region_recurse": (
            abi.kern_return_t,
            (
                abi.vm_map_read_t,
                _P(abi.mach_vm_address_t),
                _P(abi.mach_vm_size_t),
                _P(abi.natural_t),
                abi.vm_region_recurse_info_t,
                _P(abi.mach_msg_type_number_t),
            ),
        ),
        "mach_vm_read_overwrite": (
            abi.kern_return_t,
            (
                abi.vm_map_read_t,
                abi.mach_vm_address_t,
                abi.mach_vm_size_t,
                abi.mach_vm_address_t,
                _P(abi.mach_vm_size_t),
            ),
        ),
        "task_info": (
            abi.kern_return_t,
            (abi.task_name_t, abi.task_flavor_t, abi.task_info_t, _P(abi.mach_msg_type_number_t)),
        ),
        "sysctlbyname": (
            ctypes.c_int,
            (
                ctypes.c_char_p,
                ctypes.c_void_p,
                _P(ctypes.c_size_t),
                ctypes.c_void_p,
                ctypes.c_size_t,
            ),
        ),
    }
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
    machine = platform.machine()
    if machine in ("arm64", "aarch64"):
        return Arch.ARM64
    if machine in ("x86_64", "AMD64"):
        return Arch.X86_64
    raise TargetError(f"unsupported host architecture {machine!r} (arm64 and x86_64 are)")
