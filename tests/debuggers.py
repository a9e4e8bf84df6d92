"""The two real LLDBs the tests open cores in, each driven in its own subprocess.

- LLDB 23: ``import lldb`` from the PyPI wheel ``lldb-for-pwndbg`` in this Python.
- LLDB 16: Debian's ``lldb-16``. Its packaged Python bindings are broken; a working copy is
  built once into the test cache (see ``lldb16_pythonpath``) and put on ``PYTHONPATH``.

Both modules are called ``lldb``, so a process can hold only one: every probe runs
``tests/lldb_probe.py`` in a subprocess and reads back one JSON object. A missing debugger
raises ``DebuggerMissing`` with the command that installs it: tests fail, never skip.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fixtures import cache_root

PROBE_SCRIPT = Path(__file__).resolve().parent / "lldb_probe.py"
RESULT_MARKER = "@@MACMINIDUMP-PROBE@@"  # same as lldb_probe.RESULT_MARKER
PROBE_TIMEOUT = 120

LLDB16_PYTHON_SRC = Path("/usr/lib/llvm-16/lib/python3.11/site-packages/lldb")
LLDB16_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/liblldb-16.so.1")
LLDB16_INSTALL = (
    "install it with `apt-get update && apt-get install -y lldb-16` (Debian 12; "
    "it provides /usr/lib/x86_64-linux-gnu/liblldb-16.so.1 and the Python files under "
    "/usr/lib/llvm-16/lib/python3.11/site-packages/lldb)"
)
LLDB23_INSTALL = (
    "install it with `{python} -m pip install lldb-for-pwndbg` "
    "(or `pip install -e '.[test]'` in the project)"
)

SUPPORTED_VERSIONS = (16, 23)


class DebuggerMissing(RuntimeError):
    """A debugger the tests need is not installed (the message says how to install it)."""


class ProbeError(RuntimeError):
    """The probe subprocess failed, crashed, timed out or reported an exception."""


@dataclass(frozen=True)
class Debugger:
    version: int
    python: str
    env: dict[str, str]
    version_string: str

    def describe(self) -> str:
        path = self.env.get("PYTHONPATH", "")
        where = f" PYTHONPATH={path}" if path else ""
        return f"{self.version_string} via {self.python}{where}"


def _lldb16_key() -> str:
    digest = hashlib.sha256()
    digest.update(str(LLDB16_LIBRARY.stat().st_size).encode())
    digest.update(str(int(LLDB16_LIBRARY.stat().st_mtime)).encode())
    for path in sorted(LLDB16_PYTHON_SRC.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest.update(str(path.relative_to(LLDB16_PYTHON_SRC)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def lldb16_pythonpath() -> str:
    """A directory D with a working ``D/lldb`` package for LLDB 16 (built once, cached).

    Copies the Python files of Debian's package into ``D/lldb/`` and links
    ``D/lldb/_lldb.so`` to ``liblldb-16.so.1``. The packaged
    ``_lldb.cpython-311-*.so`` symlink dangles (that is why ``import lldb`` is broken),
    so it is left out. Race-free: built in a temporary directory, renamed into place.
    """
    if not LLDB16_LIBRARY.exists() or not (LLDB16_PYTHON_SRC / "__init__.py").exists():
        raise DebuggerMissing(f"LLDB 16 is not installed: {LLDB16_INSTALL}")
    final = cache_root() / f"lldb16-python-{_lldb16_key()}"
    if (final / "lldb" / "_lldb.so").exists():
        return str(final)
    tmp = Path(tempfile.mkdtemp(dir=cache_root(), prefix=".lldb16-python-"))
    try:
        shutil.copytree(
            LLDB16_PYTHON_SRC,
            tmp / "lldb",
            symlinks=True,
            ignore=shutil.ignore_patterns("_lldb*", "lldb-argdumper", "__pycache__"),
        )
        os.symlink(LLDB16_LIBRARY, tmp / "lldb" / "_lldb.so")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "lldb" / "_lldb.so").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def _python_for_lldb16() -> str:
    # the bindings are SWIG code for CPython 3.11 and liblldb-16 links libpython3.11
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    for candidate in ("python3.11", "/usr/bin/python3.11"):
        found = shutil.which(candidate)
        if found:
            return found
    raise DebuggerMissing(
        f"LLDB 16's Python bindings need CPython 3.11 (this is {sys.version.split()[0]}); "
        "install it with `apt-get install -y python3.11`"
    )


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check_import(version: int, python: str, env: dict[str, str], install: str) -> str:
    code = "import lldb, sys; sys.stdout.write(lldb.SBDebugger.GetVersionString())"
    try:
        proc = subprocess.run(
            [python, "-c", code], env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DebuggerMissing(f"LLDB {version}: cannot run {python}: {exc}; {install}") from exc
    if proc.returncode != 0:
        raise DebuggerMissing(
            f"LLDB {version}: `import lldb` failed in {python} "
            f"(PYTHONPATH={env.get('PYTHONPATH', '')!r}): {proc.stderr.strip()[-2000:]}\n"
            f"{install}"
        )
    version_string = proc.stdout.strip()
    check_version(version, version_string)
    return version_string


def _install_hint(version: int) -> str:
    return LLDB16_INSTALL if version == 16 else LLDB23_INSTALL.format(python=sys.executable)


def check_version(expected_major: int, version_string: str) -> None:
    match = re.search(r"lldb version (\d+)\.", version_string or "")
    if not match or int(match.group(1)) != expected_major:
        raise DebuggerMissing(
            f"expected LLDB {expected_major}.x, found {version_string!r}; "
            + (
                LLDB16_INSTALL
                if expected_major == 16
                else LLDB23_INSTALL.format(python=sys.executable)
            )
        )


@functools.cache
def locate(version: int) -> Debugger:
    """Find LLDB ``version`` (16 or 23) and check that ``import lldb`` gives that version."""
    if version == 23:
        env = _clean_env()
        install = LLDB23_INSTALL.format(python=sys.executable)
        version_string = _check_import(23, sys.executable, env, install)
        return Debugger(23, sys.executable, env, version_string)
    if version == 16:
        env = _clean_env()
        env["PYTHONPATH"] = lldb16_pythonpath()
        python = _python_for_lldb16()
        version_string = _check_import(16, python, env, LLDB16_INSTALL)
        return Debugger(16, python, env, version_string)
    raise ValueError(f"unsupported LLDB version {version}; expected one of {SUPPORTED_VERSIONS}")


def run_probe(version: int, request: dict) -> dict:
    """Run ``lldb_probe.py`` under LLDB ``version`` with ``request``; return its JSON result."""
    debugger = locate(version)
    request = {**request, "expect_major": version}
    cmd = [debugger.python, str(PROBE_SCRIPT)]
    try:
        proc = subprocess.run(
            cmd,
            input=json.dumps(request),
            env=debugger.env,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(
            f"LLDB {version} probe timed out after {PROBE_TIMEOUT}s: {request}\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        ) from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        raise ProbeError(
            f"LLDB {version} probe failed (exit {proc.returncode}, {debugger.describe()}) "
            f"for {request}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    result = json.loads(lines[-1][len(RESULT_MARKER) :])
    if "exception" in result:
        raise ProbeError(f"LLDB {version} probe raised:\n{result['exception']}")
    check_version(version, result.get("lldb_version", ""))
    result["stderr"] = proc.stderr
    other = "\n".join(ln for ln in proc.stdout.splitlines() if not ln.startswith(RESULT_MARKER))
    result["stdout"] = other.strip()
    return result


def probe_core(
    lldb_version: int,
    core: str,
    exe: str | None = None,
    memory: Iterable[tuple[int, int]] = (),
    variables: Iterable[tuple[int, int, str]] = (),
    commands: Sequence[str] = (),
    symfile: str | None = None,
) -> dict:
    """Open ``core`` (with ``exe`` as the target's executable, or none) in LLDB ``lldb_version``.

    Returns the probe's JSON: ``lldb_version``, ``state``, ``threads`` (``index_id``,
    ``thread_id``, ``stop_description``, ``pc``/``sp``/``fp``, ``registers`` (the GPR set,
    name -> int), ``frames`` (``pc``, ``function``, ``module``, ``line``, ...)), ``modules``
    (``path``, ``uuid``, ``text_load_address``), ``memory`` (per read: ``hex`` or
    ``error``), ``variables`` (``value`` or ``error``), ``bt_all`` (text of ``bt all``),
    ``errors`` and ``stderr`` (LLDB's warnings). ``symfile`` gives the executable's separate
    symbol file (a dSYM's DWARF), as LLDB on a Mac finds it by itself.
    """
    return run_probe(
        lldb_version,
        {
            "op": "core",
            "core": str(core),
            "exe": str(exe) if exe else None,
            "symfile": str(symfile) if symfile else None,
            "memory": [[int(a), int(n)] for a, n in memory],
            "variables": [[int(t), int(f), str(n)] for t, f, n in variables],
            "commands": list(commands),
        },
    )


def probe_executable(
    lldb_version: int,
    exe: str,
    functions: Sequence[str] = (),
    commands: Sequence[str] = (),
) -> dict:
    """Open an executable without a core: modules, function addresses, command outputs."""
    return run_probe(
        lldb_version,
        {"op": "exe", "exe": str(exe), "functions": list(functions), "commands": list(commands)},
    )


def analyze_executable(exe: str, functions: Sequence[str], lldb_version: int = 23) -> dict:
    """Static facts of ``exe`` for stack layout: instructions and variable locations."""
    return run_probe(lldb_version, {"op": "analyze", "exe": str(exe), "functions": list(functions)})
