"""Test-session hooks: tests marked ``macos`` run only on a Mac.

Off macOS they are deselected (not skipped: nothing could make them pass here) and the
terminal summary says how many and why, so their absence is never silent.
"""

from __future__ import annotations

import sys

import pytest

_not_run: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if sys.platform == "darwin":
        return
    macos = [item for item in items if item.get_closest_marker("macos")]
    if macos:
        _not_run.extend(item.nodeid for item in macos)
        config.hook.pytest_deselected(items=macos)
        items[:] = [item for item in items if not item.get_closest_marker("macos")]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _not_run:
        terminalreporter.write_sep("=", "not run: macOS only")
        terminalreporter.write_line(
            f"{len(_not_run)} tests marked 'macos' not run: macOS only "
            f"(this is {sys.platform}; .github/workflows/macos.yml runs them on a Mac)"
        )
        for nodeid in _not_run:
            terminalreporter.write_line(f"  not run: macOS only: {nodeid}")
