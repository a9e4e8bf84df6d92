"""Issue 9, the output side: what the writer promises (README "Guarantees"), with real
files, devices, FIFOs, sockets, symlinks, signals and full disks.

Classes: 1 (outputs that are not regular files), 4 (``to-spec -o`` through the same
writer), 5 (signals during a write), 6 (temp names), 10 (closed/full stdout, exit codes),
13 (``build`` never writes a core its own parser rejects).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from commands import cli, one_line

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "formats" / "examples" / "arm64-crash.yaml"


# --------------------------------------------------------------------------- class 1


def test_fifo_output_is_refused_and_left_alone(tmp_path: Path) -> None:
    fifo = tmp_path / "out.core"
    os.mkfifo(fifo)
    out = cli("build", str(EXAMPLE), "-o", str(fifo))
    assert out.returncode == 2
    assert "is a FIFO, not a regular file" in one_line(out.stderr)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["out.core"]


def test_device_output_is_refused_and_left_alone() -> None:
    before = os.lstat("/dev/null")
    out = cli("build", str(EXAMPLE), "-o", "/dev/null")
    assert out.returncode == 2 and "character device" in one_line(out.stderr)
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_socket_and_directory_outputs_are_refused(tmp_path: Path) -> None:
    sock_path = tmp_path / "s.core"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        out = cli("build", str(EXAMPLE), "-o", str(sock_path))
        assert out.returncode == 2 and "a socket" in one_line(out.stderr)
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        server.close()
    out = cli("build", str(EXAMPLE), "-o", str(tmp_path))
    assert out.returncode == 2 and "a directory" in one_line(out.stderr)


def test_dash_is_not_a_core_stream(tmp_path: Path) -> None:
    out = cli("build", str(EXAMPLE), "-o", "-", cwd=tmp_path)
    assert out.returncode == 2 and "name a file" in one_line(out.stderr)
    assert os.listdir(tmp_path) == []


def test_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    link = tmp_path / "out.core"
    link.symlink_to(target)
    out = cli("build", str(EXAMPLE), "-o", str(link))
    assert out.returncode == 0, out.stderr
    assert target.read_text() == "keep me"
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- class 4


@pytest.fixture
def core(tmp_path: Path) -> Path:
    path = tmp_path / "in.core"
    assert cli("build", str(EXAMPLE), "-o", str(path)).returncode == 0
    return path


def test_to_spec_output_is_atomic_0600_and_replaces_symlinks(tmp_path: Path, core: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    os.chmod(target, 0o644)
    link = tmp_path / "out.yaml"
    link.symlink_to(target)
    out = cli("to-spec", str(core), "-o", str(link))
    assert out.returncode == 0, out.stderr
    assert target.read_text() == "keep me"
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600
    assert link.read_text().startswith("cpu: arm64")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    out = cli("to-spec", str(core), "-o", str(fifo))
    assert out.returncode == 2 and "FIFO" in one_line(out.stderr)
    out = cli("to-spec", str(core), "-o", "-")
    assert out.returncode == 0 and out.stdout.startswith("cpu: arm64")


def _small_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as a full disk gives ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_to_spec_on_a_full_disk_keeps_the_old_file(tmp_path: Path, core: Path) -> None:
    old = tmp_path / "out.yaml"
    old.write_text("old spec")
    out = cli("to-spec", str(core), "-o", str(old), preexec_fn=_small_files)
    assert out.returncode == 1
    assert "cannot write" in one_line(out.stderr)
    assert old.read_text() == "old spec"
    assert sorted(os.listdir(tmp_path)) == ["in.core", "out.yaml"]


# --------------------------------------------------------------------------- classes 5, 6

SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from macminidump import writer
    if sys.argv[2] == "named":
        writer._O_TMPFILE = 0   # the fallback: a named temporary file
    def fill(pwrite):
        pwrite(b"x" * 65536, 0)
        print("writing", flush=True)
        time.sleep(60)
    writer.write_file(sys.argv[1], 1 << 20, fill)
    """
)


def _start_slow_write(directory: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(directory / "out.core"), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "writing\n"
    return proc


@pytest.mark.parametrize("mode", ["unnamed", "named"])
@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT])
def test_a_signal_mid_write_leaves_nothing(tmp_path: Path, mode: str, signo: int) -> None:
    proc = _start_slow_write(tmp_path, mode)
    listed = os.listdir(tmp_path)
    if mode == "named":
        # class 6: a random name, 0600, not the old predictable .NAME.PID.tmp
        (name,) = listed
        assert name.startswith(".out.core.") and name.endswith(".tmp")
        assert str(proc.pid) not in name and len(name.split(".")[-2]) == 16
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    else:
        assert listed == []  # O_TMPFILE: nothing has a name until the write is complete
    proc.send_signal(signo)
    proc.wait(timeout=30)
    # cleaned up, then the signal took its course (SIGINT: as a KeyboardInterrupt)
    assert proc.returncode == -signo
    assert os.listdir(tmp_path) == []


def test_sigkill_mid_write_leaves_nothing(tmp_path: Path) -> None:
    proc = _start_slow_write(tmp_path, "unnamed")
    proc.kill()
    proc.wait(timeout=30)
    assert os.listdir(tmp_path) == []


def test_squatted_temp_names_do_not_block_a_write(tmp_path: Path) -> None:
    # anyone could create the old predictable names first; they change nothing now
    out_path = tmp_path / "out.core"
    for pid in range(os.getpid() - 50, os.getpid() + 500):
        (tmp_path / f".out.core.{pid}.tmp").write_text("squatter")
    out = cli("build", str(EXAMPLE), "-o", str(out_path))
    assert out.returncode == 0, out.stderr
    assert out_path.stat().st_size > 0


def test_concurrent_writers_leave_one_whole_file(tmp_path: Path) -> None:
    out_path = tmp_path / "out.core"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "macminidump", "build", str(EXAMPLE), "-o", str(out_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    assert os.listdir(tmp_path) == ["out.core"]
    check = cli("inspect", str(out_path))
    assert check.returncode == 0, check.stderr


# --------------------------------------------------------------------------- class 10


def test_closed_stdout_is_one_line_exit_1(core: Path) -> None:
    for args in (("inspect", str(core)), ("to-spec", str(core)), ("inspect", "--json", str(core))):
        out = subprocess.run(
            [sys.executable, "-m", "macminidump", *args],
            stdout=None,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            preexec_fn=lambda: os.close(1),
        )
        assert out.returncode == 1
        assert "standard output is closed" in one_line(out.stderr)


def test_full_stdout_is_one_line_exit_1(core: Path) -> None:
    for args in (("inspect", str(core)), ("to-spec", str(core)), ("inspect", "--json", str(core))):
        with open("/dev/full", "w") as full:
            out = subprocess.run(
                [sys.executable, "-m", "macminidump", *args],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
            )
        assert out.returncode == 1
        assert "No space left on device" in one_line(out.stderr)


def test_a_closed_stdout_never_receives_the_core(tmp_path: Path) -> None:
    """With fd 1 closed, the core's file must not be opened as fd 1 and printed into."""
    out_path = tmp_path / "out.core"
    out = subprocess.run(
        [sys.executable, "-m", "macminidump", "build", str(EXAMPLE), "-o", str(out_path)],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(1),
    )
    assert out.returncode == 1 and "standard output is closed" in one_line(out.stderr)
    assert not out_path.exists()


def test_exit_statuses_are_documented_and_kept(tmp_path: Path, core: Path) -> None:
    help_text = cli("--help").stdout
    assert "2  bad input" in help_text and "1  a failure midway" in help_text
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("cpu: [")
    assert cli("build", str(bad_spec), "-o", str(tmp_path / "x")).returncode == 2
    assert cli("inspect", str(bad_spec)).returncode == 2
    assert cli("to-spec", str(bad_spec)).returncode == 2
    assert cli("dump", "999999999", "-o", str(tmp_path / "x")).returncode == 2
    big = tmp_path / "big.yaml"
    big.write_text("cpu: arm64\nmemory-regions:\n  - {addr: 0x10000, hex: '" + "ab" * 9000 + "'}\n")
    full = cli("build", str(big), "-o", str(tmp_path / "big.core"), preexec_fn=_small_files)
    assert full.returncode == 1 and "File too large" in one_line(full.stderr)
    assert not (tmp_path / "big.core").exists()


def test_error_messages_cannot_drive_the_terminal(tmp_path: Path) -> None:
    evil = tmp_path / "evil\x1b]0;owned\x07\nforged: line.core"
    out = cli("inspect", str(evil))
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert "\x1b" not in line and "\\x1b]0;owned\\x07\\nforged" in line


# --------------------------------------------------------------------------- class 13


def test_build_refuses_a_path_its_reader_rejects(tmp_path: Path) -> None:
    spec = tmp_path / "long.yaml"
    long_name = "/" + "a" * 5000
    # (an image at an address goes to "all image infos", whose strings have that bound)
    spec.write_text(
        f"cpu: arm64\nbinaries:\n  - {{name: '{long_name}', uuid: null, virtual-address: 0}}\n"
    )
    out = cli("build", str(spec), "-o", str(tmp_path / "long.core"))
    assert out.returncode == 2 and "at most 4,095" in one_line(out.stderr)
    assert not (tmp_path / "long.core").exists()
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        f"cpu: arm64\nbinaries:\n  - {{name: '/{'a' * 4094}', uuid: null, virtual-address: 0}}\n"
    )
    assert cli("build", str(ok), "-o", str(tmp_path / "ok.core")).returncode == 0
    assert cli("inspect", str(tmp_path / "ok.core")).returncode == 0


def test_build_refuses_more_records_than_its_reader_accepts(tmp_path: Path) -> None:
    from macminidump.limits import record_limit

    count = record_limit(1 << 20) + 10
    spec = tmp_path / "many.yaml"
    spec.write_text(
        '{"cpu": "arm64", "raw-commands": ['
        + ",".join('{"kind": 153, "hex": ""}' for _ in range(count))
        + "]}"
    )
    out = cli("build", str(spec), "-o", str(tmp_path / "many.core"))
    assert out.returncode == 2 and "cannot read back" in one_line(out.stderr)
    assert sorted(os.listdir(tmp_path)) == ["many.yaml"]


def test_build_refuses_more_segments_than_its_reader_accepts(tmp_path: Path) -> None:
    """Without raw items the check before the rename is the reader's pass over the file
    alone (CoreReader.read_back): its record budget still refuses a core of one-byte
    regions, each a 72-byte segment command, past ``record_limit``."""
    from macminidump.limits import BYTES_PER_RECORD, FIXED_RECORDS

    count = FIXED_RECORDS * BYTES_PER_RECORD // (BYTES_PER_RECORD - 73) + 100
    regions = ",".join(f'{{"addr": {i * 16}, "UInt8": [1]}}' for i in range(count))
    spec = tmp_path / "many.json"
    spec.write_text(f'{{"cpu": "arm64", "memory-regions": [{regions}]}}')
    out = cli("build", str(spec), "-o", str(tmp_path / "many.core"))
    assert out.returncode == 2 and "cannot read back" in one_line(out.stderr)
    assert "records" in one_line(out.stderr)
    assert sorted(os.listdir(tmp_path)) == ["many.json"]
    fewer = tmp_path / "fewer.json"
    regions = ",".join(f'{{"addr": {i * 16}, "UInt8": [1]}}' for i in range(FIXED_RECORDS - 10))
    fewer.write_text(f'{{"cpu": "arm64", "memory-regions": [{regions}]}}')
    assert cli("build", str(fewer), "-o", str(tmp_path / "fewer.core")).returncode == 0


def test_elf_refuses_more_program_headers_than_its_reader_accepts(tmp_path: Path) -> None:
    """The ELF renderer's check is the reader's pass too (CoreReader.read_back, no raw
    items): one-byte regions, each a 56-byte program header and 16 bytes of data, past
    ``record_limit`` are refused and nothing is written; fewer are written."""
    from macminidump.elf.render import render_elf
    from macminidump.errors import RenderError
    from macminidump.limits import BYTES_PER_RECORD, FIXED_RECORDS
    from macminidump.model import Region, Snapshot

    def snapshot(count: int) -> Snapshot:
        regions = [Region(address=i * 16, data=b"\1") for i in range(count)]
        return Snapshot(arch="x86_64", regions=regions)

    count = FIXED_RECORDS * BYTES_PER_RECORD // (BYTES_PER_RECORD - 72) + 100
    with pytest.raises(RenderError, match="cannot read back.*records"):
        render_elf(snapshot(count), tmp_path / "many.core")
    assert os.listdir(tmp_path) == []
    assert render_elf(snapshot(FIXED_RECORDS - 10), tmp_path / "fewer.core") > 0


def test_build_refuses_a_raw_note_its_reader_models_differently(tmp_path: Path) -> None:
    """A raw note replaces the note the renderer would write: here a thread list with one
    id twice, which the reader's model refuses; the model is built before the rename."""
    import json

    metadata = json.dumps({"threads": [{"thread_id": 7}, {"thread_id": 7}]}).encode()
    gpr = {"flavor": "gpr", "registers": []}
    spec = tmp_path / "twice.json"
    spec.write_text(
        json.dumps(
            {
                "cpu": "arm64",
                "threads": [{"thread-id": 1, "regsets": [gpr]}, {"thread-id": 2, "regsets": [gpr]}],
                "raw-notes": [{"owner": "process metadata", "hex": metadata.hex()}],
            }
        )
    )
    out = cli("build", str(spec), "-o", str(tmp_path / "twice.core"))
    assert out.returncode == 2 and "cannot read back" in one_line(out.stderr)
    assert "two threads have id 0x7" in one_line(out.stderr)
    assert sorted(os.listdir(tmp_path)) == ["twice.json"]


def test_writer_verify_runs_before_the_rename(tmp_path: Path) -> None:
    """Whatever ``verify`` rejects is never put in place, and the old file stays."""
    from macminidump.errors import ParseError, RenderError
    from macminidump.writer import write_file

    old = tmp_path / "out.core"
    old.write_bytes(b"old")

    def reject(buffer: object) -> None:
        raise ParseError("no", 0)

    with pytest.raises(RenderError, match="cannot read back"):
        write_file(old, 4, lambda pwrite: pwrite(b"new!", 0), verify=reject)
    assert old.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.core"]


def test_a_write_from_another_thread_sets_no_handlers(tmp_path: Path) -> None:
    """Signal handlers can be set only in the main thread: a core written from another
    thread is written, and leaves every handler as it was."""
    import threading

    from macminidump.writer import write_file

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    outcome: list[object] = []

    def write() -> None:
        try:
            write_file(tmp_path / "out.core", 4, lambda pwrite: pwrite(b"core", 0))
            outcome.append("written")
        except BaseException as e:  # (the thread's own failure, shown by the assert)
            outcome.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    assert outcome == ["written"]
    assert (tmp_path / "out.core").read_bytes() == b"core"
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_signal_that_does_not_end_the_process_is_a_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminating signal mid-write whose second delivery does not end the process (here
    the re-raise is swallowed) surfaces as a WriteError naming it: nothing is left behind,
    and every handler is as it was."""
    from macminidump import writer
    from macminidump.errors import WriteError

    before = {s: signal.getsignal(s) for s in writer.TERMINATING_SIGNALS}
    raised: list[int] = []
    monkeypatch.setattr(writer.signal, "raise_signal", raised.append)

    def fill(pwrite: writer.Pwrite) -> None:
        pwrite(b"half", 0)
        os.kill(os.getpid(), signal.SIGTERM)  # (handled before kill returns: this thread)

    with pytest.raises(WriteError, match="^interrupted by SIGTERM$"):
        writer.write_file(tmp_path / "out.core", 8, fill)
    assert raised == [signal.SIGTERM]
    assert os.listdir(tmp_path) == []
    assert {s: signal.getsignal(s) for s in before} == before
