#!/usr/bin/env python3
"""atheris entry point: a core (Mach-O or ELF) -> to-spec YAML -> load -> build: same bytes."""

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports():
    import fuzzers


if __name__ == "__main__":
    fuzzers.run_under_atheris(fuzzers.fuzz_tospec_guarded)
