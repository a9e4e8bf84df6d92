"""The ``struct`` side of the schemas: unpacking a generated layout with ``schema_io``'s
guarantees, and no construct.

The dump path (capture, render, the read-back check) unpacks the layouts generated from
the declarations (``linux_abi_packed``, ``elf/packed``; see ``generate_packed``) through
here, so that it never imports construct.
"""

from __future__ import annotations

import struct

from .errors import ParseError

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any


def format_codes(fmt: str) -> list[str]:
    """The codes of ``struct`` format ``fmt`` after its byte-order character, each with
    its count: ``"<I16sQ"`` -> ``["I", "16s", "Q"]`` (white space and a count without a
    code are left out, as ``struct`` reads them)."""
    # (a loop, not a regex: the renderer's layouts are split at import, and a dump
    # imports no re)
    codes = []
    count = ""
    for c in fmt[1:]:
        if c.isdecimal():
            count += c
        elif c == "?" or (c.isascii() and c.isalpha()):
            codes.append(count + c)
            count = ""
        else:
            count = ""
    return codes


def unpack_at(fmt: struct.Struct, buffer: Any, offset: int, what: str) -> tuple[Any, ...]:
    """``fmt`` unpacked at ``offset``; a ParseError naming ``what`` and the offset when
    it runs past the end of ``buffer`` (``struct`` alone would raise ``struct.error``)."""
    if offset < 0 or offset + fmt.size > len(buffer):
        raise ParseError(f"{what} ({fmt.size} bytes) runs past the end of the file", offset)
    return fmt.unpack_from(buffer, offset)
