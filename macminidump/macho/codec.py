"""Fast packing and unpacking of the flat schemas, for the hot paths.

A flat schema (integers, fixed bytes, 16-byte names) maps to one ``struct.Struct``
derived from its declaration by ``schema_io.fixed_format``, so the declaration stays the
single source of truth; 10,000 segment commands then cost milliseconds, not seconds.
Schemas that are not flat (NEON and x87 state, with 128-bit fields and padding) go
through construct.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from ..arch import RegKind
from ..schema_io import fixed_format
from ..struct_io import format_codes
from . import schema


class FlatCodec:
    def __init__(self, decl: Any):
        self.decl = decl
        self.struct = fixed_format(decl)
        self.names = tuple(sc.name for sc in decl.subcons)
        self.size = self.struct.size
        self._codes = format_codes(self.struct.format)
        # 16-byte names travel as latin-1 text in the model, as name16 decodes them
        self._text_at = tuple(
            i for i, sc in enumerate(decl.subcons) if isinstance(sc.subcon, schema.Name16Adapter)
        )

    def unpack(self, buffer: Any, offset: int) -> dict[str, Any]:
        return dict(zip(self.names, self.struct.unpack_from(buffer, offset)))

    def pack(self, values: Mapping[str, Any]) -> bytes:
        """Raises ValueError naming the field when a value does not fit."""
        items = [values[name] for name in self.names]
        for i in self._text_at:
            name, value = self.names[i], items[i]
            try:
                value = value.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"{name} {value!r} is not latin-1 text") from None
            if len(value) > schema.NAME_SIZE or value.endswith(b"\0"):
                raise ValueError(f"{name} {values[name]!r} does not fit in 16 bytes")
            items[i] = value
        try:
            return self.struct.pack(*items)
        except struct.error:
            for name, code, value in zip(self.names, self._codes, items):
                try:
                    struct.pack("<" + code, value)
                except struct.error:
                    raise ValueError(f"{name} = {values[name]!r} does not fit its field") from None
            raise


def _flat(decl: Any) -> FlatCodec | None:
    try:
        return FlatCodec(decl)
    except TypeError:
        return None


SEGMENT = FlatCodec(schema.segment_command_64)
NOTE = FlatCodec(schema.note_command)
LOAD_COMMAND = FlatCodec(schema.load_command)
THREAD_STATE_HEADER = FlatCodec(schema.thread_state_header)

#: (cputype, flavor) -> (kind, flat codec or None, declaration, size in bytes)
FLAVORS: dict[tuple[int, int], tuple[RegKind, FlatCodec | None, Any, int]] = {
    key: (RegKind(kind), _flat(decl), decl, decl.sizeof())
    for key, (kind, decl) in schema.FLAVOR_STRUCTS.items()
}
