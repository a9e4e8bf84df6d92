"""Shared helpers of the benchmarks: a lazily generated DataSource and Snapshot builders.

Building a Snapshot from these costs no memory for its data: every region reads from
one shared 512 KiB pattern, so a "1 GiB" snapshot holds only its Region objects.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

from macminidump.model import Region, Snapshot, Thread

PATTERN_SIZE = 512 * 1024
PATTERN = random.Random(0x5EED).randbytes(PATTERN_SIZE)
_VIEW = memoryview(PATTERN)
MIB = 1 << 20
PAGE = 0x4000  # arm64 page size: region addresses are page aligned, as in real cores


class PatternSource:
    """``size`` bytes of the shared pattern starting at ``phase``: a DataSource that owns
    no data. ``chunks`` yields views of the pattern (at most 512 KiB each)."""

    __slots__ = ("_size", "_phase")

    def __init__(self, size: int, phase: int = 0):
        self._size = size
        self._phase = phase % PATTERN_SIZE

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        out = bytearray()
        pos = (self._phase + offset) % PATTERN_SIZE
        while len(out) < length:
            take = min(PATTERN_SIZE - pos, length - len(out))
            out += _VIEW[pos : pos + take]
            pos = 0
        return bytes(out)

    def chunks(self, chunk_size: int) -> Iterator[memoryview]:
        remaining = self._size
        pos = self._phase
        while remaining:
            take = min(chunk_size, PATTERN_SIZE - pos, remaining)
            yield _VIEW[pos : pos + take]
            remaining -= take
            pos = (pos + take) % PATTERN_SIZE


def region_sizes(total: int, count: int, rng: random.Random) -> list[int]:
    """``count`` sizes summing to ``total``, varied ±50% around the mean, in 4 KiB units
    when ``total`` allows it."""
    unit = 4096 if total % 4096 == 0 and total // 4096 >= count else 1
    units = total // unit
    base = units // count
    sizes = [base] * count
    sizes[-1] += units - base * count
    # move random amounts between pairs: the sum stays exact, every size stays >= 1 unit
    for i in range(0, count - 1, 2):
        d = rng.randint(-(base // 2), base // 2)
        sizes[i] += d
        sizes[i + 1] -= d
    assert sum(sizes) == units and min(sizes) >= 1
    return [s * unit for s in sizes]


def make_regions(total: int, count: int, seed: int = 1) -> list[Region]:
    rng = random.Random(seed)
    regions = []
    address = 0x1_0000_0000
    for i, size in enumerate(region_sizes(total, count, rng)):
        regions.append(
            Region(
                address=address,
                data=PatternSource(size, phase=i * 4096),
                protection=("rw-", "r--", "r-x")[i % 3],
                name=f"seg{i}" if i % 10 == 0 else "",
            )
        )
        # page aligned starts with an unmapped gap of 0..3 pages, as a real address space
        address = (address + size + PAGE - 1) // PAGE * PAGE + rng.randint(0, 3) * PAGE
    return regions


def make_threads(count: int, seed: int = 2) -> list[Thread]:
    rng = random.Random(seed)
    threads = []
    for i in range(count):
        gpr = {f"x{n}": rng.getrandbits(64) for n in range(29)}
        gpr.update(
            fp=rng.getrandbits(64),
            lr=rng.getrandbits(64),
            sp=0x16F000000 + rng.getrandbits(20) * 16,
            pc=0x100000000 + rng.getrandbits(24) * 4,
            cpsr=rng.getrandbits(32),
            flags=rng.getrandbits(32),
        )
        exc = {"far": rng.getrandbits(64), "esr": rng.getrandbits(32), "exception": 1}
        threads.append(
            Thread(
                id=0x1000 + i,
                name=f"worker-{i}" if i % 4 == 0 else None,
                crashed=i == 0,
                regsets={"gpr": gpr, "exc": exc},
            )
        )
    return threads


def make_snapshot(total: int, regions: int, threads: int) -> Snapshot:
    return Snapshot(
        arch="arm64", threads=make_threads(threads), regions=make_regions(total, regions)
    )


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
