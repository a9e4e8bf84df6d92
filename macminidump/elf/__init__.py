"""ELF cores (Linux x86_64): declarations, notes, layout, render and parse."""
