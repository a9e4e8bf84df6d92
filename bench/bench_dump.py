"""`macminidump dump` end to end, as a user runs it, beside `gcore` in the same run.

    python bench/bench_dump.py [--rounds 7] [--heap-mib 512] [--here] [--json]
                               [--thousand-only]

* ``sample``: `examples/sample.c` (4 threads, the quick start's program).
* ``heap``: bench_linux's 4-thread program with a ``--heap-mib`` heap, touched.

Beside the sample's dumps, for where the time goes: ``python -c pass`` and an import of
every module of the package that a dump loads (found by doing one), each a fresh process
in the same rounds.

Each process is dumped by `macminidump dump PID -o FILE` (the command as a user installs
it, ``pip install`` of this checkout into a fresh venv, or ``--here`` this interpreter's:
Python start-up, imports, capture, render) and by `gcore -o FILE PID`, alternating in a
shuffled order every round; files are deleted between runs, outside the timing.
Targets: dump ≤ 0.5× gcore on ``sample``, ≤ 0.1× on ``heap`` (a miss must exceed the
noise between rounds).

In-process, and labelled so: capture + render_elf of a 1,000-thread process, median
of ``--rounds`` (target ≤ 100 ms). Beside it, in the same rounds and on the same
process, the floor of that work: a C program built here that makes the system calls a
capture makes and nothing else (stop every thread, its registers and XSAVE area, its
name, its stack from sp, /proc maps and smaps, write them to a file, resume), timed from
its first system call to its last. What lies between the two is Python's. And the
same system calls made from Python (``python_floor``: one ctypes or os call each, no
model, policy, notes or check), the least a capture written in Python can pay. And
the same capture of the same program built as distributions build them (-O2, no frame
pointers), whose threads have no frame chain to walk: each stack is scanned instead.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from _timing import (
    as_json,
    end_to_end_arguments,
    interleave,
    print_text,
    run_command,
    user_install,
    verdict,
)
from bench_linux import build, start

ROOT = Path(__file__).resolve().parents[1]


def remove_outputs(directory: Path) -> None:
    for f in directory.glob("out*"):
        f.unlink()


def modules_a_dump_imports(pid: int, directory: Path, python: str, env: Mapping[str, str]) -> str:
    """The package's modules one `dump` loads, as one import statement (found by doing a
    dump in a fresh interpreter and looking)."""
    code = (
        "import contextlib, io, sys\nfrom macminidump.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main(['dump', '{pid}', '-o', {str(directory / 'out.modules')!r}])\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('macminidump'))))"
    )
    found = subprocess.run(
        [python, "-c", code], env=env, capture_output=True, text=True, cwd="/"
    )  # (in /: see run_command)
    if found.returncode != 0:
        raise SystemExit(f"dump {pid} failed: {found.stderr}")
    remove_outputs(directory)
    return "import " + found.stdout.strip().splitlines()[-1]


def dump_vs_gcore(
    pid: int,
    directory: Path,
    rounds: int,
    cli: Sequence[str],
    env: Mapping[str, str],
    also: Mapping[str, Callable[[], float]] = {},  # noqa: B006 (read only)
) -> dict:
    out = directory / "out"

    def ours() -> float:
        t = run_command([*cli, "dump", str(pid), "-o", str(out) + ".ours"], env)
        remove_outputs(directory)
        return t

    def theirs() -> float:
        t = run_command(["gcore", "-o", str(out) + ".gcore", str(pid)], env)
        remove_outputs(directory)
        return t

    return interleave({"macminidump dump": ours, "gcore": theirs, **also}, rounds)


#: the floor of a capture of every thread: its system calls, in C, and nothing else
CAPTURE_FLOOR = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char buffer[1 << 22], stack[1 << 16], xstate[4096];
static unsigned long starts[1 << 16], ends[1 << 16];
static int tids[1 << 16];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static long slurp(const char *path) {
    int fd = open(path, O_RDONLY);
    long total = 0, n;
    while (fd >= 0 && (n = read(fd, buffer + total, sizeof buffer - total - 1)) > 0) total += n;
    if (fd >= 0) close(fd);
    buffer[total] = 0;
    return total;
}

int main(int argc, char **argv) {
    int pid = atoi(argv[1]), n = 0, m = 0;
    char path[128];
    double started = now();
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *dir = opendir(path);
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.') tids[n++] = atoi(e->d_name);
    closedir(dir);
    for (int i = 0; i < n; i++) {
        ptrace(PTRACE_SEIZE, tids[i], 0, 0);
        ptrace(PTRACE_INTERRUPT, tids[i], 0, 0);
    }
    for (int i = 0; i < n; i++) waitpid(tids[i], NULL, __WALL);
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    slurp(path);
    for (char *line = buffer; *line && m < (1 << 16); m++) {
        starts[m] = strtoul(line, &line, 16);
        ends[m] = strtoul(line + 1, &line, 16);
        while (*line && *line++ != '\n');
    }
    snprintf(path, sizeof path, "/proc/%d/smaps", pid);
    slurp(path);
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    for (int i = 0; i < n; i++) {
        struct user_regs_struct regs;
        struct iovec x = {xstate, sizeof xstate};
        ptrace(PTRACE_GETREGS, tids[i], 0, &regs);
        ptrace(PTRACE_GETREGSET, tids[i], NT_X86_XSTATE, &x);
        snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, tids[i]);
        slurp(path);
        unsigned long size = 0;
        for (int k = 0; k < m; k++)
            if (starts[k] <= regs.rsp && regs.rsp < ends[k]) size = ends[k] - regs.rsp;
        if (size > sizeof stack) size = sizeof stack;
        struct iovec local = {stack, size}, remote = {(void *)regs.rsp, size};
        process_vm_readv(pid, &local, 1, &remote, 1, 0);
        write(out, &regs, sizeof regs);
        write(out, xstate, x.iov_len);
        write(out, stack, size);
    }
    for (int i = 0; i < n; i++) ptrace(PTRACE_DETACH, tids[i], 0, 0);
    close(out);
    printf("%.3f\n", now() - started);
    return 0;
}
"""


def python_floor(pid: int, out: Path) -> float:
    """CAPTURE_FLOOR's system calls made from Python, one ctypes or os call each and
    nothing else (no model, no policy, no notes, no check): the least any capture
    written in Python pays, in seconds."""
    import bisect
    import ctypes
    import os
    import struct

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    libc = ctypes.PyDLL(None)  # (none of these calls blocks: the GIL is kept)
    ptrace, readv = libc.ptrace, libc.process_vm_readv
    ptrace.restype, readv.restype = ctypes.c_long, ctypes.c_ssize_t
    seize, interrupt, getregs, getregset, detach = 0x4206, 0x4207, 12, 0x4204, 17
    nt_x86_xstate, wall = 0x202, 0x40000000
    gpr = struct.Struct("<27Q")  # user_regs_struct; rsp is its 20th
    regs, xstate = ctypes.create_string_buffer(gpr.size), ctypes.create_string_buffer(4096)
    xstate_iov = IoVec(ctypes.addressof(xstate), 4096)
    stack = ctypes.create_string_buffer(1 << 16)
    local, remote = IoVec(ctypes.addressof(stack), 0), IoVec(0, 0)
    regs_at, xstate_at = ctypes.c_void_p(ctypes.addressof(regs)), ctypes.byref(xstate_iov)
    local_at, remote_at = ctypes.byref(local), ctypes.byref(remote)

    started = time.perf_counter()
    tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    for tid in tids:
        ptrace(seize, tid, 0, 0)
        ptrace(interrupt, tid, 0, 0)
    for tid in tids:
        os.waitpid(tid, wall)
    with open(f"/proc/{pid}/maps", "rb") as f:
        ranges = [line.split(b" ", 1)[0].split(b"-") for line in f.read().splitlines()]
    starts, ends = [int(a, 16) for a, _ in ranges], [int(b, 16) for _, b in ranges]
    with open(f"/proc/{pid}/smaps", "rb") as f:
        f.read()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for tid in tids:
        ptrace(getregs, tid, 0, regs_at)
        xstate_iov.len = 4096
        ptrace(getregset, tid, nt_x86_xstate, xstate_at)
        name = os.open(f"/proc/{pid}/task/{tid}/comm", os.O_RDONLY)
        os.read(name, 64)
        os.close(name)
        sp = gpr.unpack(regs.raw)[19]
        i = bisect.bisect_right(starts, sp) - 1
        size = min(ends[i] - sp, len(stack)) if i >= 0 and sp < ends[i] else 0
        local.len = remote.len = size
        remote.base = sp
        got = max(readv(pid, local_at, 1, remote_at, 1, 0), 0)
        os.write(fd, regs.raw)
        os.write(fd, xstate.raw[: xstate_iov.len])
        os.write(fd, stack.raw[:got])
    for tid in tids:
        ptrace(detach, tid, 0, 0)
    os.close(fd)
    return time.perf_counter() - started


def in_process_thousand(exe: Path, directory: Path, rounds: int) -> dict[str, list[float]]:
    """Capture + render_elf of a 1,000-thread process and the C floor of the same work,
    alternating, in seconds."""
    from macminidump.capture.base import capture
    from macminidump.capture.linux import LinuxTarget
    from macminidump.elf.render import render_elf

    (directory / "floor.c").write_text(CAPTURE_FLOOR)
    floor_exe = directory / "floor"
    subprocess.run(["cc", "-O2", str(directory / "floor.c"), "-o", str(floor_exe)], check=True)
    proc = start(exe, 16, 1000)
    optimized = start(build(directory, optimized=True), 16, 1000)

    def ours(pid: int) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            render_elf(capture(LinuxTarget(pid)), directory / "out.k")
            elapsed = time.perf_counter() - started
            remove_outputs(directory)
            return elapsed

        return run

    def python() -> float:
        elapsed = python_floor(proc.pid, directory / "out.python")
        remove_outputs(directory)
        return elapsed

    def floor() -> float:
        done = subprocess.run(
            [str(floor_exe), str(proc.pid), str(directory / "out.floor")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        remove_outputs(directory)
        return float(done.stdout) / 1000

    try:
        # (interleave's first run of each warms the caches)
        samples = interleave(
            {
                "capture + render_elf": ours(proc.pid),
                "capture + render_elf, -O2": ours(optimized.pid),
                "C floor": floor,
                "Python floor": python,
            },
            rounds,
        )
        return {name: list(sample.times) for name, sample in samples.items()}
    finally:
        for p in (proc, optimized):
            p.kill()
            p.wait()


def main() -> int:
    parser = end_to_end_arguments(__doc__, rounds=7)
    parser.add_argument("--heap-mib", type=int, default=512)
    parser.add_argument(
        "--thousand-only", action="store_true", help="only the in-process 1,000-thread part"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    report: dict = {}
    checks = []
    with (
        user_install(args.here) as installed,
        tempfile.TemporaryDirectory(prefix="bench-dump-") as d,
    ):
        directory = Path(d)
        sample = directory / "sample"
        subprocess.run(
            ["cc", "-g", "-O0", "-fno-omit-frame-pointer", "-pthread",
             str(ROOT / "examples" / "sample.c"), "-o", str(sample)],
            check=True,
        )  # fmt: skip
        heap = build(directory)
        cases = [] if args.thousand_only else [
            ("sample", subprocess.Popen([str(sample)], stdout=subprocess.DEVNULL), 0.5),
            ("heap", start(heap, args.heap_mib, 4), 0.1),
        ]  # fmt: skip
        try:
            time.sleep(0.3)
            py, env = installed.python, installed.env
            pid = cases[0][1].pid if cases else 0
            imports = modules_a_dump_imports(pid, directory, py, env) if cases else ""
            # where a dump's time goes: the interpreter, and all its imports
            parts = {
                "python -c pass": lambda: run_command([py, "-c", "pass"], env),
                "import what dump imports": lambda: run_command([py, "-c", imports], env),
            }
            for name, proc, target in cases:
                samples = dump_vs_gcore(
                    proc.pid,
                    directory,
                    args.rounds,
                    installed.command,
                    env,
                    also=parts if name == "sample" else {},
                )
                v = verdict(samples["macminidump dump"], samples["gcore"], target)
                report[name] = (samples, v)
                checks.append(v)
        finally:
            for _, proc, _ in cases:
                proc.kill()
                proc.wait()
        thousands = in_process_thousand(heap, directory, args.rounds)
    thousand, floor = thousands["capture + render_elf"], thousands["C floor"]
    python_floor_times = thousands["Python floor"]
    optimized = thousands["capture + render_elf, -O2"]
    thousand_ms = statistics.median(thousand) * 1000
    if args.json:
        out = as_json(report)
        out["in-process capture+render, 1000 threads"] = {
            "median_ms": thousand_ms, "min_ms": min(thousand) * 1000, "max_ms": max(thousand) * 1000
        }  # fmt: skip
        out["in-process capture+render, 1000 threads, -O2 (no frame pointers)"] = {
            "median_ms": statistics.median(optimized) * 1000,
            "min_ms": min(optimized) * 1000,
            "max_ms": max(optimized) * 1000,
        }
        out["C floor of that capture, 1000 threads"] = {
            "median_ms": statistics.median(floor) * 1000,
            "min_ms": min(floor) * 1000,
            "max_ms": max(floor) * 1000,
        }
        out["Python floor of that capture, 1000 threads"] = {
            "median_ms": statistics.median(python_floor_times) * 1000,
            "min_ms": min(python_floor_times) * 1000,
            "max_ms": max(python_floor_times) * 1000,
        }
        print(json.dumps(out, indent=2))
    else:
        if report:
            print_text(report, args.rounds, "dump vs gcore")
        print(
            f"in-process capture + render_elf, 1,000 threads: {thousand_ms:.1f} ms "
            f"({min(thousand) * 1000:.1f}–{max(thousand) * 1000:.1f}; target ≤ 100 ms)"
        )
        print(
            "  the same program built -O2, without frame pointers (each stack scanned): "
            f"{statistics.median(optimized) * 1000:.1f} ms "
            f"({min(optimized) * 1000:.1f}–{max(optimized) * 1000:.1f})"
        )
        print(
            f"  its floor, the same system calls in C: {statistics.median(floor) * 1000:.1f} ms "
            f"({min(floor) * 1000:.1f}–{max(floor) * 1000:.1f})"
        )
        print(
            "  the same system calls from Python, one call each and nothing else: "
            f"{statistics.median(python_floor_times) * 1000:.1f} ms "
            f"({min(python_floor_times) * 1000:.1f}–{max(python_floor_times) * 1000:.1f})"
        )
    missed = any(v.missed for v in checks) or min(thousand) > 0.1
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
