"""Text made safe for a terminal: control characters shown, never obeyed.

A core or a spec is untrusted: an image path, a segment name, process arguments or a file
name in an error message may hold an escape sequence that would rewrite the user's
terminal. Everything the CLI prints as text goes through ``printable``; ``--json`` output
stays exact (JSON escapes control characters itself).
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what is shown
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``)."""
    return _CONTROL.sub(_escaped, text)
