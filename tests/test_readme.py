"""The README's Python example runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_illustrative_examples_compile() -> None:
    """```py blocks (a made-up pid, macOS-only calls) are not run, but must be valid Python."""
    blocks = re.findall(r"```py\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        compile(block, "README.md", "exec")


def test_python_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    root = README.parent
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        os.symlink(root / "formats", tmp_path / "formats")
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert (tmp_path / "crash.core").stat().st_mode & 0o777 == 0o600
