"""Real Mach-O fixture executables, cross-compiled with Zig, cached across test sessions.

``build_fixture("arm64")`` / ``build_fixture("x86_64")`` compile ``tests/fixtures/prog.c``
with ``python -m ziglang cc -target {aarch64,x86_64}-macos -g -O0`` into a persistent cache:
``$MACMINIDUMP_TEST_CACHE`` or ``~/.cache/macminidump-tests``. The entry is keyed by a hash of
the source, the compiler flags and the Zig version, so an edit of ``prog.c`` or a Zig
upgrade rebuilds. Zig's own caches live inside that cache too: the executable keeps its
DWARF in the ``.o`` files its N_OSO symbols name, and those must outlive the build for
LLDB's ``frame variable`` to work.

Race-free: each build writes to a unique temporary name and renames it into place
(``os.replace`` is atomic), Zig's caches lock themselves. A failed build raises: the tests
that need a fixture fail loudly, they never skip.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
PROG_SOURCE = FIXTURE_DIR / "prog.c"

CACHE_ENV = "MACMINIDUMP_TEST_CACHE"

ZIG_TARGETS = {"arm64": "aarch64-macos", "x86_64": "x86_64-macos"}
# -fno-sanitize=undefined: zig cc turns UBSan on in debug builds; its null check would
# call a handler before the crashing store and pull ~700 KB of runtime into the binary.
CFLAGS = ("-g", "-O0", "-fno-sanitize=undefined")
BUILD_TIMEOUT = 600

N_OSO = 0x66


class FixtureBuildError(RuntimeError):
    pass


def cache_root() -> Path:
    """The persistent test cache (created on first use)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "macminidump-tests")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _zig_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ZIG_GLOBAL_CACHE_DIR"] = str(root / "zig-global-cache")
    env["ZIG_LOCAL_CACHE_DIR"] = str(root / "zig-local-cache")
    return env


@functools.cache
def zig_version() -> str:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ziglang", "version"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FixtureBuildError(f"cannot run `{sys.executable} -m ziglang`: {exc}") from exc
    if proc.returncode != 0:
        raise FixtureBuildError(
            f"`{sys.executable} -m ziglang version` failed (exit {proc.returncode}); "
            f"install Zig with `{sys.executable} -m pip install ziglang` "
            f"(or `pip install -e '.[test]'`).\n{proc.stderr}"
        )
    return proc.stdout.strip()


def fixture_key(arch: str) -> str:
    digest = hashlib.sha256()
    for part in (PROG_SOURCE.read_bytes(), zig_version().encode(), ZIG_TARGETS[arch].encode()):
        digest.update(part)
        digest.update(b"\0")
    digest.update(" ".join(CFLAGS).encode())
    return digest.hexdigest()[:16]


def debug_object_paths(exe: str | os.PathLike[str]) -> list[str]:
    """The N_OSO entries of an executable: the .o files that hold its DWARF."""
    import lief

    lief.logging.disable()
    fat = lief.MachO.parse(str(exe))
    if fat is None or fat.size == 0:
        raise FixtureBuildError(f"lief cannot parse {exe}")
    macho = fat.at(0)
    if macho is None:
        raise FixtureBuildError(f"lief cannot parse {exe}")
    names = [sym.name for sym in macho.symbols if sym.raw_type == N_OSO]
    # LIEF gives a name that is not UTF-8 as bytes
    return [n if isinstance(n, str) else n.decode("utf-8", "surrogateescape") for n in names]


def _usable(exe: Path) -> bool:
    if not exe.is_file():
        return False
    objects = debug_object_paths(exe)
    return bool(objects) and all(os.path.exists(o) for o in objects)


def _compile(arch: str, entry: Path, root: Path) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    # compile a copy that lives next to the binary: the debug info names this path
    source = entry / "prog.c"
    if not source.exists() or source.read_bytes() != PROG_SOURCE.read_bytes():
        fd, tmp_source = tempfile.mkstemp(dir=entry, prefix=".prog.", suffix=".c")
        with os.fdopen(fd, "wb") as f:
            f.write(PROG_SOURCE.read_bytes())
        os.chmod(tmp_source, 0o644)
        os.replace(tmp_source, source)
    out = entry / f"prog_{arch}"
    fd, tmp_out = tempfile.mkstemp(dir=entry, prefix=f".prog_{arch}.", suffix=".tmp")
    os.close(fd)
    cmd = [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        "-target",
        ZIG_TARGETS[arch],
        *CFLAGS,
        str(source),
        "-o",
        tmp_out,
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=entry,
            env=_zig_env(root),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if proc.returncode != 0 or os.path.getsize(tmp_out) == 0:
            raise FixtureBuildError(
                f"fixture build failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        os.chmod(tmp_out, 0o755)
        os.replace(tmp_out, out)
    except subprocess.TimeoutExpired as exc:
        raise FixtureBuildError(f"fixture build timed out after {BUILD_TIMEOUT}s: {cmd}") from exc
    finally:
        if os.path.exists(tmp_out):
            os.unlink(tmp_out)


@functools.cache
def build_fixture(arch: str) -> str:
    """Path of the cached fixture executable for ``arch`` ("arm64" or "x86_64").

    Builds it on a cache miss, or again when the .o files holding its debug info are gone.
    """
    if arch not in ZIG_TARGETS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ZIG_TARGETS)}")
    root = cache_root()
    entry = root / "fixtures" / fixture_key(arch)
    exe = entry / f"prog_{arch}"
    if not _usable(exe):
        started = time.monotonic()
        _compile(arch, entry, root)
        if not _usable(exe):
            raise FixtureBuildError(
                f"built {exe}, but its debug-info objects are missing: {debug_object_paths(exe)}"
            )
        elapsed = time.monotonic() - started
        print(f"[fixtures] built {exe} in {elapsed:.1f}s", file=sys.stderr)
    return str(exe)


def build_dsym(arch: str) -> str:
    """The DWARF file of a dSYM bundle for the fixture (``dsymutil-16``), built once.

    On a Mac LLDB finds a binary's dSYM by itself; on Linux a test hands it over with
    ``target create EXE --symfile DWARF``.
    """
    exe = Path(build_fixture(arch))
    dwarf = exe.parent / f"{exe.name}.dSYM" / "Contents" / "Resources" / "DWARF" / exe.name
    if not dwarf.exists():
        tool = shutil.which("dsymutil-16") or shutil.which("dsymutil")
        if tool is None:
            raise FixtureBuildError("dsymutil not found: apt-get install -y llvm-16")
        tmp = exe.parent / f".{exe.name}.{os.getpid()}.dSYM"
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(
            [tool, str(exe), "-o", str(tmp)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            env=_zig_env(cache_root()),
        )
        if proc.returncode != 0:
            raise FixtureBuildError(f"{tool} {exe} failed:\n{proc.stderr}")
        try:
            os.rename(tmp, exe.parent / f"{exe.name}.dSYM")
        except OSError:  # another process won the race: its bundle is as good
            shutil.rmtree(tmp, ignore_errors=True)
    return str(dwarf)


def source_line(marker: str) -> int:
    """1-based line of ``prog.c`` that contains ``marker``."""
    for number, text in enumerate(PROG_SOURCE.read_text().splitlines(), start=1):
        if marker in text:
            return number
    raise LookupError(f"{marker!r} not in {PROG_SOURCE}")


def clear_cache() -> None:
    """Remove every cached fixture (not used by tests; handy by hand)."""
    shutil.rmtree(cache_root() / "fixtures", ignore_errors=True)
