"""``write_core``: MiniDumpWriteDump for macOS and Linux, one call.

    import macminidump
    macminidump.write_core("now.core")            # this process, every thread as it is
    macminidump.write_core("other.core", 4242)    # another process, by pid
    macminidump.write_core("crash.core", crash=context)   # from a crash handler (macOS)
    macminidump.write_core("big.core", 4242, memory="referenced", max_size="8M")

The platform picks the format: Mach-O on macOS (LLDB), ELF on Linux (gdb and LLDB).
"""

from __future__ import annotations

import ctypes
import os
import sys

from .capture.base import CaptureOptions, CrashContext
from .capture.policy import Memory
from .errors import CaptureError, CaptureWarning, TargetError
from .model import Snapshot
from .plain_typing import Callable, Iterable
from .streaming import capture_snapshot, write_captured

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    import subprocess
    from typing import Any

    from .capture.linux.held import Held
    from .progress import Progress

PR_SET_PTRACER = 0x59616D61  # Yama: allow this process to ptrace us


def _options(
    options: CaptureOptions | None,
    memory: Memory | str,
    max_size: int | str | None,
    include: Iterable[str | tuple[int, int]],
    keep_environment: bool = False,
) -> CaptureOptions:
    include = tuple(include)
    if options is None:
        return CaptureOptions(
            memory=memory, max_size=max_size, include=include, keep_environment=keep_environment
        )
    if (memory, max_size, include, keep_environment) != ("stacks", None, (), False):
        raise TargetError("give options= or memory=/max_size=/include=/keep_environment=, not both")
    return options


def capture_process(
    target: int | None = None,
    *,
    memory: Memory | str = "stacks",
    max_size: int | str | None = None,
    include: Iterable[str | tuple[int, int]] = (),
    keep_environment: bool = False,
    crash: CrashContext | None = None,
    options: CaptureOptions | None = None,
    task: int | None = None,
) -> Snapshot:
    """A Snapshot of a live process: ``target`` a pid, or None for the calling process.

    ``memory``, ``max_size``, ``include`` and ``keep_environment`` are ``write_core``'s.
    The memory is read into RAM (``write_core`` streams it to the file instead). On
    macOS ``task`` may instead be a task port the caller holds (the original's
    ``MiniDumpWriteDump(taskPort, …)``). The process is stopped only while it is read.
    The calling process is captured by a helper process (see ``write_core``).
    """
    options = _options(options, memory, max_size, include, keep_environment)
    if _is_self(target, task):
        return _self_snapshot(options, crash)
    if sys.platform == "darwin":
        from .capture.mach import MachTarget

        with MachTarget(target, task=task) as mach:
            return capture_snapshot(mach, "macho", options, crash)
    if task is not None:
        raise CaptureError("a Mach task port can only be captured on macOS")
    _require_linux()
    from .capture.linux import LinuxTarget

    assert target is not None  # None is the calling process, captured above
    return capture_snapshot(LinuxTarget(target), "elf", options, crash)


def write_core(
    path: str | os.PathLike[str],
    target: int | None = None,
    *,
    memory: Memory | str = "stacks",
    max_size: int | str | None = None,
    include: Iterable[str | tuple[int, int]] = (),
    keep_environment: bool = False,
    crash: CrashContext | None = None,
    options: CaptureOptions | None = None,
    task: int | None = None,
    progress: Progress | None = None,
    held: Held | None = None,
    on_warning: Callable[[str], object] | None = None,
) -> int:
    """Write a core of a live process at ``path`` (mode 0600); returns its size.

    ``target``: a pid, or None for the calling process. ``memory``: what to save besides
    registers: ``"stacks"`` (the default: stacks and code around return addresses, for
    backtraces), ``"referenced"`` (plus the memory registers and stack words point to),
    ``"dirty"`` (plus every private mapping the process wrote), ``"full"`` (everything
    readable, like gcore). ``max_size`` caps the file (bytes, or text: ``"64K"``, ``"8M"``);
    what it cuts is recorded in the core. ``include``: extra ``(address, size)`` ranges
    (or ``"ADDR:SIZE"`` text). The environment strings (they hold tokens) and memory the
    process marked MADV_DONTDUMP are never saved; ``keep_environment=True`` keeps the
    former. ``options`` is the same as a ``CaptureOptions``. Large
    memory streams from the stopped process to the file; ``progress`` shows it.

    The calling process is captured
    by a helper process while the calling thread waits inside this call, so every thread,
    the calling one included, is recorded with its real state (the C++ macMiniDump cannot
    record the calling thread), and no thread of this process is ever suspended by this
    process (on macOS that could deadlock on the GIL: see ``capture.mach.handover``). On
    macOS a crash handler passes ``crash`` (the crashed thread's state from its
    ``ucontext``). A failure leaves no file behind. What the capture had to leave out
    (a thread that exited while it was read) comes as a ``CaptureWarning``.

    ``held`` (Linux): process ``target`` stopped already by a ``capture.linux.held.Held``,
    which the capture continues from and resumes: the ``dump`` command stops the process
    before it loads the rest of the package (see that module).

    ``on_warning``: called with each such message instead of a ``CaptureWarning`` (the
    ``dump`` command prints them its own way).
    """
    path = os.fspath(path)
    options = _options(options, memory, max_size, include, keep_environment)
    if held is not None and (task is not None or held.pid != target):
        raise CaptureError(f"process {held.pid} is held, not the target {target!r}")
    if _is_self(target, task):
        _warn(_self_dump(path, options, crash), on_warning)
        return os.stat(path).st_size
    if sys.platform == "darwin":
        from .capture.mach import MachTarget

        with MachTarget(target, task=task) as mach:
            written = write_captured(mach, path, "macho", options, crash, progress)
    else:
        if task is not None:
            raise CaptureError("a Mach task port can only be captured on macOS")
        _require_linux()
        from .capture.linux import LinuxTarget

        assert target is not None
        linux = LinuxTarget(target, held=held)
        written = write_captured(linux, path, "elf", options, crash, progress)
    _warn(written.warnings, on_warning)
    return written.size


def _warn(messages: Iterable[str], on_warning: Callable[[str], object] | None) -> None:
    for message in messages:
        if on_warning is not None:
            on_warning(message)
            continue
        import warnings  # (only when there is something to say: a dump imports no warnings)

        warnings.warn(message, CaptureWarning, stacklevel=3)


def _is_self(target: int | None, task: int | None) -> bool:
    return task is None and (target is None or target == os.getpid())


def render_native(snapshot: Snapshot, path: str) -> int:
    """The platform's own format: Mach-O for macOS, ELF for Linux."""
    if sys.platform == "darwin":
        from .macho.render import render_macho

        return render_macho(snapshot, path)
    from .elf.render import render_elf

    return render_elf(snapshot, path)


def _require_linux() -> None:
    machine = os.uname().machine  # (what platform.machine() returns, without its import)
    if sys.platform != "linux" or machine not in ("x86_64", "AMD64"):
        raise CaptureError(
            f"live capture runs on macOS and on Linux x86_64, not {sys.platform} {machine}"
        )


def _self_dump(path: str, options: CaptureOptions, crash: CrashContext | None) -> tuple[str, ...]:
    """Have a helper process capture this one into ``path`` while the calling thread waits
    in here; the warnings the helper reported."""
    return _self_capture(path, options, crash)[1]


def _self_snapshot(options: CaptureOptions, crash: CrashContext | None) -> Snapshot:
    """The Snapshot a helper process takes of this one: the same capture as for a pid
    (thread names, images and all), handed back pickled on its stdout."""
    import pickle

    from ._selfdump import TO_STDOUT

    out, _ = _self_capture(TO_STDOUT, options, crash)
    snapshot = pickle.loads(out)  # from our own child, running this package: trusted
    assert isinstance(snapshot, Snapshot)
    return snapshot


def _self_capture(
    path: str, options: CaptureOptions, crash: CrashContext | None
) -> tuple[bytes, tuple[str, ...]]:
    """Run the helper on this process: what it wrote on stdout, and its warnings. The
    options go to it as command-line options."""
    import subprocess  # (here: only a self-dump starts a process; `dump PID` never does)

    from . import _selfdump

    command = [
        sys.executable,
        "-m",
        "macminidump._selfdump",
        str(os.getpid()),
        path,
        *options.to_argv(),
    ]

    if not sys.executable or not os.access(sys.executable, os.X_OK):
        raise CaptureError(
            f"no Python interpreter to run the capture helper (sys.executable is "
            f"{sys.executable!r})"
        )

    def spawn() -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if path == _selfdump.TO_STDOUT else None,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as e:
            # no process allowed (RLIMIT_NPROC), no file descriptor left, no interpreter
            raise CaptureError(f"cannot start the capture helper: {e.strerror or e}") from None

    if sys.platform == "darwin":
        from .capture.mach.handover import offer_task_port
        from .capture.mach.libsystem import load_libsystem

        helper = offer_task_port(load_libsystem(), spawn)
        request = b"go" + _selfdump.crash_to_json(crash).encode()
        return _wait_for(helper, request)
    _require_linux()
    if crash is not None:
        raise CaptureError(
            "on Linux a crash is captured by a supervisor: macminidump run -o CORE -- PROGRAM"
        )
    libc = ctypes.CDLL(None, use_errno=True)
    with _ChildrenWaitable():
        helper = spawn()
        return _trace_me(libc, helper)


class _ChildrenWaitable:
    """With SIGCHLD ignored the kernel reaps children itself: the helper's exit status
    would be lost and a failure read as success. Wait with the default in place.
    (signal and threading imported here: only a self dump needs them, and a dump of
    another process imports neither: see tests/test_imports.py.)"""

    def __enter__(self) -> None:
        import signal

        self.restore = False
        if signal.getsignal(signal.SIGCHLD) != signal.SIG_IGN:
            return
        import threading

        if threading.current_thread() is not threading.main_thread():
            raise CaptureError(
                "SIGCHLD is ignored in this process: a self dump cannot learn whether its "
                "helper succeeded (call write_core from the main thread, or restore SIGCHLD)"
            )
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.restore = True

    def __exit__(self, *exc_info: object) -> None:
        if self.restore:
            import signal

            signal.signal(signal.SIGCHLD, signal.SIG_IGN)


def _trace_me(libc: Any, helper: subprocess.Popen[bytes]) -> tuple[bytes, tuple[str, ...]]:
    try:
        # Yama (ptrace_scope 1) lets a process be traced only by its ancestors: allow the
        # helper, our child, explicitly. Harmless where Yama is absent.
        libc.prctl(PR_SET_PTRACER, helper.pid, 0, 0, 0)
        # (the calling thread keeps its name: renaming it would rename the process too
        # when it is the main thread, and the core would say "write_core", not "python")
        return _wait_for(helper, b"go")
    finally:
        libc.prctl(PR_SET_PTRACER, 0, 0, 0, 0)


def _wait_for(helper: subprocess.Popen[bytes], request: bytes) -> tuple[bytes, tuple[str, ...]]:
    try:
        assert helper.stdin is not None and helper.stderr is not None
        # the calling thread is captured while it blocks here, the GIL released
        if helper.stdout is not None:  # a Snapshot comes back: read both pipes at once
            out, err = helper.communicate(request)
        else:
            helper.stdin.write(request)
            helper.stdin.close()
            out, err = b"", helper.stderr.read()
        output = err.decode("utf-8", "replace").strip()
        code = helper.wait()
    except BaseException:
        helper.kill()
        helper.wait()
        raise
    lines = output.splitlines()
    if code != 0:
        last = lines[-1] if lines else f"the capture helper failed ({code})"
        raise CaptureError(last.removeprefix("macminidump: error: "))
    from ._selfdump import WARNING

    return out, tuple(line.removeprefix(WARNING) for line in lines if line.startswith(WARNING))
