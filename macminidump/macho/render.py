"""Snapshot → Mach-O core file.

Memory is streamed region by region in bounded chunks to offsets the Layout fixed, so
peak memory does not grow with the core. The file is written under a temporary name
with mode 0600 (cores hold secrets) and renamed into place only when complete.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

from ..errors import RenderError
from ..model import Snapshot
from .layout import Layout, layout_macho

CHUNK = 1 << 20


def _write_layout(layout: Layout, pwrite: Callable[[bytes | memoryview, int], None]) -> None:
    pwrite(layout.head, 0)
    for offset, payload in layout.note_payloads:
        pwrite(payload, offset)
    for placement in layout.segments:
        position = placement.offset
        for chunk in placement.region.data.chunks(CHUNK):
            pwrite(chunk, position)
            position += len(chunk)
        if position != placement.offset + placement.region.size:
            raise RenderError(
                f"region at {placement.region.address:#x} gave {position - placement.offset} "
                f"bytes, not {placement.region.size}"
            )


def render_macho_bytes(snapshot: Snapshot) -> bytes:
    """The whole core in memory: for tests and small cores."""
    layout = layout_macho(snapshot)
    out = io.BytesIO()

    def pwrite(data: bytes | memoryview, offset: int) -> None:
        out.seek(offset)
        out.write(data)

    _write_layout(layout, pwrite)
    out.truncate(layout.file_size)
    value = out.getvalue()
    return value + bytes(layout.file_size - len(value))


def render_macho(snapshot: Snapshot, path: str | os.PathLike[str]) -> int:
    """Write ``snapshot`` as a Mach-O core at ``path``; returns the file's size."""
    layout = layout_macho(snapshot)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise RenderError(f"cannot create {path}: {e.strerror}") from None
    try:
        try:

            def pwrite(data: bytes | memoryview, offset: int) -> None:
                view = memoryview(data)
                while view:
                    written = os.pwrite(fd, view, offset)
                    view = view[written:]
                    offset += written

            _write_layout(layout, pwrite)
            os.ftruncate(fd, layout.file_size)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise RenderError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        _remove(tmp)
        raise
    return layout.file_size


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
