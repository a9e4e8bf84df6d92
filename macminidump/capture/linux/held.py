"""``Held``: a live process held in ptrace stops, and the read only a stop allows, started.

``LinuxTarget`` stops and resumes its process through one. It exists on its own, with
light imports (ptrace, procfs), for ``macminidump dump``: the command stops the process
as soon as its options are read, so that the kernel's walk of the process's pages for
smaps (``procfs.smaps``, read by ``procfs.SmapsLater``) runs on another core while the
rest of the package loads; ``LinuxTarget(pid, held=...)`` then captures from that stop.
"""

from __future__ import annotations

import os
import time

from ...errors import CaptureError, TargetError
from . import procfs, ptrace


class Held:
    """The stop and resume of process ``pid`` (see the module doc). Refuses, when made, a
    machine this backend does not run on and a 32-bit program; ``stop`` refuses what is
    not a live process of someone else's."""

    def __init__(self, pid: int, stop_timeout: float = ptrace.STOP_TIMEOUT):
        ptrace.check_platform()
        refuse_32bit(pid)
        self.pid = pid
        self.tracee = ptrace.Tracee(pid, stop_timeout)
        #: /proc/PID/smaps of this stop, read from the moment every thread stopped
        self.smaps: procfs.SmapsLater | None = None
        #: how long the last stop() took, in seconds
        self.stop_seconds = 0.0

    @property
    def stopped(self) -> bool:
        return self.tracee.tracer is not None

    def stop(self) -> None:
        if self.stopped:
            raise CaptureError(f"process {self.pid} is already stopped by this target")
        start = time.perf_counter()
        check_target(self.pid)
        try:
            self.tracee.seize_all()
            self.smaps = procfs.SmapsLater(self.proc())
        except BaseException:
            self.resume()
            raise
        self.stop_seconds = time.perf_counter() - start

    def resume(self) -> None:
        self.smaps = None
        self.tracee.release()

    def proc(self) -> str:
        """/proc directory of a live stopped thread (see ``Tracee.live_thread``)."""
        tid = self.tracee.live_thread()
        return procfs.directory(self.pid, None if tid == self.pid else tid)


def check_target(pid: int) -> None:
    """TargetError unless ``pid`` is a live process, not a thread, not this process, not
    a zombie and not a kernel thread."""
    if not isinstance(pid, int) or pid <= 0:
        raise TargetError(f"{pid!r} is not a process id")
    where = procfs.directory(pid)
    status = procfs.status(where)
    if not status:
        raise TargetError(f"no such process: {pid}")
    tgid = int(status.get("Tgid", pid))
    if tgid != pid:
        raise TargetError(f"{pid} is a thread of process {tgid}, not a process id")
    if pid == os.getpid():
        raise TargetError(f"process {pid} is this process: ptrace cannot stop its caller")
    if status.get("State", "").startswith(("Z", "X")) and len(procfs.task_ids(pid)) <= 1:
        # (a zombie leader with live threads is a process whose main thread left)
        raise TargetError(f"process {pid} has exited (it is a zombie)")
    if procfs.has_flag(procfs.stat(where), procfs.PF_KTHREAD):
        raise TargetError(f"process {pid} is a kernel thread")


def refuse_32bit(pid: int) -> None:
    """TargetError for a 32-bit (i386) program: its registers and memory would be read as
    x86_64 and no debugger could open the core. Unreadable: later steps say why."""
    try:
        with open(f"/proc/{pid}/exe", "rb") as f:
            ident = f.read(5)
    except OSError:
        return
    if ident[:4] == b"\x7fELF" and ident[4:5] == b"\x01":
        raise TargetError(
            f"process {pid} is a 32-bit (i386) program: only 64-bit x86_64 processes "
            "can be captured"
        )
