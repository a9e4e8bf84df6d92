"""The memory-selection note's JSON: written and read without json in the compact form,
with json's results (one property per invariant)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from macminidump import memory_note
from macminidump.model import MemorySelection, OmittedRange

u64 = st.integers(0, (1 << 64) - 1)
texts = st.one_of(st.sampled_from(["stacks", "referenced", "stack", "rest"]), st.text(max_size=8))
selections = st.builds(
    MemorySelection,
    policy=texts,
    max_size=st.none() | u64,
    omitted_bytes=u64,
    omitted_count=u64,
    omitted=st.lists(st.builds(OmittedRange, u64, u64, texts), max_size=4).map(tuple),
)
json_values = st.recursive(
    st.none() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def as_json(selection: MemorySelection) -> bytes:
    """The note as json writes it (what encode wrote before it wrote it itself)."""
    return json.dumps(memory_note.note_value(selection), separators=(",", ":")).encode()


@given(selections)
def test_encode_writes_what_json_writes(selection: MemorySelection) -> None:
    assert memory_note.encode(selection) == as_json(selection)


@given(selections)
def test_decode_reads_back_what_encode_wrote(selection: MemorySelection) -> None:
    assert memory_note.decode(memory_note.encode(selection)) == selection


@given(json_values)
def test_the_compact_writer_writes_as_json_or_not_at_all(value: Any) -> None:
    text = memory_note._compact(value)
    if text is not None:
        assert text == json.dumps(value, separators=(",", ":"))


@given(json_values)
def test_the_compact_reader_reads_what_json_writes(value: Any) -> None:
    text = json.dumps(value, separators=(",", ":"))
    read = memory_note._read_compact(text)
    assert read is memory_note._NOT_COMPACT or read == json.loads(text)
    if memory_note._compact(value) is not None and _depth(value) <= memory_note._MAX_DEPTH:
        assert read == value


@given(st.text(alphabet='{}[],:"0123456789-nul abc\\e.', max_size=30))
def test_the_compact_reader_reads_as_json_or_not_at_all(text: str) -> None:
    read = memory_note._read_compact(text)
    if read is not memory_note._NOT_COMPACT:
        assert read == json.loads(text)


def test_a_hostile_nesting_is_not_this_note() -> None:
    """json itself raises RecursionError on "[[[[...": the note is then kept raw."""
    assert memory_note.decode(b"[" * 5000) is None
    assert memory_note.decode(b'{"policy":' + b"[" * 5000) is None


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


# -- the reader and writer without re: the regular expressions they replaced, the oracles ---

PLAIN = r"[ !#-\[\]-~]*"
TOKEN = re.compile(r"[{}\[\],:]|null|-?(?:0|[1-9][0-9]*)|" + f'"{PLAIN}"')


def read_compact_by_regex(text: str) -> Any:
    tokens = TOKEN.findall(text)
    if sum(map(len, tokens)) != len(text):
        return memory_note._NOT_COMPACT
    tokens.reverse()
    try:
        value = memory_note._read_value(tokens, 0)
    except (IndexError, ValueError):
        return memory_note._NOT_COMPACT
    return memory_note._NOT_COMPACT if tokens else value


#: what the note's text is made of, and what comes near it
pieces = st.sampled_from(
    ["{", "}", "[", "]", ",", ":", "null", "nul", "0", "00", "-", "-0", "12", "01", '"', '"ab"']
    + ['"a b"', '"\\\\"', '"é"', '"\\t"', " ", "\t", "1.5", "1e3", "true", "x", "\x7f", "~"]
)
note_texts = st.lists(pieces, max_size=16).map("".join)


@given(note_texts | st.text(alphabet='{}[],:"0123456789-nul \\e.\t\x7fé', max_size=30))
@example("[0, 0]")
@example("[0,\t0]")
@example(" 0")
@example("0 ")
@example("[1.5]")
@example('{"a":01}')
@example("[-]")
@example('"a"null')
@example('["a]')
@example("[null]")
def test_the_compact_reader_reads_as_the_regex_read(text: str) -> None:
    assert _same(memory_note._read_compact(text), read_compact_by_regex(text))


@given(json_values)
def test_the_compact_reader_reads_json_as_the_regex_read_it(value: Any) -> None:
    text = json.dumps(value, separators=(",", ":"))
    assert _same(memory_note._read_compact(text), read_compact_by_regex(text))


@given(st.text(max_size=12) | st.text(alphabet=' !"#[\\]~\x1f\x7f\x80a', max_size=12))
def test_plain_text_is_what_the_regex_took_for_plain(text: str) -> None:
    assert memory_note._plain(text) == bool(re.fullmatch(PLAIN, text))


def _same(read: Any, expected: Any) -> bool:
    if read is memory_note._NOT_COMPACT or expected is memory_note._NOT_COMPACT:
        return read is expected
    return type(read) is type(expected) and read == expected
