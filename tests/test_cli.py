"""The command line as a user meets it: in a subprocess, output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "formats" / "examples" / "arm64-crash.yaml"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "macminidump", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_teaches() -> None:
    out = run("--help")
    assert out.returncode == 0
    for word in ("build", "inspect", "to-spec", "examples:", "lldb", "exit status"):
        assert word in out.stdout
    for command in ("build", "inspect", "to-spec"):
        sub = run(command, "--help")
        assert sub.returncode == 0 and "usage: macminidump " + command in sub.stdout


@pytest.mark.parametrize(
    "argv",
    [[command, *rest] for command in ("build", "inspect", "to-spec", "dump", "run", "core-handler")
     for rest in (["--help"], [], ["--no-such-option"])],
)  # fmt: skip
def test_one_command_parser_is_the_full_parsers_command(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run builds only its command's parser (cli._parser(name)): its help, and its
    errors, are the full parser's."""
    from macminidump import cli

    def outcome(parser_of: str | None) -> tuple[object, str, str]:
        try:
            code: object = vars(cli._parser(parser_of).parse_args(argv))
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    assert outcome(argv[0]) == outcome(None)


@pytest.mark.parametrize("command", ["dump", "run"])
def test_the_policy_options_defaults_are_capture_options_defaults(command: str) -> None:
    """Without a policy option ``dump`` captures with ``write_core``'s own defaults (the
    process is then held before the policy loads): the command line's defaults must be
    those, and each option differs from them once given."""
    from macminidump import cli
    from macminidump.capture.policy import CaptureOptions

    argv = {"dump": ["1", "-o", "x"], "run": ["-o", "x", "--", "true"]}[command]
    args = cli._parser(command).parse_args([command, *argv])
    assert not cli._policy_given(args)
    assert cli.capture_options(args) == CaptureOptions()
    for option, value in [("--memory", "referenced"), ("--max-size", "8M"),
                          ("--max-stack", "0"), ("--include", "0x1000:16"),
                          ("--keep-environment", None)]:  # fmt: skip
        given = [option] if value is None else [option, value]
        parsed = cli._parser(command).parse_args([command, *argv[:-2], *given, *argv[-2:]])
        assert cli._policy_given(parsed), option


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("macminidump 0.")


def test_build_inspect_to_spec(tmp_path: Path) -> None:
    core = tmp_path / "crash.core"
    out = run("build", str(EXAMPLE), "-o", str(core))
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and str(core) in out.stdout
    assert os.stat(core).st_mode & 0o777 == 0o600

    text = run("inspect", str(core))
    assert text.returncode == 0, text.stderr
    assert "stop reason: EXC_BAD_ACCESS" in text.stdout
    assert "<- crashed" in text.stdout

    report = json.loads(run("inspect", "--json", str(core)).stdout)
    assert report["format"] == "macho" and report["arch"] == "arm64"
    crashed = [t for t in report["threads"] if t["crashed"]]
    assert len(crashed) == 1 and "fault address 0x0" in crashed[0]["stop_reason"]
    assert isinstance(crashed[0]["pc"], int)
    owners = [n["owner"] for n in report["notes"]]
    assert "process metadata" in owners
    for key in ("header", "threads", "regions", "images", "notes", "load_commands", "version"):
        assert key in report
    # a Mach-O core's modules by UUID (an ELF core's by build-id: test_elf_consumers.py)
    image = next(i for i in report["images"] if i["main"])
    assert image["uuid"] == "5C1E3B8A-1F2D-3E4F-8A9B-0C1D2E3F4A5B" and image["build_id"] is None
    assert "5C1E3B8A-1F2D-3E4F-8A9B-0C1D2E3F4A5B" in text.stdout

    spec = tmp_path / "again.yaml"
    assert run("to-spec", str(core), "-o", str(spec)).returncode == 0
    again = tmp_path / "again.core"
    assert run("build", str(spec), "-o", str(again)).returncode == 0
    assert again.read_bytes() == core.read_bytes()
    as_json = run("to-spec", "--json", str(core))
    assert json.loads(as_json.stdout)["cpu"] == "arm64"

    summary = json.loads(run("build", "--json", str(EXAMPLE), "-o", str(core)).stdout)
    assert summary["size"] == core.stat().st_size


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("inspect", "/nonexistent.core"), "cannot read: No such file or directory"),
        (("inspect", "/etc/hostname"), "not a core file this package reads"),
        (("build", "/nonexistent.yaml", "-o", "x.core"), "cannot read spec"),
        (("to-spec", "/dev/null"), "not a regular file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: tuple[str, ...], needle: str, tmp_path: Path
) -> None:
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "x.core").exists()


def test_bad_spec_leaves_no_file(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "cpu: arm64\nthreads:\n  - regsets:\n      - flavor: gpr\n"
        "        registers: [{name: rip, value: 1}]\n"
    )
    core = tmp_path / "out.core"
    out = run("build", str(spec), "-o", str(core))
    assert out.returncode == 2
    assert "$.threads[0].regsets[0].registers[0].name" in out.stderr
    assert os.listdir(tmp_path) == ["bad.yaml"]


def test_malformed_core_is_one_line(tmp_path: Path) -> None:
    core = tmp_path / "c.core"
    assert run("build", str(EXAMPLE), "-o", str(core)).returncode == 0
    data = bytearray(core.read_bytes())
    data[20:24] = (0xFFFFFF).to_bytes(4, "little")  # sizeofcmds far past the end
    core.write_bytes(bytes(data))
    out = run("inspect", str(core))
    assert out.returncode == 2
    assert "at offset 0x14: sizeofcmds 0xffffff runs past the end of the file" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_existing_core_survives_a_failed_build(tmp_path: Path) -> None:
    core = tmp_path / "keep.core"
    core.write_bytes(b"precious")
    spec = tmp_path / "bad.yaml"
    spec.write_text("cpu: arm64\nraw-notes: [{owner: 'this owner is far too long', hex: '00'}]\n")
    out = run("build", str(spec), "-o", str(core))
    assert out.returncode == 2 and "does not fit in 16 bytes" in out.stderr
    assert core.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml", "keep.core"]


def test_disk_full_leaves_no_file(tmp_path: Path) -> None:
    """A write that fails (here: a file-size limit, as a full disk would) is one line and
    exit status 1 (a failure midway, not bad input)."""
    import resource
    import signal as signals

    spec = tmp_path / "big.yaml"
    spec.write_text(
        "cpu: arm64\nmemory-regions:\n  - {addr: 0x10000, hex: '" + "ab" * 200000 + "'}\n"
    )
    core = tmp_path / "big.core"

    def small_files() -> None:
        signals.signal(signals.SIGXFSZ, signals.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    out = subprocess.run(
        [sys.executable, "-m", "macminidump", "build", str(spec), "-o", str(core)],
        capture_output=True, text=True, timeout=120, preexec_fn=small_files,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "cannot write" in out.stderr and "File too large" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["big.yaml"]
