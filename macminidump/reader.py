"""The base of the core-file readers (``MachOCore``, ``ElfCore``): a file mapped once, parsed
at construction, its errors given the file's path.
"""

from __future__ import annotations

import mmap
import os
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import MacMiniDumpError, ParseError
from .limits import RecordBudget

if TYPE_CHECKING:
    from .model import Snapshot


def map_file(path: str) -> Any:
    """A read-only mmap of a whole file, for lazy parsing; one ParseError if it cannot be."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ParseError("empty file", 0, path)
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", path=path) from None


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
    def open(cls: type[_Reader], path: str | os.PathLike[str]) -> _Reader:
        path = os.fspath(path)
        return cls(map_file(path), path)

    def snapshot(self) -> Snapshot:
        """The file as a Snapshot; a model invariant it breaks is a ParseError too."""
        try:
            return self._snapshot()
        except ParseError:
            raise
        except MacMiniDumpError as e:
            raise ParseError(str(e), path=self.path) from None

    def _parse(self) -> None:
        raise NotImplementedError

    def _snapshot(self) -> Snapshot:
        raise NotImplementedError
