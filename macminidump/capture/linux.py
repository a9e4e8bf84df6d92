"""Linux x86_64 live capture through ptrace: the ``TargetOS`` side of ``capture``.

``LinuxTarget(pid)`` stops every thread of a process with ``PTRACE_SEIZE`` +
``PTRACE_INTERRUPT`` (no signal is injected, so nothing stays pending), reads what
``capture`` asks for while they are stopped, and detaches from every thread on every
path. See ``../shared/reference/elf-core.md`` for the measured facts behind each choice.

- Threads: ``/proc/PID/task`` is re-read until every listed thread is stopped and the
  list stops changing; ``PTRACE_O_TRACECLONE`` catches threads a thread creates while it
  is being seized. Threads that exit meanwhile are reaped and dropped.
- A thread can be detached only once it has stopped, so cleanup interrupts and waits for
  any thread not yet seen stopped, then detaches; a signal that arrived during the
  capture (a signal-delivery-stop) is handed back on detach. ``resume`` is idempotent,
  survives a KeyboardInterrupt in the middle, and reaps the threads of a target killed
  during the capture. ``stop`` cleans up after itself when it fails.
- Memory is read with ``process_vm_readv`` (no seek, so no trouble with addresses above
  2^63); memory that cannot be read (``[vvar]``, ``[vsyscall]``, guard pages) gives a
  short read, never an error.
- ptrace requests are only honoured from the thread that attached: use one LinuxTarget
  from one thread. If the target is a child of this process, do not wait for it from
  another thread while it is being captured (that wait would take ptrace stops).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import threading
import time
from collections.abc import Iterable, Sequence

from ..arch import Arch, RegKind
from ..elf.schema import X86_64_USER_REGS as USER_REGS
from ..errors import CaptureError, TargetError
from ..model import PROTECTIONS, FileMapping, Image, ProcessInfo, RawItem, Snapshot
from .base import CapturedThread, CaptureOptions, MemoryMapping, capture

__all__ = ["LinuxTarget", "capture_pid"]

# -- ptrace ABI (x86_64) -----------------------------------------------------------------

PTRACE_GETREGS = 12
PTRACE_GETFPREGS = 14
PTRACE_DETACH = 17
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETREGSET = 0x4204
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_O_TRACECLONE = 0x8
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_STOP = 128
NT_X86_XSTATE = 0x202
WALL = 0x40000000  # __WALL: wait for threads (clone children) too
PF_EXITING = 0x4
PF_KTHREAD = 0x00200000

USER_REGS_SIZE = 27 * 8
FPREGS_SIZE = 512
#: large enough for every XSAVE layout seen (11,008 B with AMX)
XSTATE_BUFFER = 64 * 1024
#: XSAVE component sizes (standard format) as gdb computes what a core's xstate holds
XSTATE_SSE_SIZE, XSTATE_AVX_SIZE, XSTATE_MPX_SIZE = 576, 832, 1088
XSTATE_AVX512_SIZE, XSTATE_PKRU_SIZE = 2688, 2696
#: AMX TILECFG and TILEDATA: gdb does not know them, gcore masks them out
XFEATURE_AMX = (1 << 17) | (1 << 18)
#: offsets in the XSAVE area: software-reserved xcr0 copy, XSTATE_BV and XCOMP_BV
XSAVE_XCR0_OFFSET, XSAVE_XSTATE_BV_OFFSET, XSAVE_XCOMP_BV_OFFSET = 464, 512, 520

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_SYSINFO_EHDR = 0, 3, 4, 5, 33
PT_LOAD, PT_DYNAMIC, PT_PHDR = 1, 2, 6
DT_NULL, DT_DEBUG = 0, 21
ELF_MAGIC = b"\x7fELF"
#: r_debug is 40 bytes; glibc 2.35+ appends r_next (r_debug_extended, r_version >= 2)
R_DEBUG_SIZE = 48
LINK_MAP_SIZE = 40  # l_addr, l_name, l_ld, l_next, l_prev
MAX_LINK_MAPS = 8192
MAX_NAMESPACES = 64
MAX_NAME = 4096
MAX_DYNAMIC = 64 * 1024

STOP_TIMEOUT = 5.0
STABLE_ROUNDS = 1000

_RUNNING, _STOPPED = "running", "stopped"

# -- libc via ctypes --------------------------------------------------------------------


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_size_t), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long
_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(_IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_process_vm_readv.restype = ctypes.c_ssize_t


def _pt(request: int, tid: int, addr: int | None = None, data: object = None) -> int:
    """One ptrace request; 0 on success, else the errno."""
    ctypes.set_errno(0)
    if _ptrace(request, tid, addr, data) == -1:
        return ctypes.get_errno() or errno.EIO
    return 0


# -- /proc helpers ---------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def _status_fields(path: str) -> dict[str, str]:
    text = _read_text(path) or ""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _stat_fields(path: str) -> tuple[str, list[str]] | None:
    """(comm, fields after the comm) of a /proc stat file; fields[0] is the state."""
    text = _read_text(path)
    if not text or ")" not in text:
        return None
    head, _, tail = text.rpartition(")")
    return head.partition("(")[2], tail.split()


def _task_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _proc_name(pid: int) -> str:
    return (_read_text(f"/proc/{pid}/comm") or "?").strip()


def _yama_scope() -> int | None:
    text = _read_text("/proc/sys/kernel/yama/ptrace_scope")
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


_YAMA = {
    1: "only a parent process may trace",
    2: "only a process with CAP_SYS_PTRACE may trace",
    3: "no process may trace",
}


def _u64s(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8])


class LinuxTarget:
    """One live Linux x86_64 process behind the ``TargetOS`` interface (see the module doc)."""

    arch = Arch.X86_64

    def __init__(self, pid: int, stop_timeout: float = STOP_TIMEOUT):
        self.check_platform()
        self.pid = pid
        self.stop_timeout = stop_timeout
        #: tid -> _RUNNING (seized, stop not yet seen) or _STOPPED
        self._threads: dict[int, str] = {}
        #: threads seen exiting while being seized (EPERM/ESRCH): not retried in this stop
        self._skipped: set[int] = set()
        #: tid -> the signal of a signal-delivery-stop, handed back on detach
        self._signals: dict[int, int] = {}
        self._tracer: int | None = None
        self._exited = False
        self._auxv: list[tuple[int, int]] | None = None
        self._dyld: _Dyld | None = None
        self._buffer = ctypes.create_string_buffer(XSTATE_BUFFER)
        #: how long the last stop() took, in seconds
        self.stop_seconds = 0.0
        #: the wait status of the leader, when this target reaped it (the process ended):
        #: a caller that is the target's parent (a supervisor) needs it for its exit code
        self.exit_status: int | None = None

    @staticmethod
    def check_platform() -> None:
        """Raise unless this machine is one this backend captures on (Linux x86_64)."""
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            raise TargetError(
                f"Linux capture runs on Linux x86_64, not {platform.system()} {platform.machine()}"
            )

    # -- stop / resume -----------------------------------------------------------------

    def stop(self) -> None:
        if self._tracer is not None:
            raise CaptureError(f"process {self.pid} is already stopped by this target")
        start = time.perf_counter()
        self._check_target()
        self._tracer = threading.get_native_id()
        self._exited = False
        self._skipped.clear()
        try:
            self._stop_all()
        except BaseException:
            self.resume()
            raise
        self.stop_seconds = time.perf_counter() - start

    def _check_target(self) -> None:
        pid = self.pid
        if not isinstance(pid, int) or pid <= 0:
            raise TargetError(f"{pid!r} is not a process id")
        status = _status_fields(f"/proc/{pid}/status")
        if not status:
            raise TargetError(f"no such process: {pid}")
        tgid = int(status.get("Tgid", pid))
        if tgid != pid:
            raise TargetError(f"{pid} is a thread of process {tgid}, not a process id")
        if pid == os.getpid():
            raise TargetError(f"process {pid} is this process: ptrace cannot stop its caller")
        if status.get("State", "").startswith(("Z", "X")) and _task_count(pid) <= 1:
            # (a zombie leader with live threads is a process whose main thread left)
            raise TargetError(f"process {pid} has exited (it is a zombie)")
        stat = _stat_fields(f"/proc/{pid}/stat")
        if stat is not None and len(stat[1]) > 6 and int(stat[1][6]) & PF_KTHREAD:
            raise TargetError(f"process {pid} is a kernel thread")

    def _stop_all(self) -> None:
        deadline = time.monotonic() + self.stop_timeout
        for _ in range(STABLE_ROUNDS):
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{self.pid}/task")]
            except OSError:
                tids = []
            new = [t for t in tids if t not in self._threads and t not in self._skipped]
            if not tids or (not new and all(s == _STOPPED for s in self._threads.values())):
                break
            # the leader first: its errors (permission, tracer) are the process's errors
            for tid in sorted(new, key=lambda t: t != self.pid):
                self._seize(tid)
            self._wait_stopped(deadline, strict=True)
        else:
            raise CaptureError(f"process {self.pid}: the thread list never settled")
        if not self._threads:
            self._exited = True
            raise CaptureError(f"process {self.pid} exited during capture")

    def _seize(self, tid: int) -> None:
        self._threads[tid] = _RUNNING  # before the call: cleanup must know of it
        err = _pt(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACECLONE)
        if err == 0:
            # (ESRCH here: the thread is exiting; the wait reaps its exit)
            _pt(PTRACE_INTERRUPT, tid)
            return
        del self._threads[tid]
        if err == errno.ESRCH:
            self._skipped.add(tid)
            return  # gone already
        if err != errno.EPERM:
            raise CaptureError(f"thread {tid} of process {self.pid}: {os.strerror(err)}")
        status = _status_fields(f"/proc/{self.pid}/task/{tid}/status")
        if not status:
            self._skipped.add(tid)
            return  # exited meanwhile
        tracer = int(status.get("TracerPid", "0") or 0)
        if tracer == self._tracer:
            # created during the capture, attached through PTRACE_O_TRACECLONE
            self._threads[tid] = _RUNNING
            _pt(PTRACE_INTERRUPT, tid)
            return
        if tracer:
            raise TargetError(
                f"cannot capture process {self.pid}: it is already traced by process "
                f"{tracer} ({_proc_name(tracer)}); a process has one tracer at a time"
            )
        stat = _stat_fields(f"/proc/{self.pid}/task/{tid}/stat")
        if status.get("State", "").startswith(("Z", "X")) or (
            stat is not None and len(stat[1]) > 6 and int(stat[1][6]) & PF_EXITING
        ):
            self._skipped.add(tid)
            return  # an exiting thread (EPERM): nothing to save of it
        raise TargetError(self._permission_message())

    def _permission_message(self) -> str:
        why = []
        status = _status_fields(f"/proc/{self.pid}/status")
        uid = os.geteuid()
        owners = status.get("Uid", "").split()
        if uid != 0:
            owner = f"uid {owners[0]}" if owners else "another user"
            why.append(f"not root (running as uid {uid}; the process belongs to {owner})")
        scope = _yama_scope()
        if scope:
            why.append(f"Yama ptrace_scope is {scope}: {_YAMA.get(scope, 'restricted')}")
        if not why:
            why.append("the kernel refused PTRACE_SEIZE (no CAP_SYS_PTRACE, or a security module)")
        return f"permission denied to trace process {self.pid}: " + "; ".join(why)

    def _wait_stopped(self, deadline: float, strict: bool) -> None:
        """Wait until no thread is _RUNNING: each reports a stop or its exit.

        ``strict``: a thread still running at the deadline is an error (else it is left
        for the caller to report).
        """
        delay = 0.0
        while True:
            pending = [t for t, s in self._threads.items() if s == _RUNNING]
            if not pending:
                return
            progressed = False
            for tid in pending:
                try:
                    got, status = os.waitpid(tid, os.WNOHANG | WALL)
                except ChildProcessError:
                    self._threads.pop(tid, None)  # no longer ours (reaped, or never attached)
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
                    state = (_stat_fields(f"/proc/{self.pid}/task/{tid}/stat") or ("", ["?"]))[1]
                    raise CaptureError(
                        f"thread {tid} of process {self.pid} did not stop within "
                        f"{self.stop_timeout:g} s (state {state[0] if state else '?'})"
                    )
                return
            time.sleep(delay)
            delay = min(max(delay * 2, 20e-6), 2e-3)

    def _on_status(self, tid: int, status: int) -> None:
        if os.WIFSTOPPED(status):
            event = status >> 16
            if event == PTRACE_EVENT_CLONE:
                msg = ctypes.c_ulong()
                if _pt(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg)) == 0:
                    child = msg.value
                    if child and child not in self._threads:
                        self._threads[child] = _RUNNING  # auto-attached; stops by itself
            elif event == 0:
                # a signal-delivery-stop: the signal arrived before our interrupt
                self._signals[tid] = os.WSTOPSIG(status)
            self._threads[tid] = _STOPPED
        elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._threads.pop(tid, None)
            self._signals.pop(tid, None)
            if tid == self.pid:
                self._exited = True
                self.exit_status = status

    def resume(self) -> None:
        interrupted: BaseException | None = None
        for _ in range(100):
            try:
                self._release_all()
                break
            except KeyboardInterrupt as exc:  # finish releasing the target first
                interrupted = exc
        self._tracer = None
        if interrupted is not None:
            raise interrupted
        if self._threads:
            left = sorted(self._threads)
            self._threads.clear()
            raise CaptureError(
                f"process {self.pid}: threads {left} could not be released; they stay "
                "traced until this thread exits"
            )

    def _release_all(self) -> None:
        if not self._threads:
            return
        running = [t for t, s in self._threads.items() if s == _RUNNING]
        for tid in running:
            _pt(PTRACE_INTERRUPT, tid)
        if running:
            self._wait_stopped(time.monotonic() + self.stop_timeout, strict=False)
        dying = []
        for tid, state in list(self._threads.items()):
            if state != _STOPPED:
                continue
            err = _pt(PTRACE_DETACH, tid, 0, self._signals.get(tid, 0))
            if err == 0 or not self._traced_by_us(tid):
                self._threads.pop(tid, None)
                self._signals.pop(tid, None)
            else:
                # traced but not stopped: killed while stopped, now exiting
                self._threads[tid] = _RUNNING
                dying.append(tid)
        if dying:
            self._exited = True
            self._wait_stopped(time.monotonic() + self.stop_timeout, strict=False)
            for tid in [t for t, s in self._threads.items() if s == _STOPPED]:
                if _pt(PTRACE_DETACH, tid, 0, 0) == 0 or not self._traced_by_us(tid):
                    self._threads.pop(tid, None)

    def _traced_by_us(self, tid: int) -> bool:
        status = _status_fields(f"/proc/{self.pid}/task/{tid}/status")
        return bool(status) and int(status.get("TracerPid", "0") or 0) == self._tracer

    @property
    def exited(self) -> bool:
        """Whether the target was seen exiting (killed) while it was stopped."""
        return self._exited

    def _check_thread(self) -> None:
        if self._tracer is None:
            raise CaptureError(f"process {self.pid} is not stopped: call stop() first")
        if threading.get_native_id() != self._tracer:
            raise CaptureError("a LinuxTarget must be used from the thread that stopped it")

    def _check_alive(self) -> None:
        """Raise if the target died (SIGKILL) since it was stopped: a killed thread leaves
        its ptrace stop at once, while reads of its memory may still succeed a moment."""
        stopped = next((t for t, s in self._threads.items() if s == _STOPPED), None)
        stat = _stat_fields(f"/proc/{self.pid}/task/{stopped}/stat") if stopped else None
        if stat is None or not stat[1] or stat[1][0] != "t":
            raise self._gone()

    def _live(self) -> int:
        """A live stopped thread, the leader when it is one: the leader's address space is
        gone when the main thread has exited and the others live on."""
        if self._threads.get(self.pid) == _STOPPED:
            return self.pid
        return next((t for t, s in sorted(self._threads.items()) if s == _STOPPED), self.pid)

    def _proc(self) -> str:
        """/proc directory of a live stopped thread (see _live)."""
        tid = self._live()
        return f"/proc/{self.pid}" if tid == self.pid else f"/proc/{self.pid}/task/{tid}"

    def _gone(self) -> CaptureError:
        self._exited = True
        return CaptureError(f"process {self.pid} exited during capture")

    # -- threads -------------------------------------------------------------------------

    def threads(self) -> Sequence[CapturedThread]:
        self._check_thread()
        out = []
        order = sorted(
            (t for t, s in self._threads.items() if s == _STOPPED), key=lambda t: (t != self.pid, t)
        )
        for tid in order:
            out.append(self._thread(tid))
        return out

    def _thread(self, tid: int) -> CapturedThread:
        buf = self._buffer
        address = ctypes.addressof(buf)
        if _pt(PTRACE_GETREGS, tid, 0, address):
            raise self._gone()
        gpr = dict(zip(USER_REGS, struct.unpack("<27Q", ctypes.string_at(address, USER_REGS_SIZE))))
        regsets: dict[RegKind, dict[str, int]] = {RegKind.GPR: gpr}
        if _pt(PTRACE_GETFPREGS, tid, 0, address) == 0:
            regsets[RegKind.FPR] = _fpr(ctypes.string_at(address, FPREGS_SIZE))
        raw: tuple[RawItem, ...] = ()
        iov = _IoVec(address, XSTATE_BUFFER)
        if _pt(PTRACE_GETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov)) == 0:
            xstate = _trim_xstate(ctypes.string_at(address, min(iov.iov_len, XSTATE_BUFFER)))
            raw = (RawItem("elf", NT_X86_XSTATE, xstate, owner="LINUX"),)
        name = _read_text(f"/proc/{self.pid}/task/{tid}/comm")
        return CapturedThread(
            id=tid,
            regsets=regsets,
            name=name.rstrip("\n") if name is not None else None,
            raw_states=raw,
        )

    # -- memory ----------------------------------------------------------------------------

    def mappings(self) -> Sequence[MemoryMapping]:
        text = _read_text(f"{self._proc()}/maps")
        if not text:  # a live process always has mappings
            raise self._gone()
        out = []
        for line in text.splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) < 5:
                continue
            start, _, end = parts[0].partition("-")
            perms = parts[1]
            prot = ("r" in perms[0:1]) * 1 + ("w" in perms[1:2]) * 2 + ("x" in perms[2:3]) * 4
            out.append(
                MemoryMapping(
                    start=int(start, 16),
                    end=int(end, 16),
                    protection=PROTECTIONS[prot],
                    path=parts[5] if len(parts) > 5 else "",
                    offset=int(parts[2], 16),
                )
            )
        return out

    def read(self, address: int, size: int) -> bytes:
        if size <= 0 or address < 0 or address >= 1 << 64:
            return b""
        size = min(size, (1 << 64) - address)
        out = bytearray(size)
        view = (ctypes.c_char * size).from_buffer(out)
        local = _IoVec(ctypes.addressof(view), size)
        remote = _IoVec(address, size)
        ctypes.set_errno(0)
        got = _process_vm_readv(self._live(), local, 1, remote, 1, 0)
        del view
        if got < 0:
            err = ctypes.get_errno()
            if err == errno.ESRCH:
                raise self._gone()
            return b""  # EFAULT, EIO, ENOMEM: unreadable memory
        if got < size:
            del out[got:]
        return bytes(out)

    def _read_u64s(self, address: int, count: int) -> tuple[int, ...]:
        return _u64s(self.read(address, count * 8))

    def _read_cstring(self, address: int) -> bytes | None:
        data = b""
        chunk = 256
        while len(data) < MAX_NAME:
            part = self.read(address + len(data), chunk)
            nul = part.find(b"\0")
            if nul >= 0:
                return data + part[:nul]
            if len(part) < chunk:
                return None
            data += part
            chunk = min(chunk * 4, MAX_NAME)
        return None

    # -- images and what debuggers need to find them ---------------------------------------

    def addressable_bits(self) -> None:
        return None

    def auxv(self) -> Sequence[tuple[int, int]]:
        if self._auxv is None:
            try:
                with open(f"{self._proc()}/auxv", "rb") as f:
                    data = f.read()
            except OSError:
                raise self._gone() from None
            values = _u64s(data)
            pairs = []
            for i in range(0, len(values) - 1, 2):
                if values[i] == AT_NULL:
                    break
                pairs.append((values[i], values[i + 1]))
            self._auxv = pairs
        return self._auxv

    def _dynamic_linker(self) -> _Dyld:
        if self._dyld is None:
            self._dyld = _Dyld(self)
        return self._dyld

    def images(self) -> Sequence[Image]:
        self._check_alive()
        dyld = self._dynamic_linker()
        mappings = self.mappings()
        images = []
        exe = _read_link(f"{self._proc()}/exe")
        if dyld.exe_base is not None:
            images.append(
                Image(
                    path=exe or "",
                    load_address=dyld.exe_base,
                    slide=dyld.exe_bias,
                    main=True,
                )
            )
        seen = {dyld.exe_base}
        if dyld.nodes:
            for node in dyld.nodes[1:] if dyld.nodes[0].name == b"" else dyld.nodes:
                base = _header_address(mappings, node.ld, node.addr)
                if base in seen:
                    continue
                seen.add(base)
                path = node.name.decode("utf-8", "replace")
                if base == dyld.vdso:
                    path = "[vdso]"
                images.append(Image(path=path, load_address=base, slide=node.addr))
        else:
            # no library list (a static executable, or ld.so not done yet): the maps
            for m in mappings:
                if m.offset == 0 and m.start not in seen and (m.path.startswith("/")):
                    if m.path == exe or self.read(m.start, 4) != ELF_MAGIC:
                        continue
                    seen.add(m.start)
                    images.append(Image(path=m.path, load_address=m.start))
            if dyld.vdso is not None and dyld.vdso not in seen:
                images.append(Image(path="[vdso]", load_address=dyld.vdso))
        return images

    def extra_ranges(self, mappings: Sequence[MemoryMapping]) -> Iterable[tuple[int, int]]:
        dyld = self._dynamic_linker()
        ranges = list(dyld.ranges)
        for m in mappings:
            if m.path == "[vdso]" or (dyld.vdso is not None and m.contains(dyld.vdso)):
                ranges.append((m.start, m.end))
        return ranges

    # -- process facts ----------------------------------------------------------------------

    def process_info(self) -> ProcessInfo:
        self._check_alive()
        stat = _stat_fields(f"/proc/{self.pid}/stat")
        status = _status_fields(f"/proc/{self.pid}/status")
        if stat is None or not status:
            raise self._gone()
        comm, fields = stat
        try:
            with open(f"{self._proc()}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            cmdline = b""
        args = b" ".join(a for a in cmdline.split(b"\0") if a).decode("utf-8", "replace")
        return ProcessInfo(
            pid=self.pid,
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            sid=int(fields[3]),
            uid=int((status.get("Uid") or "0").split()[0]),
            gid=int((status.get("Gid") or "0").split()[0]),
            name=comm,
            args=args,
        )

    def file_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[FileMapping]:
        """Read-only file-backed mappings: gdb serves bytes of every NT_FILE mapping not in
        the core from the file on disk, which is wrong for writable ones (globals)."""
        return [
            FileMapping(m.start, m.end, m.offset, m.path)
            for m in mappings
            if m.path.startswith("/")
            and not m.path.endswith(" (deleted)")
            and m.protection & 1
            and not m.protection & 2
        ]


# -- the dynamic linker's data ----------------------------------------------------------------


class _Node:
    __slots__ = ("address", "addr", "name", "ld")

    def __init__(self, address: int, addr: int, name: bytes, ld: int):
        self.address, self.addr, self.name, self.ld = address, addr, name, ld


class _Dyld:
    """The executable's place, r_debug and the link_map chain, read once per stop."""

    def __init__(self, target: LinuxTarget):
        aux = dict(target.auxv())
        self.vdso: int | None = aux.get(AT_SYSINFO_EHDR)
        self.exe_base: int | None = None
        self.exe_bias: int | None = None
        self.nodes: list[_Node] = []
        self.ranges: list[tuple[int, int]] = []
        phdr, phnum, phent = aux.get(AT_PHDR), aux.get(AT_PHNUM, 0), aux.get(AT_PHENT, 56)
        if not phdr or not phnum or phent < 56:
            return
        table = target.read(phdr, phnum * phent)
        self.ranges.append((phdr, phdr + len(table)))
        headers = []
        for i in range(len(table) // phent):
            p_type, _, _, p_vaddr, _, _, p_memsz, _ = struct.unpack_from(
                "<IIQQQQQQ", table, i * phent
            )
            headers.append((p_type, p_vaddr, p_memsz))
        bias = next((phdr - v for t, v, _ in headers if t == PT_PHDR), None)
        loads = [v for t, v, _ in headers if t == PT_LOAD]
        if bias is None and loads:
            # no PT_PHDR: the header lies at the start of the mapping holding the table
            start = next((m.start for m in target.mappings() if m.contains(phdr)), None)
            bias = start - (min(loads) & ~0xFFF) if start is not None else None
        if bias is None:
            return
        bias &= (1 << 64) - 1
        self.exe_bias = bias
        self.exe_base = (bias + (min(loads) & ~0xFFF if loads else 0)) & ((1 << 64) - 1)
        dynamic = next(((bias + v, n) for t, v, n in headers if t == PT_DYNAMIC), None)
        if dynamic is None:
            return  # a static executable
        dyn_address, dyn_size = dynamic[0] & ((1 << 64) - 1), min(dynamic[1], MAX_DYNAMIC)
        entries = target.read(dyn_address, dyn_size)
        r_debug = 0
        for i in range(0, len(entries) - 15, 16):
            tag, value = struct.unpack_from("<qQ", entries, i)
            if tag == DT_NULL:
                entries = entries[: i + 16]
                break
            if tag == DT_DEBUG:
                r_debug = value
        # the whole .dynamic (a few hundred bytes, the DT_DEBUG slot among them)
        self.ranges.append((dyn_address, dyn_address + len(entries)))
        self._walk(target, r_debug)

    def _walk(self, target: LinuxTarget, r_debug: int) -> None:
        seen: set[int] = set()
        for _ in range(MAX_NAMESPACES):
            if not r_debug or r_debug in seen:
                return
            seen.add(r_debug)
            data = target.read(r_debug, R_DEBUG_SIZE)
            if len(data) < 40:
                return
            self.ranges.append((r_debug, r_debug + len(data)))
            (version,) = struct.unpack_from("<i", data, 0)
            (link_map,) = struct.unpack_from("<Q", data, 8)
            self._walk_map(target, link_map, seen)
            if version < 2 or len(data) < 48:
                return
            (r_debug,) = struct.unpack_from("<Q", data, 40)

    def _walk_map(self, target: LinuxTarget, node: int, seen: set[int]) -> None:
        for _ in range(MAX_LINK_MAPS):
            if not node or node in seen:
                return
            seen.add(node)
            data = target.read(node, LINK_MAP_SIZE)
            if len(data) < LINK_MAP_SIZE:
                return
            self.ranges.append((node, node + LINK_MAP_SIZE))
            l_addr, l_name, l_ld, l_next, _ = struct.unpack("<5Q", data)
            name = target._read_cstring(l_name) if l_name else b""
            if l_name and name is not None:
                self.ranges.append((l_name, l_name + len(name) + 1))
            self.nodes.append(_Node(node, l_addr, name or b"", l_ld))
            node = l_next


def _read_link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _header_address(mappings: Sequence[MemoryMapping], ld: int, bias: int) -> int:
    """Where a library's ELF header lies: the offset-0 mapping of the file whose mapping
    holds its dynamic section; its bias (l_addr) when that is not found."""
    holder = next((m for m in mappings if m.contains(ld)), None)
    if holder is not None and holder.path:
        first = [
            m
            for m in mappings
            if m.path == holder.path and m.offset == 0 and m.start <= holder.start
        ]
        if first:
            return max(m.start for m in first)
    return bias


# -- register decoding ----------------------------------------------------------------------


_FXSAVE = struct.Struct("<HHHHQQII48Q")
_VECTOR_NAMES = tuple(f"stmm{i}" for i in range(8)) + tuple(f"xmm{i}" for i in range(16))


def _fpr(data: bytes) -> dict[str, int]:
    """user_fpregs_struct (the fxsave area) -> arch.py's x86_64 fpr names."""
    fcw, fsw, ftw, fop, ip, dp, mxcsr, mask, *halves = _FXSAVE.unpack_from(data, 0)
    out = {
        "fcw": fcw,
        "fsw": fsw,
        "ftw": ftw & 0xFF,  # the abridged tag byte; the next byte is reserved
        "fop": fop,
        "fpu_ip": ip,
        "fpu_dp": dp,
        "mxcsr": mxcsr,
        "mxcsrmask": mask,
    }
    for i, name in enumerate(_VECTOR_NAMES):  # st0-7 (16-byte slots), then xmm0-15
        out[name] = halves[2 * i] | halves[2 * i + 1] << 64
    return out


def _xstate_size(xcr0: int) -> int:
    """The XSAVE area size gdb expects for ``xcr0`` (its X86_XSTATE_SIZE)."""
    if xcr0 & (1 << 9):
        return XSTATE_PKRU_SIZE
    if xcr0 & 0xE0:
        return XSTATE_AVX512_SIZE
    if xcr0 & 0x18:
        return XSTATE_MPX_SIZE
    if xcr0 & 0x4:
        return XSTATE_AVX_SIZE
    return XSTATE_SSE_SIZE


def _trim_xstate(data: bytes) -> bytes:
    """The XSAVE area as gcore writes it: AMX bits masked out of xcr0 and XSTATE_BV, and
    cut to the size those features take (2,688 B with AVX-512; 11,008 B from ptrace on a
    CPU with AMX would make gdb warn "Unexpected size")."""
    if len(data) < XSAVE_XCOMP_BV_OFFSET:
        return data
    out = bytearray(data)
    for offset in (XSAVE_XCR0_OFFSET, XSAVE_XSTATE_BV_OFFSET):
        value = int.from_bytes(out[offset : offset + 8], "little") & ~XFEATURE_AMX
        out[offset : offset + 8] = value.to_bytes(8, "little")
    xcr0 = int.from_bytes(out[XSAVE_XCR0_OFFSET : XSAVE_XCR0_OFFSET + 8], "little")
    return bytes(out[: min(len(out), _xstate_size(xcr0))])


# -- convenience ------------------------------------------------------------------------------


def capture_pid(pid: int, options: CaptureOptions | None = None) -> Snapshot:
    """A Snapshot of live process ``pid``: stopped for the capture only, then resumed."""
    return capture(LinuxTarget(pid), options)
