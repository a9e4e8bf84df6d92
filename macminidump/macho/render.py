"""Snapshot → Mach-O core file.

Memory is streamed region by region in bounded chunks to offsets the Layout fixed, so
peak memory does not grow with the core. The file is written under a temporary name
with mode 0600 (cores hold secrets) and renamed into place only when complete (see
:mod:`macminidump.writer`, shared with the ELF renderer).
"""

from __future__ import annotations

import os

from ..model import Snapshot
from ..writer import CHUNK, Pwrite, write_bytes, write_file, write_placements
from .layout import Layout, layout_macho
from .parse import MachOCore

__all__ = ["CHUNK", "render_macho", "render_macho_bytes"]


def _write_layout(layout: Layout, pwrite: Pwrite) -> None:
    pwrite(layout.head, 0)
    for offset, payload in layout.note_payloads:
        pwrite(payload, offset)
    write_placements(pwrite, layout.segments)


def render_macho_bytes(snapshot: Snapshot) -> bytes:
    """The whole core in memory: for tests and small cores."""
    layout = layout_macho(snapshot)
    return write_bytes(layout.file_size, lambda pwrite: _write_layout(layout, pwrite))


def render_macho(snapshot: Snapshot, path: str | os.PathLike[str]) -> int:
    """Write ``snapshot`` as a Mach-O core at ``path``; returns the file's size."""
    layout = layout_macho(snapshot)
    return write_file(
        path,
        layout.file_size,
        lambda pwrite: _write_layout(layout, pwrite),
        # what the reader rejects is never written (limits agree: see ``limits``)
        verify=MachOCore.read_back(snapshot),
    )
