"""How long `macminidump dump` pauses the process it dumps, beside `gcore`, in one run.

    python bench/bench_pause.py [--rounds 7] [--cases 4:0,4:512,1000:0] [--here] [--json]

What a service feels when it is dumped is the pause: the time its threads stand still.
The program dumped here has idle threads and a heap it touched (``--cases``, each
THREADS:HEAP_MIB, the main thread counted), and one more thread, a probe: it wakes every
millisecond and keeps the longest gap between two of its wake-ups in a file that both
sides map. The benchmark clears it, runs one dump (`macminidump dump PID -o FILE` as a
user installs it, or `gcore -o FILE PID`) and reads it back: the pause as a thread of
the dumped process saw it, less the 1 ms tick. Both commands alternate in a shuffled
order every round; the wall time of each is reported too. No target: the figures say
how long each command holds a process still.
"""

from __future__ import annotations

import json
import mmap
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _timing import Sample, end_to_end_arguments, interleave, run_command, user_install

PROGRAM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static volatile int64_t *longest;  /* ns, the longest gap between two probe wake-ups */
static char *volatile heap_data;   /* (the heap escapes: -O2 keeps its memset) */
static void __attribute__((noinline)) park(void) { for (;;) pause(); }
static void __attribute__((noinline)) nested(int d) { if (d) nested(d - 1); else park(); }
static void *worker(void *arg) { nested((int)(long)arg); return NULL; }
static int64_t now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
static void *probe(void *arg) {
    (void)arg;
    struct timespec tick = {0, 1000000};
    for (int64_t last = now();;) {
        nanosleep(&tick, NULL);
        int64_t t = now();
        if (t - last > *longest) *longest = t - last;
        last = t;
    }
    return NULL;
}
int main(int argc, char **argv) {
    int threads = atoi(argv[1]);
    size_t heap = (size_t)atol(argv[3]) << 20;
    heap_data = malloc(heap + 1);
    memset(heap_data, 0x5a, heap); /* resident, as a real heap is */
    int fd = open(argv[2], O_RDWR);
    longest = mmap(NULL, 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    pthread_t t;
    pthread_create(&t, NULL, probe, NULL);
    for (long i = 1; i < threads; i++) pthread_create(&t, NULL, worker, (void *)(i % 8));
    printf("ready\n");
    fflush(stdout);
    nested(3);
    return 0;
}
"""

#: the probe's tick, in seconds: a gap is the pause plus at most this
TICK = 0.001


class Probe:
    """The dumped program's longest-gap slot, mapped here too."""

    def __init__(self, path: Path):
        path.write_bytes(bytes(8))
        self._file = open(path, "r+b")  # noqa: SIM115 (kept open with the mapping)
        self._map = mmap.mmap(self._file.fileno(), 8)

    def clear(self) -> None:
        self._map[:8] = bytes(8)

    def longest(self) -> float:
        """The longest gap since ``clear``, in seconds, less the tick."""
        return max(0.0, struct.unpack("<q", self._map[:8])[0] / 1e9 - TICK)

    def close(self) -> None:
        self._map.close()
        self._file.close()


def resident(pid: int) -> int:
    """The resident MiB of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) >> 10


def start(exe: Path, threads: int, heap_mib: int, slot: Path) -> subprocess.Popen[str]:
    argv = [str(exe), str(threads), str(slot), str(heap_mib)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{proc.pid}/task")) < threads + 1 or resident(proc.pid) < heap_mib:
        if time.monotonic() > deadline:
            raise SystemExit(f"the program did not start its {threads} threads")
        time.sleep(0.01)
    time.sleep(0.2)
    return proc


def pauses(
    probe: Probe, commands: dict[str, list[str]], out: Path, rounds: int
) -> dict[str, tuple[Sample, Sample]]:
    """name -> (pause, wall time) of each command, in seconds, rounds interleaved."""
    seen: dict[str, list[float]] = {name: [] for name in commands}

    def one(name: str) -> Callable[[], float]:
        def run() -> float:
            probe.clear()
            time.sleep(0.01)  # (a gap from before the command is not its pause)
            probe.clear()
            elapsed = run_command(commands[name])
            time.sleep(0.02)  # the probe wakes and counts the gap that just ended
            seen[name].append(probe.longest())
            for f in out.parent.glob(out.name + "*"):
                f.unlink()
            return elapsed

        return run

    walls = interleave({name: one(name) for name in commands}, rounds)
    return {
        # (interleave's warm-up run is the first of each list: left out, as its time is)
        name: (Sample(tuple(seen[name][-rounds:])), walls[name])
        for name in commands
    }


def main() -> int:
    parser = end_to_end_arguments(__doc__, rounds=7)
    parser.add_argument(
        "--cases",
        default="4:0,4:512,1000:0",
        help="the programs dumped, each THREADS:HEAP_MIB (default 4:0,4:512,1000:0)",
    )
    args = parser.parse_args()
    cases = [tuple(int(n) for n in case.split(":")) for case in args.cases.split(",")]
    report: dict[str, dict[str, tuple[Sample, Sample]]] = {}
    with (
        user_install(args.here) as installed,
        tempfile.TemporaryDirectory(prefix="bench-pause-") as d,
    ):
        directory = Path(d)
        (directory / "probe.c").write_text(PROGRAM)
        exe = directory / "probe"
        # built as distributions build programs: optimized, no frame pointers
        subprocess.run(
            ["cc", "-O2", "-pthread", str(directory / "probe.c"), "-o", str(exe)], check=True
        )
        out = directory / "out"
        for count, heap_mib in cases:
            probe = Probe(directory / "slot")
            proc = start(exe, count, heap_mib, directory / "slot")
            try:
                commands = {
                    "macminidump dump": [*installed.command, "dump", str(proc.pid), "-o",
                                         str(out) + ".ours"],
                    "gcore": ["gcore", "-o", str(out) + ".gcore", str(proc.pid)],
                }  # fmt: skip
                name = f"{count} threads" + (f", {heap_mib} MiB heap" if heap_mib else "")
                report[name] = pauses(probe, commands, out, args.rounds)
            finally:
                proc.kill()
                proc.wait()
                probe.close()
    if args.json:
        print(
            json.dumps(
                {
                    case: {
                        who: {
                            "pause": {"median": p.median, "min": p.low, "max": p.high},
                            "wall": {"median": w.median, "min": w.low, "max": w.high},
                        }
                        for who, (p, w) in results.items()
                    }
                    for case, results in report.items()
                },
                indent=2,
            )
        )
        return 0
    print(f"{args.rounds} interleaved rounds; median (min–max)")
    for case, results in report.items():
        print(f"{case}:")
        for who, (p, w) in results.items():
            print(f"  {who:<18} paused {p.ms()}   wall {w.ms()}")
        ours, theirs = results["macminidump dump"][0], results["gcore"][0]
        ratio = statistics.median(o / g for o, g in zip(ours.times, theirs.times) if g)
        print(f"  pause, dump / gcore per round: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
