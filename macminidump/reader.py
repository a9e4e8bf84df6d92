"""The base of the core-file readers (``MachOCore``, ``ElfCore``): a file mapped once, parsed
at construction, its errors given the file's path.
"""

from __future__ import annotations

import mmap
import os
import stat

from .errors import MacMiniDumpError, ParseError
from .limits import RecordBudget
from .plain_typing import Callable

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from .model import Snapshot


def open_regular(path: str) -> int:
    """A read-only fd of ``path``, which must be a regular file: a FIFO, a device or a
    socket is refused (ParseError), without blocking (``O_NONBLOCK``) on a FIFO's open."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", path=path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
        raise ParseError(f"not a regular file ({kind})", path=path)
    os.set_blocking(fd, True)
    return fd


def map_file(path: str) -> Any:
    """A read-only mmap of a whole file, for lazy parsing; one ParseError if it cannot be.

    The map is shared with the file: if another program truncates the file in place
    while a Snapshot still reads it, the process gets SIGBUS (README "Guarantees");
    ``CoreReader.open(path, private=True)`` reads the file into memory instead.
    """
    fd = open_regular(path)
    try:
        with open(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ParseError("empty file", 0, path)
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", path=path) from None


def read_file(path: str) -> bytes:
    """The whole file in memory: immune to a truncation by another program."""
    fd = open_regular(path)
    try:
        with open(fd, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", path=path) from None
    if not data:
        raise ParseError("empty file", 0, path)
    return data


if TYPE_CHECKING:
    _Reader = TypeVar("_Reader", bound="CoreReader")


class CoreReader:
    """Base of the format readers: a buffer (an mmap of the file, or bytes) read at once.

    A subclass implements ``_parse``; any ParseError it raises is given the file's path.
    The buffer stays referenced, so lazily read memory outlives nothing it needs.
    """

    def __init__(self, buffer: Any, path: str | None = None):
        self.buffer = buffer
        self.path = path
        #: every record the reader builds is counted first (see ``limits``)
        self.records = RecordBudget(len(buffer))
        try:
            self._parse()
        except ParseError as e:
            e.path = path
            raise

    @classmethod
    def open(cls: type[_Reader], path: str | os.PathLike[str], private: bool = False) -> _Reader:
        """Map the file (``private``: read it into memory, safe from a truncation)."""
        path = os.fspath(path)
        return cls(read_file(path) if private else map_file(path), path)

    def snapshot(self) -> Snapshot:
        """The file as a Snapshot; a model invariant it breaks is a ParseError too."""
        try:
            return self._snapshot()
        except ParseError:
            raise
        except MacMiniDumpError as e:
            raise ParseError(str(e), path=self.path) from None

    @classmethod
    def read_back(cls, snapshot: Snapshot) -> Callable[[Any], object]:
        """The check a core of ``snapshot`` in this reader's format passes before it is
        put in place (a renderer's ``verify``): the reader's whole pass over the file
        (``cls(buffer)``: the header, every load command or program header, thread state
        and note checked, every bound of ``limits`` spent; ELF's check decodes no thread's
        registers, which nothing reads: ``elf.parse._ElfCheck``), and the model built from what
        it read (``snapshot()``) when ``snapshot`` holds raw items.

        Building the model can fail only on a model invariant (two threads of one id,
        overlapping regions...); it reads no further byte and spends no record. Without
        raw items everything it would build was written from ``snapshot``'s own values,
        which met those invariants when ``snapshot`` was built (tests/test_roundtrip.py,
        tests/test_elf_roundtrip.py: what is read back equals what was written). A raw
        note or load command can say something else (another thread list, one more
        segment), so then the model is built too.
        """
        if (
            snapshot.raw_notes
            or snapshot.raw_commands
            or any(t.raw_states for t in snapshot.threads)
        ):
            return lambda buffer: cls(buffer).snapshot()
        return cls

    def _parse(self) -> None:
        raise NotImplementedError

    def _snapshot(self) -> Snapshot:
        raise NotImplementedError
