"""Each entry point imports only what it uses (bench/bench_startup.py times it).

Cheap guards, run in fresh interpreters: `import macminidump` loads no yaml, construct,
attrs or parser; `--help` loads nothing but the command line; `dump` loads no yaml,
no attrs, no construct (nor a declaration), no spec, no report, nothing of Mach-O and not
the self-dump helper; `run` of a program that does not crash loads no attrs, construct,
model or capture path; the model loads no attrs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import macminidump

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("yaml", "construct", "attrs", "attr")


def _modules_after(code: str, *flags: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        # (the list printed without importing json, which a dump does not load)
        [
            sys.executable,
            *flags,
            "-c",
            f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.splitlines()[-1].split())


def test_import_loads_no_yaml_construct_or_parsers() -> None:
    loaded = _modules_after("import macminidump")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert sorted(m for m in loaded if m.startswith("macminidump")) == ["macminidump"]


def test_help_loads_only_the_command_line() -> None:
    code = (
        "import contextlib, io\nfrom macminidump.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])"
    )
    loaded = _modules_after(code)
    ours = sorted(m for m in loaded if m.startswith("macminidump"))
    assert ours == [
        "macminidump",
        "macminidump.arguments",
        "macminidump.cli",
        "macminidump.cli_help",
        "macminidump.errors",
    ]
    # (shutil: argparse imports it for the terminal's width unless given it, and
    # bz2, lzma and zlib come with it)
    assert not loaded & {*HEAVY, "typing", "shutil"}


def test_dump_loads_no_yaml_spec_or_macho(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        code = (
            "import contextlib, io\nfrom macminidump.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['dump', '{child.pid}', '-o', {str(tmp_path / 'core')!r}]) == 0"
        )
        loaded = _modules_after(code)
    finally:
        child.kill()
        child.wait()
    # (attrs: the records are built by macminidump/records.py)
    unwanted = {"yaml", "attrs", "attr", "macminidump.spec", "macminidump.report", "shutil"}
    # the self-dump helper and its process machinery: only for the calling process
    unwanted |= {"macminidump._selfdump", "subprocess", "threading"}
    # (uuid brings platform; textwrap is for --help's prose; each costs a dump ~1-2 ms)
    unwanted |= {"uuid", "platform", "textwrap"}
    # (typing: its NamedTuple and Protocol come from plain_typing on this path)
    unwanted |= {"typing"}
    # (argparse, with gettext and locale: the plain command line is read by arguments.py)
    unwanted |= {"argparse", "gettext", "locale", "macminidump.cli_help"}
    # (json: memory_note writes and reads its note's compact form itself)
    unwanted |= {"json"}
    unwanted |= {
        m for m in loaded if m.startswith(("macminidump.macho", "macminidump.capture.mach"))
    }
    # (elf.parse is loaded: the renderer re-reads the finished file before renaming it)
    unwanted |= {"macminidump.parse", "macminidump.macho.parse"}
    # construct and the declarations: the dump path unpacks the layouts generated from
    # them (linux_abi_packed, elf/packed)
    unwanted |= {m for m in loaded if m == "construct" or m.startswith("construct.")}
    unwanted |= {"macminidump.schema_io", "macminidump.linux_abi_schema", "macminidump.elf.schema"}
    assert {"macminidump.linux_abi_packed", "macminidump.elf.packed"} <= loaded
    assert not loaded & unwanted, sorted(loaded & unwanted)


def test_dump_loads_none_of_the_slow_stdlib(tmp_path: Path) -> None:
    """A dump of another process imports none of these stdlib modules, which pull each
    other in and together cost it ~18 ms of its ~80 (fresh processes on the 2-core test
    machine): contextlib (capture/base, gc_pause and writer use classes), signal (writer
    uses signal's C core; api imports it for a self dump only), collections.abc (the ABCs
    come from plain_typing), re (procfs, memory_note and struct_io read text with str
    methods; ~5 ms, and its patterns compiled in every process), enum (the package's
    enums are plain_enum's), and what they import: functools, collections. Run without
    site (-S):
    its .pth files, an editable install's finder among them, may load any of them before
    the package is imported."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        code = (
            "import io, sys\nfrom macminidump.cli import main\nsys.stdout = io.StringIO()\n"
            f"code = main(['dump', '{child.pid}', '-o', {str(tmp_path / 'core')!r}])\n"
            "sys.stdout = sys.__stdout__\nassert code == 0, code"
        )
        loaded = _modules_after(code, "-S")
    finally:
        child.kill()
        child.wait()
    slow = {"contextlib", "signal", "collections.abc", "importlib.util", "re", "enum"}
    slow |= {"functools", "collections", "typing"}
    # smaller (~0.3-0.5 ms each): importlib and warnings (the package's lazy names use
    # __import__; write_core warns only when it has something to say, and dump takes the
    # messages through on_warning), operator and bisect (their C cores are imported)
    slow |= {"importlib", "warnings", "operator", "bisect"}
    assert not loaded & slow, sorted(loaded & slow)
    assert "macminidump.elf.render" in loaded  # (the dump did happen, in this interpreter)


def test_the_installed_command_loads_none_of_the_slow_stdlib(tmp_path: Path) -> None:
    """The script pip installs as the ``macminidump`` command (bin/macminidump, its first
    line rewritten to the interpreter) adds nothing to what a dump imports: pip's own
    launcher of an entry point imports re, and with it enum, functools and collections.
    Its imports are read from -X importtime, the script ending the process itself."""
    script = ROOT / "macminidump" / "bin" / "macminidump"
    assert script.read_text().startswith("#!python\n")  # (what pip rewrites)
    assert os.access(script, os.X_OK)
    child = subprocess.Popen(["sleep", "30"])
    try:
        done = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", str(script), "dump", str(child.pid),
             "-o", str(tmp_path / "core")],
            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )  # fmt: skip
    finally:
        child.kill()
        child.wait()
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "core").stat().st_size > 0
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "self [us]" not in line
    }
    assert "macminidump.elf.render" in imported
    slow = {"re", "enum", "functools", "collections", "contextlib", "signal", "typing"}
    assert not imported & slow, sorted(imported & slow)


def test_run_of_a_program_that_does_not_crash_loads_no_capture_path(tmp_path: Path) -> None:
    code = (
        "from macminidump.cli import main\n"
        f"assert main(['run', '-o', {str(tmp_path / 'core')!r}, '--', 'true']) == 0"
    )
    loaded = _modules_after(code)
    ours = {m for m in loaded if m.startswith("macminidump")}
    # (shutil: argparse imports it for the terminal's width unless given it, and
    # bz2, lzma and zlib come with it)
    assert not loaded & {*HEAVY, "typing", "shutil"}, sorted(loaded & {*HEAVY, "typing"})
    assert "argparse" not in loaded  # (read by arguments.py: a plain command line)
    assert ours == {
        "macminidump",
        "macminidump.arguments",
        "macminidump.cli",
        "macminidump.errors",
        "macminidump.capture",
        "macminidump.capture.supervise",
        "macminidump.capture.linux",
        "macminidump.capture.linux.ptrace",
        "macminidump.capture.linux.procfs",
    }, sorted(ours)
    # a policy option that was given is still checked before the program starts
    code = (
        "import contextlib\nfrom macminidump.cli import main\n"
        f"assert main(['run', '--memory', 'bogus', '-o', {str(tmp_path / 'core')!r}, "
        "'--', 'true']) == 2"
    )
    _modules_after(code)


def test_the_model_loads_no_attrs() -> None:
    loaded = _modules_after("import macminidump.model")
    assert "macminidump.records" in loaded
    assert not loaded & {"attrs", "attr"}, sorted(m for m in loaded if m.startswith("attr"))


def test_every_public_name_resolves() -> None:
    for name in macminidump.__all__:
        assert getattr(macminidump, name) is not None, name
        assert name in dir(macminidump)
    with pytest.raises(AttributeError):
        macminidump.no_such_name  # noqa: B018
    from macminidump import Snapshot, render_macho  # noqa: F401  (the `from` form too)
