#!/usr/bin/env python3
"""atheris entry point: a core (Mach-O or ELF) -> to-spec YAML -> load -> build: same bytes."""

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports():
    import fuzzers


def TestOneInput(data: bytes) -> None:
    fuzzers.fuzz_tospec_guarded(data)


def main() -> None:
    fuzzers.enable_ignore_list()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
