"""Timing commands as a user runs them, against a baseline, on a shared noisy machine.

``interleave`` runs every command once per round, in a fresh order each round, so load
from other users hits subject and baseline alike. ``Sample`` keeps every time; figures
are the median with min and max. ``verdict`` compares a subject to ``target × baseline``
per round (each round's two runs are close in time) and calls it a miss only when the
subject is over even after allowing the noise measured between rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import attrs


@attrs.frozen
class Sample:
    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def low(self) -> float:
        return min(self.times)

    @property
    def high(self) -> float:
        return max(self.times)

    def ms(self) -> str:
        return f"{self.median * 1e3:.1f} ms ({self.low * 1e3:.1f}–{self.high * 1e3:.1f})"


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> float:
    """Wall time of one run of ``argv``, output discarded; a failure stops the benchmark.

    It runs in ``/``: `python -c` puts its working directory first on sys.path, and in a
    checkout that would import the sources there instead of the installed package."""
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd="/")
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def interleave(
    subjects: Mapping[str, Callable[[], float]], rounds: int, warmup: int = 1
) -> dict[str, Sample]:
    """Each callable returns the seconds one run took; all run once per round, shuffled."""
    names = list(subjects)
    for _ in range(warmup):
        for name in names:
            subjects[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            times[name].append(subjects[name]())
    return {name: Sample(tuple(times[name])) for name in subjects}


@attrs.frozen
class Verdict:
    #: subject/baseline per round
    ratios: tuple[float, ...]
    target: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def noise(self) -> float:
        """Median absolute deviation of the per-round ratios (the spread between rounds)."""
        return statistics.median(abs(r - self.ratio) for r in self.ratios)

    @property
    def missed(self) -> bool:
        return self.ratio - self.noise > self.target

    def text(self) -> str:
        state = (
            "MISSED" if self.missed else ("met" if self.ratio <= self.target else "within noise")
        )
        return (
            f"{self.ratio:.2f}x (rounds {min(self.ratios):.2f}–{max(self.ratios):.2f}, "
            f"noise ±{self.noise:.2f}; target ≤ {self.target}x): {state}"
        )


def verdict(subject: Sample, baseline: Sample, target: float) -> Verdict:
    return Verdict(tuple(s / b for s, b in zip(subject.times, baseline.times)), target)


def as_json(
    comparisons: Mapping[str, tuple[Mapping[str, Sample], Verdict]],
) -> dict[str, dict[str, object]]:
    """Each comparison's samples (median, min, max in seconds) and its verdict, for --json."""
    return {
        name: {
            "samples": {
                who: {"median": s.median, "min": s.low, "max": s.high} for who, s in samples.items()
            },
            "ratio": v.ratio,
            "noise": v.noise,
            "missed": v.missed,
        }
        for name, (samples, v) in comparisons.items()
    }


def print_text(
    comparisons: Mapping[str, tuple[Mapping[str, Sample], Verdict]], rounds: int, versus: str
) -> None:
    """Each comparison's samples, median (min–max), and its verdict as ``versus``."""
    print(f"{rounds} interleaved rounds; median (min–max)")
    for name, (samples, v) in comparisons.items():
        width = max(len(versus), *(len(who) for who in samples)) + 2
        print(f"{name}:")
        for who, sample in samples.items():
            print(f"  {who:<{width}}{sample.ms()}")
        print(f"  {versus:<{width}}{v.text()}")


def ensure_bytecode() -> None:
    """Compile the package as pip does when it installs it: a user's `macminidump` starts
    from bytecode even where this environment sets PYTHONDONTWRITEBYTECODE."""
    import compileall

    import macminidump

    compileall.compile_dir(os.path.dirname(macminidump.__file__), quiet=1)


def end_to_end_arguments(doc: str, rounds: int) -> argparse.ArgumentParser:
    """The options every end-to-end benchmark takes (``--rounds``, ``--here`` for
    ``user_install``, ``--json``), described by the first paragraph of its ``doc``;
    a benchmark adds its own before parsing."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--here", action="store_true", help="this interpreter's install")
    parser.add_argument("--json", action="store_true")
    return parser


@attrs.frozen
class Installed:
    """Where the commands under test come from: an interpreter, its `macminidump`, and
    the environment to run both in."""

    python: str
    command: tuple[str, ...]
    env: Mapping[str, str]


@contextlib.contextmanager
def user_install(here: bool = False) -> Iterator[Installed]:
    """The package as a user has it: ``pip install CHECKOUT`` (not editable: no import
    hook in every start-up) into a fresh venv, bytecode compiled by pip, removed after.

    ``here=True`` measures this interpreter's own install instead (quicker while working
    on the code; an editable install's finder adds about 20 ms to every start-up, so
    the end-to-end figures for the README come from the fresh install).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if here:
        ensure_bytecode()
        yield Installed(sys.executable, tuple(macminidump_command()), dict(os.environ))
        return
    checkout = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-venv-") as d:
        venv = Path(d)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
        python = str(venv / "bin" / "python")
        print(f"pip install {checkout} into a fresh venv ...", file=sys.stderr, flush=True)
        pip = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(checkout)],
            env=env,
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            raise SystemExit(f"pip install {checkout} failed:\n{pip.stderr}")
        yield Installed(python, (str(venv / "bin" / "macminidump"),), env)


def macminidump_command() -> list[str]:
    """``macminidump`` as installed beside this interpreter (what a user types), else -m."""
    script = os.path.join(os.path.dirname(sys.executable), "macminidump")
    if os.access(script, os.X_OK):
        return [script]
    found = shutil.which("macminidump")
    return [found] if found else [sys.executable, "-m", "macminidump"]
