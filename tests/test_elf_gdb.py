"""gdb, LLDB 16 and LLDB 23 read the ELF cores this package writes as they read gcore's.

A 4-thread program (``tests/fixtures/threads.c``: every thread blocked in nested calls)
is compiled with ``cc -g -O0 -fno-omit-frame-pointer`` and dumped by ``gcore``. Its core
is parsed (parse_elf) and written again (render_elf); the backtraces (function names per
thread) of both cores must be identical in each debugger. A minimal core built from the
same snapshot, keeping only stacks and what ``formats/elf-core.md`` says
the debuggers need (the DT_DEBUG slot, r_debug, the link_map chain and its names, the
vDSO, the auxiliary vector), must still give gdb every frame named.

Missing tools (cc, gdb, lldb-16, the lldb-for-pwndbg wheel) fail the test, never skip it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from debuggers import probe_core

from macminidump.elf.parse import parse_elf
from macminidump.elf.render import render_elf
from macminidump.linux_abi import AuxvType
from macminidump.model import Region, Snapshot, content_of

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "threads.c"
CFLAGS = ("-g", "-O0", "-fno-omit-frame-pointer", "-pthread")
TIMEOUT = 180
PT_DYNAMIC = 2
DT_NULL, DT_DEBUG = 0, 21
INSTALL = "apt-get install -y gcc gdb libc6-dbg lldb-16"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path is not None, f"{tool} is not installed: {INSTALL}"
    return path


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, int]]:
    """(executable, gcore core, pid): the process is killed on every path."""
    _need("cc")
    _need("gdb")
    work = tmp_path_factory.mktemp("elf-gdb")
    exe = work / "threads"
    subprocess.run(
        ["cc", *CFLAGS, "-o", str(exe), str(FIXTURE)],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == b"ready\n", f"program did not start: {line!r}"
        assert len(os.listdir(f"/proc/{proc.pid}/task")) == 4
        core = work / "gcore.core"
        result = subprocess.run(
            ["gdb", "-batch", "-nx", "-ex", "set debuginfod enabled off", "-p", str(proc.pid)]
            + ["-ex", f"gcore {core}"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert core.exists(), f"gcore wrote no core (rc {result.returncode}):\n{result.stderr}"
        yield exe, core, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


_GDB_THREAD = re.compile(r"^Thread \d+ \(.*?LWP (\d+)\)")
_GDB_FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(")


def gdb_backtraces(exe: Path, core: Path) -> dict[int, list[str]]:
    out = subprocess.run(
        ["gdb", "-batch", "-nx", "-ex", "set debuginfod enabled off"]
        + ["-ex", "thread apply all bt", str(exe), str(core)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    threads: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in out.stdout.splitlines():
        m = _GDB_THREAD.match(line)
        if m:
            current = threads.setdefault(int(m.group(1)), [])
            continue
        m = _GDB_FRAME.match(line)
        if m and current is not None:
            current.append(m.group(1))
    assert threads, f"gdb showed no threads:\n{out.stdout}\n{out.stderr}"
    return threads


def lldb_backtraces(version: int, exe: Path, core: Path) -> dict[int, list[str]]:
    if version == 16:
        _need("lldb-16")
    result = probe_core(version, str(core), exe=str(exe))
    assert not result["errors"], result["errors"]
    return {
        t["thread_id"]: [f["function"] or f["symbol"] or "??" for f in t["frames"]]
        for t in result["threads"]
    }


def _check_program_frames(threads: dict[int, list[str]], pid: int) -> None:
    assert len(threads) == 4
    assert {"main_waits", "main", "wait_forever"} <= set(threads[pid])
    for tid, frames in threads.items():
        if tid != pid:
            assert {"wait_forever", "level_two", "level_one", "worker"} <= set(frames), frames


@pytest.fixture(scope="module")
def rerendered(program: tuple[Path, Path, int]) -> Path:
    _, core, _ = program
    out = core.with_name("rerendered.core")
    render_elf(parse_elf(core), out)
    return out


def test_gdb_backtraces_are_identical(program: tuple[Path, Path, int], rerendered: Path) -> None:
    exe, core, pid = program
    original = gdb_backtraces(exe, core)
    _check_program_frames(original, pid)
    assert gdb_backtraces(exe, rerendered) == original


@pytest.mark.parametrize("version", [16, 23])
def test_lldb_backtraces_are_identical(
    version: int, program: tuple[Path, Path, int], rerendered: Path
) -> None:
    exe, core, pid = program
    original = lldb_backtraces(version, exe, core)
    _check_program_frames(original, pid)
    assert lldb_backtraces(version, exe, rerendered) == original


# ---------------------------------------------------------------- a minimal core


def _needed_ranges(snapshot: Snapshot) -> list[tuple[int, int]]:
    """Stacks from sp - 128 to the end of their mapping, and what the reference lists."""
    memory = snapshot.memory
    ranges = []
    for thread in snapshot.threads:
        sp = thread.gpr["rsp"] - 128
        region = memory.region_at(sp)
        assert region is not None
        ranges.append((sp, region.end))
    auxv = dict(snapshot.auxv)
    vdso = memory.region_at(auxv[AuxvType.AT_SYSINFO_EHDR])
    assert vdso is not None
    ranges.append((vdso.address, vdso.end))
    # the executable's program headers (AT_PHDR) give PT_DYNAMIC; its DT_DEBUG slot points
    # at r_debug, whose r_map starts the link_map chain
    phdr, phnum = auxv[AuxvType.AT_PHDR], auxv[AuxvType.AT_PHNUM]
    phdrs = [memory.read(phdr + 56 * i, 56) for i in range(phnum)]
    base = phdr - next(
        int.from_bytes(p[16:24], "little") for p in phdrs if int.from_bytes(p[:4], "little") == 6
    )  # PT_PHDR's p_vaddr gives the load bias
    dynamic = base + next(
        int.from_bytes(p[16:24], "little")
        for p in phdrs
        if int.from_bytes(p[:4], "little") == PT_DYNAMIC
    )
    at = dynamic
    while True:
        tag = memory.read_u64(at)
        if tag == DT_DEBUG:
            ranges.append((at + 8, at + 16))
            r_debug = memory.read_u64(at + 8)
            break
        assert tag != DT_NULL, "no DT_DEBUG in the executable's dynamic section"
        at += 16
    ranges.append((r_debug, r_debug + 48))
    link_map = memory.read_u64(r_debug + 8)
    while link_map:
        ranges.append((link_map, link_map + 40))
        name = memory.read_u64(link_map + 8)
        ranges.append((name, name + len(memory.read_cstring(name).encode()) + 1))
        link_map = memory.read_u64(link_map + 24)
    return ranges


def _minimal(snapshot: Snapshot) -> Snapshot:
    merged: list[list[int]] = []
    for start, end in sorted(_needed_ranges(snapshot)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    regions = []
    for start, end in merged:
        while start < end:  # a range may span two adjacent mappings
            region = snapshot.memory.region_at(start)
            assert region is not None
            stop = min(end, region.end)
            data = region.data.read(start - region.address, stop - start)
            regions.append(Region(address=start, data=data, protection=region.protection))
            start = stop
    return Snapshot(
        arch=snapshot.arch,
        threads=snapshot.threads,
        regions=regions,
        process=snapshot.process,
        auxv=snapshot.auxv,
    )


def test_minimal_core_gives_gdb_every_frame(program: tuple[Path, Path, int]) -> None:
    exe, core, pid = program
    snapshot = parse_elf(core)
    minimal = _minimal(snapshot)
    out = core.with_name("minimal.core")
    size = render_elf(minimal, out)
    assert size < 200_000 < os.path.getsize(core)
    assert sum(len(content_of(r.data)) for r in minimal.regions) < size
    threads = gdb_backtraces(exe, out)
    assert threads == gdb_backtraces(exe, core)
    for frames in threads.values():
        assert "??" not in frames
