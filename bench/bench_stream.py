"""`--memory full` of a process with 1 GiB of touched heap, against gcore, interleaved.

One 4-thread process whose heap (``--heap-mib``, default 1024) is touched page by page is
dumped alternately, ``--repeat`` times each, by ``macminidump dump PID -o X --memory full``
(the command as a user runs it: interpreter start included) and by ``gcore -o X PID``.
Each output is deleted outside the timing. Measured per run, from ``wait4``'s rusage of
the command: wall time, and the peak RSS of the capturer; the RSS *growth* is the peak
less the peak of ``macminidump dump PID --memory stacks`` of the same process (the same
interpreter and imports, no bulk memory). After the runs, one core of each is read back
and compared at every address gcore saved, except guard pages and [vsyscall] (gcore
reads them through /proc/PID/mem; a process cannot read them) and the environment
strings (never saved unless --keep-environment): see tests/test_policy.py.

Targets (exit 1 on a miss): RSS growth < 64 MiB; median time <= gcore's median; size
within 5% of gcore's; memory equal at every compared address.

    nice -n 19 python bench/bench_stream.py [--repeat 3] [--heap-mib 1024] [--dir /tmp] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *idle(void *arg) { (void)arg; for (;;) pause(); }
int main(int argc, char **argv) {
    long heap = atol(argv[1]) << 20;
    char *p = malloc(heap);
    for (long i = 0; i < heap; i += 4096) p[i] = (char)(i >> 12) | 1; /* touched */
    pthread_t t;
    for (int i = 0; i < 3; i++) pthread_create(&t, NULL, idle, NULL);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"""


def run(argv: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of a command run to its end."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss * 1024


def left_out(pid: int) -> list[tuple[int, int]]:
    """What a capture leaves out and gcore saves: memory the process cannot read (guard
    pages, [vsyscall]) and the environment strings (never saved unless asked)."""
    from macminidump.capture.linux import procfs
    from macminidump.model import Protection

    where = procfs.directory(pid)
    out = [(m.start, m.end) for m in procfs.maps(where) if not m.protection & Protection.READ]
    environment = procfs.environment(where)
    return out if environment is None else [environment, *out]


def compare(ours: str, theirs: str, skip: list[tuple[int, int]]) -> int:
    """Bytes compared (all gcore saved but ``skip``); raises on the first difference."""
    from macminidump.parse import parse_core

    mine, gcore = parse_core(ours), parse_core(theirs)
    compared = 0
    for region in gcore.regions:
        cursor = region.address
        for a, b in sorted(skip) + [(region.end, region.end)]:
            stop = min(max(a, cursor), region.end)
            while cursor < stop:
                length = min(1 << 20, stop - cursor)
                expected = region.data.read(cursor - region.address, length)
                if mine.memory.read(cursor, length) != expected:
                    raise SystemExit(f"memory differs from gcore's at {cursor:#x}")
                compared += length
                cursor += length
            cursor = max(cursor, min(b, region.end))
    return compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--heap-mib", type=int, default=1024)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for tool in ("cc", "gcore"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed: apt-get install -y gcc gdb")
    work = Path(tempfile.mkdtemp(prefix="bench-stream-", dir=args.dir))
    (work / "heap.c").write_text(PROGRAM)
    exe = work / "heap"
    subprocess.run(["cc", "-O0", "-pthread", str(work / "heap.c"), "-o", str(exe)], check=True)
    # without rseq, as tests/test_policy.py's live program: the kernel rewrites a thread's
    # rseq CPU number when it migrates, so the two cores could differ there by one byte
    no_rseq = {**os.environ, "GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
    target = subprocess.Popen([str(exe), str(args.heap_mib)], stdout=subprocess.PIPE, env=no_rseq)
    env_python = [sys.executable, "-m", "macminidump"]
    os.environ["PYTHONPATH"] = str(ROOT)
    try:
        assert target.stdout is not None and target.stdout.readline() == b"ready\n"
        pid = target.pid
        ours_core, gcore_prefix = str(work / "ours.core"), str(work / "gcore")
        gcore_core = f"{gcore_prefix}.{pid}"
        base_seconds, base_rss = run([*env_python, "dump", str(pid), "-o", str(work / "s.core")])
        times: dict[str, list[float]] = {"macminidump": [], "gcore": []}
        rss: dict[str, list[int]] = {"macminidump": [], "gcore": []}
        sizes: dict[str, int] = {}
        for i in range(args.repeat):
            keep = i == args.repeat - 1
            for name, argv, path in (
                (
                    "macminidump",
                    [*env_python, "dump", str(pid), "-o", ours_core, "--memory", "full"],
                    ours_core,
                ),
                ("gcore", ["gcore", "-o", gcore_prefix, str(pid)], gcore_core),
            ):
                seconds, peak = run(argv)
                times[name].append(seconds)
                rss[name].append(peak)
                sizes[name] = os.path.getsize(path)
                if not keep:
                    os.unlink(path)
        compared = compare(ours_core, gcore_core, left_out(pid))
    finally:
        target.kill()
        target.wait()
    growth = max(rss["macminidump"]) - base_rss
    result = {
        "heap_mib": args.heap_mib,
        "repeat": args.repeat,
        "macminidump_seconds": {
            "median": statistics.median(times["macminidump"]),
            "min": min(times["macminidump"]),
            "max": max(times["macminidump"]),
        },
        "gcore_seconds": {
            "median": statistics.median(times["gcore"]),
            "min": min(times["gcore"]),
            "max": max(times["gcore"]),
        },
        "macminidump_size": sizes["macminidump"],
        "gcore_size": sizes["gcore"],
        "macminidump_peak_rss": max(rss["macminidump"]),
        "stacks_dump_peak_rss": base_rss,
        "rss_growth": growth,
        "gcore_peak_rss": max(rss["gcore"]),
        "compared_bytes": compared,
    }
    shutil.rmtree(work, ignore_errors=True)
    misses = []
    if growth >= 64 << 20:
        misses.append(f"RSS grew {growth / 2**20:.1f} MiB (target < 64 MiB)")
    if result["macminidump_seconds"]["median"] > result["gcore_seconds"]["median"]:
        misses.append("slower than gcore")
    if abs(sizes["macminidump"] - sizes["gcore"]) > 0.05 * sizes["gcore"]:
        misses.append("size not within 5% of gcore's")
    if args.json:
        print(json.dumps({**result, "misses": misses}, indent=2))
    else:
        m, g = result["macminidump_seconds"], result["gcore_seconds"]
        mib = 2**20
        print(f"--memory full of a {args.heap_mib} MiB heap, {args.repeat} interleaved runs each")
        print(
            f"  macminidump: {m['median']:.2f} s (min {m['min']:.2f}, max {m['max']:.2f}), "
            f"{sizes['macminidump']:,} bytes, peak RSS {max(rss['macminidump']) / mib:.1f} MiB "
            f"(growth over a stacks dump: {growth / mib:.1f} MiB)"
        )
        print(
            f"  gcore:       {g['median']:.2f} s (min {g['min']:.2f}, max {g['max']:.2f}), "
            f"{sizes['gcore']:,} bytes, peak RSS {max(rss['gcore']) / mib:.1f} MiB"
        )
        print(
            f"  memory equal at {compared:,} bytes gcore saved; "
            f"{base_seconds:.2f} s for a stacks dump"
        )
        for miss in misses:
            print(f"MISS: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
