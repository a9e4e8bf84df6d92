"""Capture to file in one pass: the target stays stopped while the renderer streams it.

Every path that writes a core of a live process (``write_core`` of a pid or of the
calling process, ``run``'s crash supervisor, the kernel's core_pattern handler, the Mach
backend) comes through ``write_captured``: the memory policy chooses the regions
(``capture/policy.py``), large regions are read from the target only as the renderer
writes them, and the budget is computed with the format's own cost model.
"""

from __future__ import annotations

import os

from . import records
from .capture.base import CaptureOptions, CrashContext, TargetOS, captured
from .capture.policy import CostOf
from .model import Snapshot
from .plain_typing import Callable
from .writer import CoreCost

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from .progress import Progress

Render = Callable[[Snapshot, "str | os.PathLike[str]"], int]


#: the core formats ``format_of`` knows
FORMATS = ("elf", "macho")


def check_format(fmt: str) -> None:
    """ValueError unless ``fmt`` is one of ``FORMATS`` (without importing its renderer)."""
    if fmt not in FORMATS:
        raise ValueError(f"no core format {fmt!r}")


def format_of(fmt: str) -> tuple[Render, CostOf]:
    """The renderer and the budget's cost model of a core format (one of ``FORMATS``)."""
    check_format(fmt)
    if fmt == "elf":
        from .elf.layout import core_cost as elf_cost
        from .elf.render import render_elf

        return render_elf, elf_cost
    from .macho.layout import core_cost as macho_cost
    from .macho.render import render_macho

    return render_macho, macho_cost


@records.frozen
class Written:
    """A core written: its size, and what the capture warned of (threads that vanished)."""

    size: int
    warnings: tuple[str, ...] = ()


def write_captured(
    target: TargetOS,
    path: str | os.PathLike[str],
    fmt: str,
    options: CaptureOptions | None = None,
    crash: CrashContext | None = None,
    progress: Progress | None = None,
) -> Written:
    """Capture ``target`` into a core at ``path`` in format ``fmt``."""
    check_format(fmt)

    def cost(snapshot: Snapshot) -> CoreCost:
        return format_of(fmt)[1](snapshot)

    # (the renderer is imported once the target is stopped, while the backend may still
    # be reading it in the background: the kernel's smaps walk on Linux)
    with captured(
        target, options, crash, cost, progress=progress, while_stopped=lambda: format_of(fmt)
    ) as snapshot:
        return Written(format_of(fmt)[0](snapshot, path), snapshot.warnings)


def capture_snapshot(
    target: TargetOS,
    fmt: str,
    options: CaptureOptions | None = None,
    crash: CrashContext | None = None,
) -> Snapshot:
    """The Snapshot (memory read into RAM); a budget is counted in format ``fmt``."""
    from .capture.base import capture

    return capture(target, options, crash, format_of(fmt)[1])
