"""Run a program under a crash supervisor: a minimal ELF core when it dies of a crash.

``run_supervised(argv, core_path)`` starts ``argv`` as a traced child (Linux x86_64,
ptrace), lets it run with the terminal and its standard streams untouched, and returns the
status a shell would show: the program's exit code, or 128 + the signal that killed it.
When a crash signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS) is about
to kill it, every thread is stopped, the process is captured (``capture.linux``) with the
crashing thread's state at the signal and its siginfo, the core is written at
``core_path`` (``streaming.write_captured``, with the caller's memory policy: temp file +
rename), and only then does the signal go on
and kill the program. See ``../shared/reference/elf-core.md``, "Live capture pitfalls".

How it follows the program:

- Start: ``fork``; the child waits on a pipe until the supervisor has seized it
  (``PTRACE_SEIZE`` with TRACECLONE, TRACEEXEC and EXITKILL: the child dies with the
  supervisor), then ``execvp``s. An exec that fails comes back through a close-on-exec
  pipe as a ``CaptureError``; the child is reaped.
- Every thread is traced from its creation (TRACECLONE attaches it) and known from its
  first stop on: a thread of the program (``tgkill`` with no signal tells, no /proc
  read) or a process it cloned, which is let go. A thread other than the leader that
  execs takes the leader's id; its former id, which reports no exit, is forgotten at
  the exec stop. Every stop is answered at once, with one ``PTRACE_CONT`` and nothing
  more for the common ones: a signal
  that would not kill (handled, ignored, or not a crash signal) is passed on unchanged;
  a group-stop (SIGSTOP, SIGTSTP, ...) is left in place with ``PTRACE_LISTEN``, so job
  control works as without a tracer.
- "Would kill": the signal is one of the crash signals and the process neither catches nor
  ignores it (``SigCgt``/``SigIgn`` in /proc: a program with its own SIGSEGV handler keeps
  working). The kernel's own core dump of that death is turned off (RLIMIT_CORE 0 on the
  child): the supervisor's core replaces it.
- Waiting: the supervisor is not the only user of ``wait`` in its process (a test runner, a
  program's other children), so it never reaps "any child". It blocks SIGCHLD in its own
  thread and sleeps in ``sigtimedwait``; on waking it asks the kernel which child has
  something to report without consuming it (``waitid(P_ALL, WNOWAIT)``) and reaps
  exactly that thread when it is one of its tracees. A thread event so costs the same
  with 10 or 10,000 threads alive. Only while a child that is not its tracee is waiting
  to be reaped by its owner does it fall back to polling each traced thread.
- The supervisor ignores SIGINT, SIGQUIT and SIGTSTP while the program runs (the terminal
  sends them to the program too, as a shell's ``time`` does). SIGTERM and SIGHUP sent to
  the supervisor, and SIGINT when no terminal sent it, are passed on to the program, so
  its own handlers run and its exit status is the result (were the supervisor to die,
  EXITKILL would kill the program without that chance). In an interactive foreground
  job, a program stopped from the terminal (Ctrl-Z) stops the supervisor with it, so the
  shell sees the job stopped and ``fg`` continues both.
- On every path, errors included, nothing is left traced, stopped or unreaped: an error in
  the supervisor kills the program (SIGKILL, as EXITKILL would) and reaps every thread.

Use it from one thread (ptrace requests come from the thread that seized the program).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from ..errors import CaptureError, MacMiniDumpError, TargetError
from .linux import procfs, ptrace
from .linux.ptrace import (
    PTRACE_DETACH,
    PTRACE_EVENT_CLONE,
    PTRACE_EVENT_EXEC,
    PTRACE_EVENT_STOP,
    PTRACE_LISTEN,
    PTRACE_O_EXITKILL,
    PTRACE_O_TRACECLONE,
    PTRACE_O_TRACEEXEC,
    PTRACE_SEIZE,
    STOPPED,
    WALL,
)

# What only a crash needs (the capture, the model, attrs, construct) is imported when one
# happens, from ``supervised_crash``: ``run`` of a program that does not crash starts as
# fast as the command line itself (bench/bench_startup.py).
TYPE_CHECKING = False  # (not typing's: importing typing costs a few ms of start-up)

if TYPE_CHECKING:
    from ..progress import Progress
    from .base import CaptureOptions
    from .supervised_crash import CrashReport, SupervisedTarget

__all__ = ["CrashReport", "run_supervised", "FATAL_SIGNALS"]


def __getattr__(name: str) -> object:
    if name == "CrashReport":
        from .supervised_crash import CrashReport

        return CrashReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SEIZE_OPTIONS = PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL

#: signals whose default action dumps core and that a crash raises
FATAL_SIGNALS = frozenset(
    {
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGILL,
        signal.SIGFPE,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
    }
)
STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
TERMINAL_STOPS = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
#: the supervisor's own dispositions while the program runs
IGNORED = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP)
#: passed on to the program while it runs (SIGINT only when no terminal sent it)
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
#: what Python ignores at startup and a child must not inherit (as subprocess restores)
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)

#: waitid options that name a child with something to report and leave it there
_PEEK = os.WEXITED | os.WSTOPPED | os.WNOHANG | os.WNOWAIT | WALL
#: how long to sleep in sigtimedwait before polling anyway: SIGCHLD reaches this thread
#: only when no other thread of the process takes it
WAIT_ALONE, WAIT_SHARED = 1.0, 0.005
EXIT_NOT_STARTED = 127
#: wait statuses of the two stops of every thread created: its parent's clone event, and
#: its own first stop (SIGTRAP | event << 8 as the stop signal: ptrace(2), "PTRACE_SEIZE")
_CLONE_EVENT = (signal.SIGTRAP | PTRACE_EVENT_CLONE << 8) << 8 | 0x7F
_FIRST_STOP = (signal.SIGTRAP | PTRACE_EVENT_STOP << 8) << 8 | 0x7F
REAP_TIMEOUT = 10.0


def run_supervised(
    argv: Sequence[str],
    core_path: str | os.PathLike[str],
    options: CaptureOptions | None = None,
    on_crash: Callable[[CrashReport], object] | None = None,
    progress: Progress | None = None,
    *,
    only_child: bool = False,
) -> int:
    """Run ``argv`` to its end; write a core at ``core_path`` if it crashes.

    Returns the program's exit code, or 128 + the number of the signal that killed it.
    Raises ``CaptureError`` (one line) when the program cannot be started; no child is
    left behind. A core that cannot be written does not change the result: ``on_crash``
    gets the reason (or, without ``on_crash``, it goes to stderr in one line).

    ``only_child``: the caller promises that, while this runs, the program is the only
    child of this process and nothing else in it waits for children (the command line).
    The supervisor then waits for "any child", one system call per thread event as
    any ptrace supervisor makes, instead of asking which child is ready first.
    """
    argv = [os.fspath(a) for a in argv]
    if not argv or not argv[0]:
        raise TargetError("no program to run")
    core = os.fspath(core_path)
    directory = os.path.dirname(os.path.abspath(core))
    if not os.path.isdir(directory):
        raise TargetError(f"{core}: no such directory {directory!r} for the core file")
    ptrace.check_platform()
    supervisor = _Supervisor(argv, core, options, on_crash)
    supervisor.progress = progress
    supervisor.only_child = only_child
    with _ignoring(IGNORED) as previous, _blocked_sigchld():
        supervisor.start(previous)
        try:
            with _forwarding(FORWARDED, supervisor.forward):
                supervisor.run()
        except BaseException:
            supervisor.kill()
            raise
    return supervisor.result()


def _in_main_thread() -> bool:
    """Whether this is the thread Python runs signal handlers in, the only one that may
    change dispositions: the process's first thread (``threading`` is not imported for
    it: ``run`` starts as fast as the command line)."""
    return _thread.get_native_id() == os.getpid()


@contextlib.contextmanager
def _ignoring(signals: Sequence[int]) -> Iterator[dict[int, object]]:
    """The signals ignored for the duration (main thread only: elsewhere Python cannot
    change dispositions); yields the previous dispositions."""
    previous: dict[int, object] = {}
    if _in_main_thread():
        for sig in signals:
            previous[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield previous
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


@contextlib.contextmanager
def _forwarding(signals: Sequence[int], forward: Callable[[int], None]) -> Iterator[None]:
    """While the program runs, these signals to the supervisor go to the program (main
    thread only), so its own handlers run: the supervisor's death would kill it (EXITKILL)."""
    previous: dict[int, object] = {}
    if _in_main_thread():
        for sig in signals:
            previous[sig] = signal.signal(sig, lambda signum, _frame: forward(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _terminal_signals_group() -> bool:
    """Whether this process is in its terminal's foreground group: then a SIGINT or
    SIGHUP from the terminal reached the program as well, and is not sent twice."""
    for fd in (0, 1, 2):
        try:
            return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


@contextlib.contextmanager
def _blocked_sigchld() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _child(argv: list[str], go: int, report: int, previous: dict[int, object]) -> None:
    """In the forked child: wait until seized, then exec (never returns)."""
    try:
        for restored in RESTORED:
            signal.signal(restored, signal.SIG_DFL)
        for number, handler in previous.items():
            # an ignored signal stays ignored across exec; a handled one resets anyway
            default = signal.SIG_IGN if handler == signal.SIG_IGN else signal.SIG_DFL
            signal.signal(number, default)
        if os.read(go, 1):  # EOF: the supervisor died before it seized this child
            os.execvp(argv[0], argv)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(report, str(exc.errno or 0).encode())
    except BaseException:
        pass
    os._exit(EXIT_NOT_STARTED)


class _Supervisor:
    def __init__(
        self,
        argv: list[str],
        core_path: str,
        options: CaptureOptions | None,
        on_crash: Callable[[CrashReport], object] | None,
    ):
        self.argv = argv
        self.core_path = core_path
        self.options = options
        #: a progress line for a core that takes seconds to write (``--memory full``)
        self.progress: Progress | None = None
        self.on_crash = on_crash
        self.pid = 0
        #: every thread traced (of the program, plus clones of other processes not yet
        #: detached)
        self.tids: set[int] = set()
        self.listening: set[int] = set()
        #: clones that are not threads of the program (clone without CLONE_THREAD)
        self.foreign: set[int] = set()
        self.status: int | None = None
        self.execed = False
        self.crashed = False
        self.tracer = _thread.get_native_id()
        self._report_fd = -1
        self.interactive = False
        #: a child that is not a tracee was waiting to be reaped at the last look
        self.others_waiting = False
        #: see run_supervised
        self.only_child = False

    # -- start --------------------------------------------------------------------------

    def start(self, previous: dict[int, object]) -> None:
        go_r, go_w = os.pipe()
        report_r, report_w = os.pipe()  # both ends close-on-exec
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (go_r, go_w, report_r, report_w):
                os.close(fd)
            raise CaptureError(f"cannot start {self.argv[0]}: fork: {exc.strerror}") from None
        if pid == 0:
            os.close(go_w)
            os.close(report_r)
            _child(self.argv, go_r, report_w, previous)
        os.close(go_r)
        os.close(report_w)
        self.pid = pid
        self._report_fd = report_r
        try:
            err = ptrace.request(PTRACE_SEIZE, pid, 0, SEIZE_OPTIONS)
            if err:
                raise CaptureError(f"cannot trace {self.argv[0]}: {os.strerror(err)}")
            self.tids.add(pid)
            with contextlib.suppress(OSError):
                # the kernel's own core of the crash would duplicate (or overwrite) ours
                resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))
            self.interactive = _foreground_job()
            os.write(go_w, b"go")
        except BaseException:
            os.close(go_w)
            self.kill()
            os.close(report_r)
            raise
        os.close(go_w)

    # -- the event loop ---------------------------------------------------------------------

    def forward(self, signum: int) -> None:
        """Pass a signal sent to the supervisor on to the program (see ``_forwarding``)."""
        if self.pid <= 0 or self.status is not None:
            return
        if signum in (signal.SIGINT, signal.SIGHUP) and _terminal_signals_group():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def run(self) -> None:
        # alone in its process (the command line), it can sleep in waitid itself;
        # otherwise SIGCHLD may go to another thread, and it wakes up now and then
        alone = _thread_count() == 1
        if alone and self.only_child:
            self._follow_only_child()
        while self.status is None:
            if alone and not self.others_waiting:
                self._drain(block=True)  # returns only at the end, or for another's child
            elif not self._drain(block=False):
                self._wait(alone)

    def _follow_only_child(self) -> None:
        """Every event until the end, when the program is this process's only child."""
        # The hot loop of `run`: each thread the program creates costs three turns (its
        # parent's clone event, its own first stop, its end), the first two on the
        # program's critical path. Those three are answered here as _handle would, with
        # no more than the one call each needs; everything else goes to _handle.
        waitpid, resume, in_group = os.waitpid, ptrace.resume, ptrace.in_thread_group
        handle, forget, tids, pid = self._handle, self._forget, self.tids, self.pid
        while True:
            try:
                tid, status = waitpid(-1, WALL)
            except ChildProcessError:
                return  # the program was lost: the general loop says so
            if status == _CLONE_EVENT:
                resume(tid)
            elif status == _FIRST_STOP and tid not in tids and in_group(pid, tid):
                tids.add(tid)
                resume(tid)
            elif status == 0 and tid != pid:  # a thread's end (exit code 0)
                forget(tid)
            elif tid in tids or self._adopt(tid):
                handle(tid, status)
                if self.status is not None:
                    return

    def _drain(self, block: bool) -> bool:
        """Handle every stop and exit, one tracee at a time as the kernel names them:
        those waiting now, or (``block``) all of them until the program's end. Whether
        there was any."""
        progressed = False
        self.others_waiting = False
        # blocking, waitid sleeps until some child has something to report: one system
        # call per event where polling would make one per traced thread
        peek = _PEEK & ~os.WNOHANG if block else _PEEK
        while self.status is None:
            try:
                waiting = os.waitid(os.P_ALL, 0, peek)
            except ChildProcessError:  # no child at all: the program was lost
                return self._poll() or progressed
            if waiting is None:
                return progressed
            tid = waiting.si_pid
            if tid not in self.tids and not self._adopt(tid):
                # another user's child, ready to be reaped by its owner: never take it
                self.others_waiting = True
                return self._poll() or progressed
            try:
                got, status = os.waitpid(tid, os.WNOHANG | WALL)
            except ChildProcessError:
                got = 0  # reaped meanwhile by another thread of this process
            if got:
                progressed = True
                self._handle(tid, status)
        return progressed

    def _adopt(self, tid: int) -> bool:
        """Whether ``tid``, which has something to report, is one this supervisor traces
        but did not know yet: a new thread of the program at its first stop (every thread
        is followed from there: its parent's clone event carries nothing the supervisor
        needs), or a process cloned by it (followed only to be let go)."""
        if ptrace.in_thread_group(self.pid, tid):
            self.tids.add(tid)  # (a thread's tracer is the program's: this supervisor)
            return True
        fields = procfs.status(procfs.directory(tid))
        if procfs.tracer_pid(fields) != self.tracer and fields.get("Tgid") != str(self.pid):
            return False
        self.tids.add(tid)
        if fields.get("Tgid") != str(self.pid):
            self.foreign.add(tid)
        return True

    def _poll(self) -> bool:
        """Handle every stop and exit reported now, asking each traced thread in turn;
        whether there was any."""
        progressed = False
        again = True
        while again and self.status is None:
            again = False
            for tid in list(self.tids):
                try:
                    got, status = os.waitpid(tid, os.WNOHANG | WALL)
                except ChildProcessError:
                    self._forget(tid)
                    if tid == self.pid and self.status is None:
                        raise CaptureError(
                            f"lost process {self.pid}: something else reaped it"
                        ) from None
                    continue
                if got:
                    again = progressed = True
                    self._handle(tid, status)
        return progressed

    def _wait(self, alone: bool) -> None:
        if signal.sigtimedwait({signal.SIGCHLD}, WAIT_ALONE if alone else WAIT_SHARED) is None:
            self._adopt_unknown()  # quiet for a while: make sure no tracee went unnoticed

    def _adopt_unknown(self) -> None:
        """Threads traced by this thread but not known: created, their first stop not seen
        yet (a crash captures them too), or never to be seen (killed at once): they must
        be reaped too."""
        try:
            listed = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return
        for name in listed:
            tid = int(name)
            if tid not in self.tids:
                fields = procfs.status(procfs.directory(self.pid, tid))
                if procfs.tracer_pid(fields) == self.tracer:
                    self.tids.add(tid)

    def _forget(self, tid: int) -> None:
        self.tids.discard(tid)
        self.listening.discard(tid)
        self.foreign.discard(tid)

    def _handle(self, tid: int, status: int) -> None:
        # (this runs for every event of every thread: a thread costs three, its clone
        # event, its first stop and its exit; the common ones are answered first)
        if status == _CLONE_EVENT:
            # the new thread is followed from its own first stop (see _adopt)
            ptrace.resume(tid)
            return
        if not os.WIFSTOPPED(status):
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._forget(tid)
                if tid == self.pid:
                    self.status = status
            return
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if tid in self.foreign:
            # not a thread of the program: let it go its own way (with the signal of a
            # signal-delivery-stop)
            ptrace.request(PTRACE_DETACH, tid, 0, 0 if event else sig)
            self._forget(tid)
            return
        if event == PTRACE_EVENT_STOP:
            if sig in STOP_SIGNALS:  # a group-stop: stay stopped, without the tracer
                if ptrace.request(PTRACE_LISTEN, tid) == 0:
                    self.listening.add(tid)
                    self._mirror_stop(sig)
                    return
            # a new thread's first stop, an interrupt, the end of a group-stop
            self.listening.discard(tid)
            ptrace.resume(tid)
        elif event == 0:  # a signal-delivery-stop
            if not self.crashed and sig in FATAL_SIGNALS and self._kills(tid, sig):
                self._crash(tid, sig, time.perf_counter())
            else:
                ptrace.resume(tid, sig)
        else:
            if event == PTRACE_EVENT_EXEC:
                self._on_exec(tid)
            ptrace.resume(tid)

    def _on_exec(self, tid: int) -> None:
        """An exec stop: ``tid`` is the pid, even when the thread that called execve was
        another (the kernel gives it the leader's id). That thread's former id then
        vanishes without an exit to wait for (ptrace(2), "execve(2) under ptrace"; the
        event message names it): kept, it would keep ``_mirror_stop``'s "every thread
        stopped" false for good (a Ctrl-Z would stop the program, not its supervisor),
        and a crash would interrupt it in vain. The old leader ends unreported too, but
        its id lives on in the thread that execed, which is in no group-stop; the other
        threads report their exit (code 0) as usual."""
        self.execed = True
        former = ptrace.event_message(tid)
        if former is not None and former != tid:
            self._forget(former)
        self.listening.discard(tid)

    def _kills(self, tid: int, sig: int) -> bool:
        """Whether delivering ``sig`` now takes its default action (for these: a core dump
        and death). A blocked fault signal the kernel forces is reset to its default
        before this stop, so the masks tell."""
        fields = procfs.status(procfs.directory(self.pid, tid))
        bit = 1 << (sig - 1)
        try:
            caught = int(fields.get("SigCgt", "0"), 16)
            ignored = int(fields.get("SigIgn", "0"), 16)
        except ValueError:
            return False
        return bool(fields) and not (caught | ignored) & bit

    def _mirror_stop(self, sig: int) -> None:
        """A program stopped from the terminal stops its supervisor too, once all its
        threads are stopped: the shell then sees the job stopped, and ``fg`` (SIGCONT to
        the whole process group) continues both."""
        if sig in TERMINAL_STOPS and self.interactive and self.listening >= self.tids:
            os.kill(os.getpid(), signal.SIGSTOP)

    # -- a crash ----------------------------------------------------------------------------

    def _crash(self, tid: int, sig: int, seen: float) -> None:
        self.crashed = True
        from ..streaming import write_captured
        from .base import CrashContext
        from .supervised_crash import CrashReport, SupervisedTarget, signal_info

        info = signal_info(tid, sig)
        self._adopt_unknown()  # threads created whose first stop has not been seen yet
        target = SupervisedTarget(self.pid, tid, self.tids - {tid} - self.foreign)
        size: int | None = None
        error: str | None = None
        try:
            crash = CrashContext(thread_id=tid, signal=info)
            size = write_captured(
                target, self.core_path, "elf", self.options, crash, self.progress
            ).size
        except (MacMiniDumpError, OSError) as exc:
            error = str(exc)
        seconds = time.perf_counter() - seen
        self._release(target, tid, sig)
        report = CrashReport(
            pid=self.pid,
            thread_id=tid,
            signal=info,
            core_path=self.core_path,
            size=size,
            seconds=seconds,
            error=error,
        )
        if self.on_crash is not None:
            self.on_crash(report)
        elif error is not None:
            print(f"macminidump: no core written: {error}", file=sys.stderr, flush=True)

    def _release(self, target: SupervisedTarget, crashed: int, sig: int) -> None:
        """Hand every thread the capture stopped back to the event loop: the crashing
        thread goes on with its signal (which kills the program), the others as their
        stop asks (a signal that arrived meanwhile is delivered)."""
        before = set(target.adopted)
        tracee = target.tracee
        now = dict(tracee.states)
        for tid in before - now.keys():
            self._forget(tid)  # exited meanwhile (reaped by the target)
        if target.exit_status is not None:
            self.status = target.exit_status
        self.tids |= now.keys()
        if now.get(crashed) == STOPPED:
            ptrace.resume(crashed, sig)
        for tid, state in now.items():
            if tid == crashed:
                continue
            self.listening.discard(tid)
            if state == STOPPED and tid in tracee.statuses:
                self._handle(tid, tracee.statuses[tid])
            # a thread still running reports its stop to the event loop later

    # -- the end ------------------------------------------------------------------------------

    def kill(self) -> None:
        """Kill the program and reap every thread of it (on errors)."""
        if self.pid <= 0 or self.status is not None:
            return
        self.tids.add(self.pid)  # (not yet traced when the seize failed)
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + REAP_TIMEOUT
        while self.status is None and time.monotonic() < deadline:
            self._adopt_unknown()
            for tid in sorted(self.tids, key=lambda t: t == self.pid):
                try:
                    got, status = os.waitpid(tid, os.WNOHANG | WALL)
                except ChildProcessError:
                    self._forget(tid)
                    if tid == self.pid:
                        return
                    continue
                if got and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                    self._forget(tid)
                    if tid == self.pid:
                        self.status = status
                elif got:
                    ptrace.resume(tid)  # a stop on the way to death
            time.sleep(0.001)

    def result(self) -> int:
        report = self._report_fd
        self._report_fd = -1
        try:
            # (non-blocking: a copy of the write end forked elsewhere must not hang this)
            if report >= 0:
                os.set_blocking(report, False)
            data = os.read(report, 64) if report >= 0 else b""
        except BlockingIOError:
            data = b""
        finally:
            if report >= 0:
                os.close(report)
        status = self.status
        assert status is not None
        if not self.execed and data:
            try:
                err = int(data)
            except ValueError:
                err = 0
            why = os.strerror(err) if err else "exec failed"
            raise TargetError(f"cannot run {self.argv[0]}: {why}")
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        return os.WEXITSTATUS(status)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 2


def _foreground_job() -> bool:
    """Whether this process runs as the terminal's foreground job (Ctrl-Z reaches it)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False
