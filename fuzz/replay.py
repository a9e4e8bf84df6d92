#!/usr/bin/env python3
"""Run a fuzz target over every file of some directories, for coverage.py:

    python -m coverage run --source=macminidump fuzz/replay.py macho DIR...
    python -m coverage report

Findings are counted, not raised (``fuzzers.signature`` of each is printed at the end).
"""

from __future__ import annotations

import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fuzzers  # noqa: E402

TARGETS = {
    "macho": fuzzers.fuzz_macho,
    "elf": fuzzers.fuzz_elf,
    "spec": fuzzers.fuzz_spec,
    "tospec": fuzzers.fuzz_tospec,
}


def main(argv: list[str]) -> int:
    target = TARGETS[argv[0]]
    inputs = 0
    findings: collections.Counter[str] = collections.Counter()
    for directory in argv[1:]:
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                data = f.read()
            inputs += 1
            try:
                target(data)
            except Exception as e:
                findings[fuzzers.signature(e)] += 1
    print(f"{argv[0]}: {inputs} inputs, findings: {dict(findings) or 'none'}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
