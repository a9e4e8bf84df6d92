"""Format-neutral file writing: what every renderer needs once its Layout is fixed.

A renderer describes its file as a ``fill(pwrite)`` function that writes every byte at
an offset its Layout computed before the first byte. This module runs that function
against memory (``write_bytes``) or a file (``write_file``). A file is written under a
temporary name in the target's directory with mode 0600 (cores hold secrets) and renamed
into place only when complete; on any failure, including KeyboardInterrupt, the
temporary file is removed and nothing is left behind.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable

import attrs

from .errors import RenderError
from .model import Region

#: bytes of region memory written per call: peak memory does not grow with the core
CHUNK = 1 << 20

#: zero bytes ``write_placements`` writes rather than start another write
GATHER_GAP = 4096

#: write ``data`` at file offset ``offset``
Pwrite = Callable[[bytes | memoryview, int], None]


def align(value: int, to: int) -> int:
    """``value`` rounded up to a multiple of ``to``."""
    return (value + to - 1) // to * to


@attrs.frozen
class SegmentPlacement:
    """Where a layout puts a region's bytes in the file."""

    region: Region
    offset: int


@attrs.frozen
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
    batch_at = 0
    for placement in placements:
        region, offset = placement.region, placement.offset
        size = region.data.size
        if batch:
            gap = offset - (batch_at + len(batch))
            if 0 <= gap <= GATHER_GAP and len(batch) + gap + size <= CHUNK:
                batch += bytes(gap)
            else:
                pwrite(memoryview(batch), batch_at)
                batch = bytearray()
        if size > CHUNK // 4:
            write_region(pwrite, region, offset)
            continue
        if not batch:
            batch_at = offset
        data = region.data.read(0, size)
        if len(data) != size:
            raise RenderError(f"region at {region.address:#x} gave {len(data)} bytes, not {size}")
        batch += data
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


def write_file(path: str | os.PathLike[str], file_size: int, fill: Callable[[Pwrite], None]) -> int:
    """Write the file at ``path`` (temp file + rename, mode 0600); returns its size."""
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

            fill(pwrite)
            os.ftruncate(fd, file_size)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise RenderError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        _remove(tmp)
        raise
    return file_size


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
