"""A core written by the Linux kernel itself parses into the same Snapshot shape.

The test points /proc/sys/kernel/core_pattern at its own directory for the duration
(CI runs as root) and restores it; a machine where it cannot fails loudly.
"""

from __future__ import annotations

import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from macminidump.elf.parse import ElfCore, parse_elf_bytes
from macminidump.elf.render import render_elf_bytes
from macminidump.parse import parse_core

PROGRAM = r"""
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *idle(void *arg) { (void)arg; for (;;) pause(); }
static void __attribute__((noinline)) crash(volatile int *p) { *p = 42; }
int main(void) {
    pthread_t t;
    for (int i = 0; i < 2; i++) pthread_create(&t, NULL, idle, NULL);
    usleep(100000);
    crash((int *)16);
    return 0;
}
"""

PATTERN = Path("/proc/sys/kernel/core_pattern")


@pytest.fixture
def core_dir(tmp_path: Path, core_pattern: str) -> Iterator[Path]:
    PATTERN.write_text(str(tmp_path / "core.%p"))  # fails loudly if not permitted
    yield tmp_path  # (conftest's core_pattern puts the old pattern back)


def test_kernel_core_of_a_segfault(core_dir: Path) -> None:
    src = core_dir / "crash.c"
    src.write_text(PROGRAM)
    exe = core_dir / "crash"
    subprocess.run(["cc", "-g", "-O0", "-pthread", str(src), "-o", str(exe)], check=True)

    def unlimited() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    proc = subprocess.run([str(exe)], preexec_fn=unlimited, timeout=60)
    assert proc.returncode == -signal.SIGSEGV
    cores = list(core_dir.glob("core.*"))
    assert len(cores) == 1, list(core_dir.iterdir())

    core = ElfCore.open(cores[0])
    snapshot = core.snapshot()
    assert len(snapshot.threads) == 3
    assert snapshot.signal is not None and snapshot.signal.signo == signal.SIGSEGV
    assert snapshot.signal.address == 16
    crashed = snapshot.threads[0]
    assert crashed.crashed and crashed.id == proc_pid(snapshot)
    assert snapshot.process is not None and snapshot.process.name == "crash"
    assert any(k == 3 for k, _ in snapshot.auxv)  # AT_PHDR
    assert snapshot.file_mappings and any(m.path == str(exe) for m in snapshot.file_mappings)
    # the crashed thread's stack is in the core: its sp reads
    sp = crashed.gpr["rsp"]
    assert len(snapshot.memory.read(sp, 16)) == 16
    assert parse_core(cores[0]).threads == snapshot.threads
    # each thread's XSAVE area (the kernel's NT_X86_XSTATE) is its xsave, written back as is
    assert all(t.xsave is not None and len(t.xsave) >= 576 for t in snapshot.threads)
    again = parse_elf_bytes(render_elf_bytes(snapshot))
    assert [t.xsave for t in again.threads] == [t.xsave for t in snapshot.threads]


def proc_pid(snapshot: object) -> int:
    process = getattr(snapshot, "process", None)
    assert process is not None
    return int(process.pid)
