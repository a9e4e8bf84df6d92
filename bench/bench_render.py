"""Render throughput and memory of ``render_macho`` against a sequential-write baseline.

Target (from the issue): rendering 1,000 threads and 1 GiB of memory in 2,000 regions
runs at no less than half the throughput of writing the same bytes sequentially with
os.write in 1 MiB chunks (same directory, no fsync), measured in the same run, and
peak RSS grows by less than 64 MiB while rendering.

    python bench/bench_render.py [--size-mib 1024] [--regions 2000] [--threads 1000]
                                 [--repeat 5] [--dir /tmp] [--json]

Exits 1 if a target is missed, naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _lazy import MIB, PATTERN, make_snapshot, remove, reset_peak, rss_kib  # noqa: E402

from macminidump.macho.layout import layout_macho  # noqa: E402
from macminidump.macho.render import render_macho  # noqa: E402

MIN_RATIO = 0.5
MAX_RSS_GROWTH_MIB = 64


def baseline_write(path: str, total: int) -> None:
    """The same number of bytes, written front to back in 1 MiB chunks of the pattern."""
    tile = memoryview(PATTERN * (MIB // len(PATTERN)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        remaining = total
        while remaining:
            view = tile[: min(MIB, remaining)]
            while view:
                written = os.write(fd, view)
                view = view[written:]
                remaining -= written
    finally:
        os.close(fd)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def child_rss(args: argparse.Namespace) -> dict:
    """In a fresh process: peak RSS growth of one render, the snapshot already built."""
    snapshot = make_snapshot(args.size_mib * MIB, args.regions, args.threads)
    path = os.path.join(args.dir, f"bench-render-rss-{os.getpid()}.core")
    method = "VmHWM after clear_refs" if reset_peak() else "ru_maxrss"
    rss_before, hwm_before = rss_kib()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        render_macho(snapshot, path)
    finally:
        remove(path)
    _, hwm_after = rss_kib()
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "ru_maxrss":
        growth_kib = maxrss_after - max(maxrss_before, rss_before)
    else:
        growth_kib = hwm_after - rss_before
    return {
        "method": method,
        "rss_before_mib": rss_before / 1024,
        "peak_after_mib": (hwm_after if method != "ru_maxrss" else maxrss_after) / 1024,
        "growth_mib": max(0, growth_kib) / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="memory to render (MiB)")
    parser.add_argument("--regions", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, alternated")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where files are written")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--child-rss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_rss:
        print(json.dumps(child_rss(args)))
        return 0

    total = args.size_mib * MIB
    t0 = time.perf_counter()
    snapshot = make_snapshot(total, args.regions, args.threads)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    layout = layout_macho(snapshot)
    layout_s = time.perf_counter() - t0
    file_size = layout.file_size
    del layout

    base_path = os.path.join(args.dir, f"bench-baseline-{os.getpid()}.bin")
    core_path = os.path.join(args.dir, f"bench-render-{os.getpid()}.core")
    base_times, render_times = [], []
    try:
        for _ in range(args.repeat):
            base_times.append(timed(baseline_write, base_path, total))
            remove(base_path)
            render_times.append(timed(render_macho, snapshot, core_path))
            remove(core_path)
    finally:
        remove(base_path)
        remove(core_path)

    cmd = [sys.executable, os.path.abspath(__file__), "--child-rss"]
    cmd += ["--size-mib", str(args.size_mib), "--regions", str(args.regions)]
    cmd += ["--threads", str(args.threads), "--dir", args.dir]
    rss = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    mib = total / MIB
    base_tp = mib / statistics.median(base_times)
    render_tp = mib / statistics.median(render_times)
    ratio = render_tp / base_tp
    # for information: the baseline is the noisier of the two on a shared machine
    best_ratio = min(base_times) / min(render_times)
    result = {
        "size_mib": args.size_mib,
        "regions": args.regions,
        "threads": args.threads,
        "repeat": args.repeat,
        "dir": args.dir,
        "core_file_size_mib": file_size / MIB,
        "snapshot_build_s": build_s,
        "layout_s": layout_s,
        "baseline_s": base_times,
        "render_s": render_times,
        "baseline_mib_s": base_tp,
        "render_mib_s": render_tp,
        "ratio": ratio,
        "best_ratio": best_ratio,
        "rss": rss,
    }
    misses = []
    if ratio < MIN_RATIO:
        misses.append(f"throughput ratio {ratio:.2f} < {MIN_RATIO} of sequential write")
    if rss["growth_mib"] >= MAX_RSS_GROWTH_MIB:
        misses.append(f"peak RSS grew {rss['growth_mib']:.1f} MiB >= {MAX_RSS_GROWTH_MIB} MiB")
    result["misses"] = misses

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"render {args.threads} threads, {args.size_mib} MiB in {args.regions} regions "
            f"({args.repeat} runs each, alternated, in {args.dir})"
        )
        print(f"  snapshot build       {build_s * 1000:8.1f} ms (not timed below)")
        print(f"  layout_macho         {layout_s * 1000:8.1f} ms (part of render)")
        print(f"  baseline os.write    {base_tp:8.0f} MiB/s  (median of {args.repeat})")
        print(f"  render_macho         {render_tp:8.0f} MiB/s  (median of {args.repeat})")
        print(f"  ratio                {ratio:8.2f}      (target >= {MIN_RATIO})")
        print(f"  ratio of best runs   {best_ratio:8.2f}      (information only)")
        print(
            f"  peak RSS growth      {rss['growth_mib']:8.1f} MiB  (target < "
            f"{MAX_RSS_GROWTH_MIB}; {rss['method']}, from {rss['rss_before_mib']:.0f} MiB)"
        )
        for miss in misses:
            print(f"MISSED: {miss}")
        if not misses:
            print("all targets met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
