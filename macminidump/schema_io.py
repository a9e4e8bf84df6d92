"""The only doorway into the schemas (construct declarations): parse at an offset, build,
and the ``struct`` layouts derived from a declaration (``fixed_format`` and
``nested_format`` at run time, ``packed_layout`` for the generated modules the dump path
uses: see ``generate_packed``); construct's errors become ours.

Like pyelftools' ``struct_parse``: a reader never sees a ConstructError, a short read, or
a Container; it gets values, or one ParseError naming the offset and what was expected.
A value a schema cannot hold is a RenderError.
"""

from __future__ import annotations

import struct
from typing import Any

import construct

from .errors import ParseError, RenderError
from .plain_enum import IntEnum
from .struct_io import unpack_at

__all__ = [
    "EnumOrInt",
    "build",
    "fixed_format",
    "nested_format",
    "packed_layout",
    "parse_at",
    "plain",
    "unpack_at",
]


class EnumOrInt(construct.Adapter):  # type: ignore[misc]
    """An integer field that parses to an ``enum_type`` member when known, else to ``int``
    (both compare equal to the number; building accepts either)."""

    def __init__(self, subcon: construct.Construct, enum_type: type[IntEnum]):
        super().__init__(subcon)
        self.enum_type = enum_type

    def _decode(self, obj: int, context: Any, path: str) -> int:
        try:
            return self.enum_type(obj)
        except ValueError:
            return obj

    def _encode(self, obj: int, context: Any, path: str) -> int:
        return obj


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


def fixed_format(decl: Any) -> struct.Struct:
    """The ``struct.Struct`` with the layout of a flat construct declaration.

    For hot paths (10,000 segment commands or program headers in a large core), so the
    declarations stay the single source of truth. ``decl`` must be a ``Struct`` of named
    fields, each a little-endian integer or fixed-length ``Bytes``, possibly wrapped in
    adapters (a 16-byte name, an enum): unpacking gives what is under the adapter (raw
    bytes, plain ints). Anything else raises TypeError. Unlike construct, unpacking a
    short buffer raises ``struct.error``: check bounds first (``struct_io.unpack_at``
    does).
    """
    if not isinstance(decl, construct.Struct):
        raise TypeError(f"fixed_format needs a construct Struct, not {type(decl).__name__}")
    codes = ["<"]
    for field in decl.subcons:
        inner = _field(field)
        if isinstance(inner, construct.Struct):
            raise TypeError(f"fixed_format: field {field.name!r} (Struct) is not flat")
        codes.append(_leaf_code(field.name, inner))
    return struct.Struct("".join(codes))


def nested_format(decl: Any) -> tuple[struct.Struct, tuple[tuple[str, ...], ...]]:
    """``fixed_format`` of a declaration whose fields may be Structs themselves (an
    NT_PRSTATUS holds timevals and a register struct), with each leaf's path of names
    in the order the struct packs them. TypeError as ``fixed_format``."""
    if not isinstance(decl, construct.Struct):
        raise TypeError(f"nested_format needs a construct Struct, not {type(decl).__name__}")
    codes = ["<"]
    paths: list[tuple[str, ...]] = []

    def walk(struct_decl: Any, prefix: tuple[str, ...]) -> None:
        for field in struct_decl.subcons:
            inner = _field(field)
            if isinstance(inner, construct.Struct):
                walk(inner, (*prefix, field.name))
            else:
                codes.append(_leaf_code(field.name, inner))
                paths.append((*prefix, field.name))

    walk(decl, ())
    return struct.Struct("".join(codes)), tuple(paths)


def packed_layout(decl: Any, context: dict[str, Any] | None = None) -> tuple[str, tuple[str, ...]]:
    """The ``struct`` format and the dotted leaf paths (``pr_reg.rax``) of a declaration,
    for the generated layouts (``generate_packed``) that the dump path unpacks without
    construct. As ``nested_format``, and besides: a ``Const`` is its bytes (the caller
    checks the magic), a ``FixedSized`` string its raw padded bytes (the caller strips
    and decodes), and an ``If`` or a ``Bytes`` whose length depends on other fields is
    resolved against ``context`` (the values that decide: a field whose ``If`` is false
    is left out)."""
    if not isinstance(decl, construct.Struct):
        raise TypeError(f"packed_layout needs a construct Struct, not {type(decl).__name__}")
    ctx = construct.Container(context or {})
    codes = ["<"]
    paths: list[str] = []

    def walk(struct_decl: Any, prefix: str) -> None:
        for field in struct_decl.subcons:
            if not isinstance(field, construct.Renamed) or not field.name:
                raise TypeError(f"packed_layout: unnamed field {field!r}")
            name = prefix + field.name
            inner = field.subcon
            while True:
                if isinstance(inner, construct.IfThenElse):
                    inner = inner.thensubcon if construct.evaluate(inner.condfunc, ctx) else None
                elif isinstance(inner, (construct.Adapter, construct.Const)):
                    inner = inner.subcon
                else:
                    break
            if inner is None:
                continue
            if isinstance(inner, construct.Struct):
                walk(inner, name + ".")
                continue
            if type(inner) is construct.FixedSized and isinstance(inner.length, int):
                codes.append(f"{inner.length}s")
            elif type(inner) is construct.Bytes and callable(inner.length):
                codes.append(f"{construct.evaluate(inner.length, ctx)}s")
            else:
                codes.append(_leaf_code(name, inner))
            paths.append(name)

    walk(decl, "")
    return "".join(codes), tuple(paths)


def _field(field: Any) -> Any:
    """What a named field declares, under its adapters."""
    if not isinstance(field, construct.Renamed) or not field.name:
        raise TypeError(f"fixed_format: unnamed field {field!r}")
    inner = field.subcon
    while isinstance(inner, construct.Adapter):
        inner = inner.subcon
    return inner


def _leaf_code(name: str, inner: Any) -> str:
    """The struct code of a little-endian integer or fixed-length bytes field."""
    if type(inner) is construct.FormatField:
        order, code = inner.fmtstr[0], inner.fmtstr[1:]
        if code not in "bBhHiIlLqQ" or (order != "<" and inner.length != 1):
            raise TypeError(f"fixed_format: field {name!r} is not a LE integer")
        return str(code)
    if type(inner) is construct.Bytes and isinstance(inner.length, int):
        return f"{inner.length}s"
    raise TypeError(f"fixed_format: field {name!r} ({type(inner).__name__}) is not fixed")


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
