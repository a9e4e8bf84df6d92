"""`macminidump run` on macOS: a crash supervisor built on the child's exception port.

``run_supervised(argv, core_path)`` starts ``argv`` with ``posix_spawnp`` and an
``EXC_CRASH`` exception port this process receives on
(``posix_spawnattr_setexceptionports_np``, behavior ``EXCEPTION_DEFAULT |
MACH_EXCEPTION_CODES``), as crashpad's handler does. The program runs with its standard
streams and signal handlers untouched: a fault it handles itself never reaches us.

``EXC_CRASH`` is what the kernel raises when a process is about to die of a signal that
dumps core (``proc_prepareexit``): SIGSEGV/SIGBUS (``EXC_BAD_ACCESS``), SIGILL
(``EXC_BAD_INSTRUCTION``), SIGFPE (``EXC_ARITHMETIC``), SIGTRAP, SIGABRT (``abort``),
SIGSYS, SIGQUIT. Its first code packs the original exception, its low code bits and the
signal (``(signal << 24) | (exception << 20) | (code & 0xfffff)``); the second is the
original subcode (the fault address of ``EXC_BAD_ACCESS``). The message carries the
task and the crashing thread: the crashing thread is blocked in the kernel until we
reply, still in the state it faulted in, so ``capture_mach(task=...)`` (``task_suspend``,
every thread, the crashing one first with its stop reason) records it as it crashed.
Then we reply and the program dies of its signal; the status returned is a shell's
(``128 + signal``, or the exit code).

Waiting: ``mach_msg`` receives with a timeout so the child's exit is polled with
``waitpid(pid, WNOHANG)`` (only that pid: other children of this process are not ours).
SIGINT and SIGQUIT are ignored while the program runs (the terminal sends them to it).
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from ... import records
from ...errors import CaptureError, TargetError
from ...model import SignalInfo
from ..base import CaptureOptions, CrashContext
from . import abi
from .libsystem import host_arch, load_libsystem
from .target import MachTarget

#: how long one mach_msg receive waits before the child's exit is polled, in ms
POLL_MS = 100
#: exceptions whose EXC_CRASH code carries a fault address in the subcode
_ADDRESS_EXCEPTIONS = frozenset({abi.EXC_BAD_ACCESS})
Wait = Callable[[int, int], tuple[int, int]]


@records.frozen
class MachCrash:
    """What an EXC_CRASH message says."""

    thread_id: int
    signo: int
    exception: int  # the original one: EXC_BAD_ACCESS, EXC_BAD_INSTRUCTION, ...
    code: int  # its code's low 20 bits
    subcode: int  # its subcode (the fault address of EXC_BAD_ACCESS)

    @property
    def address(self) -> int | None:
        return self.subcode if self.exception in _ADDRESS_EXCEPTIONS else None


def decode_exc_crash(code: int, subcode: int, thread_id: int) -> MachCrash:
    code &= (1 << 64) - 1
    return MachCrash(
        thread_id=thread_id,
        signo=(code >> 24) & 0xFF,
        exception=(code >> 20) & 0xF,
        code=code & 0xFFFFF,
        subcode=subcode & ((1 << 64) - 1),
    )


class _Lib:
    """libSystem calls with their failures as CaptureErrors."""

    def __init__(self, lib: Any):
        self.lib = lib
        self.me = int(lib.mach_task_self())

    def call(self, fn: str, *args: Any) -> int:
        try:
            return int(getattr(self.lib, fn)(*args))
        except (OSError, ctypes.ArgumentError, ValueError, TypeError) as e:
            raise CaptureError(f"{fn} failed: {e}".replace("\n", " ")) from e

    def check(self, fn: str, *args: Any) -> None:
        kr = self.call(fn, *args)
        if kr != abi.KERN_SUCCESS:
            raise CaptureError(f"{fn} failed: {abi.kern_return_name(kr)}")


def _exception_port(lib: _Lib) -> int:
    name = abi.mach_port_name_t(abi.MACH_PORT_NULL)
    lib.check("mach_port_allocate", lib.me, abi.MACH_PORT_RIGHT_RECEIVE, ctypes.byref(name))
    try:
        lib.check(
            "mach_port_insert_right", lib.me, name.value, name.value, abi.MACH_MSG_TYPE_MAKE_SEND
        )
    except BaseException:
        _destroy(lib, name.value)
        raise
    return name.value


def _destroy(lib: _Lib, port: int) -> None:
    # the receive right (the send right we made goes with it: a dead name, then released)
    lib.call("mach_port_mod_refs", lib.me, port, abi.MACH_PORT_RIGHT_RECEIVE, -1)
    lib.call("mach_port_deallocate", lib.me, port)


def _spawn(lib: _Lib, argv: Sequence[str], port: int, flavor: int) -> int:
    attr = abi.posix_spawnattr_t()
    rc = lib.call("posix_spawnattr_init", ctypes.byref(attr))
    if rc:
        raise CaptureError(f"posix_spawnattr_init failed: {os.strerror(rc)}")
    try:
        behavior = abi.EXCEPTION_DEFAULT | abi.MACH_EXCEPTION_CODES
        rc = lib.call(
            "posix_spawnattr_setexceptionports_np",
            ctypes.byref(attr),
            abi.EXC_MASK_CRASH,
            port,
            behavior - (1 << 32),  # exception_behavior_t is a signed int
            flavor,
        )
        if rc:
            raise CaptureError(f"posix_spawnattr_setexceptionports_np failed: {os.strerror(rc)}")
        args = [a.encode() for a in argv]
        c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
        env = [f"{k}={v}".encode() for k, v in os.environ.items()]
        c_env = (ctypes.c_char_p * (len(env) + 1))(*env, None)
        pid = abi.pid_t(0)
        rc = lib.call(
            "posix_spawnp", ctypes.byref(pid), args[0], None, ctypes.byref(attr), c_argv, c_env
        )
        if rc:
            raise TargetError(f"cannot run {argv[0]}: {os.strerror(rc)}")
        return pid.value
    finally:
        lib.call("posix_spawnattr_destroy", ctypes.byref(attr))


def _receive(lib: _Lib, port: int, buffer: Any) -> bool:
    """One exception message into ``buffer``; False when none came within POLL_MS."""
    kr = lib.call(
        "mach_msg",
        ctypes.cast(buffer, ctypes.POINTER(abi.mach_msg_header_t)),
        abi.MACH_RCV_MSG | abi.MACH_RCV_TIMEOUT,
        0,
        ctypes.sizeof(buffer),
        port,
        POLL_MS,
        abi.MACH_PORT_NULL,
    )
    if kr == abi.MACH_RCV_TIMED_OUT:
        return False
    if kr != abi.KERN_SUCCESS:
        raise CaptureError(f"mach_msg (receive) failed: {abi.kern_return_name(kr)}")
    return True


def _reply(lib: _Lib, request: abi.mach_exception_raise_request, retcode: int) -> None:
    reply = abi.mach_exception_raise_reply()
    reply.Head.msgh_bits = request.Head.msgh_bits & abi.MACH_MSGH_BITS_REMOTE_MASK
    reply.Head.msgh_size = ctypes.sizeof(reply)
    reply.Head.msgh_remote_port = request.Head.msgh_remote_port
    reply.Head.msgh_local_port = abi.MACH_PORT_NULL
    reply.Head.msgh_id = request.Head.msgh_id + 100
    reply.NDR.int_rep = abi.NDR_INT_LITTLE_ENDIAN
    reply.RetCode = retcode
    kr = lib.call(
        "mach_msg",
        ctypes.cast(ctypes.byref(reply), ctypes.POINTER(abi.mach_msg_header_t)),
        abi.MACH_SEND_MSG,
        ctypes.sizeof(reply),
        0,
        abi.MACH_PORT_NULL,
        0,
        abi.MACH_PORT_NULL,
    )
    if kr != abi.KERN_SUCCESS:
        raise CaptureError(f"mach_msg (reply) failed: {abi.kern_return_name(kr)}")


def _thread_id(lib: _Lib, thread: int) -> int:
    ident = abi.thread_identifier_info()
    count = abi.mach_msg_type_number_t(abi.THREAD_IDENTIFIER_INFO_COUNT)
    lib.check(
        "thread_info",
        thread,
        abi.THREAD_IDENTIFIER_INFO,
        ctypes.cast(ctypes.byref(ident), abi.thread_info_t),
        ctypes.byref(count),
    )
    return int(ident.thread_id)


def _handle(
    lib: _Lib,
    request: abi.mach_exception_raise_request,
    child: int,
    core_path: str,
    options: CaptureOptions | None,
    lib_raw: Any,
) -> str | None:
    """Write the core of the crash the message reports; an error message if that failed.
    A crash of another process (a child of the program inherits its exception port) is
    left alone, as the Linux supervisor leaves the program's children alone."""
    from ...streaming import write_captured

    task, thread = request.task.name, request.thread.name
    try:
        if request.Head.msgh_id != abi._MACH_EXCEPTION_RAISE_ID or request.codeCnt < 2:
            return f"unexpected exception message (id {request.Head.msgh_id})"
        if request.exception != abi.EXC_CRASH:
            return f"unexpected exception {request.exception} (only EXC_CRASH is asked for)"
        pid = ctypes.c_int(-1)
        lib.check("pid_for_task", task, ctypes.byref(pid))
        if pid.value != child:
            return None
        crash = decode_exc_crash(request.code[0], request.code[1], _thread_id(lib, thread))
        context = CrashContext(
            thread_id=crash.thread_id,
            signal=SignalInfo(signo=crash.signo, code=crash.code, address=crash.address),
        )
        with MachTarget(task=task, lib=lib_raw) as target:
            write_captured(target, core_path, "macho", options, context)
        return None
    except CaptureError as e:
        return str(e)
    finally:
        for port in (thread, task):
            if port:
                lib.call("mach_port_deallocate", lib.me, port)


def run_supervised(
    argv: Sequence[str],
    core_path: str,
    options: CaptureOptions | None = None,
    *,
    lib: Any = None,
    wait: Wait = os.waitpid,
    report: Callable[[str], None] | None = None,
) -> int:
    """Run ``argv``; on a crash write its core at ``core_path``; return the shell status.

    ``lib``/``wait`` are libSystem and ``waitpid`` (tests pass the fake kernel's);
    ``report`` gets one line if a crash could not be written (the program still dies of
    its signal, and the status is still its own).
    """
    if not argv:
        raise TargetError("no program given: macminidump run -o CORE -- PROGRAM [ARGS...]")
    raw = lib if lib is not None else load_libsystem()
    calls = _Lib(raw)
    gpr = abi.layouts_for(host_arch()).flavors
    flavor = next(iter(gpr.values())).flavor
    port = _exception_port(calls)
    ignored = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    buffer = ctypes.create_string_buffer(4096)
    try:
        pid = _spawn(calls, argv, port, flavor)
        while True:
            done, status = wait(pid, os.WNOHANG)
            if done == pid:
                break
            if not _receive(calls, port, buffer):
                continue
            request = abi.mach_exception_raise_request.from_buffer_copy(buffer)
            error = _handle(calls, request, pid, core_path, options, raw)
            if error is not None and report is not None:
                report(f"no core written: {error}")
            # KERN_SUCCESS: EXC_CRASH handled; the process goes on dying of its signal
            _reply(calls, request, abi.KERN_SUCCESS)
    finally:
        for s, handler in ignored.items():
            signal.signal(s, handler)
        _destroy(calls, port)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


__all__ = ["MachCrash", "decode_exc_crash", "run_supervised"]
