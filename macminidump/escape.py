"""Text made safe for a terminal: control characters shown, never obeyed.

A core or a spec is untrusted: an image path, a segment name, process arguments or a file
name in an error message may hold an escape sequence that would rewrite the user's
terminal. Everything the CLI prints as text goes through ``printable``; ``--json`` output
stays exact (JSON escapes control characters itself).
"""

from __future__ import annotations

from itertools import chain

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(code: int) -> str:
    named = _NAMED.get(chr(code))
    if named:
        return named
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


#: C0 and C1 controls, DEL, and the bidirectional overrides that reorder what is shown,
#: each to its escape (a table for str.translate: a regex took a dump ~0.7 ms to compile)
_ESCAPES = {
    code: _escaped(code)
    for code in chain(
        range(0x00, 0x20), range(0x7F, 0xA0), range(0x202A, 0x202F), range(0x2066, 0x206A)
    )
}


def printable(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``)."""
    return text.translate(_ESCAPES)
