"""The readers' only doorway into construct: parse at an offset, turn its errors into ours.

Like pyelftools' ``struct_parse``: a reader never sees a ConstructError, a short read, or
a Container; it gets values, or one ParseError naming the offset and what was expected.
"""

from __future__ import annotations

import struct
from typing import Any

import construct

from .errors import ParseError, RenderError


def parse_at(schema: Any, buffer: Any, offset: int, what: str, limit: int | None = None) -> Any:
    """Parse ``schema`` from ``buffer[offset:limit]``; ``what`` names the structure in errors."""
    end = len(buffer) if limit is None else min(limit, len(buffer))
    if offset < 0 or offset > end:
        raise ParseError(f"{what} lies outside the file ({end:#x} bytes)", offset)
    try:
        # construct copies what it is given into a BytesIO: hand it only the struct's bytes
        end = min(end, offset + schema.sizeof())
    except construct.SizeofError:
        pass  # variable size: bounded by ``limit``
    try:
        return schema.parse(memoryview(buffer)[offset:end])
    except construct.ConstructError as e:
        detail = str(e).splitlines()[-1] if str(e) else type(e).__name__
        raise ParseError(f"malformed {what}: {detail}", offset) from None


def unpack_at(fmt: struct.Struct, buffer: Any, offset: int, what: str) -> tuple[Any, ...]:
    """Fast path for fixed structs (see ``schema.fixed_format``), with the same guarantees."""
    if offset < 0 or offset + fmt.size > len(buffer):
        raise ParseError(f"{what} ({fmt.size} bytes) runs past the end of the file", offset)
    return fmt.unpack_from(buffer, offset)


def build(schema: Any, value: Any, what: str = "") -> bytes:
    """Build ``value``; a value the schema cannot hold is a RenderError naming ``what``."""
    try:
        return bytes(schema.build(value))
    except construct.ConstructError as e:
        detail = str(e).splitlines()[-1] if str(e) else type(e).__name__
        raise RenderError(f"{what + ': ' if what else ''}{detail}") from None


def plain(container: Any) -> dict[str, Any]:
    """A construct Container as a plain dict without its private keys."""
    return {k: v for k, v in container.items() if not k.startswith("_")}
