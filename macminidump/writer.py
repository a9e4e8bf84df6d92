"""Format-neutral file writing: what every renderer (and ``to-spec -o``) needs once the
bytes' places are fixed.

A renderer describes its file as a ``fill(pwrite)`` function that writes every byte at
an offset its Layout computed before the first byte. This module runs that function
against memory (``write_bytes``) or a file (``write_file``). What a file write promises
(README "Guarantees"):

- it is atomic: the bytes go to an unnamed file (``O_TMPFILE``) in the target's
  directory, linked under an unpredictable name and renamed into place only when
  complete, so a reader sees the old file or the whole new one. Where ``O_TMPFILE`` is
  missing, the temporary file has a random name opened with ``O_EXCL | O_NOFOLLOW``;
- mode 0600 (cores hold secrets);
- only a regular file, a symlink or nothing is replaced. A symlink is replaced itself,
  as rename(2) does; its target is never written. A device, FIFO, socket or directory is
  refused (bad input) and left as it is;
- on any failure (a full disk, ``KeyboardInterrupt``, a terminating signal that would
  otherwise kill the process: SIGTERM, SIGHUP, SIGQUIT...) nothing is left behind; a
  signal is then delivered again, with its usual effect. Even SIGKILL leaves nothing
  while the unnamed file is written.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import stat

from . import records
from .errors import ParseError, RenderError, WriteError
from .model import Region
from .plain_typing import Callable, Iterable, NamedTuple

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    import signal
    from typing import Any
else:
    try:
        # signal's C core: the same functions, handlers as plain ints; signal.py adds
        # enums, whose module and its imports cost a dump several ms (tests/test_imports.py)
        import _signal as signal
    except ImportError:  # (an interpreter without it)
        import signal

#: bytes of region memory written per call: peak memory does not grow with the core
CHUNK = 1 << 20

#: zero bytes ``write_placements`` writes rather than start another write
GATHER_GAP = 4096

#: write ``data`` at file offset ``offset``
Pwrite = Callable[[bytes | memoryview, int], None]

#: signals whose default action ends the process: while a file is written, each one still
#: at its default is turned into a clean-up first (SIGINT has Python's KeyboardInterrupt)
TERMINATING_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGHUP",
        "SIGQUIT",
        "SIGTERM",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGVTALRM",
        "SIGPROF",
        "SIGXCPU",
        "SIGIO",
        "SIGPWR",
        "SIGSTKFLT",
        "SIGPIPE",
        "SIGINT",
    )  # fmt: skip
    if hasattr(signal, name)
)

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)

#: errors of the system, not of the path given: a failure midway (exit 1), not bad input
_MIDWAY = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EMFILE, errno.ENFILE)


def align(value: int, to: int) -> int:
    """``value`` rounded up to a multiple of ``to``."""
    return (value + to - 1) // to * to


class SegmentPlacement(NamedTuple):
    """Where a layout puts a region's bytes in the file (a tuple: a large core has tens
    of thousands)."""

    region: Region
    offset: int


@records.frozen
class CoreCost:
    """What a file format charges, for a size budget: the file without memory, then per
    region a header and its data rounded up to ``alignment``. Never an underestimate."""

    fixed: int
    per_region: int
    alignment: int

    def region(self, size: int) -> int:
        return self.per_region + -(-size // self.alignment) * self.alignment


def write_region(pwrite: Pwrite, region: Region, offset: int) -> None:
    """Stream ``region``'s bytes to ``offset`` in bounded chunks; check the count."""
    position = offset
    for chunk in region.data.chunks(CHUNK):
        pwrite(chunk, position)
        position += len(chunk)
    if position != offset + region.size:
        raise RenderError(
            f"region at {region.address:#x} gave {position - offset} bytes, not {region.size}"
        )


def write_placements(pwrite: Pwrite, placements: Iterable[SegmentPlacement]) -> None:
    """Every placement's bytes; near neighbours (at most ``GATHER_GAP`` apart: the gap is
    zeros in the file anyway) are gathered into one write of up to ``CHUNK`` bytes, so
    10,000 small stacks cost a few writes, not 10,000."""
    batch = bytearray()
    batch_at = batch_end = 0
    for region, offset in placements:
        source = region.data
        size = source.size
        if batch:
            gap = offset - batch_end
            if 0 <= gap <= GATHER_GAP and batch_end + gap + size - batch_at <= CHUNK:
                if gap:
                    batch += bytes(gap)
                    batch_end = offset
            else:
                pwrite(memoryview(batch), batch_at)
                batch = bytearray()
        if size > CHUNK // 4:
            write_region(pwrite, region, offset)
            continue
        if not batch:
            batch_at = offset
        data = source.read(0, size)
        if len(data) != size:
            raise RenderError(f"region at {region.address:#x} gave {len(data)} bytes, not {size}")
        batch += data
        batch_end = offset + size
    if batch:
        pwrite(memoryview(batch), batch_at)


def write_bytes(file_size: int, fill: Callable[[Pwrite], None]) -> bytes:
    """The whole file in memory: for tests and small cores."""
    out = io.BytesIO()

    def pwrite(data: bytes | memoryview, offset: int) -> None:
        out.seek(offset)
        out.write(data)

    fill(pwrite)
    out.truncate(file_size)
    value = out.getvalue()
    return value + bytes(file_size - len(value))


def write_text(path: str | os.PathLike[str], text: str) -> int:
    """``text`` (UTF-8) as the file at ``path``, with every promise of :func:`write_file`."""
    data = text.encode("utf-8")
    return write_file(path, len(data), lambda pwrite: pwrite(data, 0))


def check_destination(path: str) -> None:
    """Refuse (RenderError) a destination that is not a regular file, a symlink or absent."""
    if path == "-":
        raise RenderError("'-': a core is written to a file (it is not a stream); name a file")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise RenderError(f"cannot write {path}: {e.strerror}") from None
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return
    raise RenderError(f"refusing to replace {path}: it is {_kind(st.st_mode)}, not a regular file")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def write_file(
    path: str | os.PathLike[str],
    file_size: int,
    fill: Callable[[Pwrite], None],
    verify: Callable[[Any], object] | None = None,
) -> int:
    """Write the file at ``path`` atomically (see the module's promises); returns its size.

    ``verify(buffer)``, given the finished file mapped read-only, raises ParseError if
    the file must not be put in place (a renderer passes its format's reader: a file the
    package cannot read back is never written).

    RenderError: the destination cannot be written at all (bad input), or the file fails
    ``verify``. WriteError: the write failed midway (a full disk, an I/O error). Either
    way nothing is left behind.
    """
    path = os.fspath(path)
    check_destination(path)
    directory = os.path.dirname(os.path.abspath(path))
    with _CleanupOnSignals() as pending:
        fd, tmp = _create(path, directory)
        try:
            try:
                _fill(fd, file_size, fill)
                if verify is not None:
                    _verify(fd, file_size, verify)
                if tmp is None:
                    tmp = _link(fd, path, directory)
            finally:
                os.close(fd)
            check_destination(path)  # again: it may have changed while we wrote
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
        finally:
            if tmp is not None:
                _remove(tmp)
            # a signal that came in meanwhile: its clean-up is done, now its effect
            pending.deliver()
    return file_size


def _verify(fd: int, file_size: int, verify: Callable[[Any], object]) -> None:
    buffer = mmap.mmap(fd, file_size, access=mmap.ACCESS_READ) if file_size else b""
    try:
        verify(buffer)
    except ParseError as e:
        e.path = None
        raise RenderError(f"refusing to write a core this package cannot read back: {e}") from None
    finally:
        if isinstance(buffer, mmap.mmap):
            try:
                buffer.close()
            except BufferError:
                pass  # (a view of it still held by the failed check: freed with it)


def _create(path: str, directory: str) -> tuple[int, str | None]:
    """An open file in ``directory``: unnamed (``O_TMPFILE``, name None) where possible."""
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)  # read too: ``verify`` maps it
    if _O_TMPFILE:
        try:
            return os.open(directory, flags | _O_TMPFILE, 0o600), None
        except OSError as e:
            if e.errno in _MIDWAY:
                raise WriteError(f"cannot write {path}: {e.strerror}") from None
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise RenderError(f"cannot create {path}: {e.strerror}") from None
            if e.errno == errno.ENOENT and not os.path.isdir(directory):
                raise RenderError(f"cannot create {path}: {e.strerror}") from None
    flags |= os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = _temp_name(path, directory)
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
        except OSError as e:
            error = WriteError if e.errno in _MIDWAY else RenderError
            raise error(f"cannot create {path}: {e.strerror}") from None
    raise RenderError(f"cannot create {path}: no free temporary name in {directory}")


def _temp_name(path: str, directory: str) -> str:
    # unpredictable: nobody can take the name first to block or redirect the write (the
    # kernel's random bytes, as secrets.token_hex's, without importing secrets' hashlib)
    return os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(8).hex()}.tmp")


def _link(fd: int, path: str, directory: str) -> str:
    """Give the unnamed file a (random, fresh) name next to ``path``."""
    # with a dir_fd, os.link calls linkat(AT_SYMLINK_FOLLOW): the magic link is followed
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for _ in range(100):
            tmp = _temp_name(path, directory)
            try:
                os.link(f"/proc/self/fd/{fd}", tmp, src_dir_fd=dir_fd, follow_symlinks=True)
                return tmp
            except FileExistsError:
                continue
    finally:
        os.close(dir_fd)
    raise WriteError(f"cannot write {path}: no free temporary name in {directory}")


def _fill(fd: int, file_size: int, fill: Callable[[Pwrite], None]) -> None:
    def pwrite(data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written

    fill(pwrite)
    os.ftruncate(fd, file_size)


class _Pending:
    """A terminating signal that arrived while a file was written."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.saved: dict[int, object] = {}

    def deliver(self) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self.saved = {}
        # (once: write_file delivers after its clean-up, and the context's exit again)
        arrived, self.signum = self.signum, None
        if arrived is not None:
            signal.raise_signal(arrived)


class SignalDuringWrite(BaseException):
    """Raised in the writing thread by a terminating signal, to unwind and clean up."""


class _CleanupOnSignals:
    """While a file is written: a terminating signal at its default action raises
    ``SignalDuringWrite`` in the writing thread, so the file is cleaned up before the
    signal is delivered again (``_Pending.deliver``); it then surfaces as a WriteError if
    it did not end the process. (A class, not a contextlib generator: see gc_pause.)"""

    def __enter__(self) -> _Pending:
        pending = self.pending = _Pending()

        def handler(signum: int, _frame: object) -> None:
            if pending.signum is None:
                pending.signum = signum
                raise SignalDuringWrite(signum)

        try:
            for signum in TERMINATING_SIGNALS:
                # only signals that would end the process now: a program's own handler is
                # kept
                if signal.getsignal(signum) == signal.SIG_DFL:
                    pending.saved[signum] = signal.signal(signum, handler)
        except ValueError:
            # not the main thread, where alone handlers can be set (so the first call
            # failed): the signal ends the process as it would have
            pass
        return pending

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, _tb: object) -> None:
        self.pending.deliver()
        if isinstance(exc, SignalDuringWrite):
            # write_file cleaned up and delivered the signal again; it did not end the
            # process
            from signal import Signals  # (here: the names, for this message alone)

            raise WriteError(f"interrupted by {Signals(exc.args[0]).name}") from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
