#!/usr/bin/env python3
"""atheris entry point: Mach-O core bytes -> parse, snapshot, inspect, render, re-parse."""

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports():
    import fuzzers


if __name__ == "__main__":
    fuzzers.run_under_atheris(fuzzers.fuzz_macho_guarded)
