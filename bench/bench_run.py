"""`macminidump run`'s cost per thread event, against the floor any ptrace supervisor pays.

    python bench/bench_run.py [--rounds 7] [--here] [--json]

Two programs, built here with cc:

* ``idle-churn``: starts 1,000 threads that sleep, then creates 5,000 short-lived
  threads one after another, then exits. A supervisor that does work per live thread
  on every event pays 1,000× per event here.
* ``sequential``: creates and joins 10,000 threads, one at a time.

Each runs directly, under ``floor`` (a minimal supervisor in C, built here: it seizes the
program with PTRACE_O_TRACECLONE, waits for every thread's stops and resumes each, and
does nothing else), under ``python floor`` (the same loop in Python, with the same
interpreter: one ``os.waitpid`` and one ctypes PTRACE_CONT an event, what any Python
supervisor pays; shown, not judged) and under ``macminidump run -o CORE -- PROGRAM``
(the command as a user installs it: ``pip install`` of this checkout into a fresh venv;
``--here``: this interpreter's). All four alternate, shuffled, every round. Target:
`run` ≤ 1.25× the floor on both programs (a miss must exceed the noise between rounds).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
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

PROGRAMS = {
    "idle-churn": r"""
#include <pthread.h>
#include <unistd.h>
static void *idle(void *a) { (void)a; for (;;) pause(); return 0; }
static void *brief(void *a) { return a; }
int main(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    pthread_t t;
    for (int i = 0; i < 1000; i++) pthread_create(&t, &attr, idle, 0);
    for (int i = 0; i < 5000; i++) { pthread_create(&t, &attr, brief, 0); pthread_join(t, 0); }
    return 0;  /* exit() ends the idle threads too */
}
""",
    "sequential": r"""
#include <pthread.h>
static void *brief(void *a) { return a; }
int main(void) {
    pthread_t t;
    for (int i = 0; i < 10000; i++) { pthread_create(&t, 0, brief, 0); pthread_join(t, 0); }
    return 0;
}
""",
}

FLOOR = r"""
/* The least a ptrace supervisor of every thread does: seize, then wait and resume. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int go[2];
    if (argc < 2 || pipe(go)) return 127;
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) _exit(127);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    close(go[0]);
    if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL)) return 127;
    if (write(go[1], "g", 1) != 1) return 127;
    for (;;) {
        int status;
        pid_t tid = waitpid(-1, &status, __WALL);
        if (tid < 0) return 127;
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (tid == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        int sig = WSTOPSIG(status);
        /* event stops (clone, a new thread's first stop) resume with no signal */
        ptrace(PTRACE_CONT, tid, 0, (status >> 16) || sig == SIGTRAP ? 0 : sig);
    }
}
"""

PYTHON_FLOOR = r"""
import ctypes, os, sys
ptrace = ctypes.PyDLL(None).ptrace
ptrace.restype = ctypes.c_long
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(go_w)
    os.read(go_r, 1)
    os.execv(sys.argv[1], sys.argv[1:])
os.close(go_r)
if ptrace(0x4206, pid, 0, 0x8 | 0x100000):  # PTRACE_SEIZE, TRACECLONE | EXITKILL
    sys.exit(127)
os.write(go_w, b"g")
while True:
    tid, status = os.waitpid(-1, 0x40000000)  # __WALL
    if status & 0x7F == 0x7F:
        sig = status >> 8 & 0xFF
        ptrace(7, tid, 0, 0 if status >> 16 or sig == 5 else sig)  # PTRACE_CONT
    elif tid == pid:
        sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def build(directory: Path, name: str, source: str) -> str:
    src = directory / f"{name}.c"
    src.write_text(source)
    exe = directory / name
    subprocess.run(["cc", "-O2", "-pthread", str(src), "-o", str(exe)], check=True)
    return str(exe)


def main() -> int:
    parser = end_to_end_arguments(__doc__, rounds=7)
    args = parser.parse_args()
    results = {}
    with (
        user_install(args.here) as installed,
        tempfile.TemporaryDirectory(prefix="bench-run-") as d,
    ):
        cli, env = installed.command, installed.env
        directory = Path(d)
        floor = build(directory, "floor", FLOOR)
        core = str(directory / "never.core")
        for name, source in PROGRAMS.items():
            exe = build(directory, name, source)
            samples = interleave(
                {
                    "direct": lambda exe=exe: run_command([exe], env),
                    "floor": lambda exe=exe: run_command([floor, exe], env),
                    "python floor": lambda exe=exe: run_command(
                        [installed.python, "-c", PYTHON_FLOOR, exe], env
                    ),
                    "macminidump run": lambda exe=exe: run_command(
                        [*cli, "run", "-o", core, "--", exe], env
                    ),
                },
                args.rounds,
            )
            results[name] = (samples, verdict(samples["macminidump run"], samples["floor"], 1.25))
    if args.json:
        out = as_json(results)
        print(json.dumps(out, indent=2))
    else:
        print_text(results, args.rounds, "run vs floor")
    return 1 if any(v.missed for _, v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
