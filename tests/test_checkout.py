"""The checkout tests itself: nothing under tests/ reaches outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

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
