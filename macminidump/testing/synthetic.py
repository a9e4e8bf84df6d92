"""Synthetic specs of any size: many threads, many small regions, for benchmarks and tests.

``thread_spec(threads, regions)`` is an x86_64 process whose every thread has a
general-purpose register set and a few small stack regions chained by rbp, written with
the keys a person writes by hand (registers by name, memory as ``UInt64`` lists). It
builds as a Mach-O core (the default) or, with ``format: elf``, as its ELF twin: the
same threads and the same bytes of memory, so the two files' sizes can be compared.
"""

from __future__ import annotations

import random
from typing import Any

#: x86_64 registers that both Mach-O's x86_THREAD_STATE64 and Linux's user_regs_struct hold
_GPR = ("rax", "rbx", "rcx", "rdx", "rdi", "rsi", "r8", "r9", "r10", "r11", "r12", "r13")

#: address of thread 0's stack; each thread's stacks lie 1 MiB above the previous one's
_STACKS = 0x7F00_0000_0000


def thread_spec(threads: int, regions: int, words: int = 16, seed: int = 1) -> dict[str, Any]:
    """A spec of ``threads`` threads and ``regions`` regions of ``words`` 8-byte words each.

    Regions are spread evenly over the threads (at least one each): thread ``i``'s stack
    regions lie 4 KiB apart below its own megabyte, and its rsp/rbp point into the first.
    """
    if threads < 1 or regions < threads:
        raise ValueError("need at least one thread and one region per thread")
    rng = random.Random(seed)
    spec_threads = []
    spec_regions = []
    for i in range(threads):
        stack = _STACKS + i * 0x10_0000
        mine = regions // threads + (1 if i < regions % threads else 0)
        registers = [{"name": n, "value": rng.getrandbits(64)} for n in _GPR]
        registers += [
            {"name": "rsp", "value": stack},
            {"name": "rbp", "value": stack + 16},
            {"name": "rip", "value": 0x5555_5555_0000 + rng.getrandbits(16)},
            {"name": "rflags", "value": 0x246},
            {"name": "cs", "value": 0x33},
        ]
        spec_threads.append(
            {
                "thread-id": 1000 + i,
                "crashed": i == 0,
                "regsets": [{"flavor": "gpr", "registers": registers}],
            }
        )
        for r in range(mine):
            values = [rng.getrandbits(64) for _ in range(words)]
            values[2] = stack + (r + 1) * 0x1000 + 16  # saved rbp: the next region up
            spec_regions.append({"addr": stack + r * 0x1000, "protection": "rw-", "UInt64": values})
    return {"cpu": "x86_64", "threads": spec_threads, "memory-regions": spec_regions}
