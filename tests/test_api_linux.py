"""write_core() and `macminidump dump` on Linux: real processes, opened in gdb and LLDB."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import debuggers
import pytest

from macminidump import Snapshot, capture_process
from macminidump.parse import parse_core

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.c"


def gdb_bt(exe: str, core: str) -> str:
    assert shutil.which("gdb"), "gdb is missing: apt-get install -y gdb"
    out = subprocess.run(
        ["gdb", "-batch", "-nx", "-ex", "set debuginfod enabled off",
         "-ex", "info threads", "-ex", "thread apply all bt", exe, core],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return out.stdout + out.stderr


def threads_of(text: str) -> dict[str, list[str]]:
    """gdb's `thread apply all bt` as {thread id: [function names, innermost first]}."""
    threads: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"Thread (\d+) ", line)
        if m:
            current = m.group(1)
            threads[current] = []
        m = re.match(r"#\d+\s+(?:0x[0-9a-f]+ in )?([\w.@]+)", line)
        if m and current is not None:
            threads[current].append(m.group(1))
    return threads


def _wait_until_all_sleep(pid: int, count: int) -> None:
    """The sample says it is ready before its workers reach pause(): wait for them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tasks = os.listdir(f"/proc/{pid}/task")
        states = [Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0]
                  for t in tasks]  # fmt: skip
        if len(tasks) == count and all(s == "S" for s in states):
            time.sleep(0.05)  # in pause() itself, not on the way to it
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid}: threads did not all go to sleep")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> str:
    exe = tmp_path_factory.mktemp("sample") / "sample"
    subprocess.run(
        ["cc", "-g", "-O0", "-fno-omit-frame-pointer", "-pthread", str(SAMPLE), "-o", str(exe)],
        check=True,
        timeout=120,
    )
    return str(exe)


@pytest.fixture
def running(sample: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sample], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "4 threads waiting" in proc.stdout.readline()
        _wait_until_all_sleep(proc.pid, 4)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_dump_a_running_program(
    sample: str, running: subprocess.Popen[str], tmp_path: Path
) -> None:
    core = tmp_path / "sample.core"
    out = subprocess.run(
        [sys.executable, "-m", "macminidump", "dump", str(running.pid), "-o", str(core)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert core.stat().st_mode & 0o777 == 0o600
    assert core.stat().st_size < 200_000, "a minimal core is tens of kilobytes"
    # the program is running again: it still answers signals and is not traced
    status = Path(f"/proc/{running.pid}/status").read_text()
    assert "TracerPid:\t0" in status and "State:\tS" in status

    text = gdb_bt(sample, str(core))
    threads = threads_of(text)
    assert len(threads) == 4, text
    for frames in threads.values():
        assert "??" not in frames, text
        assert frames[-1] in ("main", "clone3"), text
    workers = [f for f in threads.values() if "worker_main" in f]
    assert len(workers) == 3 and all("handle_request" in f for f in workers)

    snapshot = parse_core(core)
    assert snapshot.process is not None and snapshot.process.pid == running.pid
    assert len(snapshot.threads) == 4


@pytest.mark.parametrize("version", [16, 23])
def test_dump_opens_in_lldb(
    version: int, sample: str, running: subprocess.Popen[str], tmp_path: Path
) -> None:
    core = tmp_path / "sample.core"
    from macminidump.api import write_core

    write_core(core, running.pid)
    result = debuggers.probe_core(version, str(core), exe=sample)
    threads = result["threads"]
    assert len(threads) == 4, result.get("bt_all")
    names = [[f["function"] for f in t["frames"]] for t in threads]
    assert sum(1 for n in names if any(f and "worker_main" in f for f in n)) == 3, names
    assert any(any(f and f == "main" for f in n) for n in names), names


SELF_DUMP = textwrap.dedent(
    """
    import sys, threading, time
    from macminidump import write_core

    stop = threading.Event()

    def worker():
        while not stop.is_set():
            time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    size = write_core(sys.argv[1])
    stop.set()
    for t in threads:
        t.join()
    print(size)
    """
)


def test_self_dump_records_every_thread_including_the_caller(tmp_path: Path) -> None:
    script = tmp_path / "selfdump.py"
    script.write_text(SELF_DUMP)
    core = tmp_path / "self.core"
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(script), str(core)], capture_output=True, text=True, timeout=120
    )
    elapsed = time.perf_counter() - started
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == core.stat().st_size
    print(f"self dump: {core.stat().st_size:,} bytes, {elapsed:.2f}s including interpreter start")

    snapshot = parse_core(core)
    assert len(snapshot.threads) == 4
    # the process's own name and command line, as gcore records them (not "write_core")
    assert snapshot.process is not None
    assert snapshot.process.name == os.path.basename(sys.executable)[:15], snapshot.process
    assert snapshot.process.args == f"{sys.executable} {script} {core}"[:79]

    text = gdb_bt(os.path.realpath(sys.executable), str(core))
    threads = threads_of(text)
    assert len(threads) == 4, text
    # The calling thread is the main one (LWP = pid): its real state is recorded, blocked
    # inside write_core() waiting for the helper, with its whole interpreter stack below.
    main = next(frames for tid, frames in threads.items() if tid == "1")
    assert re.search(r"read|wait", main[0]), main
    assert "_PyEval_EvalFrameDefault" in main, main
    assert main[-1] in ("main", "_start", "__libc_start_main"), main
    for frames in threads.values():
        assert "??" not in frames[:3], text


def test_errors_are_one_line(tmp_path: Path) -> None:
    def dump(pid: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "macminidump", "dump", str(pid), "-o", str(tmp_path / "c")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    gone = subprocess.Popen(["true"])
    gone.wait()
    out = dump(gone.pid)
    assert out.returncode == 2 and "no such process" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "c").exists()

    traced = subprocess.Popen(["strace", "-f", "-o", os.devnull, "sleep", "30"])
    try:
        time.sleep(0.5)
        child = int(
            subprocess.check_output(["pgrep", "-P", str(traced.pid), "sleep"], text=True).split()[0]
        )
        out = dump(child)
        assert out.returncode == 2 and "already traced" in out.stderr, out.stderr
        assert not (tmp_path / "c").exists()
    finally:
        traced.send_signal(signal.SIGKILL)
        traced.wait()


# Run twice: "self" captures itself with capture_process(); "wait" holds the same threads
# and modules while the test captures it by pid. Both print what they are made of.
CAPTURE_PROCESS = textwrap.dedent(
    """
    import ctypes, json, pickle, select, subprocess, sys, threading
    import macminidump, macminidump.api

    ready, stop = threading.Event(), threading.Event()

    def worker():
        ctypes.CDLL(None).prctl(15, b"worker-a", 0, 0, 0)  # PR_SET_NAME
        ready.set()
        stop.wait()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    ready.wait()
    if sys.argv[1] == "self":
        snapshot = macminidump.capture_process()
        print(json.dumps({
            "threads": [t.name for t in snapshot.threads],
            "images": [i.path for i in snapshot.images],
            "main": snapshot.main_image.path if snapshot.main_image else None,
            "process": snapshot.process.pid if snapshot.process else None,
            "auxv": len(snapshot.auxv),
            "file_mappings": len(snapshot.file_mappings),
        }))
        # the options reach the helper: an included buffer is in the Snapshot
        secret = ctypes.create_string_buffer(b"only-if-included", 64)
        address = ctypes.addressof(secret)
        snapshot = macminidump.capture_process(include=[(address, 64)])
        assert snapshot.memory.read(address, 16) == b"only-if-included"
    else:
        print("ready", flush=True)
        sys.stdin.readline()
    stop.set()
    thread.join()
    """
)


def _made_of(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "threads": [t.name for t in snapshot.threads],
        "images": [i.path for i in snapshot.images],
        "main": snapshot.main_image.path if snapshot.main_image else None,
        "process": snapshot.process.pid if snapshot.process else None,
        "auxv": len(snapshot.auxv),
        "file_mappings": len(snapshot.file_mappings),
    }


def test_capture_process_of_self_equals_that_of_a_pid(tmp_path: Path) -> None:
    script = tmp_path / "capture_process.py"
    script.write_text(CAPTURE_PROCESS)
    out = subprocess.run(
        [sys.executable, str(script), "self"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    own = json.loads(out.stdout)

    proc = subprocess.Popen(
        [sys.executable, str(script), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        by_pid = _made_of(capture_process(proc.pid))
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert by_pid["process"] == proc.pid and own["process"] not in (None, proc.pid)

    # every thread with its name, the same in both (the same executable: the same comm)
    assert own["threads"] == by_pid["threads"], (own, by_pid)
    assert own["threads"][0] and own["threads"][1:] == ["worker-a"], own
    # the same images: the helper-process capture loads nothing the other one lacks
    # (a self capture may have a few more: the modules the capture itself imports)
    assert own["main"] == by_pid["main"] == os.path.realpath(sys.executable)
    assert by_pid["images"] and set(by_pid["images"]) <= set(own["images"])
    assert any("libc.so" in p for p in own["images"]), own["images"]
    for key in ("auxv", "file_mappings"):
        assert own[key] and by_pid[key], (key, own, by_pid)
