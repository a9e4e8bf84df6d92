"""Declarative specs (YAML / JSON / dict) ⇄ Snapshot.

The format is a superset of LLVM's ``yaml2macho-core`` input: any arm64 file written for
that tool loads unchanged. ``formats/spec.md`` documents every key. Errors name the path
of the offending key, e.g. ``$.threads[0].regsets[1].registers[2].name``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import json
import operator
import os
import reprlib
import stat
import struct
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from . import records
from .arch import Arch, RegKind, arch_info
from .errors import MacMiniDumpError, SpecError
from .limits import MAX_SPEC_BYTES, check_spec_expansion
from .model import (
    PROTECTION_OF_TEXT,
    PROTECTIONS,
    AddressableBits,
    BytesSource,
    FileMapping,
    Image,
    ImageSegment,
    MemorySelection,
    OmittedRange,
    ProcessInfo,
    RawItem,
    Region,
    RegisterSet,
    SignalInfo,
    Snapshot,
    Thread,
    content_of,
)

_T = TypeVar("_T")

FORMATS = ("macho", "elf")

# CPU names yaml2macho-core knows that this package does not write
_OTHER_CPUS = ("armv7m", "armv7", "riscv", "arm", "i386", "x86")


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother = 2, 60, 60
_SHOW.maxlist = _SHOW.maxdict = _SHOW.maxtuple = 4


def _show(value: Any) -> str:
    """A short repr of an untrusted value for a message: never expanded past a few items
    (a value may be a YAML alias bomb), control characters left to the CLI's escaping."""
    return _SHOW.repr(value)


class _Path:
    """The JSONPath-like location of a value, for error messages.

    Its text is built only when an error needs it: a large spec makes hundreds of
    thousands of paths and fails at most once.
    """

    __slots__ = ("_parent", "_part")

    def __init__(self, parent: _Path | None = None, part: str | int = "$"):
        self._parent = parent
        self._part = part

    @property
    def text(self) -> str:
        parts: list[str] = []
        node: _Path | None = self
        while node is not None:
            part = node._part
            parts.append(
                f"[{part}]" if type(part) is int else f".{part}" if node._parent else str(part)
            )
            node = node._parent
        return "".join(reversed(parts))

    def key(self, name: str) -> _Path:
        return _Path(self, name)

    def index(self, i: int) -> _Path:
        return _Path(self, i)

    def fail(self, message: str) -> SpecError:
        return SpecError(message, self.text)


def _mapping(value: Any, path: _Path, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise path.fail(f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            name = key if isinstance(key, str) and len(key) <= 80 else _show(key)
            raise path.key(name).fail(f"unknown key (expected one of: {', '.join(allowed)})")
    return value


def _list(value: Any, path: _Path) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise path.fail(f"expected a list, got {type(value).__name__}")
    return value


def _each(
    mapping: Mapping[str, Any], key: str, path: _Path, parse: Callable[[Any, _Path], _T]
) -> tuple[_T, ...]:
    """``mapping[key]`` (a list, or absent) with ``parse(item, path of item)`` on each."""
    where = path.key(key)
    return tuple(
        parse(item, where.index(i)) for i, item in enumerate(_list(mapping.get(key), where))
    )


def _int(value: Any, path: _Path, bits: int = 64) -> int:
    if type(value) is int and 0 <= value < (1 << bits):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise path.fail(f"{_show(value)} is not an integer") from None
        else:
            raise path.fail(f"{_show(value)} is not an integer")
    if not 0 <= value < (1 << bits):
        raise path.fail(f"{value:#x} does not fit in {bits} bits")
    return value


def _str(value: Any, path: _Path) -> str:
    if not isinstance(value, str):
        raise path.fail(f"{_show(value)} is not a string")
    return value


def _bool(value: Any, path: _Path) -> bool:
    if not isinstance(value, bool):
        raise path.fail(f"{_show(value)} is not true or false")
    return value


def _hex(value: Any, path: _Path) -> bytes:
    text = "".join(_str(value, path).split())
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise path.fail("not an even-length string of hex digits") from None


def _guard(path: _Path, build: Callable[[], Any]) -> Any:
    """Build a model object, reporting a model invariant as a spec error at ``path``."""
    try:
        return build()
    except SpecError:
        raise
    except MacMiniDumpError as e:
        raise path.fail(str(e)) from None


# --------------------------------------------------------------------------- load


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or JSON spec file into a dict."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang (`build <(gen)` still works)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                raise SpecError("not a regular file or a pipe", str(path))
            os.set_blocking(fd, True)
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"cannot read spec: {e.strerror}", str(path)) from None
    return parse_spec_text(data, str(path))


def parse_spec_text(text: str | bytes, where: str = "$") -> dict[str, Any]:
    """YAML or JSON text → the spec as a dict; every failure is one SpecError.

    JSON is read by the JSON parser (tens of times faster than any YAML parser, and
    yaml is not even imported); anything else, YAML flow mappings included, by PyYAML's
    libyaml-based loader when it is built with it.
    """
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"larger than {MAX_SPEC_BYTES >> 20} MiB: not a spec", where)
    try:
        data = _load_json(text)
        if data is _NOT_JSON:
            data = _load_yaml(text, where)
            # only YAML has aliases: bound what the document expands to before any use
            check_spec_expansion(data, len(text), where)
    except SpecError:
        raise
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start})", where) from None
    except (RecursionError, ValueError) as e:
        # PyYAML lets these through: nesting deeper than Python's stack, ints over 4300 digits
        what = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]
        raise SpecError(f"not a spec this reader accepts: {what}", where) from None
    if not isinstance(data, dict):
        raise SpecError("a spec is a mapping with at least a 'cpu' key", where)
    return data


_NOT_JSON = object()


def _load_json(text: str | bytes) -> Any:
    """The document if ``text`` is a JSON object, else ``_NOT_JSON`` (YAML will say why)."""
    if text.lstrip()[:1] not in (b"{", "{"):
        return _NOT_JSON
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return _NOT_JSON  # e.g. a YAML flow mapping, {cpu: arm64}


def _load_yaml(text: str | bytes, where: str) -> Any:
    import yaml

    # libyaml's parser with the safe constructor: the same documents, several times faster
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        try:
            return yaml.load(text, Loader=loader)
        except yaml.YAMLError as e:
            # libyaml rejects "\uDCF8", the escape to-spec writes for a path's
            # undecodable byte (a lone surrogate, as os.fsdecode gives): PyYAML's own
            # parser reads it. Anything else wrong is wrong for both.
            if loader is yaml.SafeLoader or "Unicode character escape" not in str(e):
                raise
            return yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"not valid YAML{at}: {problem}", where) from None


def load_spec(path: str | os.PathLike[str]) -> Snapshot:
    """A spec file → Snapshot; binaries named relatively are found beside the file."""
    return snapshot_from_spec(read_spec(path), base_dir=os.path.dirname(os.fspath(path)))


def spec_format(spec: Mapping[str, Any]) -> str:
    """The file format a spec asks for: ``macho`` (the default) or ``elf``."""
    fmt = spec.get("format", "macho")
    if fmt not in FORMATS:
        raise SpecError(
            f"unknown format {_show(fmt)} (expected one of: {', '.join(FORMATS)})", "$.format"
        )
    return str(fmt)


_TOP_KEYS = (
    "format",
    "cpu",
    "addressable-bits",
    "threads",
    "memory-regions",
    "binaries",
    "raw-notes",
    "raw-commands",
    "process",
    "signal",
    "auxv",
    "file-mappings",
    "memory-selection",
)


def snapshot_from_spec(spec: Mapping[str, Any], base_dir: str | None = None) -> Snapshot:
    """A spec (as read by ``read_spec``) → Snapshot; every mistake is one SpecError."""
    # A large spec makes tens of thousands of objects, none in a cycle, beside a document
    # of as many: the cyclic collector's passes over them free nothing and took about a
    # third of the time (1,000 threads, 10,000 regions).
    if not gc.isenabled():
        return _snapshot_from_spec(spec, base_dir)
    gc.disable()
    try:
        return _snapshot_from_spec(spec, base_dir)
    finally:
        gc.enable()


def _snapshot_from_spec(spec: Mapping[str, Any], base_dir: str | None) -> Snapshot:
    root = _Path()
    spec = _mapping(spec, root, _TOP_KEYS)
    spec_format(spec)
    if "cpu" not in spec:
        raise root.fail("missing key 'cpu' (arm64 or x86_64)")
    cpu = _str(spec["cpu"], root.key("cpu"))
    if cpu not in [a.value for a in Arch]:
        known = "a CPU macminidump does not write" if cpu in _OTHER_CPUS else "an unknown CPU"
        raise root.key("cpu").fail(f"{_show(cpu)} is {known}; supported: arm64, x86_64")
    arch = Arch(cpu)
    # threads need their index too: a thread without an id gets it
    where = root.key("threads")
    threads = tuple(
        _thread(t, where.index(i), arch, i) for i, t in enumerate(_list(spec.get("threads"), where))
    )
    regions = _plain_regions(spec.get("memory-regions"))
    if regions is None:
        regions = _each(spec, "memory-regions", root, _region)
    images = _each(spec, "binaries", root, lambda b, at: _binary(b, at, base_dir))
    bits = None
    if spec.get("addressable-bits") is not None:
        bits = _addressable_bits(spec["addressable-bits"], root.key("addressable-bits"))
    raw_notes = _each(spec, "raw-notes", root, _raw)
    raw_commands = _each(spec, "raw-commands", root, _raw)
    process = None
    if spec.get("process") is not None:
        process = _process(spec["process"], root.key("process"))
    signal = None
    if spec.get("signal") is not None:
        signal = _signal(spec["signal"], root.key("signal"))
    auxv = _each(spec, "auxv", root, _auxv_entry)
    file_mappings = _each(spec, "file-mappings", root, _file_mapping)
    selection = None
    if spec.get("memory-selection") is not None:
        selection = _memory_selection(spec["memory-selection"], root.key("memory-selection"))
    return _guard(
        root,
        lambda: Snapshot(
            arch=arch,
            threads=threads,
            regions=regions,
            images=images,
            addressable_bits=bits,
            process=process,
            signal=signal,
            auxv=auxv,
            file_mappings=file_mappings,
            memory_selection=selection,
            raw_notes=raw_notes,
            raw_commands=raw_commands,
        ),
    )


_SELECTION_KEYS = ("policy", "max-size", "omitted-bytes", "omitted-count", "omitted")


def _memory_selection(value: Any, path: _Path) -> MemorySelection:
    m = _mapping(value, path, _SELECTION_KEYS)
    if "policy" not in m:
        raise path.fail("missing key 'policy' (stacks, referenced, dirty or full)")
    omitted = _each(m, "omitted", path, _omitted)
    max_size = m.get("max-size")
    return _guard(
        path,
        lambda: MemorySelection(
            policy=_str(m["policy"], path.key("policy")),
            max_size=None if max_size is None else _int(max_size, path.key("max-size")),
            omitted_bytes=_int(m.get("omitted-bytes", 0), path.key("omitted-bytes")),
            omitted_count=_int(m.get("omitted-count", 0), path.key("omitted-count")),
            omitted=omitted,
        ),
    )


def _omitted(value: Any, path: _Path) -> OmittedRange:
    o = _mapping(value, path, ("address", "size", "kind"))
    for key in ("address", "size", "kind"):
        if key not in o:
            raise path.fail(f"missing key {key!r}")
    return OmittedRange(
        _int(o["address"], path.key("address")),
        _int(o["size"], path.key("size")),
        _str(o["kind"], path.key("kind")),
    )


def _signed(value: Any, path: _Path, bits: int = 32) -> int:
    """A two's-complement integer (si_code is negative for signals sent by a process)."""
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise path.fail(f"{_show(value)} is not an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise path.fail(f"{_show(value)} is not an integer")
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise path.fail(f"{value} does not fit in a signed {bits}-bit integer")
    return value


_PROCESS_KEYS = ("pid", "ppid", "pgrp", "sid", "uid", "gid", "name", "args")


def _process(value: Any, path: _Path) -> ProcessInfo:
    p = _mapping(value, path, _PROCESS_KEYS)
    kwargs: dict[str, Any] = {}
    for key in ("pid", "ppid", "pgrp", "sid"):
        if key in p:
            kwargs[key] = _signed(p[key], path.key(key))
    for key in ("uid", "gid"):
        if key in p:
            kwargs[key] = _int(p[key], path.key(key), 32)
    for key in ("name", "args"):
        if key in p:
            kwargs[key] = _str(p[key], path.key(key))
    return _guard(path, lambda: ProcessInfo(**kwargs))


def _signal(value: Any, path: _Path) -> SignalInfo:
    s = _mapping(value, path, ("signo", "code", "errno", "address"))
    if "signo" not in s:
        raise path.fail("missing key 'signo' (the signal number, e.g. 11 for SIGSEGV)")
    address = s.get("address")
    return _guard(
        path,
        lambda: SignalInfo(
            signo=_signed(s["signo"], path.key("signo")),
            code=_signed(s.get("code", 0), path.key("code")),
            errno=_signed(s.get("errno", 0), path.key("errno")),
            address=None if address is None else _int(address, path.key("address")),
        ),
    )


def _auxv_entry(value: Any, path: _Path) -> tuple[int, int]:
    a = _mapping(value, path, ("type", "value"))
    for key in ("type", "value"):
        if key not in a:
            raise path.fail(f"missing key {key!r}")
    return (_int(a["type"], path.key("type")), _int(a["value"], path.key("value")))


def _file_mapping(value: Any, path: _Path) -> FileMapping:
    m = _mapping(value, path, ("start", "end", "offset", "path"))
    for key in ("start", "end", "path"):
        if key not in m:
            raise path.fail(f"missing key {key!r}")
    return _guard(
        path,
        lambda: FileMapping(
            _int(m["start"], path.key("start")),
            _int(m["end"], path.key("end"), 65),
            _int(m.get("offset", 0), path.key("offset")),
            _str(m["path"], path.key("path")),
        ),
    )


_THREAD_KEYS = ("thread-id", "name", "crashed", "regsets", "xsave", "raw-states")
_FLAVOR_OF = {kind.value: kind for kind in RegKind}
_NAME_AND_VALUE = operator.itemgetter("name", "value")


@functools.cache
def _bounds(arch: Arch, kind: RegKind) -> dict[str, int]:
    """Register name -> the first value too large for it (of ``arch``'s ``kind`` set)."""
    return {name: 1 << (8 * width) for name, width in arch_info(arch).registers[kind].items()}


def _plain_registers(registers: Any, bounds: dict[str, int]) -> dict[str, int] | None:
    """A list of ``{name: known register, value: int that fits}``, each name once, checked
    in bulk without a path; None for anything else (the loop in ``_thread`` says what)."""
    if type(registers) is not list:
        return None
    try:
        values = dict(map(_NAME_AND_VALUE, registers))
    except (KeyError, TypeError, IndexError, ValueError):
        return None
    if (
        len(values) != len(registers)
        or set(map(type, registers)) != {dict}
        or set(map(len, registers)) != {2}
        or not values.keys() <= bounds.keys()
        or set(map(type, values.values())) != {int}
        or min(values.values()) < 0
        or not all(map(operator.lt, values.values(), map(bounds.__getitem__, values)))
    ):
        return None
    return values


def _thread(value: Any, path: _Path, arch: Arch, index: int) -> Thread:
    t = _mapping(value, path, _THREAD_KEYS)
    regsets = []
    info = arch_info(arch)
    for i, rs in enumerate(_list(t.get("regsets"), path.key("regsets"))):
        if type(rs) is not dict or not rs.keys() <= {"flavor", "registers"}:
            rs = _mapping(rs, path.key("regsets").index(i), ("flavor", "registers"))
        flavor = rs.get("flavor")
        kind = _FLAVOR_OF.get(flavor) if isinstance(flavor, str) else None
        if kind is None:
            raise (
                path.key("regsets")
                .index(i)
                .key("flavor")
                .fail(f"unknown flavor {_show(flavor)} (expected gpr, fpr or exc)")
            )
        given = rs.get("registers")
        values = {} if given is None else _plain_registers(given, _bounds(arch, kind))
        if values is None:
            values = {}
            rpath = path.key("regsets").index(i)
            widths = info.registers[kind]
            for j, reg in enumerate(_list(given, rpath.key("registers"))):
                gpath = rpath.key("registers").index(j)
                reg = _mapping(reg, gpath, ("name", "value"))
                name = _str(reg.get("name"), gpath.key("name"))
                width = widths.get(name)
                if width is None:
                    raise gpath.key("name").fail(
                        f"{arch} has no {kind} register {_show(name)} (known: {', '.join(widths)})"
                    )
                if name in values:
                    raise gpath.key("name").fail(f"register {_show(name)} given twice")
                values[name] = _int(reg.get("value"), gpath.key("value"), 8 * width)
        regsets.append(RegisterSet(kind, values))
    raw_states = _each(t, "raw-states", path, _raw) if t.get("raw-states") is not None else ()
    xsave = _hex(t["xsave"], path.key("xsave")) if "xsave" in t else None
    thread_id = t.get("thread-id", index)
    if type(thread_id) is not int or not 0 <= thread_id < (1 << 64):
        thread_id = _int(thread_id, path.key("thread-id"))
    thread_name = t.get("name")
    if thread_name is not None:
        thread_name = _str(thread_name, path.key("name"))
    crashed = t.get("crashed", False)
    if type(crashed) is not bool:
        crashed = _bool(crashed, path.key("crashed"))
    return _guard(
        path,
        lambda: Thread(
            id=thread_id,
            name=thread_name,
            crashed=crashed,
            regsets=tuple(regsets),
            raw_states=raw_states,
            xsave=xsave,
        ),
    )


_DATA_KEYS = {"UInt8": (1, "B"), "UInt32": (4, "I"), "UInt64": (8, "Q"), "hex": (0, "")}
_REGION_KEYS = ("addr", "protection", "max-protection", "name", *_DATA_KEYS)
_WORDS = {key: f"<%d{code}" for key, (_, code) in _DATA_KEYS.items() if code}


def _plain_region(r: dict[str, Any]) -> Region | None:
    """The common region, checked without building a path: an integer address, known
    protection texts, a name, and the bytes as a non-empty list of integers that fit.
    None for anything else: ``_region`` then says what is wrong, and where."""
    address = r.get("addr")
    if type(address) is not int:
        return None
    protection = max_protection = PROTECTIONS[3]
    name = ""
    data = None
    for key, value in r.items():
        if key == "addr":
            continue
        if key == "protection" or key == "max-protection":
            known = PROTECTION_OF_TEXT.get(value) if type(value) is str else None
            if known is None:
                return None
            if key == "protection":
                protection = known
            else:
                max_protection = known
        elif key == "name":
            if type(value) is not str:
                return None
            name = value
        elif key == "hex":
            if data is not None or type(value) is not str:
                return None
            try:
                data = bytes.fromhex(value)
            except ValueError:
                return None
        else:
            words = _WORDS.get(key)
            # bools pack as integers: only exact ints here (the slow path names a bool)
            if words is None or data is not None or type(value) is not list or not value:
                return None
            if set(map(type, value)) != {int}:
                return None
            try:
                data = struct.pack(words % len(value), *value)
            except struct.error:
                return None
    if not data or not 0 <= address <= (1 << 64) - len(data):
        return None
    if "max-protection" not in r:
        max_protection = protection
    return Region.trusted(address, BytesSource(data), protection, max_protection, name)


def _plain_regions(items: Any) -> tuple[Region, ...] | None:
    """Every region at once, when all are plain (as ``_plain_region`` takes them) and
    written with the same keys in the same order, as a generated spec writes them: the
    words of all regions checked and packed in one pass each. None for anything else:
    then region by region."""
    if type(items) is not list or not items or set(map(type, items)) != {dict}:
        return None
    shapes = set(map(tuple, items))
    if len(shapes) != 1:
        return None
    (keys,) = shapes
    if len(set(keys)) != len(keys) or "addr" not in keys or not set(keys) <= set(_REGION_KEYS):
        return None
    given = [k for k in keys if k in _DATA_KEYS]
    if len(given) != 1:
        return None
    key = given[0]
    addresses = list(map(operator.itemgetter("addr"), items))
    values = list(map(operator.itemgetter(key), items))
    if set(map(type, addresses)) != {int}:
        return None
    try:
        if key == "hex":
            if set(map(type, values)) != {str}:
                return None
            chunks = list(map(bytes.fromhex, values))
        else:
            if set(map(type, values)) != {list}:
                return None
            # bools pack as integers: only exact ints here (the slow path names a bool)
            if set(map(type, itertools.chain.from_iterable(values))) != {int}:
                return None
            width, code = _DATA_KEYS[key]
            counts = list(map(len, values))
            packed = struct.pack(f"<{sum(counts)}{code}", *itertools.chain.from_iterable(values))
            ends = list(itertools.accumulate(c * width for c in counts))
            chunks = list(map(packed.__getitem__, map(slice, [0, *ends[:-1]], ends)))
    except (struct.error, ValueError):
        return None
    sizes = list(map(len, chunks))
    if min(sizes) == 0 or min(addresses) < 0 or max(map(operator.add, addresses, sizes)) > 1 << 64:
        return None
    default: list[Any] = [PROTECTIONS[3]] * len(items)
    found: dict[str, list[Any]] = {}
    for name in ("protection", "max-protection"):
        if name in keys:
            texts = list(map(operator.itemgetter(name), items))
            if set(map(type, texts)) != {str}:
                return None
            found[name] = list(map(PROTECTION_OF_TEXT.get, texts))
            if None in found[name]:
                return None
    protections = found.get("protection", default)
    max_protections = found.get("max-protection", protections)
    names: Any = itertools.repeat("")
    if "name" in keys:
        names = list(map(operator.itemgetter("name"), items))
        if set(map(type, names)) != {str}:
            return None
    sources: Any = map(BytesSource, chunks)
    return tuple(map(Region.trusted, addresses, sources, protections, max_protections, names))


def _region(value: Any, path: _Path) -> Region:
    if type(value) is dict:
        region = _plain_region(value)
        if region is not None:
            return region
    r = _mapping(value, path, _REGION_KEYS)
    given = [k for k in _DATA_KEYS if k in r]
    if len(given) != 1:
        raise path.fail("give the bytes in exactly one of UInt8, UInt32, UInt64 or hex")
    key = given[0]
    if key == "hex":
        data = _hex(r[key], path.key(key))
    else:
        width, code = _DATA_KEYS[key]
        values = _list(r[key], path.key(key))
        data = b""
        if set(map(type, values)) <= {int}:  # the common case, checked in bulk
            with contextlib.suppress(struct.error):
                data = struct.pack(f"<{len(values)}{code}", *values)
        if not data:  # one by one, to name the value that does not fit
            items = [_int(v, path.key(key).index(i), 8 * width) for i, v in enumerate(values)]
            data = struct.pack(f"<{len(items)}{code}", *items)
    if not data:
        raise path.key(key).fail("a memory region needs at least one byte")
    kwargs: dict[str, Any] = {"address": _int(r.get("addr"), path.key("addr")), "data": data}
    if "protection" in r:
        kwargs["protection"] = _str(r["protection"], path.key("protection"))
    if "max-protection" in r:
        kwargs["max_protection"] = _str(r["max-protection"], path.key("max-protection"))
    if "name" in r:
        kwargs["name"] = _str(r["name"], path.key("name"))
    return _guard(path, lambda: Region(**kwargs))


def _binary(value: Any, path: _Path, base_dir: str | None) -> Image:
    from .macho_headers import read_headers_file

    b = _mapping(value, path, ("name", "uuid", "virtual-address", "slide", "main", "segments"))
    name: str = _str(b.get("name", ""), path.key("name"))
    if not name.isprintable() or "\0" in name:
        try:
            name.encode("utf-8", "surrogateescape")  # undecodable bytes, as parsed
        except UnicodeEncodeError:
            raise path.key("name").fail(f"{_show(name)} is not valid text") from None
    va = b.get("virtual-address")
    slide = b.get("slide")
    va = None if va is None else _int(va, path.key("virtual-address"))
    slide = None if slide is None else _int(slide, path.key("slide"))
    # yaml2macho-core's convention: UINT64_MAX means "not given"
    va = None if va == (1 << 64) - 1 else va
    slide = None if slide == (1 << 64) - 1 else slide
    if va is None and slide is None and "segments" not in b:
        raise path.fail("a binary needs 'virtual-address', 'slide' or 'segments'")

    file_path = os.path.join(base_dir, name) if base_dir and name else name
    info = None
    if name and os.path.isfile(file_path):
        # the file is read only for what the spec leaves out: a spec that gives both (as
        # to-spec writes them, of ELF binaries too) builds whatever the file is
        if "uuid" not in b or "segments" not in b:
            info = _guard(path.key("name"), lambda: read_headers_file(file_path))
        name = os.path.abspath(file_path)
    uuid = b.get("uuid")
    # an explicit `uuid: null` says "unknown"; a missing key means "read it from the file"
    if uuid is None and "uuid" not in b:
        if info is None:
            raise path.fail(f"no 'uuid' given and no file at {file_path!r} to read it from")
        uuid = info.uuid
    segments: tuple[ImageSegment, ...] = ()
    if "segments" in b:
        # given explicitly (as to-spec writes them): addresses and slide are taken as given
        segments = _each(b, "segments", path, _segment)
    elif info is not None:
        # from the file: one of address and slide gives the other, and the segments
        known = info
        va, slide = _guard(path.key("name"), lambda: known.place(va, slide))
        segments = known.segments_at(slide)
    return _guard(
        path,
        lambda: Image(
            path=name,
            uuid=uuid,
            load_address=va,
            slide=slide,
            segments=segments,
            main=_bool(b.get("main", False), path.key("main")),
        ),
    )


def _segment(value: Any, path: _Path) -> ImageSegment:
    s = _mapping(value, path, ("name", "addr", "size"))
    return ImageSegment(
        _str(s.get("name"), path.key("name")),
        _int(s.get("addr"), path.key("addr")),
        _int(s.get("size", 0), path.key("size")),
    )


def _addressable_bits(value: Any, path: _Path) -> AddressableBits:
    a = _mapping(value, path, ("num-bits", "lowmem-num-bits", "highmem-num-bits"))
    if "num-bits" in a:
        # yaml2macho-core: num-bits, when given, sets both and the others are ignored
        n = _int(a["num-bits"], path.key("num-bits"))
        low = high = n
    else:
        # yaml2macho-core: a side not given is the word size
        low = _int(a.get("lowmem-num-bits", 64), path.key("lowmem-num-bits"))
        high = _int(a.get("highmem-num-bits", 64), path.key("highmem-num-bits"))
    return _guard(path, lambda: AddressableBits(low, high))


def _raw(value: Any, path: _Path) -> RawItem:
    r = _mapping(value, path, ("format", "kind", "owner", "hex"))
    return RawItem(
        format=_str(r.get("format", "macho"), path.key("format")),
        kind=_int(r.get("kind", 0), path.key("kind"), 32),
        owner=_str(r.get("owner", ""), path.key("owner")),
        data=_hex(r.get("hex", ""), path.key("hex")),
    )


# --------------------------------------------------------------------------- dump


def spec_from_snapshot(snapshot: Snapshot, fmt: str = "macho") -> dict[str, Any]:
    """A spec that rebuilds ``snapshot`` exactly (memory as hex: meant for small cores)."""
    info = arch_info(snapshot.arch)
    spec: dict[str, Any] = {"cpu": snapshot.arch.value}
    if fmt != "macho":
        spec = {"format": fmt, **spec}
    if snapshot.addressable_bits is not None:
        b = snapshot.addressable_bits
        spec["addressable-bits"] = (
            {"num-bits": b.low}
            if b.low == b.high
            else {"lowmem-num-bits": b.low, "highmem-num-bits": b.high}
        )
    threads = []
    for t in snapshot.threads:
        entry: dict[str, Any] = {"thread-id": t.id}
        if t.name is not None:
            entry["name"] = t.name
        if t.crashed:
            entry["crashed"] = True
        entry["regsets"] = [
            {
                "flavor": rs.kind.value,
                "registers": [
                    {"name": n, "value": rs.values[n]}
                    for n in info.registers[rs.kind]
                    if n in rs.values
                ],
            }
            for rs in t.regsets
        ]
        if t.xsave is not None:
            entry["xsave"] = t.xsave.hex()
        if t.raw_states:
            entry["raw-states"] = [_raw_spec(r) for r in t.raw_states]
        threads.append(entry)
    spec["threads"] = threads
    regions = []
    for r in snapshot.regions:
        entry = {"addr": r.address, "protection": r.protection.text()}
        if r.max_protection != r.protection:
            entry["max-protection"] = r.max_protection.text()
        if r.name:
            entry["name"] = r.name
        entry["hex"] = content_of(r.data).hex()
        regions.append(entry)
    spec["memory-regions"] = regions
    binaries = []
    for image in snapshot.images:
        entry = {"name": image.path}
        entry["uuid"] = str(image.uuid).upper() if image.uuid is not None else None
        if image.load_address is not None:
            entry["virtual-address"] = image.load_address
        if image.slide is not None:
            entry["slide"] = image.slide
        if image.main:
            entry["main"] = True
        entry["segments"] = [
            {"name": s.name, "addr": s.address, "size": s.size} for s in image.segments
        ]
        binaries.append(entry)
    spec["binaries"] = binaries
    if snapshot.process is not None:
        spec["process"] = records.asdict(snapshot.process)
    if snapshot.signal is not None:
        sig = records.asdict(snapshot.signal)
        spec["signal"] = {k: v for k, v in sig.items() if v is not None}
    if snapshot.auxv:
        spec["auxv"] = [{"type": k, "value": v} for k, v in snapshot.auxv]
    if snapshot.file_mappings:
        spec["file-mappings"] = [records.asdict(m) for m in snapshot.file_mappings]
    if snapshot.memory_selection is not None:
        sel = snapshot.memory_selection
        spec["memory-selection"] = {
            "policy": sel.policy,
            "max-size": sel.max_size,
            "omitted-bytes": sel.omitted_bytes,
            "omitted-count": sel.omitted_count,
            "omitted": [records.asdict(o) for o in sel.omitted],
        }
    if snapshot.raw_notes:
        spec["raw-notes"] = [_raw_spec(r) for r in snapshot.raw_notes]
    if snapshot.raw_commands:
        spec["raw-commands"] = [_raw_spec(r) for r in snapshot.raw_commands]
    return spec


def _raw_spec(item: RawItem) -> dict[str, Any]:
    out: dict[str, Any] = {"format": item.format, "kind": item.kind}
    if item.owner:
        out["owner"] = item.owner
    out["hex"] = item.data.hex()
    return out


def dump_spec(snapshot: Snapshot, fmt: str = "macho", as_json: bool = False) -> str:
    spec = spec_from_snapshot(snapshot, fmt)
    if as_json:
        return json.dumps(spec, indent=2) + "\n"
    import yaml

    # the pure-Python emitter: libyaml's cannot write a path's undecodable bytes (surrogates)
    class HexDumper(yaml.SafeDumper):
        """Writes integers in hex, as addresses and registers read best."""

    HexDumper.add_representer(
        int, lambda dumper, v: dumper.represent_scalar("tag:yaml.org,2002:int", hex(v))
    )
    HexDumper.add_representer(
        bool, lambda dumper, v: dumper.represent_scalar("tag:yaml.org,2002:bool", str(v).lower())
    )
    return yaml.dump(spec, Dumper=HexDumper, sort_keys=False, width=100)
