"""The Snapshot: what a debugger needs of a process, in no file format and of no OS.

Capture backends and parsers build Snapshots; renderers and the spec read them. Every
class is frozen and validated when built, so an impossible state (overlapping regions,
a register the architecture lacks, a 17-byte UUID) fails where it is made, not later
when a file is written.
"""

from __future__ import annotations

import _operator as operator  # (the C core: operator.py re-declares it in Python, ~0.4 ms)
import struct
from types import MappingProxyType

from . import records
from .arch import Arch, RegKind, arch_info
from .errors import ModelError
from .plain_enum import IntFlag
from .plain_typing import Iterable, Iterator, Mapping, Protocol, runtime_checkable

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    import uuid as uuid_mod
    from functools import cached_property
    from typing import Any
else:

    class cached_property:
        """functools.cached_property's effect (computed on first use, then a plain
        attribute of the instance) without functools, which a dump does not import."""

        def __init__(self, compute):
            self.compute = compute
            self.name = compute.__name__
            self.__doc__ = compute.__doc__

        def __get__(self, instance, owner=None):
            if instance is None:
                return self
            value = instance.__dict__[self.name] = self.compute(instance)
            return value


U64_MAX = (1 << 64) - 1


class Protection(IntFlag):
    NONE = 0
    READ = 1
    WRITE = 2
    EXECUTE = 4

    @classmethod
    def parse(cls, text: str) -> Protection:
        """``"rw-"`` → READ|WRITE. Exactly three characters, each a letter or ``-``."""
        if len(text) != 3 or any(c not in f"{flag}-" for c, flag in zip(text, "rwx")):
            raise ModelError(f"protection {text!r} is not of the form 'rwx' (e.g. 'rw-', 'r-x')")
        result = cls.NONE
        for c, flag in zip(text, (cls.READ, cls.WRITE, cls.EXECUTE)):
            if c != "-":
                result |= flag
        return result

    def text(self) -> str:
        return "".join(
            c if self & flag else "-"
            for c, flag in zip("rwx", (Protection.READ, Protection.WRITE, Protection.EXECUTE))
        )


def _to_protection(value: Any) -> Protection:
    if type(value) is Protection:
        return value
    if type(value) is int and 0 <= value <= 7:
        return PROTECTIONS[value]  # Protection(value) costs microseconds per region
    if isinstance(value, str):
        known = PROTECTION_OF_TEXT.get(value)
        return known if known is not None else Protection.parse(value)
    if isinstance(value, int) and 0 <= value <= 7:
        return Protection(value)
    raise ModelError(f"protection {value!r} is neither 'rwx' text nor an int 0-7")


#: Protection(n) for n in 0..7, looked up instead of built (an enum call costs microseconds)
PROTECTIONS = tuple(Protection(i) for i in range(8))
#: "rw-" -> Protection, for specs of many regions
PROTECTION_OF_TEXT = {p.text(): p for p in PROTECTIONS}

# --------------------------------------------------------------------------- memory data


@runtime_checkable
class DataSource(Protocol):
    """Bytes of one region, read on demand so a core's memory never has to be in RAM."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def chunks(self, chunk_size: int) -> Iterator[bytes | memoryview]: ...


class BytesSource:
    """Bytes held in memory (a spec's, a capture's small regions).

    A plain slotted class, not attrs: a spec of 10,000 regions makes 10,000 of them, and
    attrs' frozen __init__ with a converter costs several times this one.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview):
        self.data = data if type(data) is bytes else bytes(data)

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def chunks(self, chunk_size: int) -> Iterator[memoryview]:
        view = memoryview(self.data)
        for start in range(0, len(view), chunk_size):
            yield view[start : start + chunk_size]

    def __repr__(self) -> str:
        return f"BytesSource(<{len(self.data)} bytes>)"


class BufferSource:
    """A window of a larger buffer (an mmap of a core file): nothing is copied until read.

    A plain slotted class, not attrs: a parser makes one per segment (10,000 in a large
    core) and attrs' frozen __init__ costs three times as much.
    """

    __slots__ = ("buffer", "offset", "length")

    def __init__(self, buffer: Any, offset: int, length: int):
        # anything memoryview() accepts: mmap, bytes, bytearray
        self.buffer = buffer
        self.offset = offset
        self.length = length

    @property
    def size(self) -> int:
        return self.length

    def read(self, offset: int, length: int) -> bytes:
        start = self.offset + offset
        end = self.offset + min(self.length, offset + length)
        return bytes(memoryview(self.buffer)[start:end])

    def chunks(self, chunk_size: int) -> Iterator[memoryview]:
        view = memoryview(self.buffer)
        for start in range(0, self.length, chunk_size):
            yield view[self.offset + start : self.offset + min(self.length, start + chunk_size)]

    def __repr__(self) -> str:
        return f"BufferSource(<{self.length} bytes at {self.offset:#x}>)"


def content_of(source: DataSource) -> bytes:
    """All bytes of a source: for comparisons and small regions, not for bulk memory."""
    return source.read(0, source.size)


def _to_source(value: Any) -> DataSource:
    if type(value) is BufferSource or type(value) is BytesSource:
        return value  # isinstance() against a runtime_checkable Protocol costs ~30 us
    if isinstance(value, (bytes, bytearray, memoryview)):
        return BytesSource(bytes(value))
    if isinstance(value, DataSource):
        return value
    raise ModelError(f"region data must be bytes or a DataSource, not {type(value).__name__}")


def _as_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _check_u64(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64_MAX:
        raise ModelError(f"{name} {value!r} is not an unsigned 64-bit integer")


@records.frozen(kw_only=True)
class Region:
    """Memory saved in the core: the half-open range [address, address + size)."""

    address: int
    # equal content is equal data, whether it sits in bytes or in an mmap of a file
    data: DataSource = records.field(converter=_to_source, eq=content_of)
    protection: Protection = records.field(default=Protection(3), converter=_to_protection)
    #: the most the region could ever be given (Mach-O ``maxprot``); defaults to protection
    max_protection: Protection = records.field(
        default=records.Factory(lambda self: self.protection, takes_self=True),
        converter=_to_protection,
    )
    #: a label kept from the file (Mach-O segname); empty for most cores
    name: str = ""

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def end(self) -> int:
        return self.address + self.size

    def contains(self, address: int) -> bool:
        return self.address <= address < self.end

    @classmethod
    def trusted(
        cls,
        address: int,
        data: DataSource,
        protection: Protection,
        max_protection: Protection,
        name: str,
    ) -> Region:
        """For parsers, with values already typed: skips the converters, not the checks.

        A large core has tens of thousands of segments; attrs' converting __init__ costs
        several microseconds each, this one under one.
        """
        size = data.size
        if size <= 0 or not 0 <= address or address + size > U64_MAX + 1:
            return cls(address=address, data=data, protection=protection)  # raises
        region = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(region, "address", address)
        setattr_(region, "data", data)
        setattr_(region, "protection", protection)
        setattr_(region, "max_protection", max_protection)
        setattr_(region, "name", name)
        return region

    def __attrs_post_init__(self) -> None:
        address, size = self.address, self.data.size
        if type(address) is not int:
            _check_u64("region address", address)
        if size <= 0:
            raise ModelError(f"region at {address:#x} is empty")
        if not 0 <= address or address + size > U64_MAX + 1:
            raise ModelError(f"region at {address:#x} of {size:#x} bytes is outside 0..2^64")


# --------------------------------------------------------------------------- threads


def _to_registers(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


def _to_kind(value: Any) -> RegKind:
    return value if type(value) is RegKind else RegKind(value)  # (an enum call costs ~1 us)


@records.frozen
class RegisterSet:
    kind: RegKind = records.field(converter=_to_kind)
    # a read-only view; hashed by its items because a mappingproxy is unhashable
    values: Mapping[str, int] = records.field(
        converter=_to_registers,
        hash=False,
        eq=records.cmp_using(eq=lambda a, b: dict(a) == dict(b)),
    )

    def __reduce__(self) -> tuple[Any, ...]:
        # a mappingproxy cannot be pickled: rebuild from a plain dict
        return (RegisterSet, (self.kind, dict(self.values)))

    @classmethod
    def trusted(cls, kind: RegKind, values: Mapping[str, int]) -> RegisterSet:
        """For backends, with ``kind`` a RegKind already: the values copied behind a
        read-only view as the converter does, without the converters' calls (a
        1,000-thread capture makes 2,000 sets)."""
        if type(kind) is not RegKind:
            return cls(kind, values)
        regset = object.__new__(cls)
        fields = regset.__dict__  # (as records' __init__ sets a frozen record's fields)
        fields["kind"] = kind
        fields["values"] = MappingProxyType(dict(values))
        return regset


@records.frozen
class RawItem:
    """A part of a file this package does not model, kept so it can be written back as-is.

    ``format`` is the file format it came from ("macho", "elf"); ``kind`` is that format's
    own tag (thread-state flavor, load command, note type); ``owner`` names a note's owner.
    """

    format: str
    kind: int
    data: bytes = records.field(converter=bytes, repr=lambda d: f"<{len(d)} bytes>")
    owner: str = ""


_KIND_ORDER = {kind: i for i, kind in enumerate(RegKind)}


def _to_regsets(
    value: Iterable[RegisterSet] | Mapping[Any, Mapping[str, int]],
) -> tuple[RegisterSet, ...]:
    """Canonical order gpr, fpr, exc: sets are keyed by kind, so their order means nothing."""
    if isinstance(value, Mapping):
        value = [RegisterSet(RegKind(k), v) for k, v in value.items()]
    return tuple(sorted(value, key=_kind_rank))


def _kind_rank(regset: RegisterSet) -> int:
    return _KIND_ORDER[regset.kind]


@records.frozen(kw_only=True)
class Thread:
    id: int
    regsets: tuple[RegisterSet, ...] = records.field(converter=_to_regsets)
    name: str | None = None
    crashed: bool = False
    raw_states: tuple[RawItem, ...] = records.field(default=(), converter=_as_tuple)
    #: x86_64 only: the XSAVE area (standard format, the features debuggers know), which
    #: holds the AVX, AVX-512 and PKRU state beyond the ``fpr`` set; None when not known
    xsave: bytes | None = records.field(
        default=None,
        converter=records.optional(bytes),
        repr=lambda d: "None" if d is None else f"<{len(d)} bytes>",
    )

    def __attrs_post_init__(self) -> None:
        _check_u64("thread id", self.id)
        regsets = self.regsets
        # in kind order (the converter's): two of one kind are neighbours
        if len(regsets) > 1 and any(a.kind == b.kind for a, b in zip(regsets, regsets[1:])):
            raise ModelError(f"thread {self.id:#x} has two register sets of one kind")

    @classmethod
    def trusted(
        cls,
        id: int,
        regsets: tuple[RegisterSet, ...],
        name: str | None,
        crashed: bool,
        raw_states: tuple[RawItem, ...],
        xsave: bytes | None,
    ) -> Thread:
        """For backends, with values already typed (tuples, bytes): skips the converters
        (the register sets still put in kind order), not the checks."""
        if type(regsets) is not tuple or type(raw_states) is not tuple:
            return cls(
                id=id,
                regsets=regsets,
                name=name,
                crashed=crashed,
                raw_states=raw_states,
                xsave=xsave,
            )
        thread = object.__new__(cls)
        fields = thread.__dict__  # (as records' __init__ sets a frozen record's fields)
        fields["id"] = id
        fields["regsets"] = _to_regsets(regsets) if len(regsets) > 1 else regsets
        fields["name"] = name
        fields["crashed"] = crashed
        fields["raw_states"] = raw_states
        fields["xsave"] = xsave if xsave is None or type(xsave) is bytes else bytes(xsave)
        thread.__attrs_post_init__()
        return thread

    def regset(self, kind: RegKind | str) -> Mapping[str, int]:
        for r in self.regsets:
            if r.kind == kind:
                return r.values
        return MappingProxyType({})

    @property
    def gpr(self) -> Mapping[str, int]:
        return self.regset(RegKind.GPR)

    @property
    def exception(self) -> Mapping[str, int]:
        return self.regset(RegKind.EXC)


# --------------------------------------------------------------------------- images


def _to_uuid(value: Any) -> uuid_mod.UUID | None:
    if value is None:
        return value
    # imported here: uuid imports platform (2.5 ms of a dump), and ELF images have none
    import uuid as uuid_mod

    if isinstance(value, uuid_mod.UUID):
        return value
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 16:
            raise ModelError(f"a UUID is 16 bytes, not {len(value)}")
        return uuid_mod.UUID(bytes=bytes(value))
    if isinstance(value, str):
        try:
            return uuid_mod.UUID(value)
        except ValueError:
            raise ModelError(f"{value!r} is not a UUID") from None
    raise ModelError(f"{value!r} is not a UUID")


@records.frozen
class ImageSegment:
    """A segment of a loaded binary, at its address in the process (slide applied)."""

    name: str
    address: int
    size: int = 0


@records.frozen(kw_only=True)
class Image:
    """A binary loaded in the process: the executable, a library, dyld."""

    path: str
    uuid: uuid_mod.UUID | None = records.field(default=None, converter=_to_uuid)
    #: address of the Mach-O/ELF header in memory; None when only the slide is known
    load_address: int | None = None
    #: distance from the file's preferred address; None when unknown
    slide: int | None = None
    segments: tuple[ImageSegment, ...] = records.field(default=(), converter=_as_tuple)
    main: bool = False
    #: the identifier the linker wrote into an ELF binary (its GNU build-id, 8 to 64
    #: bytes): what debuginfod and symbol servers look binaries up by (Mach-O: ``uuid``)
    build_id: bytes | None = records.field(default=None, converter=records.optional(bytes))

    def __attrs_post_init__(self) -> None:
        if self.load_address is None and self.slide is None and not self.segments:
            raise ModelError(f"image {self.path!r} has no load address, slide or segments")
        if self.build_id is not None and not 1 <= len(self.build_id) <= 64:
            raise ModelError(f"image {self.path!r}: a build-id of {len(self.build_id)} bytes")
        for name in ("load_address", "slide"):
            value = getattr(self, name)
            if value is not None:
                _check_u64(f"image {self.path!r} {name}", value)


@records.frozen
class AddressableBits:
    """How many low bits of an address are significant (the rest is pointer auth / tags)."""

    low: int
    high: int

    def __attrs_post_init__(self) -> None:
        for v in (self.low, self.high):
            if not isinstance(v, int) or not 1 <= v <= 64:
                raise ModelError(f"addressable bits {v!r} is not within 1..64")

    def strip(self, address: int) -> int:
        return address & ((1 << self.low) - 1)


# --------------------------------------------------------------------------- process facts


@records.frozen(kw_only=True)
class ProcessInfo:
    """Who the process was (ELF's NT_PRPSINFO and NT_PRSTATUS carry these)."""

    pid: int = 0
    ppid: int = 0
    pgrp: int = 0
    sid: int = 0
    uid: int = 0
    gid: int = 0
    #: the short command name (Linux comm, 15 bytes at most in a core)
    name: str = ""
    #: the command line, arguments separated by spaces (80 bytes at most in a core)
    args: str = ""


@records.frozen(kw_only=True)
class SignalInfo:
    """The signal that stopped (crashed) the process; ``address`` for faults, else None."""

    signo: int
    code: int = 0
    errno: int = 0
    address: int | None = None


@records.frozen
class FileMapping:
    """A file mapped into the process: [start, end) shows the file from byte ``offset``."""

    start: int
    end: int
    offset: int
    path: str

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.start < self.end <= U64_MAX + 1:
            raise ModelError(f"file mapping [{self.start:#x}, {self.end:#x}) is empty or wraps")


@records.frozen
class OmittedRange:
    """Memory a capture wanted and left out to stay within its size budget."""

    address: int
    size: int
    #: why it was wanted: "crashed-thread-stack", "stack", "headers-and-code", "included",
    #: "referenced", "rest"
    kind: str


@records.frozen(kw_only=True)
class MemorySelection:
    """How a live capture chose the memory it saved: the policy, the size budget, and
    what the budget cut (the largest ``omitted`` ranges; the totals count them all)."""

    policy: str
    max_size: int | None = None
    omitted_bytes: int = 0
    omitted_count: int = 0
    omitted: tuple[OmittedRange, ...] = records.field(default=(), converter=_as_tuple)


def _to_auxv(value: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out = tuple((int(k), int(v)) for k, v in value)
    for k, v in out:
        _check_u64("auxv type", k)
        _check_u64("auxv value", v)
    return out


# --------------------------------------------------------------------------- snapshot


@records.frozen(kw_only=True)
class Snapshot:
    arch: Arch = records.field(converter=Arch)
    threads: tuple[Thread, ...] = records.field(default=(), converter=_as_tuple)
    regions: tuple[Region, ...] = records.field(default=(), converter=_as_tuple)
    images: tuple[Image, ...] = records.field(default=(), converter=_as_tuple)
    addressable_bits: AddressableBits | None = None
    process: ProcessInfo | None = None
    #: the signal a crash died of (with the crashed thread marked in ``threads``)
    signal: SignalInfo | None = None
    #: the ELF auxiliary vector, (type, value) pairs without the terminating AT_NULL
    auxv: tuple[tuple[int, int], ...] = records.field(default=(), converter=_to_auxv)
    file_mappings: tuple[FileMapping, ...] = records.field(default=(), converter=_as_tuple)
    #: how a live capture chose the memory saved (None for a core from elsewhere)
    memory_selection: MemorySelection | None = None
    #: notes and load commands of the file this came from that the model does not hold
    raw_notes: tuple[RawItem, ...] = records.field(default=(), converter=_as_tuple)
    raw_commands: tuple[RawItem, ...] = records.field(default=(), converter=_as_tuple)
    #: what a live capture had to leave out, and why (a thread that exited while it was
    #: read); a message per item, not stored in any file
    warnings: tuple[str, ...] = records.field(default=(), converter=_as_tuple)

    def __attrs_post_init__(self) -> None:
        _validate_threads(self.arch, self.threads)
        _validate_regions(self.regions)
        if sum(1 for i in self.images if i.main) > 1:
            raise ModelError("more than one image is marked main")

    @cached_property
    def memory(self) -> AddressSpace:
        return AddressSpace(self.regions)

    @property
    def crashed_thread(self) -> Thread | None:
        return next((t for t in self.threads if t.crashed), None)

    @property
    def main_image(self) -> Image | None:
        return next((i for i in self.images if i.main), None)


def _validate_threads(arch: Arch, threads: tuple[Thread, ...]) -> None:
    info = arch_info(arch)
    seen: set[int] = set()
    # every set at once first; only if one does not fit, set by set (which raises then,
    # in the order and with the message of the first that does not fit)
    each_set = not _all_registers_fit(arch, threads)
    for t in threads:
        if t.id in seen:
            raise ModelError(f"two threads have id {t.id:#x}")
        seen.add(t.id)
        if t.xsave is not None and arch != Arch.X86_64:
            raise ModelError(f"thread {t.id:#x}: an XSAVE area is x86_64's, not {arch}'s")
        if not each_set:
            continue
        for regset in t.regsets:
            if _registers_fit(arch, regset.kind, regset.values):
                continue
            table = info.registers[regset.kind]
            for name, value in regset.values.items():
                width = table.get(name)
                if width is None:
                    raise ModelError(
                        f"thread {t.id:#x}: {arch} has no {regset.kind} register {name!r}"
                    )
                if not isinstance(value, int) or not 0 <= value < (1 << (8 * width)):
                    raise ModelError(
                        f"thread {t.id:#x}: {name} = {value!r} does not fit in {width} bytes"
                    )
    if sum(1 for t in threads if t.crashed) > 1:
        raise ModelError("more than one thread is marked crashed")


@records.frozen
class _FitPlan:
    """How ``_registers_fit`` checks a register set with exactly ``names``."""

    names: frozenset[str]
    #: the values, those of at most 8 bytes first (in ``narrow``'s order), then the rest
    values_of: Any
    #: packs the narrow values: struct checks each is an int within its width, in C
    narrow: struct.Struct
    #: how many values are wider than 8 bytes, and their bound
    wide_count: int
    wide_limit: int


#: (arch, kind) -> the plan for the register names last seen there
_FIT_PLANS: dict[tuple[Arch, RegKind], _FitPlan] = {}
_STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _fit_plan(arch: Arch, kind: RegKind, names: Iterable[str]) -> _FitPlan | None:
    table = arch_info(arch).registers[kind]
    names = list(names)
    if not names or any(name not in table for name in names):
        return None
    narrow = [name for name in names if table[name] in _STRUCT_CODES]
    wide = [name for name in names if table[name] not in _STRUCT_CODES]
    if len({table[name] for name in wide}) > 1:
        return None
    ordered = narrow + wide
    return _FitPlan(
        names=frozenset(names),
        values_of=(
            operator.itemgetter(*ordered) if len(ordered) > 1 else lambda v: (v[ordered[0]],)
        ),
        narrow=struct.Struct("<" + "".join(_STRUCT_CODES[table[name]] for name in narrow)),
        wide_count=len(wide),
        wide_limit=1 << (8 * table[wide[0]]) if wide else 0,
    )


def _registers_fit(arch: Arch, kind: RegKind, values: Mapping[str, int]) -> bool:
    """Whether every register of a set is known to ``arch`` and its value a plain int
    that fits its width, checked in bulk (a 1,000-thread Snapshot holds 60,000
    registers). False: let the caller find which register does not fit."""
    plan = _FIT_PLANS.get((arch, kind))
    if plan is None or values.keys() != plan.names:
        plan = _fit_plan(arch, kind, values)
        if plan is None:
            return False
        _FIT_PLANS[(arch, kind)] = plan
    numbers = plan.values_of(values)
    if set(map(type, numbers)) != {int}:
        return False
    count = len(numbers) - plan.wide_count
    try:
        plan.narrow.pack(*numbers[:count])
    except struct.error:
        return False
    if plan.wide_count:
        wide = numbers[count:]
        return min(wide) >= 0 and max(wide) < plan.wide_limit
    return True


def _all_registers_fit(arch: Arch, threads: Iterable[Thread]) -> bool:
    """Whether every register set of ``threads`` passes ``_registers_fit``, checked a kind
    at a time: the values of all its sets in one list, their types in one pass and the
    narrow ones packed by one struct (a 1,000-thread Snapshot: 2,000 sets, 60,000
    registers). False also where a set's names are not those of the first set of its
    kind: let the caller check set by set."""
    by_kind: dict[RegKind, list[Mapping[str, int]]] = {}
    for t in threads:
        for regset in t.regsets:
            sets = by_kind.get(regset.kind)
            if sets is None:
                sets = by_kind[regset.kind] = []
            sets.append(regset.values)
    for kind, sets in by_kind.items():
        plan = _FIT_PLANS.get((arch, kind))
        if plan is None or sets[0].keys() != plan.names:
            plan = _fit_plan(arch, kind, sets[0])
            if plan is None:
                return False
            _FIT_PLANS[(arch, kind)] = plan
        count, values_of = len(plan.names), plan.values_of
        narrow_count = count - plan.wide_count
        narrow: list[Any] = []
        wide: list[Any] = []
        for values in sets:
            # as many names as the plan's, and each of the plan's there: the same names
            if len(values) != count:
                return False
            try:
                numbers = values_of(values)
            except KeyError:
                return False
            narrow += numbers[:narrow_count]
            if plan.wide_count:
                wide += numbers[narrow_count:]
        if set(map(type, narrow)) - {int} or set(map(type, wide)) - {int}:
            return False
        try:
            struct.pack("<" + plan.narrow.format[1:] * len(sets), *narrow)
        except struct.error:
            return False
        if wide and (min(wide) < 0 or max(wide) >= plan.wide_limit):
            return False
    return True


def _validate_regions(regions: tuple[Region, ...]) -> None:
    spans = sorted((r.address, r.address + r.data.size) for r in regions)
    for (a_start, a_end), (b_start, b_end) in zip(spans, spans[1:]):
        if b_start < a_end:
            raise ModelError(
                f"regions overlap: [{a_start:#x}, {a_end:#x}) and [{b_start:#x}, {b_end:#x})"
            )


class AddressSpace:
    """Reads a Snapshot's memory by address; lookups are a binary search over region starts."""

    def __init__(self, regions: Iterable[Region]):
        self._regions = sorted(regions, key=lambda r: r.address)
        self._starts = [r.address for r in self._regions]

    def region_at(self, address: int) -> Region | None:
        import _bisect as bisect

        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and self._regions[i].contains(address):
            return self._regions[i]
        return None

    def read(self, address: int, length: int) -> bytes:
        """``length`` bytes at ``address``; raises ModelError naming the first unsaved byte."""
        out = bytearray()
        while len(out) < length:
            here = address + len(out)
            region = self.region_at(here)
            if region is None:
                raise ModelError(f"address {here:#x} is not in the core's memory")
            want = min(length - len(out), region.end - here)
            out += region.data.read(here - region.address, want)
        return bytes(out)

    def read_u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")

    def read_cstring(self, address: int, limit: int = 4096) -> str:
        out = bytearray()
        while len(out) < limit:
            byte = self.read(address + len(out), 1)
            if byte == b"\0":
                break
            out += byte
        return out.decode("utf-8", "replace")

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions)

    def __len__(self) -> int:
        return len(self._regions)
