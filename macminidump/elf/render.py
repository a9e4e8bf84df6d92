"""Snapshot → ELF core file (Linux x86_64).

The same guarantees as the Mach-O renderer, through the same writer
(:mod:`macminidump.writer`): memory streamed region by region in bounded chunks to
offsets the Layout fixed, a temporary file with mode 0600 renamed into place only when
complete.
"""

from __future__ import annotations

import os

from .. import gc_pause
from ..model import Snapshot
from ..writer import Pwrite, write_bytes, write_file, write_placements
from . import notes
from .layout import Layout, layout_elf
from .parse import ElfCore

__all__ = ["render_elf", "render_elf_bytes"]


def _write_layout(layout: Layout, pwrite: Pwrite) -> None:
    pwrite(layout.head, 0)
    write_placements(pwrite, layout.segments)


def render_elf_bytes(snapshot: Snapshot) -> bytes:
    """The whole core in memory: for tests and small cores."""
    try:
        with gc_pause.paused():
            layout = layout_elf(snapshot)
            return write_bytes(layout.file_size, lambda pwrite: _write_layout(layout, pwrite))
    finally:
        notes.forget_register_states()


def render_elf(snapshot: Snapshot, path: str | os.PathLike[str]) -> int:
    """Write ``snapshot`` as an ELF core at ``path``; returns the file's size."""
    try:
        with gc_pause.paused():
            layout = layout_elf(snapshot)
            return write_file(
                path,
                layout.file_size,
                lambda pwrite: _write_layout(layout, pwrite),
                # what the reader rejects is never written (limits agree: see ``limits``)
                verify=ElfCore.read_back(snapshot),
            )
    finally:
        notes.forget_register_states()
