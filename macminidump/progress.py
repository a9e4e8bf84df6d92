"""A progress line on a terminal for captures that take seconds.

``Progress(stream)`` counts the bytes a capture streams to its file and, once the
capture has run for ``after`` seconds, rewrites one line on ``stream`` at most every
``every`` seconds ("macminidump: 412 of 1,024 MiB written (40%)"). Nothing is printed for
a quick capture, and nothing at all unless the caller made one (the CLI does when
stderr is a terminal).
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # (not typing's: `run` imports this module at start-up)
if TYPE_CHECKING:
    from typing import TextIO

MIB = 1 << 20


class Progress:
    def __init__(self, stream: TextIO, after: float = 1.0, every: float = 0.2):
        self.stream = stream
        self.after = after
        self.every = every
        self.total = 0
        self.done_bytes = 0
        self.started = time.monotonic()
        self._shown = False
        self._last = 0.0

    def expect(self, total: int) -> None:
        """A capture starts streaming ``total`` bytes: the clock starts now (a supervisor
        makes its Progress long before the crash it is for)."""
        self.total = total
        self.done_bytes = 0
        self.started = time.monotonic()

    def advance(self, count: int) -> None:
        self.done_bytes += count
        now = time.monotonic()
        if now - self.started < self.after or now - self._last < self.every:
            return
        self._last = now
        self._shown = True
        percent = f" ({100 * self.done_bytes // self.total}%)" if self.total else ""
        self.stream.write(
            f"\rmacminidump: {self.done_bytes // MIB:,} of {self.total // MIB:,} MiB "
            f"written{percent}\x1b[K"
        )
        self.stream.flush()

    def done(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
