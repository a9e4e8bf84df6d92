"""LC_NOTE payloads ⇄ model values, one encoder/decoder pair per owner.

Payload layouts are in ``schema``; this module turns them into model objects and back.
Payloads that hold absolute file offsets (``all image infos``) are encoded for a given
file offset and decoded from the whole file, because that is what they point into.
"""

from __future__ import annotations

import json
import uuid as uuid_mod
from typing import Any

from .. import records
from ..errors import ParseError, RenderError
from ..limits import MAX_PATH_BYTES, RecordBudget
from ..model import AddressableBits, Image, ImageSegment
from ..schema_io import build, fixed_format, parse_at, unpack_at
from . import schema
from .codec import FlatCodec
from .constants import UINT64_MAX, MainBinType

__all__ = ["MainBinType"]

# The type a minimal core gives its main executable. USER_PROCESS (2) would make LLDB look
# for dyld in memory, which a stack-only core does not hold; STANDALONE (3) makes it load
# the binary by UUID at the given address, with the static loader.
MAIN_BIN_TYPE = MainBinType.STANDALONE


def _opt(value: int) -> int | None:
    return None if value == UINT64_MAX else value


def _u64(value: int | None) -> int:
    return UINT64_MAX if value is None else value


# --------------------------------------------------------------------------- main bin spec


@records.frozen
class MainBinSpec:
    type: int
    address: int | None
    slide: int | None
    uuid: uuid_mod.UUID | None
    log2_pagesize: int = 0
    platform: int = 0


def encode_main_bin_spec(image: Image) -> bytes:
    return build(
        schema.main_bin_spec_v2,
        dict(
            version=2,
            type=int(MAIN_BIN_TYPE),
            address=_u64(image.load_address),
            slide=_u64(image.slide),
            uuid=image.uuid.bytes if image.uuid else bytes(16),
            log2_pagesize=0,
            platform=0,
        ),
    )


def decode_main_bin_spec(payload: bytes, offset: int) -> MainBinSpec:
    version = parse_at(schema.note_version, payload, 0, "main bin spec version").version
    if version == 1:
        v = parse_at(schema.main_bin_spec_v1, payload, 0, "main bin spec v1")
        slide = None
    elif version == 2:
        v = parse_at(schema.main_bin_spec_v2, payload, 0, "main bin spec v2")
        slide = _opt(v.slide)
    else:
        raise ParseError(f"main bin spec version {version} is not 1 or 2", offset)
    uuid = uuid_mod.UUID(bytes=bytes(v.uuid)) if any(v.uuid) else None
    return MainBinSpec(
        v.type, _opt(v.address), slide, uuid, v.log2_pagesize, getattr(v, "platform", 0)
    )


# --------------------------------------------------------------------------- load binary


def encode_load_binary(image: Image) -> bytes:
    return build(
        schema.load_binary_v1,
        dict(
            version=1,
            uuid=image.uuid.bytes if image.uuid else bytes(16),
            load_address=_u64(image.load_address),
            slide=_u64(image.slide),
            path=image.path,
        ),
        f"load binary note of {image.path!r}",
    )


def decode_load_binary(payload: bytes, offset: int) -> Image:
    v = parse_at(schema.load_binary_v1, payload, 0, "load binary note")
    try:
        return Image(
            path=v.path,
            uuid=bytes(v.uuid) if any(v.uuid) else None,
            load_address=_opt(v.load_address),
            slide=_opt(v.slide),
        )
    except ValueError as e:
        raise ParseError(f"load binary note: {e}", offset) from None


# --------------------------------------------------------------------------- all image infos

_HEADER = 24
_ENTRY = 48
_SEGMENT = 32


def all_image_infos_size(images: tuple[Image, ...]) -> int:
    paths = sum(len(_path_bytes(i.path)) + 1 for i in images)
    segments = sum(len(i.segments) for i in images)
    return _HEADER + _ENTRY * len(images) + _SEGMENT * segments + paths


def encode_all_image_infos(images: tuple[Image, ...], file_offset: int) -> bytes:
    """The payload as it must sit at ``file_offset``: its pointers are absolute offsets."""
    entries_at = file_offset + _HEADER
    segments_at = entries_at + _ENTRY * len(images)
    paths_at = segments_at + _SEGMENT * sum(len(i.segments) for i in images)
    out = bytearray(
        build(
            schema.all_image_infos_header,
            dict(
                version=1,
                imgcount=len(images),
                entries_fileoff=entries_at,
                entries_size=_ENTRY,
                unused=0,
            ),
        )
    )
    segment_blob = bytearray()
    path_blob = bytearray()
    for image in images:
        out += build(
            schema.image_entry,
            dict(
                # LLDB 16 crashes on UINT64_MAX here: every entry points at a string
                filepath_offset=paths_at + len(path_blob),
                uuid=image.uuid.bytes if image.uuid else bytes(16),
                load_address=_u64(image.load_address),
                seg_addrs_offset=segments_at + len(segment_blob) if image.segments else UINT64_MAX,
                segment_count=len(image.segments),
                unused=0,
            ),
        )
        for seg in image.segments:
            try:
                # LLDB ignores `unused`: it keeps the segment's size for a parse-back
                segment_blob += _SEGMENT_CODEC.pack(
                    dict(segname=seg.name, vmaddr=seg.address, unused=seg.size)
                )
            except ValueError as e:
                raise RenderError(f"image {image.path!r}: segment {e}") from None
        path_blob += _path_bytes(image.path) + b"\0"
    return bytes(out + segment_blob + path_blob)


_SEGMENT_CODEC = FlatCodec(schema.segment_vmaddr)


def _path_bytes(path: str) -> bytes:
    """Paths are bytes on disk: undecodable bytes read back as surrogates go back as-is."""
    try:
        data = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise RenderError(f"image path {path[:60]!r} cannot be encoded") from None
    if len(data) > MAX_PATH_BYTES:
        raise RenderError(
            f"image path {path[:60]!r}... is {len(data):,} bytes; a core holds at most "
            f"{MAX_PATH_BYTES:,} (PATH_MAX, with its NUL)"
        )
    return data


def decode_all_image_infos(
    buffer: Any, offset: int, size: int, records: RecordBudget | None = None
) -> list[Image]:
    """Entries and strings may lie anywhere in the file: every pointer is bounds-checked,
    and every entry and segment counted in ``records`` before it is built."""
    records = records or RecordBudget(len(buffer))
    header = parse_at(
        schema.all_image_infos_header, buffer, offset, "all image infos", offset + size
    )
    if header.entries_size < _ENTRY:
        raise ParseError(f"all image infos entry size {header.entries_size} < {_ENTRY}", offset)
    if header.imgcount * header.entries_size > len(buffer):
        raise ParseError(f"all image infos claims {header.imgcount} images", offset)
    records.spend(header.imgcount, offset, f"all image infos of {header.imgcount:,} images")
    entry_fmt = fixed_format(schema.image_entry)
    seg_fmt = fixed_format(schema.segment_vmaddr)
    images = []
    # Entries may all point at the same records: bound what they add up to by the note's
    # own size (a well-formed payload holds its segment records and paths), so a small
    # file cannot make the parser build millions of objects.
    budget = size
    for i in range(header.imgcount):
        at = header.entries_fileoff + i * header.entries_size
        path_off, uuid_b, load, segs_off, seg_count, _ = unpack_at(
            entry_fmt, buffer, at, "image entry"
        )
        budget -= _SEGMENT * seg_count
        records.spend(seg_count, at, "image segments")
        if budget < 0:
            raise ParseError(
                f"image entry claims {seg_count} segments, more than the note holds", at
            )
        segments = []
        for j in range(seg_count):
            name, vmaddr, extra = unpack_at(
                seg_fmt, buffer, segs_off + j * _SEGMENT, "segment entry"
            )
            segments.append(ImageSegment(name.rstrip(b"\0").decode("latin-1"), vmaddr, extra))
        path = _cstring(buffer, path_off, at) if path_off != UINT64_MAX else ""
        budget -= len(path)
        if budget < 0:
            raise ParseError("image paths add up to more than the note holds", at)
        try:
            images.append(
                Image(
                    path=path,
                    uuid=uuid_b if any(uuid_b) else None,
                    load_address=_opt(load),
                    segments=tuple(segments),
                )
            )
        except ValueError as e:
            raise ParseError(f"image entry: {e}", at) from None
    return images


def _cstring(buffer: Any, offset: int, referrer: int) -> str:
    if not 0 <= offset < len(buffer):
        raise ParseError(f"path offset {offset:#x} is outside the file", referrer)
    end = bytes(buffer[offset : offset + MAX_PATH_BYTES + 1]).find(b"\0")
    if end < 0:
        raise ParseError(
            f"path string is not NUL-terminated within {MAX_PATH_BYTES + 1} bytes", offset
        )
    return bytes(buffer[offset : offset + end]).decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- addrable bits


def encode_addressable_bits(bits: AddressableBits) -> bytes:
    # LLDB 16 reads only v3 (one number); v4 is needed only when the halves differ
    if bits.low == bits.high:
        return build(schema.addrable_bits_v3, dict(version=3, num_bits=bits.low, unused=0))
    return build(
        schema.addrable_bits_v4, dict(version=4, low_bits=bits.low, high_bits=bits.high, unused=0)
    )


def decode_addressable_bits(payload: bytes, offset: int) -> AddressableBits | None:
    version = parse_at(schema.note_version, payload, 0, "addrable bits version").version
    if version == 3:
        v = parse_at(schema.addrable_bits_v3, payload, 0, "addrable bits v3")
        low = high = v.num_bits
    elif version == 4:
        v = parse_at(schema.addrable_bits_v4, payload, 0, "addrable bits v4")
        low, high = v.low_bits, v.high_bits
    else:
        return None  # a version we do not know: kept raw by the caller
    try:
        return AddressableBits(low, high)
    except ValueError as e:
        raise ParseError(f"addrable bits: {e}", offset) from None


# --------------------------------------------------------------------------- process metadata


@records.frozen
class ThreadMetadata:
    id: int
    name: str | None = None
    crashed: bool = False


def encode_process_metadata(threads: list[ThreadMetadata]) -> bytes:
    entries = []
    for t in threads:
        entry: dict[str, Any] = {"thread_id": t.id}
        # not read by LLDB; kept so a parse gives back the name and the crashed thread
        if t.name is not None:
            entry["name"] = t.name
        if t.crashed:
            entry["crashed"] = True
        entries.append(entry)
    return json.dumps({"threads": entries}, separators=(",", ":")).encode()


def decode_process_metadata(payload: bytes, offset: int) -> list[ThreadMetadata] | None:
    """The per-thread entries, or None when the JSON holds more than this package models."""
    try:
        doc = json.loads(bytes(payload).rstrip(b"\0").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ParseError("process metadata is not JSON", offset) from None
    if not isinstance(doc, dict) or set(doc) != {"threads"} or not isinstance(doc["threads"], list):
        return None
    out = []
    for entry in doc["threads"]:
        if not isinstance(entry, dict) or not set(entry) <= {"thread_id", "name", "crashed"}:
            return None
        tid, name, crashed = entry.get("thread_id"), entry.get("name"), entry.get("crashed", False)
        if not isinstance(tid, int) or not 0 <= tid <= UINT64_MAX:
            return None
        if not (name is None or isinstance(name, str)) or not isinstance(crashed, bool):
            return None
        out.append(ThreadMetadata(tid, name, crashed))
    return out


# --------------------------------------------------------------------------- kern ver str


def decode_kern_ver_str(payload: bytes, offset: int) -> str:
    return str(parse_at(schema.kern_ver_str, payload, 0, "kern ver str").version_string)
