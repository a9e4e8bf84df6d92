"""Running the command line as a user does, for the tests: ``cli`` runs
``python -m macminidump`` in a fresh process, ``one_line`` checks an error is one line
with no traceback, ``stderr_on_a_terminal`` runs a command whose stderr is a pty."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Sequence


def cli(*args: str, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "macminidump", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[call-overload]
    )


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def stderr_on_a_terminal(argv: Sequence[str]) -> tuple[int, bytes]:
    """Run ``argv`` with stderr on a pseudo-terminal; its exit status and all it showed."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(argv, stderr=follower, stdout=subprocess.DEVNULL, timeout=300)
        os.close(follower)
        shown = b""
        while True:
            try:
                part = os.read(leader, 65536)
            except OSError:  # EIO once the terminal's last writer is gone
                break
            if not part:
                break
            shown += part
    finally:
        os.close(leader)
    return result.returncode, shown
