"""What the crash supervisor (``supervise``) needs once a program crashes, and only then.

``SupervisedTarget`` captures threads the supervisor already traces; ``signal_info``
decodes the crash's siginfo; ``CrashReport`` is what ``run_supervised`` hands
``on_crash``. Kept apart so that ``run`` imports none of it (nor the capture path, attrs
and construct behind it) for a program that does not crash.
"""

from __future__ import annotations

import time

from .. import records
from ..linux_abi import siginfo_values
from ..model import SignalInfo
from .linux import procfs, ptrace
from .linux.target import LinuxTarget

__all__ = ["CrashReport", "SupervisedTarget", "signal_info"]


@records.frozen(kw_only=True)
class CrashReport:
    """What ``run_supervised`` did about a crash (given to ``on_crash``)."""

    pid: int
    thread_id: int
    signal: SignalInfo
    core_path: str
    #: the core's size in bytes; None when it could not be written
    size: int | None
    #: from the crash signal's stop (as seen by the supervisor) to the core written
    seconds: float
    #: why no core was written; None when it was
    error: str | None = None


class SupervisedTarget(LinuxTarget):
    """A LinuxTarget over threads the supervisor already traces: ``stop`` takes them over
    (the crashing thread is stopped already) instead of seizing, ``resume`` leaves them
    stopped and traced for the supervisor to continue. Every stop the capture consumes
    stays in ``tracee.statuses`` so the supervisor can answer it."""

    def __init__(self, pid: int, crashed: int, others: set[int]):
        super().__init__(pid)
        self.crashed = crashed
        self.adopted = {crashed, *others}

    def stop(self) -> None:
        start = time.perf_counter()
        self.tracee.take_over(self.crashed, self.adopted - {self.crashed})
        self.held.smaps = procfs.SmapsLater(self._proc())
        self.held.stop_seconds = time.perf_counter() - start

    def resume(self) -> None:
        self.tracee.disown()


def signal_info(tid: int, sig: int) -> SignalInfo:
    raw = ptrace.siginfo(tid)
    if raw is None:
        return SignalInfo(signo=sig)
    signo, errno, code, address = siginfo_values(raw)
    return SignalInfo(signo=signo, code=code, errno=errno, address=address)
