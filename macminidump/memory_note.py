"""The payload of the note that says how a capture chose its memory (``MemorySelection``).

The same bytes in both formats (ELF: owner "MACMINIDUMP", type 1; Mach-O: an LC_NOTE of
owner "macminidump mem"; each format's constants.py names them): compact JSON, so
``strings`` and a person read it too.

    {"policy": "referenced", "max_size": 65536, "omitted_bytes": 1234, "omitted_count": 3,
     "omitted": [[address, size, "kind"], ...]}
"""

from __future__ import annotations

import json

from .errors import ModelError
from .model import MemorySelection, OmittedRange

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any

#: a decoder refuses more (a hostile file cannot make it build millions of objects)
MAX_PAYLOAD = 1 << 20


def encode(selection: MemorySelection) -> bytes:
    value = {
        "policy": selection.policy,
        "max_size": selection.max_size,
        "omitted_bytes": selection.omitted_bytes,
        "omitted_count": selection.omitted_count,
        "omitted": [[o.address, o.size, o.kind] for o in selection.omitted],
    }
    return json.dumps(value, separators=(",", ":")).encode()


def decode(payload: bytes) -> MemorySelection | None:
    """None when the payload is not this note's (the note is then kept raw)."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        value: Any = json.loads(bytes(payload).rstrip(b"\0").decode())
        omitted = tuple(
            OmittedRange(_int(a), _int(s), str(k)) for a, s, k in value.get("omitted", [])
        )
        max_size = value.get("max_size")
        return MemorySelection(
            policy=str(value["policy"]),
            max_size=None if max_size is None else _int(max_size),
            omitted_bytes=_int(value.get("omitted_bytes", 0)),
            omitted_count=_int(value.get("omitted_count", 0)),
            omitted=omitted,
        )
    except (ValueError, KeyError, TypeError, AttributeError, ModelError):
        return None


def _int(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise ValueError(value)
    return value
