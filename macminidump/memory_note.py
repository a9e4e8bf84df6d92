"""The payload of the note that says how a capture chose its memory (``MemorySelection``).

The same bytes in both formats (ELF: owner "MACMINIDUMP", type 1; Mach-O: an LC_NOTE of
owner "macminidump mem"; each format's constants.py names them): compact JSON, so
``strings`` and a person read it too.

    {"policy": "referenced", "max_size": 65536, "omitted_bytes": 1234, "omitted_count": 3,
     "omitted": [[address, size, "kind"], ...]}
"""

from __future__ import annotations

from .errors import ModelError
from .model import MemorySelection, OmittedRange

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from typing import Any

#: a decoder refuses more (a hostile file cannot make it build millions of objects)
MAX_PAYLOAD = 1 << 20


def encode(selection: MemorySelection) -> bytes:
    value = note_value(selection)
    text = _compact(value)
    if text is None:
        import json

        text = json.dumps(value, separators=(",", ":"))
    return text.encode()


def note_value(selection: MemorySelection) -> dict[str, Any]:
    """The note's JSON value: what ``encode`` writes, compact."""
    return {
        "policy": selection.policy,
        "max_size": selection.max_size,
        "omitted_bytes": selection.omitted_bytes,
        "omitted_count": selection.omitted_count,
        "omitted": [[o.address, o.size, o.kind] for o in selection.omitted],
    }


def decode(payload: bytes) -> MemorySelection | None:
    """None when the payload is not this note's (the note is then kept raw)."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        text = bytes(payload).rstrip(b"\0").decode()
        value: Any = _read_compact(text)
        if value is _NOT_COMPACT:
            import json

            value = json.loads(text)
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
    except (ValueError, KeyError, TypeError, AttributeError, ModelError, RecursionError):
        return None  # (RecursionError: json's, for a hostile "[[[[..." a thousand deep)


def _int(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise ValueError(value)
    return value


# The note's JSON in the form ``encode`` writes it (no spaces; integers, null, lists,
# objects and strings of printable ASCII without escapes), written and read here, so that a
# dump does not import json (~3 ms, with its scanner and regexes); anything else goes
# through json, whose result these match (tests/test_memory_note.py).

_NOT_COMPACT = object()


def _plain(text: str) -> bool:
    """Whether ``text`` is printable ASCII without `"` and `\\`: text that JSON writes
    without an escape."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _compact(value: Any) -> str | None:
    """``json.dumps(value, separators=(",", ":"))`` when it has no escapes, else None."""
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return f'"{value}"' if _plain(value) else None
    if type(value) is list:
        items = [_compact(v) for v in value]
        return None if None in items else f"[{','.join(items)}]"  # type: ignore[arg-type]
    if type(value) is dict:
        parts = [(_compact(k), _compact(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in parts):
            return None
        return "{" + ",".join(f"{k}:{v}" for k, v in parts) + "}"
    return None


def _read_compact(text: str) -> Any:
    """``json.loads(text)`` when ``text`` is in the compact form, else _NOT_COMPACT."""
    tokens = _tokens(text)
    if tokens is None:
        return _NOT_COMPACT
    tokens.reverse()
    try:
        value = _read_value(tokens, 0)
    except (IndexError, ValueError):
        return _NOT_COMPACT
    return _NOT_COMPACT if tokens else value


def _tokens(text: str) -> list[str] | None:
    """The tokens of ``text`` if it is made of nothing else: ``{}[],:``, null, integers
    and plain strings; None otherwise (spaces, escapes, floats..., or two values with
    nothing between them, which no JSON text holds either)."""
    # (str methods, not a regex: a dump imports no re; its note is read back in each dump)
    parts = text.split('"')
    if len(parts) % 2 == 0:
        return None  # (a string without its end)
    tokens = []
    for i, part in enumerate(parts):
        if i % 2:
            if not _plain(part):
                return None
            tokens.append(f'"{part}"')
            continue
        if part.translate(_OUTSIDE):
            return None  # (a character no token outside a string holds)
        for word in part.translate(_SPACED).split():
            if word in _PUNCTUATION or word == "null":
                tokens.append(word)
                continue
            digits = word[1:] if word[0] == "-" else word
            if not digits or digits.strip(_DIGITS) or (digits[0] == "0" and digits != "0"):
                return None
            tokens.append(word)
    return tokens


_PUNCTUATION = "{}[],:"
_DIGITS = "0123456789"
#: deletes what tokens outside strings are made of
_OUTSIDE = str.maketrans("", "", _PUNCTUATION + "nul-" + _DIGITS)
#: spaces each punctuation mark apart (text outside strings holds no spaces by then)
_SPACED = str.maketrans({c: f" {c} " for c in _PUNCTUATION})


#: how deep the compact reader goes (the note's own values are 3 deep); deeper: json's
_MAX_DEPTH = 8


def _read_value(tokens: list[str], depth: int) -> Any:
    token = tokens.pop()
    if depth > _MAX_DEPTH:
        raise ValueError("deep")
    if token == "[":
        items: list[Any] = []
        if tokens[-1] == "]":
            tokens.pop()
            return items
        while True:
            items.append(_read_value(tokens, depth + 1))
            token = tokens.pop()
            if token == "]":
                return items
            if token != ",":
                raise ValueError(token)
    if token == "{":
        members: dict[str, Any] = {}
        if tokens[-1] == "}":
            tokens.pop()
            return members
        while True:
            key = tokens.pop()
            if key[:1] != '"' or tokens.pop() != ":":
                raise ValueError(key)
            members[key[1:-1]] = _read_value(tokens, depth + 1)
            token = tokens.pop()
            if token == "}":
                return members
            if token != ",":
                raise ValueError(token)
    if token == "null":
        return None
    if token[:1] == '"':
        return token[1:-1]
    if token in ",:]}":
        raise ValueError(token)
    return int(token)
