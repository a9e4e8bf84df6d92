"""The garbage collector held off while a capture or a render builds its objects.

A capture of 1,000 threads and its core make some 100,000 objects that live until the
file is written, and free them by reference counting after: with the collector on, they
trigger some 50 young-generation collections and, every other capture or so, a full one,
which walks every object of the program (6-36 ms of a capture + render of about 200 ms).
``paused`` turns the collector off for the duration, and back on after (if it was on)
on every path; a cycle made meanwhile is collected by the next collection after it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No garbage collection for the duration (nested: the outermost turns it back on)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
