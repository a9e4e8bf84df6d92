"""Handing this process's task port to a helper process: the macOS self dump.

Why a helper. A Python process that suspends its own threads through ctypes can hang:
a thread that has merely *asked* for the GIL (after ``sys.getswitchinterval()`` it sets
the drop request) and is then suspended makes the next eval-breaker check or GIL release
of the capturing thread wait, with no timeout, for that suspended thread to take the GIL
(CPython's ``FORCE_SWITCHING`` in ``drop_gil``); free-threaded 3.13t has stop-the-world
pauses instead; libmalloc locks held by a suspended thread do the same to any allocation.
Holding the GIL through ``ctypes.PyDLL`` does not close it (the Python code between two
foreign calls still honours the drop request). The facts and their sources are in
``formats/macos-self-capture.md``. So the calling process never suspends anything: a
helper process does, with ``task_suspend`` on the whole task, while the calling thread
waits in a blocking ``read`` with the GIL released (and is recorded there, with its real
state). The Linux self dump has the same shape (ptrace from a helper).

How the port travels: ``mach_ports_register`` slots, which every task created by this one
inherits (``ipc_task_init`` copies them at fork and keeps them across exec). The caller
puts its port in slot 0 for exactly the time it takes to spawn the helper, then puts the
previous slots back; the helper reads slot 0 with ``mach_ports_lookup`` and checks with
``pid_for_task`` that it is its parent's. No bootstrap name is registered (sandboxes deny
that), and nothing is sent in a message to a user port.

Which port: the task's read port (``TASK_READ_PORT``, macOS 11.3+: enough to suspend, read
registers and read memory) when it can be had, else the control port.

Which Pythons: any Python that is not an Apple platform binary (python.org, Homebrew,
pyenv, uv, conda, GitHub's setup-python; GIL or free-threaded) has a movable task port.
Apple's own ``/usr/bin/python3`` (Xcode / Command Line Tools) has an immovable one from
macOS 12.3 on: the kernel refuses to register it (``KERN_INVALID_RIGHT``, not the fatal
guard exception that *sending* it would raise), and the capture stops with
``TargetError(IMMOVABLE_HELP)`` before anything is suspended. Never a hang.

Hazard, accepted and kept short: a child another thread spawns while the port sits in the
slot inherits it too (the slot is process-wide). The window is one ``posix_spawn``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import CaptureError, TargetError
from . import abi

T = TypeVar("T")

IMMOVABLE_HELP = (
    "this Python's task port is immovable (an Apple platform binary such as "
    "/usr/bin/python3 on macOS 12.3 or later), so no helper process can be given it and "
    "capturing from inside could deadlock; run the program with a python.org, Homebrew, "
    "pyenv or uv Python"
)


def _call(lib: Any, fn: str, *args: Any) -> int:
    try:
        return int(getattr(lib, fn)(*args))
    except (OSError, ctypes.ArgumentError, ValueError, TypeError) as e:
        raise CaptureError(f"{fn} failed: {e}".replace("\n", " ")) from e


def _lookup(lib: Any, task: int) -> list[int]:
    """The registered slots (send rights the caller now holds: release them)."""
    array = abi.mach_port_array_t()
    count = abi.mach_msg_type_number_t(0)
    kr = _call(lib, "mach_ports_lookup", task, ctypes.byref(array), ctypes.byref(count))
    if kr != abi.KERN_SUCCESS:
        raise CaptureError(f"mach_ports_lookup failed: {abi.kern_return_name(kr)}")
    if not array:
        return []
    try:
        return [int(array[i]) for i in range(count.value)]
    finally:
        address = ctypes.cast(array, ctypes.c_void_p).value or 0
        _call(lib, "vm_deallocate", task, address, count.value * ctypes.sizeof(abi.mach_port_t))


def _register(lib: Any, task: int, ports: list[int]) -> int:
    array = (abi.mach_port_t * len(ports))(*ports)
    return _call(lib, "mach_ports_register", task, array, len(ports))


def _release(lib: Any, task: int, ports: list[int]) -> None:
    for port in ports:
        if port != abi.MACH_PORT_NULL:
            _call(lib, "mach_port_deallocate", task, port)


def offer_task_port(lib: Any, spawn: Callable[[], T]) -> T:
    """Run ``spawn()`` (which starts the helper) with this task's port in registered slot 0;
    the slots are as they were once it returns or raises."""
    me = _call(lib, "mach_task_self")
    read_port = abi.mach_port_t(abi.MACH_PORT_NULL)
    kr = _call(lib, "task_get_special_port", me, abi.TASK_READ_PORT, ctypes.byref(read_port))
    # before macOS 11.3 there is no read port: the control port it is
    held = [read_port.value] if kr == abi.KERN_SUCCESS and read_port.value else []
    port = held[0] if held else me
    try:
        previous = _lookup(lib, me)
        held += previous
        slots = (previous + [abi.MACH_PORT_NULL] * abi._TASK_PORT_REGISTER_MAX)[
            : abi._TASK_PORT_REGISTER_MAX
        ]
        kr = _register(lib, me, [port] + slots[1:])
        if kr == abi.KERN_INVALID_RIGHT:
            raise TargetError(IMMOVABLE_HELP)
        if kr != abi.KERN_SUCCESS:
            raise CaptureError(f"mach_ports_register failed: {abi.kern_return_name(kr)}")
        try:
            return spawn()
        finally:
            kr = _register(lib, me, slots)
            if kr != abi.KERN_SUCCESS:
                raise CaptureError(
                    f"mach_ports_register (restoring the slots) failed: {abi.kern_return_name(kr)}"
                )
    finally:
        _release(lib, me, held)


def receive_task_port(lib: Any, parent: int) -> int:
    """In the helper: the task port its parent ``parent`` put in registered slot 0 (a send
    right the helper now owns)."""
    me = _call(lib, "mach_task_self")
    slots = _lookup(lib, me)
    port = slots[0] if slots else abi.MACH_PORT_NULL
    _release(lib, me, slots[1:])
    if port == abi.MACH_PORT_NULL:
        raise CaptureError(f"process {parent} handed over no task port")
    pid = ctypes.c_int(-1)
    kr = _call(lib, "pid_for_task", port, ctypes.byref(pid))
    if kr != abi.KERN_SUCCESS or pid.value != parent:
        _release(lib, me, [port])
        raise CaptureError(
            f"the task port handed over is not process {parent}'s "
            f"(pid_for_task: {abi.kern_return_name(kr)}, pid {pid.value})"
        )
    return port


__all__ = ["IMMOVABLE_HELP", "offer_task_port", "receive_task_port"]
