"""Where a process's environment strings lie, found in the top of its main thread's stack.

Linux and Darwin both start a process with the same layout at the top of its main
stack: ``argc``, the ``argv`` pointers and a NULL, the ``envp`` pointers and a NULL (then
Darwin's ``apple`` pointers), and above them the strings those arrays point to. The
arrays stay there for the life of the process. A backend whose OS does not say where the
environment is (Linux does: /proc/PID/stat) finds it here, so the capture can leave the
strings out (they hold tokens and keys).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

#: how much of the top of the stack is searched for the arrays and their strings
WINDOW = 64 << 10
#: an argc beyond this is not taken for one
MAX_ARGC = 4096

#: reads up to ``size`` bytes at an address (fewer where unreadable)
Reader = Callable[[int, int], bytes]


def environment_strings(read: Reader, stack_start: int, stack_end: int) -> tuple[int, int] | None:
    """[start, end) of the environment strings of the process whose main thread's stack
    mapping is [stack_start, stack_end); None when the start-up arrays are not found.

    The arrays are the highest run of words that reads as argc, argc pointers to strings
    above it, NULL, pointers to strings above it, NULL.
    """
    low = max(stack_start, stack_end - WINDOW) & ~7
    data = read(low, stack_end - low)
    words = struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8])
    top = low + len(data)
    found: list[int] | None = None
    for i in range(len(words) - 2, -1, -1):
        argc = words[i]
        if not 1 <= argc <= MAX_ARGC or i + argc + 2 >= len(words) or words[i + argc + 1]:
            continue
        arrays_end = low + 8 * (i + argc + 2)
        if not all(arrays_end <= p < top for p in words[i + 1 : i + 1 + argc]):
            continue
        j = i + argc + 2
        env = []
        while j < len(words) and words[j]:
            env.append(words[j])
            j += 1
        if j == len(words) or not env or not all(low + 8 * j < p < top for p in env):
            continue
        found = env
        break
    if found is None:
        return None
    last = max(found)
    nul = data.find(b"\0", last - low)
    if nul < 0:
        return None
    return min(found), low + nul + 1
