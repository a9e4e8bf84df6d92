"""Every crash on the machine: the handler the kernel pipes crashes to (Linux).

``macminidump core-handler --install DIR`` points /proc/sys/kernel/core_pattern at a
launcher it writes into DIR::

    |DIR/.macminidump-handler %P %I %s %t

For each crash the kernel runs it (as root, stdin = the kernel's core of the dying
process) and ``handle_crash``:

1. reads the head of the kernel's core from stdin (the ELF header, program headers and
   notes: every thread's registers, the crashing thread first with its signal and fault
   address, the auxiliary vector, the process's name);
2. captures the dying process through /proc (``capture/linux/dying.py``) with the memory
   policy the launcher was installed with, while the kernel waits on the pipe (the
   process's memory lives until its core has been read), and writes the core as
   ``DIR/PROGRAM.PID.TIME.core``;
3. drains the rest of the pipe (the kernel's full core is not kept);
4. keeps DIR within ``--max-count`` cores and ``--max-use`` bytes, oldest removed first
   (systemd-coredump's MaxUse).

Nothing can be printed (the kernel gives the handler no terminal): a failure is one line
in ``DIR/handler.log``. ``--uninstall`` restores the pattern ``--install`` replaced.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from .capture.base import CapturedThread, CaptureOptions, CrashContext
from .errors import CaptureError, MacMiniDumpError, TargetError
from .model import ProcessInfo, SignalInfo

CORE_PATTERN = "/proc/sys/kernel/core_pattern"
LAUNCHER = ".macminidump-handler"
PREVIOUS = ".previous-core-pattern"
LOG = "handler.log"
SUFFIX = ".core"
#: the kernel cuts a longer core_pattern (CORENAME_MAX_SIZE)
PATTERN_MAX = 127
#: the most of the pipe's head read for headers and notes (threads x register notes)
HEAD_MAX = 64 << 20
DEFAULT_MAX_COUNT = 50
DEFAULT_MAX_USE = 1 << 30


# ----------------------------------------------------------------- install / uninstall


def install(
    directory: str,
    policy_argv: Sequence[str],
    max_count: int,
    max_use: int,
    pattern_file: str = CORE_PATTERN,
) -> str:
    """Write DIR's launcher and point core_pattern at it; returns the previous pattern."""
    if os.geteuid() != 0:
        raise TargetError("--install needs root: it writes /proc/sys/kernel/core_pattern")
    directory = os.path.abspath(directory)
    _writable_directory(directory)
    previous = _read(pattern_file).rstrip("\n")
    launcher = os.path.join(directory, LAUNCHER)
    pattern = f"|{launcher} %P %I %s %t"
    if len(pattern) > PATTERN_MAX:
        raise TargetError(
            f"{directory}: too long for core_pattern ({len(pattern)} > {PATTERN_MAX} "
            "characters with the launcher's name): choose a shorter directory"
        )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [
        "core-handler",
        "--dir",
        directory,
        "--max-count",
        str(max_count),
        "--max-use",
        str(max_use),
        *policy_argv,
    ]
    script = (
        f"#!{sys.executable} -I\n"
        "# written by `macminidump core-handler --install`: the kernel runs this for each\n"
        "# crash (see /proc/sys/kernel/core_pattern); `--uninstall` removes it\n"
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        "from macminidump.cli import console\n"
        f"sys.exit(console({argv!r} + sys.argv[1:]))\n"
    )
    _write_atomically(launcher, script, 0o700)
    if not _ours(previous):
        _write_atomically(os.path.join(directory, PREVIOUS), previous + "\n", 0o600)
    try:
        with open(pattern_file, "w") as f:
            f.write(pattern)
    except OSError as e:
        raise TargetError(f"cannot write {pattern_file}: {e.strerror}") from None
    return previous


def uninstall(pattern_file: str = CORE_PATTERN) -> tuple[str, str]:
    """Restore the pattern ``install`` replaced; returns (removed, restored)."""
    if os.geteuid() != 0:
        raise TargetError("--uninstall needs root: it writes /proc/sys/kernel/core_pattern")
    current = _read(pattern_file).rstrip("\n")
    if not _ours(current):
        raise TargetError(f"core_pattern is not macminidump's handler: {current!r}")
    launcher = shlex.split(current[1:])[0]
    directory = os.path.dirname(launcher)
    saved = os.path.join(directory, PREVIOUS)
    try:
        previous = _read(saved).rstrip("\n")
    except TargetError:
        previous = "core"  # the kernel's default
    try:
        with open(pattern_file, "w") as f:
            f.write(previous)
    except OSError as e:
        raise TargetError(f"cannot write {pattern_file}: {e.strerror}") from None
    for path in (launcher, saved):
        with contextlib.suppress(OSError):
            os.unlink(path)
    return current, previous


def _ours(pattern: str) -> bool:
    return pattern.startswith("|") and f"/{LAUNCHER} " in pattern


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise TargetError(f"cannot read {path}: {e.strerror}") from None


def _writable_directory(directory: str) -> None:
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise TargetError(f"cannot create the directory {directory}: {e.strerror}") from None
    if not os.path.isdir(directory):
        raise TargetError(f"{directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise TargetError(f"cannot write in {directory}: permission denied")
    st = os.stat(directory)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        # the kernel runs the launcher in it as root: no one else may replace it
        raise TargetError(
            f"{directory} is writable by others (mode {st.st_mode & 0o777:o}, owner uid "
            f"{st.st_uid}): the kernel would run a handler from it as root"
        )
    probe = os.path.join(directory, f".probe.{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise TargetError(f"cannot write in {directory}: {e.strerror}") from None


def _write_atomically(path: str, text: str, mode: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise TargetError(f"cannot write {path}: {e.strerror}") from None


# ----------------------------------------------------------------- one crash


def handle_crash(
    directory: str,
    pid: int,
    tid: int,
    signo: int,
    when: int,
    options: CaptureOptions,
    max_count: int,
    max_use: int,
    pipe: BinaryIO,
) -> str:
    """Write the core of the dying process ``pid`` (see the module doc); returns its path."""
    from .capture.linux.dying import DyingTarget
    from .streaming import write_captured

    try:
        head = read_head(pipe)
        threads, crash, auxv, process = _from_kernel_notes(head, tid, signo)
        name = _safe_name(process.name if process is not None else "") or "process"
        path = os.path.join(directory, f"{name}.{pid}.{when}{SUFFIX}")
        target = DyingTarget(pid, threads, auxv, process)
        try:
            write_captured(target, path, "elf", options, crash)
        finally:
            target.close()
    finally:
        drain(pipe)
    keep_within(directory, max_count, max_use, newest=path)
    return path


def read_head(pipe: BinaryIO) -> bytes:
    """The ELF header, program headers and notes at the start of the kernel's core."""
    from .elf.constants import EHDR_SIZE, PHDR_SIZE, PN_XNUM

    head = _read_exact(pipe, EHDR_SIZE)
    ehdr = _elf_header(head)
    phoff, phnum = ehdr.e_phoff, ehdr.e_phnum
    if phnum == PN_XNUM or phoff < EHDR_SIZE:
        raise CaptureError(f"the kernel's core has {phnum:#x} program headers at {phoff:#x}")
    head += _read_exact(pipe, phoff + phnum * PHDR_SIZE - len(head))
    note = _note_header(head, ehdr)
    end = note.p_offset + note.p_filesz
    if end > HEAD_MAX or note.p_offset < len(head):
        raise CaptureError(
            f"the kernel's notes at {note.p_offset:#x} ({note.p_filesz} bytes) are unusable"
        )
    return head + _read_exact(pipe, end - len(head))


def _elf_header(head: bytes) -> Any:
    """The ELF header (named fields) of a 64-bit little-endian ELF core, or CaptureError."""
    from .elf.constants import PHDR_SIZE, ElfClass, ElfData
    from .elf.schema import elf64_ehdr
    from .errors import ParseError
    from .schema_io import parse_at

    try:
        ehdr = parse_at(elf64_ehdr, head, 0, "ELF header")
    except ParseError:
        ehdr = None
    if (
        ehdr is None
        or ehdr.ei_class != ElfClass.ELFCLASS64
        or ehdr.ei_data != ElfData.ELFDATA2LSB
        or ehdr.e_phentsize != PHDR_SIZE
    ):
        raise CaptureError("the kernel's core on stdin is not a 64-bit ELF core")
    return ehdr


def _note_header(head: bytes, ehdr: Any) -> Any:
    """The PT_NOTE program header (a ``ProgramHeader``) of a core whose headers are in
    ``head``, or CaptureError."""
    from .elf.constants import PHDR_SIZE
    from .elf.parse import ProgramHeader
    from .elf.schema import elf64_phdr
    from .linux_abi import SegmentType
    from .schema_io import fixed_format

    fmt = fixed_format(elf64_phdr)
    for i in range(ehdr.e_phnum):
        at = ehdr.e_phoff + i * PHDR_SIZE
        phdr = ProgramHeader(at, *fmt.unpack_from(head, at))
        if phdr.p_type == SegmentType.PT_NOTE:
            return phdr
    raise CaptureError("the kernel's core has no notes")


def _read_exact(pipe: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = pipe.read(size - len(data))
        if not part:
            raise CaptureError("the kernel's core ended early")
        data += part
    return data


def drain(pipe: BinaryIO) -> None:
    """Read the pipe to its end: the kernel finishes the dump, the process can go."""
    with contextlib.suppress(OSError):
        while pipe.read(1 << 20):
            pass


def _from_kernel_notes(
    head: bytes, tid: int, signo: int
) -> tuple[list[CapturedThread], CrashContext, list[tuple[int, int]], ProcessInfo | None]:
    """Threads, the crash, auxv and process facts from the kernel's notes."""
    from .arch import RegKind
    from .elf.constants import EHDR_SIZE, PHDR_SIZE
    from .elf.parse import parse_elf_bytes
    from .elf.schema import elf64_ehdr, elf64_phdr
    from .schema_io import build, plain

    ehdr = _elf_header(head)
    note = _note_header(head, ehdr)
    # the head alone, as a core with one program header (the notes) and no memory
    header = dict(plain(ehdr), e_phoff=EHDR_SIZE, e_shoff=0, e_phnum=1, e_shnum=0, e_shstrndx=0)
    moved = note._replace(p_offset=EHDR_SIZE + PHDR_SIZE)._asdict()
    del moved["offset"]
    blob = head[note.p_offset : note.p_offset + note.p_filesz]
    snapshot = parse_elf_bytes(
        build(elf64_ehdr, header, "ELF header") + build(elf64_phdr, moved, "PT_NOTE") + blob
    )
    threads = [
        CapturedThread(
            id=t.id,
            regsets={RegKind(r.kind): dict(r.values) for r in t.regsets},
            raw_states=t.raw_states,
            xsave=t.xsave,
        )
        for t in snapshot.threads
    ]
    if not threads:
        raise CaptureError("the kernel's core lists no threads")
    signal = snapshot.signal
    if signal is None or signal.signo != signo:
        signal = SignalInfo(signo=signo)
    crashed = tid if any(t.id == tid for t in threads) else threads[0].id
    crash = CrashContext(thread_id=crashed, signal=signal)
    return threads, crash, list(snapshot.auxv), snapshot.process


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:64].lstrip(".")


def keep_within(directory: str, max_count: int, max_use: int, newest: str | None = None) -> None:
    """Remove the oldest cores until at most ``max_count`` remain within ``max_use``
    bytes; the newest goes last (and goes too when it alone is over ``max_use``)."""
    cores = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(SUFFIX) and not entry.name.startswith(".") and entry.is_file():
                st = entry.stat()
                cores.append((entry.path == newest, st.st_mtime_ns, entry.path, st.st_size))
    cores.sort()
    total = sum(c[3] for c in cores)
    count = len(cores)
    for _, _, path, size in cores:
        if count <= max_count and total <= max_use:
            break
        with contextlib.suppress(OSError):
            os.unlink(path)
        count -= 1
        total -= size


def log_failure(directory: str, message: str) -> None:
    """One line in DIR/handler.log (the kernel gives the handler nowhere to print)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(directory, LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{stamp} {message}\n")


def run_handler(
    directory: str,
    argv: Sequence[str],
    options: CaptureOptions,
    max_count: int,
    max_use: int,
    pipe: BinaryIO,
) -> int:
    """The handler as the kernel runs it: PID TID SIGNAL TIME from the pattern."""
    try:
        pid, tid, signo, when = (int(a) for a in argv)
    except ValueError:
        drain(pipe)
        raise TargetError(
            f"core-handler takes PID TID SIGNAL TIME (%P %I %s %t), not {' '.join(argv)!r}"
        ) from None
    try:
        handle_crash(directory, pid, tid, signo, when, options, max_count, max_use, pipe)
    except (MacMiniDumpError, OSError) as e:
        log_failure(directory, f"process {pid} signal {signo}: no core written: {e}")
        raise
    return 0
