"""Every bound the readers and writers share, written once.

A core or a spec is untrusted input. These bounds keep what one can cost in proportion to
its size (README "Guarantees": peak memory at most 4x the input plus 64 MiB, time linear
in the input), and the writer and the readers agree on them: a renderer re-reads the file
it wrote before putting it in place (``writer.write_file``'s ``verify``), so ``build``
never writes a core its own parser rejects.
"""

from __future__ import annotations

from .errors import ParseError, SpecError

#: longest image path, in bytes of UTF-8: "all image infos" strings are NUL-terminated
#: within PATH_MAX (4096) bytes, as the kernels' and dyld's are
MAX_PATH_BYTES = 4095

#: records any core may hold whatever its size: load commands, program headers, notes,
#: thread states, image entries and their segments, NT_FILE and auxv entries, process
#: metadata values. Each becomes Python objects of ~1-3 KiB on its way to a report or a
#: spec; a record can be 8 bytes of file, so a count proportional to the size alone would
#: let 16 MB of tiny records take gigabytes.
FIXED_RECORDS = 10240
#: ... plus one record per this many bytes of file (a real core's records carry pages)
BYTES_PER_RECORD = 1024

#: the "process metadata" note's JSON (thread ids, names): ~60 bytes a thread, so 17,000
#: threads; JSON takes ~25 bytes of Python objects per byte of text
MAX_METADATA_BYTES = 1 << 20

#: a spec's text, and what it may expand to through YAML aliases (counted in scalars'
#: characters plus 8 per node: a mapping, list or number)
MAX_SPEC_BYTES = 64 << 20
SPEC_EXPANSION_FACTOR = 8
SPEC_EXPANSION_FIXED = 16 << 20


def record_limit(file_size: int) -> int:
    """How many records a core of ``file_size`` bytes may hold."""
    return FIXED_RECORDS + file_size // BYTES_PER_RECORD


class RecordBudget:
    """Counts a reader's records against ``record_limit`` of its file, failing early."""

    def __init__(self, file_size: int):
        self.file_size = file_size
        self.limit = record_limit(file_size)
        self.spent = 0

    def spend(self, count: int, offset: int, what: str) -> None:
        """Account for ``count`` more records (before they are built)."""
        self.spent += count
        if self.spent > self.limit:
            raise ParseError(
                f"{what}: more than {self.limit:,} records (load commands, notes, entries) "
                f"in a file of {self.file_size:,} bytes; refusing to expand it",
                offset,
            )


def spec_expansion_limit(text_size: int) -> int:
    return SPEC_EXPANSION_FIXED + SPEC_EXPANSION_FACTOR * text_size


def check_spec_expansion(document: object, text_size: int, where: str) -> None:
    """Walk a loaded spec as the reader will, aliases expanded, within a budget: a small
    text of nested YAML aliases expands exponentially (a "billion laughs")."""
    limit = spec_expansion_limit(text_size)
    total = 0
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str | bytes):
            total += 8 + len(value)
        elif isinstance(value, dict):
            total += 8
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            total += 8
            stack.extend(value)
        else:
            total += 8
        if total > limit:
            raise SpecError(
                f"the spec expands (through YAML aliases) to more than {limit:,} bytes "
                f"from {text_size:,}; refusing it",
                where,
            )
