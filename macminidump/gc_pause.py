"""The garbage collector held off while a capture or a render builds its objects.

A capture of 1,000 threads and its core make some 100,000 objects that live until the
file is written, and free them by reference counting after: with the collector on, they
trigger some 50 young-generation collections and, every other capture or so, a full one,
which walks every object of the program (6-36 ms of a capture + render of about 200 ms).
``paused`` turns the collector off for the duration, and back on after (if it was on)
on every path; a cycle made meanwhile is collected by the next collection after it.
"""

from __future__ import annotations

import gc


def paused() -> _Paused:
    """No garbage collection for the duration (nested: the outermost turns it back on)."""
    return _Paused()


class _Paused:
    # (a class, not a contextlib generator: a dump imports no contextlib, which with what
    # it imports costs a dump ~3 ms; tests/test_imports.py checks it)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._was_enabled:
            gc.enable()
