"""The helper process of a Linux self dump: ``python -m macminidump._selfdump PID PATH``.

A process cannot ptrace itself, so ``write_core()`` starts this helper, lets it trace
the caller (Yama), and waits. The helper waits for "go" on stdin (sent once the caller
has allowed it), captures the caller with every thread stopped, writes the core and
exits; the caller's calling thread is recorded blocked inside ``write_core``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from .capture.base import capture
    from .capture.linux import LinuxTarget
    from .elf.render import render_elf
    from .errors import MacMiniDumpError

    pid, path = int(argv[0]), argv[1]
    if sys.stdin.buffer.read(2) != b"go":
        print("macminidump: error: the calling process went away", file=sys.stderr)
        return 1
    try:
        render_elf(capture(LinuxTarget(pid)), path)
    except MacMiniDumpError as e:
        print(f"macminidump: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
