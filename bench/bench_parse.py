"""Open-and-list time of a large Mach-O core, and address-read latency against region count.

Targets (from the issue): opening a 1 GiB core with 10,000 segments and listing its
threads and segments takes under 100 ms; reading an address takes logarithmic time in
the number of regions.

    python bench/bench_parse.py [--size-mib 1024] [--segments 10000] [--threads 100]
                                [--repeat 7] [--reads 2000] [--dir /tmp] [--clean] [--json]

The cores are rendered once (render_macho of a lazily generated snapshot) and cached in
``--dir`` under ``macminidump-bench-*.core``; ``--clean`` deletes them afterwards. Every
measurement runs in a fresh subprocess, timed after its imports. Exits 1 if a target is
missed, naming it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _lazy import MIB, make_snapshot, remove  # noqa: E402

from macminidump.macho.parse import MachOCore  # noqa: E402
from macminidump.macho.render import render_macho  # noqa: E402

OPEN_TARGET_MS = 100.0
READ_COUNTS = (100, 1000, 10000)


def core_path(directory: str, size_mib: int, segments: int, threads: int) -> str:
    name = f"macminidump-bench-{size_mib}m-{segments}s-{threads}t.core"
    return os.path.join(directory, name)


def ensure_core(directory: str, size_mib: int, segments: int, threads: int) -> tuple[str, float]:
    """The cached core's path, rendering it first if missing; and the seconds that took.

    render_macho writes under a temporary name and renames when complete, so a core that
    exists is whole."""
    path = core_path(directory, size_mib, segments, threads)
    if os.path.exists(path):
        return path, 0.0
    start = time.perf_counter()
    render_macho(make_snapshot(size_mib * MIB, segments, threads), path)
    return path, time.perf_counter() - start


# --------------------------------------------------------------------------- children


def child_open(path: str) -> dict:
    """One cold open: MachOCore.open, .snapshot(), then list threads and segments."""
    t0 = time.perf_counter()
    core = MachOCore.open(path)
    t1 = time.perf_counter()
    snapshot = core.snapshot()
    t2 = time.perf_counter()
    threads = snapshot.threads
    n_threads = len(threads)
    pcs = 0
    for thread in threads:
        pcs ^= thread.id ^ thread.gpr.get("pc", 0)
    regions = snapshot.regions
    n_regions = len(regions)
    total = 0
    for region in regions:
        total += region.size
        pcs ^= region.address
    t3 = time.perf_counter()
    return {
        "open_ms": (t1 - t0) * 1000,
        "snapshot_ms": (t2 - t1) * 1000,
        "list_ms": (t3 - t2) * 1000,
        "total_ms": (t3 - t0) * 1000,
        "threads": n_threads,
        "segments": n_regions,
        "bytes": total,
    }


def linear_read(regions: list, address: int, length: int) -> bytes:
    """The baseline: the first region containing ``address``, found by a scan."""
    for region in regions:
        if region.address <= address < region.address + region.size:
            return region.data.read(address - region.address, length)
    raise LookupError(address)


def child_reads(path: str, reads: int, batches: int) -> dict:
    """Latency of snapshot.memory.read(addr, 8) at random addresses, and of a linear scan."""
    snapshot = MachOCore.open(path).snapshot()
    memory = snapshot.memory
    regions = list(memory)
    rng = random.Random(3)
    addresses = []
    for _ in range(reads):
        region = rng.choice(regions)
        addresses.append(region.address + rng.randrange(region.size - 7))
    for address in addresses:  # fault the pages in: measure lookups, not page faults
        assert memory.read(address, 8) == linear_read(regions, address, 8)

    def per_read_us(fn, addrs: list[int]) -> float:
        times = []
        for _ in range(batches):
            start = time.perf_counter()
            for address in addrs:
                fn(address, 8)
            times.append((time.perf_counter() - start) / len(addrs) * 1e6)
        return statistics.median(times)

    # a scan of 10,000 regions takes milliseconds: fewer reads keep it to ~0.2 s a batch
    linear_addrs = addresses[: max(20, min(reads, 2_000_000 // len(regions)))]
    return {
        "regions": len(regions),
        "memory_read_us": per_read_us(memory.read, addresses),
        "linear_scan_us": per_read_us(lambda a, n: linear_read(regions, a, n), linear_addrs),
        "reads": len(addresses),
        "linear_reads": len(linear_addrs),
    }


def run_child(*args: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="memory in each core (MiB)")
    parser.add_argument("--segments", type=int, default=10000, help="segments of the open test")
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7, help="cold opens (one process each)")
    parser.add_argument("--reads", type=int, default=2000, help="random reads per batch")
    parser.add_argument("--batches", type=int, default=5, help="timed batches of reads")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where cores are cached")
    parser.add_argument("--clean", action="store_true", help="delete the cached cores after")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        mode, path, *rest = args.child
        if mode == "open":
            print(json.dumps(child_open(path)))
        else:
            print(json.dumps(child_reads(path, int(rest[0]), int(rest[1]))))
        return 0

    counts = sorted(set(READ_COUNTS) | {args.segments})
    paths = {}
    made = {}
    try:
        for count in counts:
            paths[count], made[count] = ensure_core(args.dir, args.size_mib, count, args.threads)

        opens = [run_child("open", paths[args.segments]) for _ in range(args.repeat)]
        reads = [
            run_child("reads", paths[n], str(args.reads), str(args.batches)) for n in READ_COUNTS
        ]
    finally:
        if args.clean:
            for path in paths.values():
                remove(path)

    def median(key: str) -> float:
        return statistics.median(o[key] for o in opens)

    total_ms = median("total_ms")
    first, last = reads[0], reads[-1]
    growth = last["memory_read_us"] / first["memory_read_us"]
    linear_growth = last["linear_scan_us"] / first["linear_scan_us"]
    # log2(10000) / log2(100) = 2: a binary search may cost up to twice as much
    log_bound = math.log2(last["regions"]) / math.log2(first["regions"])
    result = {
        "size_mib": args.size_mib,
        "segments": args.segments,
        "threads": args.threads,
        "core_file_size_mib": os.path.getsize(paths[args.segments]) / MIB
        if os.path.exists(paths[args.segments])
        else None,
        "render_s": made,
        "open": {
            "runs": opens,
            "open_ms": median("open_ms"),
            "snapshot_ms": median("snapshot_ms"),
            "list_ms": median("list_ms"),
            "total_ms": total_ms,
        },
        "reads": reads,
        "read_growth": growth,
        "linear_growth": linear_growth,
        "log_bound": log_bound,
    }
    misses = []
    if total_ms >= OPEN_TARGET_MS:
        misses.append(
            f"open+snapshot+list of {args.segments} segments took {total_ms:.1f} ms "
            f">= {OPEN_TARGET_MS:.0f} ms"
        )
    if growth > log_bound:
        misses.append(
            f"read latency grew {growth:.2f}x from {first['regions']} to {last['regions']} "
            f"regions, more than logarithmic ({log_bound:.2f}x)"
        )
    result["misses"] = misses

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        opened = opens[0]
        print(
            f"open a {args.size_mib} MiB core of {opened['segments']} segments and "
            f"{opened['threads']} threads (median of {args.repeat} fresh processes)"
        )
        for key in ("open_ms", "snapshot_ms", "list_ms"):
            print(f"  {key[:-3]:<22}{median(key):8.1f} ms")
        print(f"  {'total':<22}{total_ms:8.1f} ms   (target < {OPEN_TARGET_MS:.0f} ms)")
        print(f"read 8 bytes at random addresses (median of {args.batches} batches)")
        print(f"  {'regions':>8} {'memory.read':>14} {'linear scan':>14}")
        for r in reads:
            print(
                f"  {r['regions']:>8} {r['memory_read_us']:>11.2f} us "
                f"{r['linear_scan_us']:>11.2f} us"
            )
        print(
            f"  growth {first['regions']}->{last['regions']}: memory.read {growth:.2f}x "
            f"(bound {log_bound:.2f}x), linear scan {linear_growth:.1f}x"
        )
        for miss in misses:
            print(f"MISSED: {miss}")
        if not misses:
            print("all targets met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
