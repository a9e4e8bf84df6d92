"""Mach-O cores (arm64, x86_64): declarations, notes, layout, render and parse."""
