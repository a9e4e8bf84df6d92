"""Test-session hooks: tests marked ``macos`` run only on a Mac; hypothesis without
wall-clock limits.

Off macOS they are deselected (not skipped: nothing could make them pass here) and the
terminal summary says how many and why, so their absence is never silent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# The machine is small and shared: a 200 ms deadline per example, or hypothesis's
# "too slow" check, fails a correct test when another job takes the CPU. Speed is
# checked by the benchmarks and the relative speed tests, not by these.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")

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


CORE_PATTERN = "/proc/sys/kernel/core_pattern"
#: held by every test that changes core_pattern: several test runs share this machine
CORE_PATTERN_LOCK = "/tmp/macminidump-core-pattern.lock"


@pytest.fixture
def core_pattern() -> Iterator[str]:
    """The machine's core_pattern (its text), held for this test alone and put back on
    every path; fails loudly where it cannot be written (not root)."""
    import fcntl

    with open(CORE_PATTERN_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(CORE_PATTERN) as f:
            old = f.read()
        try:
            yield old.rstrip("\n")
        finally:
            with open(CORE_PATTERN, "w") as f:
                f.write(old)
