"""ptrace on Linux x86_64: the system calls, and one process's threads held in ptrace stops.

``request`` is the one doorway to ptrace(2) (it returns the errno, never raises);
``read_memory`` is process_vm_readv(2). ``Tracee`` is the state machine both the capture
(``LinuxTarget``) and the crash supervisor (``supervise``) drive:

- ``seize_all`` stops every thread with ``PTRACE_SEIZE`` + ``PTRACE_INTERRUPT`` (no signal
  is injected, so nothing stays pending). /proc/PID/task is re-read until every listed
  thread is stopped and the list stops changing; ``PTRACE_O_TRACECLONE`` catches threads
  a thread creates while it is being seized. Threads that exit meanwhile are reaped and
  dropped.
- ``take_over`` does the same for threads the caller already traces (the supervisor).
- ``release`` detaches from every thread. A thread can be detached only once it has
  stopped, so it interrupts and waits for any thread not yet seen stopped first; a signal
  that arrived during the capture (a signal-delivery-stop) is handed back on detach. It
  survives a KeyboardInterrupt in the middle and reaps the threads of a target killed
  meanwhile.

ptrace requests are only honoured from the thread that attached: use one Tracee from one
thread.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import os
import time

from ...errors import CaptureError, TargetError
from . import procfs

TYPE_CHECKING = False  # (not typing's: the crash supervisor starts without typing)
if TYPE_CHECKING:
    from collections.abc import Iterable

# -- the ptrace ABI (x86_64) ---------------------------------------------------------------

PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_GETFPREGS = 14
PTRACE_DETACH = 17
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_GETREGSET = 0x4204
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL: wait for threads (clone children) too

STOP_TIMEOUT = 5.0
STABLE_ROUNDS = 1000

#: a thread's state in a Tracee: seized or interrupted but its stop not yet seen, or stopped
RUNNING, STOPPED = "running", "stopped"

# -- libc via ctypes ------------------------------------------------------------------------


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_size_t), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long
_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_process_vm_readv.restype = ctypes.c_ssize_t


def request(op: int, tid: int, addr: int | None = None, data: object = None) -> int:
    """One ptrace request; 0 on success, else the errno."""
    ctypes.set_errno(0)
    if _ptrace(op, tid, addr, data) == -1:
        return ctypes.get_errno() or errno.EIO
    return 0


# The two calls a supervisor makes per thread event (bench/bench_run.py), bound once
# without errno bookkeeping or argument conversion (a third of each call's cost): libffi
# passes a Python int as a C int sign-extended to its 64-bit register, which is what
# glibc's variadic ptrace reads for a thread id, a signal number or a null address.
# PyDLL: neither call blocks, so the GIL is not released and taken back around them.
_bare = ctypes.PyDLL(None)
_resume = _bare.ptrace
_resume.restype = ctypes.c_long
_syscall = _bare.syscall
_syscall.restype = ctypes.c_long
SYS_TGKILL = 234


def resume(tid: int, sig: int = 0) -> bool:
    """PTRACE_CONT of a thread in a ptrace stop, delivering ``sig`` (0: none); whether the
    kernel took it (it refuses a thread that is not stopped, or gone)."""
    return _resume(PTRACE_CONT, tid, 0, sig) == 0


def in_thread_group(pid: int, tid: int) -> bool:
    """Whether ``tid`` is a thread of process ``pid``: tgkill with no signal, which the
    kernel refuses for a thread of another group (a /proc lookup only when refused for
    another reason)."""
    return _syscall(SYS_TGKILL, pid, tid, 0) == 0 or os.path.exists(f"/proc/{pid}/task/{tid}")


def read_request(op: int, tid: int, addr: int, data: ctypes.c_void_p) -> bool:
    """A ptrace request that reads a stopped thread's state into memory at ``data`` (a
    pointer made once, for a buffer reused): whether it succeeded. Bound as ``resume``
    is (a capture makes two a thread); ``addr`` is a small number (a register set's)."""
    return _bare.ptrace(op, tid, addr, data) == 0  # (the function bound for resume)


def event_message(tid: int) -> int | None:
    """PTRACE_GETEVENTMSG of a thread in an event stop (a clone's new thread id)."""
    msg = ctypes.c_ulong()
    if request(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg)):
        return None
    return msg.value


def read_memory(tid: int, address: int, size: int) -> bytes | None:
    """Up to ``size`` bytes at ``address`` of ``tid``'s address space (process_vm_readv:
    no seek, so no trouble above 2^63). Short or empty where the memory cannot be read
    ([vvar], [vsyscall], guard pages); None when the thread no longer exists."""
    if size <= 0 or address < 0 or address >= 1 << 64:
        return b""
    size = min(size, (1 << 64) - address)
    out = bytearray(size)
    got = read_memory_into(tid, address, out)
    if got is None:
        return None
    if got < size:
        del out[got:]
    return bytes(out)


def read_memory_into(tid: int, address: int, buffer: bytearray | memoryview) -> int | None:
    """``read_memory`` into a writable buffer (no allocation, no copy): the count read,
    None when the thread no longer exists."""
    size = min(len(buffer), max(0, (1 << 64) - address))
    if size <= 0 or address < 0:
        return 0
    # the buffer's first byte pins it (exported) for the call and gives its address: no
    # array type made a call (a capture reads a stack a thread)
    anchor = ctypes.c_char.from_buffer(buffer)
    local = IoVec(ctypes.addressof(anchor), size)
    remote = IoVec(address, size)
    ctypes.set_errno(0)
    got = _process_vm_readv(tid, local, 1, remote, 1, 0)
    del anchor
    if got < 0:
        if ctypes.get_errno() == errno.ESRCH:
            return None
        return 0  # EFAULT, EIO, ENOMEM: unreadable memory
    return int(got)


def check_platform() -> None:
    """Raise unless this machine is one this backend captures on (Linux x86_64)."""
    system, machine = os.uname().sysname, os.uname().machine
    if system != "Linux" or machine not in ("x86_64", "AMD64"):
        raise TargetError(f"Linux capture runs on Linux x86_64, not {system} {machine}")


def siginfo(tid: int) -> bytes | None:
    """PTRACE_GETSIGINFO: the siginfo_t of a thread's signal-delivery-stop (raw bytes)."""
    from ...linux_abi import SIGINFO_SIZE  # (only after a crash: the supervisor starts without)

    buffer = ctypes.create_string_buffer(SIGINFO_SIZE)
    if request(PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(buffer)):
        return None
    return buffer.raw


# -- one process's threads in ptrace stops --------------------------------------------------


class Tracee:
    """The threads of process ``pid`` this thread traces, and what it knows of each."""

    def __init__(self, pid: int, stop_timeout: float = STOP_TIMEOUT):
        self.pid = pid
        self.stop_timeout = stop_timeout
        #: tid -> RUNNING (seized or interrupted, stop not yet seen) or STOPPED
        self.states: dict[int, str] = {}
        #: tid -> the wait status of the last stop this Tracee consumed for it
        self.statuses: dict[int, int] = {}
        #: tid -> the signal of a signal-delivery-stop, handed back on release
        self.pending_signals: dict[int, int] = {}
        #: the native id of the thread that traces (None when not tracing)
        self.tracer: int | None = None
        #: whether the process was seen exiting (killed) while traced
        self.exited = False
        #: the wait status of the leader, when this Tracee reaped it (the process ended):
        #: a caller that is the process's parent (a supervisor) needs it for its exit code
        self.exit_status: int | None = None
        #: threads seen exiting while being seized (EPERM/ESRCH): not retried in this stop
        self._skipped: set[int] = set()

    # -- stopping ------------------------------------------------------------------------

    def seize_all(self) -> None:
        """Seize and stop every thread (see the module doc). Raises TargetError when the
        process cannot be traced, CaptureError when it does not stop; release() after."""
        self.tracer = _thread.get_native_id()
        self.exited = False
        self._skipped.clear()
        self.statuses.clear()
        deadline = time.monotonic() + self.stop_timeout
        for _ in range(STABLE_ROUNDS):
            tids = procfs.task_ids(self.pid)
            new = [t for t in tids if t not in self.states and t not in self._skipped]
            if not tids or (not new and all(s == STOPPED for s in self.states.values())):
                break
            # the leader first: its errors (permission, tracer) are the process's errors
            for tid in sorted(new, key=lambda t: t != self.pid):
                self._seize(tid)
            self.wait_stopped(deadline, strict=True)
        else:
            raise CaptureError(f"process {self.pid}: the thread list never settled")
        if not self.states:
            self.exited = True
            raise CaptureError(f"process {self.pid} exited during capture")

    def take_over(self, stopped: int, others: Iterable[int]) -> None:
        """Stop threads this thread already traces: ``stopped`` is in a stop already, the
        ``others`` are interrupted and waited for."""
        self.tracer = _thread.get_native_id()
        self.states[stopped] = STOPPED
        for tid in others:
            if tid != stopped:
                self.states[tid] = RUNNING
                request(PTRACE_INTERRUPT, tid)
        self.wait_stopped(time.monotonic() + self.stop_timeout, strict=True)

    def _seize(self, tid: int) -> None:
        self.states[tid] = RUNNING  # before the call: release() must know of it
        err = request(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACECLONE)
        if err == 0:
            # (ESRCH here: the thread is exiting; the wait reaps its exit)
            request(PTRACE_INTERRUPT, tid)
            return
        del self.states[tid]
        if err == errno.ESRCH:
            self._skipped.add(tid)
            return  # gone already
        if err != errno.EPERM:
            raise CaptureError(f"thread {tid} of process {self.pid}: {os.strerror(err)}")
        where = procfs.directory(self.pid, tid)
        status = procfs.status(where)
        if not status:
            self._skipped.add(tid)
            return  # exited meanwhile
        tracer = procfs.tracer_pid(status)
        if tracer == self.tracer:
            # created during the capture, attached through PTRACE_O_TRACECLONE
            self.states[tid] = RUNNING
            request(PTRACE_INTERRUPT, tid)
            return
        if tracer:
            tracer_name = procfs.name(procfs.directory(tracer)) or "?"
            raise TargetError(
                f"cannot capture process {self.pid}: it is already traced by process "
                f"{tracer} ({tracer_name}); a process has one tracer at a time"
            )
        if status.get("State", "").startswith(("Z", "X")) or procfs.has_flag(
            procfs.stat(where), procfs.PF_EXITING
        ):
            self._skipped.add(tid)
            return  # an exiting thread (EPERM): nothing to save of it
        raise TargetError(self._permission_message())

    def _permission_message(self) -> str:
        why = []
        status = procfs.status(procfs.directory(self.pid))
        uid = os.geteuid()
        owners = status.get("Uid", "").split()
        if uid != 0:
            owner = f"uid {owners[0]}" if owners else "another user"
            why.append(f"not root (running as uid {uid}; the process belongs to {owner})")
        scope = procfs.yama_scope()
        if scope:
            rule = procfs.YAMA_SCOPES.get(scope, "restricted")
            why.append(f"Yama ptrace_scope is {scope}: {rule}")
        if not why:
            why.append("the kernel refused PTRACE_SEIZE (no CAP_SYS_PTRACE, or a security module)")
        return f"permission denied to trace process {self.pid}: " + "; ".join(why)

    def wait_stopped(self, deadline: float, strict: bool) -> None:
        """Wait until no thread is RUNNING: each reports a stop or its exit.

        ``strict``: a thread still running at the deadline is an error (else it is left
        for the caller to report).
        """
        delay = 0.0
        while True:
            pending = [t for t, s in self.states.items() if s == RUNNING]
            if not pending:
                return
            progressed = False
            for tid in pending:
                try:
                    got, status = os.waitpid(tid, os.WNOHANG | WALL)
                except ChildProcessError:
                    self.states.pop(tid, None)  # no longer ours (reaped, or never attached)
                    continue
                if got == 0:
                    continue
                progressed = True
                self._on_status(tid, status)
            if progressed:
                delay = 0.0
                continue
            if time.monotonic() > deadline:
                if strict:
                    tid = pending[0]
                    fields = procfs.stat(procfs.directory(self.pid, tid)) or ("", ["?"])
                    state = fields[1][0] if fields[1] else "?"
                    raise CaptureError(
                        f"thread {tid} of process {self.pid} did not stop within "
                        f"{self.stop_timeout:g} s (state {state})"
                    )
                return
            time.sleep(delay)
            delay = min(max(delay * 2, 20e-6), 2e-3)

    def _on_status(self, tid: int, status: int) -> None:
        self.statuses[tid] = status
        if os.WIFSTOPPED(status):
            event = status >> 16
            if event == PTRACE_EVENT_CLONE:
                child = event_message(tid)
                if child and child not in self.states:
                    self.states[child] = RUNNING  # auto-attached; stops by itself
            elif event == 0:
                # a signal-delivery-stop: the signal arrived before our interrupt
                self.pending_signals[tid] = os.WSTOPSIG(status)
            self.states[tid] = STOPPED
        elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.states.pop(tid, None)
            self.pending_signals.pop(tid, None)
            if tid == self.pid:
                self.exited = True
                self.exit_status = status

    # -- while stopped ---------------------------------------------------------------------

    def stopped(self) -> list[int]:
        """The threads in a stop: the leader first, then by id."""
        return sorted(
            (t for t, s in self.states.items() if s == STOPPED), key=lambda t: (t != self.pid, t)
        )

    def check_tracer(self) -> None:
        """Raise unless the threads are stopped and this is the thread that stopped them."""
        if self.tracer is None:
            raise CaptureError(f"process {self.pid} is not stopped: call stop() first")
        if _thread.get_native_id() != self.tracer:
            raise CaptureError("a LinuxTarget must be used from the thread that stopped it")

    def check_alive(self) -> None:
        """Raise if the process died (SIGKILL) since it was stopped: a killed thread leaves
        its ptrace stop at once, while reads of its memory may still succeed a moment."""
        tid = next((t for t, s in self.states.items() if s == STOPPED), None)
        fields = procfs.stat(procfs.directory(self.pid, tid)) if tid else None
        if fields is None or not fields[1] or fields[1][0] != "t":
            raise self.gone()

    def live_thread(self) -> int:
        """A live stopped thread, the leader when it is one: the leader's address space is
        gone when the main thread has exited and the others live on."""
        if self.states.get(self.pid) == STOPPED:
            return self.pid
        return next((t for t, s in sorted(self.states.items()) if s == STOPPED), self.pid)

    def gone(self) -> CaptureError:
        """The error for a process that exited while traced (and note that it did)."""
        self.exited = True
        return CaptureError(f"process {self.pid} exited during capture")

    # -- letting go --------------------------------------------------------------------------

    def release(self) -> None:
        """Detach from every thread (see the module doc); the tracer is forgotten."""
        interrupted: BaseException | None = None
        for _ in range(100):
            try:
                self._release_all()
                break
            except KeyboardInterrupt as exc:  # finish releasing the target first
                interrupted = exc
        self.tracer = None
        if interrupted is not None:
            raise interrupted
        if self.states:
            left = sorted(self.states)
            self.states.clear()
            raise CaptureError(
                f"process {self.pid}: threads {left} could not be released; they stay "
                "traced until this thread exits"
            )

    def disown(self) -> None:
        """Stop using the threads without detaching: the caller goes on tracing them."""
        self.tracer = None

    def _release_all(self) -> None:
        if not self.states:
            return
        running = [t for t, s in self.states.items() if s == RUNNING]
        for tid in running:
            request(PTRACE_INTERRUPT, tid)
        if running:
            self.wait_stopped(time.monotonic() + self.stop_timeout, strict=False)
        dying = []
        for tid, state in list(self.states.items()):
            if state != STOPPED:
                continue
            err = request(PTRACE_DETACH, tid, 0, self.pending_signals.get(tid, 0))
            if err == 0 or not self._traced_by_us(tid):
                self.states.pop(tid, None)
                self.pending_signals.pop(tid, None)
            else:
                # traced but not stopped: killed while stopped, now exiting
                self.states[tid] = RUNNING
                dying.append(tid)
        if dying:
            self.exited = True
            self.wait_stopped(time.monotonic() + self.stop_timeout, strict=False)
            for tid in [t for t, s in self.states.items() if s == STOPPED]:
                if request(PTRACE_DETACH, tid, 0, 0) == 0 or not self._traced_by_us(tid):
                    self.states.pop(tid, None)

    def _traced_by_us(self, tid: int) -> bool:
        status = procfs.status(procfs.directory(self.pid, tid))
        return bool(status) and procfs.tracer_pid(status) == self.tracer
