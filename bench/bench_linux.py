"""Linux live capture against gcore and the kernel's core, side by side in one run.

One 4-thread process with a 512 MiB heap (touched, so it is resident) is dumped
alternately by `macminidump dump`'s code path (capture + render_elf, in-process), by
`gcore`, and (when /proc/sys/kernel/core_pattern can be set, i.e. as root) by the
kernel when a copy of the process aborts. Reported: size and time of each, and the
ratios. Targets: at least 100x smaller and 10x faster than gcore; a 100-thread process
captured in under 100 ms.

    python bench/bench_linux.py [--repeat 5] [--heap-mib 512] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = r"""
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void __attribute__((noinline)) park(void) { for (;;) pause(); }
static void __attribute__((noinline)) nested(int d) { if (d) nested(d - 1); else park(); }
static void *worker(void *arg) { nested((int)(long)arg); return NULL; }
static void on_usr1(int sig) { (void)sig; abort(); }
int main(int argc, char **argv) {
    size_t heap = (size_t)atol(argv[1]) << 20;
    int threads = atoi(argv[2]);
    char *p = malloc(heap);
    memset(p, 0x5a, heap); /* resident, as a real heap is */
    signal(SIGUSR1, on_usr1);
    pthread_t t;
    for (long i = 1; i < threads; i++) pthread_create(&t, NULL, worker, (void *)(i % 8));
    printf("ready\n");
    fflush(stdout);
    nested(3);
    return p[0];
}
"""


def build(directory: Path, optimized: bool = False) -> Path:
    """The program, with frame pointers; ``optimized``: as distributions build programs,
    -O2 without them (a capture then scans each stack for return addresses)."""
    src = directory / "heap.c"
    src.write_text(PROGRAM)
    exe = directory / ("heap-o2" if optimized else "heap")
    flags = ["-O2"] if optimized else ["-O0", "-g", "-fno-omit-frame-pointer"]
    subprocess.run(["cc", *flags, "-pthread", str(src), "-o", str(exe)], check=True)
    return exe


def start(exe: Path, heap_mib: int, threads: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(exe), str(heap_mib), str(threads)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{proc.pid}/task")) < threads and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    return proc


def ours(pid: int, out: Path) -> tuple[float, int]:
    from macminidump.capture.base import capture
    from macminidump.capture.linux import LinuxTarget
    from macminidump.elf.render import render_elf

    started = time.perf_counter()
    size = render_elf(capture(LinuxTarget(pid)), out)
    return time.perf_counter() - started, size


def gcore(pid: int, out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    subprocess.run(
        ["gdb", "-batch", "-nx", "-p", str(pid), "-ex", f"gcore {out}"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return time.perf_counter() - started, out.stat().st_size


def kernel(exe: Path, heap_mib: int, directory: Path) -> tuple[float, int] | None:
    """The kernel's core of the same process (it aborts on SIGUSR1); None if not permitted."""
    pattern = Path("/proc/sys/kernel/core_pattern")
    try:
        old = pattern.read_text()
        pattern.write_text(str(directory / "kcore.%p"))
    except OSError:
        return None
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, hard))
        try:
            proc = start(exe, heap_mib, 4)
        finally:
            resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
        started = time.perf_counter()
        proc.send_signal(signal.SIGUSR1)
        proc.wait()
        elapsed = time.perf_counter() - started  # until the kernel has written the core
        core = directory / f"kcore.{proc.pid}"
        size = core.stat().st_size
        core.unlink()
        return elapsed, size
    finally:
        pattern.write_text(old)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--heap-mib", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    assert shutil.which("gdb") and shutil.which("cc"), "needs gdb and cc"
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-linux-") as d:
        directory = Path(d)
        exe = build(directory)
        proc = start(exe, args.heap_mib, 4)
        try:
            runs: dict[str, list[tuple[float, int]]] = {"macminidump": [], "gcore": []}
            for i in range(args.repeat):  # alternate, so both see the same machine load
                runs["macminidump"].append(ours(proc.pid, directory / f"ours.{i}"))
                runs["gcore"].append(gcore(proc.pid, directory / f"gcore.{i}"))
                for f in directory.glob("*.[0-9]*"):
                    f.unlink()
        finally:
            proc.kill()
            proc.wait()
        for name, values in runs.items():
            results[name] = {
                "seconds": statistics.median(t for t, _ in values),
                "bytes": statistics.median(s for _, s in values),
            }
        k = kernel(exe, args.heap_mib, directory)
        results["kernel"] = None if k is None else {"seconds": k[0], "bytes": k[1]}

        many = start(exe, 16, 100)
        try:
            times = [ours(many.pid, directory / f"many.{i}")[0] for i in range(args.repeat)]
        finally:
            many.kill()
            many.wait()
        results["100 threads"] = {"seconds": statistics.median(times)}

    o, g = results["macminidump"], results["gcore"]
    assert isinstance(o, dict) and isinstance(g, dict)
    smaller = g["bytes"] / o["bytes"]
    faster = g["seconds"] / o["seconds"]
    hundred = results["100 threads"]["seconds"]  # type: ignore[index]
    results["ratios"] = {"smaller_than_gcore": smaller, "faster_than_gcore": faster}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"4 threads, {args.heap_mib} MiB heap (median of {args.repeat}, alternating):")
        for name in ("macminidump", "gcore", "kernel"):
            r = results[name]
            if r is None:
                print(f"  {name:<12} not measured (core_pattern not writable)")
            else:
                assert isinstance(r, dict)
                print(f"  {name:<12} {r['bytes']:>14,.0f} B  {r['seconds'] * 1000:>9.1f} ms")
        print(f"  smaller than gcore: {smaller:,.0f}x (target >= 100x)")
        print(f"  faster than gcore:  {faster:,.0f}x (target >= 10x)")
        print(f"100 threads: {hundred * 1000:.1f} ms (target < 100 ms)")
    missed = [
        m
        for m, bad in (
            (f"only {smaller:.0f}x smaller than gcore", smaller < 100),
            (f"only {faster:.1f}x faster than gcore", faster < 10),
            (f"100 threads took {hundred * 1000:.0f} ms", hundred >= 0.1),
        )
        if bad
    ]
    for m in missed:
        print(f"MISSED: {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
