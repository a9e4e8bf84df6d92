"""Live capture on macOS through Mach task ports: the ``TargetOS`` backend for Darwin.

Rooms:

- :mod:`.abi`: ctypes declarations of the macOS ABI used here (checked against the SDK
  headers by ``tests/test_mach_abi.py``); declarations only;
- :mod:`.libsystem`: the libSystem functions called and their signatures, the loader;
- :mod:`.registers`: thread states <-> register dicts, a crash's context from a signal
  handler's ``ucontext``/``mcontext``;
- :mod:`.dyld`: dyld's image list and each image's headers, read from the target;
- :mod:`.target`: ``MachTarget`` (stop, threads, memory, images) and ``capture_mach``.
- :mod:`.handover`: the self dump, through a helper process given this task's port;
- :mod:`.supervise`: ``macminidump run`` on macOS (the child's ``EXC_CRASH`` port).

Importing this package loads no library, on any OS.
"""

from __future__ import annotations

from .libsystem import SIGNATURES, host_arch, load_libsystem
from .registers import (
    crash_context_from_mcontext,
    crash_context_from_ucontext,
    register_slots,
    registers_to_state,
    state_to_registers,
)
from .target import MachTarget, capture_mach

__all__ = [
    "SIGNATURES",
    "MachTarget",
    "capture_mach",
    "crash_context_from_mcontext",
    "crash_context_from_ucontext",
    "host_arch",
    "load_libsystem",
    "register_slots",
    "registers_to_state",
    "state_to_registers",
]
