"""The checkout tests itself: nothing under tests/ reaches outside the repository, and
every import in tests/ resolves here on Linux, also in tests that only run on a Mac."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: test_fuzz_replay.py imports the fuzz harness from fuzz/ (it puts it on sys.path)
FUZZ = ROOT / "fuzz"

# This file names the patterns, so it is the one file not scanned.
_OUTSIDE = re.compile(
    "|".join(
        [
            r"\.\./shared",  # the sibling folder of the checkout
            "/work/shared",
            r"""["']shared["']""",  # Path(...) / "shared"
            r"parents\[[2-9]\]",  # tests/x.py: parents[1] is the checkout, [2] outside it
        ]
    )
)


def _text_files() -> list[Path]:
    files = []
    for path in sorted(TESTS.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path == Path(__file__).resolve():
            continue
        if b"\0" in path.read_bytes()[:4096]:
            continue  # binary: a core or a compiled fixture
        files.append(path)
    return files


def test_no_test_file_reaches_outside_the_checkout() -> None:
    files = _text_files()
    assert TESTS / "test_spec.py" in files and TESTS / "corpus" / "macho" / "SOURCES.md" in files
    offenders = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "outside the checkout:\n" + "\n".join(offenders)


def test_the_outside_pattern_catches_what_it_must() -> None:
    for line in (
        'CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"',
        "see ../shared/corpus/macho",
        "open('/work/shared/reference/x.md')",
    ):
        assert _OUTSIDE.search(line), line
    assert not _OUTSIDE.search('ROOT = Path(__file__).resolve().parents[1] / "README.md"')
    assert not _OUTSIDE.search("the shared capture logic")


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) for every import in ``path``, nested ones too."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"{path}:{node.lineno}: relative import"
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


def _unresolved(module: str, name: str | None) -> str | None:
    """Why ``from module import name`` (or ``import module``) would fail, or None."""
    try:
        if importlib.util.find_spec(module) is None:
            return f"no module {module}"
        if name is None or name == "*":
            return None
        loaded = importlib.import_module(module)
    except ImportError as e:
        return f"{module}: {e}"
    if hasattr(loaded, name):
        return None
    if hasattr(loaded, "__path__") and importlib.util.find_spec(f"{module}.{name}"):
        return None  # a submodule not imported yet
    return f"{module} has no {name}"


TEST_MODULES = sorted(TESTS.glob("*.py"))


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: p.name)
def test_every_import_resolves(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Imports inside test functions run only when the test runs: the macOS live tests
    # never run here, so their imports are checked without running them.
    monkeypatch.setattr(sys, "path", [str(TESTS), str(FUZZ), *sys.path])
    problems = []
    for line, module, name in _imports(path):
        why = _unresolved(module, name)
        if why:
            problems.append(f"{path.name}:{line}: {why}")
    assert not problems, "\n".join(problems)


def test_the_import_check_catches_a_missing_name(tmp_path: Path) -> None:
    broken = tmp_path / "test_broken.py"
    broken.write_text(
        "def test_x():\n"
        "    from macminidump.macho.parse import parse_core\n"
        "    import no_such_mod\n"
    )
    found = [_unresolved(m, n) for _, m, n in _imports(broken)]
    assert found == ["macminidump.macho.parse has no parse_core", "no module no_such_mod"]
    assert TESTS / "test_macos_live.py" in TEST_MODULES


def test_the_version_is_written_once() -> None:
    """pyproject takes the version from ``macminidump.__version__`` (read statically by
    setuptools, so the literal must stay a plain string assignment)."""
    import macminidump

    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"(?m)^version\s*=", project), "a second version in pyproject"
    assert re.search(r'(?m)^dynamic\s*=\s*\[\s*"version"\s*\]', project)
    assert re.search(
        r'(?m)^\[tool\.setuptools\.dynamic\]\nversion\s*=\s*\{\s*attr\s*=\s*"macminidump\.__version__"',
        pyproject,
    )
    init = ast.parse((ROOT / "macminidump" / "__init__.py").read_text())
    literals = [
        node.value.value
        for node in init.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert literals == [macminidump.__version__]
    assert re.fullmatch(r"\d+\.\d+\.\d+", macminidump.__version__)


def test_every_module_says_what_it_owns() -> None:
    """Each module of the package opens with a docstring (the project's rule)."""
    package = ROOT / "macminidump"
    modules = sorted(package.rglob("*.py"))
    assert len(modules) > 20
    missing = [
        str(path.relative_to(ROOT))
        for path in modules
        if not (ast.get_docstring(ast.parse(path.read_text(), str(path))) or "").strip()
    ]
    assert not missing, f"modules without a docstring: {missing}"


def _layout_entries(readme: str) -> list[str]:
    """The paths README's "Layout" block names: one entry per line, a file (``.py``) or a
    folder (``/``) first on its line, indented under its folder; other lines continue
    the description above them."""
    block = readme.split("\n## Layout\n", 1)[1].split("```", 2)[1]
    entries: list[str] = []
    folders: list[tuple[int, str]] = []
    for line in block.splitlines():
        words = line.split()
        if not words or not (words[0].endswith(".py") or words[0].endswith("/")):
            continue
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = "".join(folder for _, folder in folders) + words[0]
        entries.append(path)
        if path.endswith("/"):
            folders.append((indent, words[0]))
    return entries


def test_the_readme_layout_matches_the_tree() -> None:
    entries = _layout_entries((ROOT / "README.md").read_text())
    listed = {e for e in entries if e.startswith("macminidump/")}
    package = ROOT / "macminidump"
    files = {str(p.relative_to(ROOT)) for p in package.rglob("*.py")}
    modules = {f for f in files if not f.endswith("/__init__.py")}  # a package's is optional
    folders = {
        str(p.relative_to(ROOT)) + "/"
        for p in [package, *package.rglob("*")]
        if p.is_dir() and (p / "__init__.py").exists()
    }
    assert sorted(modules - listed) == [], "modules the README's Layout does not name"
    assert sorted(folders - listed) == [], "packages the README's Layout does not name"
    assert sorted(listed - files - folders) == [], "the README's Layout names what is gone"
    assert len(entries) == len(set(entries)), "a path is listed twice"
    for entry in entries:
        assert (ROOT / entry).exists(), entry
