"""One family of exceptions, so callers catch ``MacMiniDumpError`` and nothing else."""

from __future__ import annotations


class MacMiniDumpError(Exception):
    """Base of every error this package raises on purpose."""


class CaptureWarning(UserWarning):
    """A capture that went on without something (a thread that exited while it was read);
    ``write_core`` warns with it, ``capture_process`` puts it in ``Snapshot.warnings``."""


class ModelError(MacMiniDumpError, ValueError):
    """A Snapshot (or part of one) that cannot exist: overlapping regions, unknown registers."""


class ParseError(MacMiniDumpError, ValueError):
    """A file that is not a well-formed core. Carries the file offset where reading failed."""

    def __init__(self, message: str, offset: int | None = None, path: str | None = None):
        self.message = message
        self.offset = offset
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        at = f"at offset {self.offset:#x}: " if self.offset is not None else ""
        return f"{where}{at}{self.message}"


class SpecError(MacMiniDumpError, ValueError):
    """A spec (YAML/JSON/dict) that does not describe a core. Names the path of the bad key."""

    def __init__(self, message: str, path: str = "$"):
        self.message = message
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RenderError(MacMiniDumpError):
    """A Snapshot that cannot be written in the requested format, or an I/O failure."""


class WriteError(RenderError):
    """Writing a file failed midway (a full disk, an I/O error, a signal); nothing was left
    behind. Not bad input: the CLI exits 1 for it, 2 for other RenderErrors."""


class CaptureError(MacMiniDumpError):
    """A live process could not be captured (it died mid-capture, a read failed...)."""


class TargetError(CaptureError):
    """The process named cannot be captured at all: no such process, not permitted,
    already traced, or not supported on this system. Bad input, as the CLI sees it."""
