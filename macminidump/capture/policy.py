"""What a capture saves: the memory policy, the order of priority, the size budget.

``capture`` (base.py) finds what each thread needs (its stack from sp, code around its
return addresses) and hands it here. This module turns the caller's ``CaptureOptions``
into a list of ``Want``s, each a range with a ``Priority``, and ``fit`` chooses the bytes
to save:

1. the policy's wants: ``stacks`` (the default: stacks near sp, code windows, what the
   platform's debuggers need), ``referenced`` (plus a window around every pointer found
   in registers and stack words, one more level for the crashed thread), ``dirty`` (plus
   every mapping the process wrote), ``full`` (plus everything readable), and the
   caller's ``--include`` ranges;
2. **the exclusions**, ``never_saved``: memory no policy may save, whatever asked for it
   (issue 8: MADV_DONTDUMP regions, environment strings by default). This is the one
   place they apply, after every policy and before the budget, so excluded bytes cost
   nothing and are never listed as cut;
3. the budget (``max_size``): wants are taken in priority order, each split at mapping
   boundaries; the first that does not fit is cut short (a stack keeps the part near sp)
   and everything after it is left out, and what was left out is recorded in the core
   (``MemorySelection``, a note in both formats).

The order of priority (``Priority``): the crashed thread's stack near sp (its registers
are in the fixed part of the file), other threads' stacks near sp, module headers and
code windows and the dynamic linker's lists, the caller's ranges, referenced memory, the
rest (stacks beyond the near part, dirty or full mappings).

The file format is not known here: the caller passes a ``CoreCost`` (the format's fixed
size and its cost per region), computed by the format's layout.
"""

from __future__ import annotations

import _bisect as bisect  # (the C core: bisect.py adds nothing a dump uses)
import _operator as operator  # (the C core: operator.py re-declares it in Python, ~0.4 ms)
import struct
from itertools import compress

from .. import records
from ..errors import TargetError
from ..model import MemorySelection, OmittedRange, Protection
from ..plain_enum import Enum, IntEnum
from ..plain_typing import Callable, Iterable, Iterator, NamedTuple, Sequence
from ..writer import CoreCost

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    from ..model import Snapshot
    from .base import MemoryMapping, TargetOS

#: Protection bits as ints: `int(p) & READ` costs a tenth of the enum's `p & Protection.READ`
READ, EXECUTE = int(Protection.READ), int(Protection.EXECUTE)
#: a thread's stack is saved from sp up to this length unless asked for more
DEFAULT_MAX_STACK = 8 << 20
#: the part of a stack "near sp", saved before anything of lower priority
NEAR_SP = 16 << 10
#: the least of the crashed thread's stack a budget must hold (besides registers)
TOP_OF_STACK = 1 << 10
#: a window around each referenced pointer: bytes before it, bytes from it
REFERENCED_BEFORE, REFERENCED_AFTER = 128, 1024
#: stack bytes scanned for pointers per thread, and pointers followed per thread
REFERENCED_SCAN = 64 << 10
REFERENCED_MAX = 1024
#: 4 KiB: the x86_64 Linux page, the granule elfutils rounds a core's segments to
PAGE = 4096
#: ranges at least this large are read while the file is written, not before
LAZY_MIN = 64 << 10
#: ranges listed one by one in the core's record of what was cut (the total is exact)
OMITTED_LISTED = 64


class Memory(Enum):
    """The memory policies, by their command-line names."""

    STACKS = "stacks"
    REFERENCED = "referenced"
    DIRTY = "dirty"
    FULL = "full"


class Priority(IntEnum):
    """The order memory is kept in when a budget cuts: lowest first."""

    CRASHED_STACK = 0
    STACKS = 1
    HEADERS = 2
    INCLUDED = 3
    REFERENCED = 4
    REST = 5


#: the kind recorded for each priority in the core's list of what was cut
KIND = {
    Priority.CRASHED_STACK: "crashed-thread-stack",
    Priority.STACKS: "stack",
    Priority.HEADERS: "headers-and-code",
    Priority.INCLUDED: "included",
    Priority.REFERENCED: "referenced",
    Priority.REST: "rest",
}

#: a size: digits, a binary unit maybe, B or iB maybe (matched ignoring case)
_SIZE = r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | int) -> int:
    """``"64K"`` → 65536; ``8M``, ``1G``, ``4096``, ``2MiB`` (binary units)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise TargetError(f"size {text} is not a positive number of bytes")
        return text
    # (re imported here: sizes come with a budget or a range, never in a plain dump,
    # which imports no re)
    import re

    match = re.match(_SIZE, str(text), re.IGNORECASE)
    # (ignoring case, the pattern's K also takes the Kelvin sign, which upper() keeps)
    unit = _UNITS.get(match.group(2).upper()) if match else None
    if match is None or unit is None:
        raise TargetError(f"{text!r} is not a size (e.g. 64K, 8M, 1G, 4096)")
    value = int(match.group(1)) * unit
    if value <= 0:
        raise TargetError(f"size {text!r} is not a positive number of bytes")
    return value


def parse_range(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"0x7f0000:4K"`` → (address, size); a (address, size) pair passes through."""
    if isinstance(text, tuple):
        address, size = text
    else:
        where, sep, length = str(text).partition(":")
        try:
            address = int(where, 0)
        except ValueError:
            raise TargetError(f"{text!r} is not ADDR:SIZE (e.g. 0x7f12a000:4K)") from None
        if not sep:
            raise TargetError(f"{text!r} is not ADDR:SIZE (e.g. 0x7f12a000:4K)")
        size = parse_size(length if not length.lower().startswith("0x") else int(length, 16))
    if not (isinstance(address, int) and isinstance(size, int)) or address < 0 or size <= 0:
        raise TargetError(f"range {text!r} is not an address and a positive size")
    if address + size > 1 << 64:
        raise TargetError(f"range {address:#x}:{size:#x} runs past the end of the address space")
    return address, size


def _to_memory(value: Memory | str) -> Memory:
    try:
        return Memory(value)
    except ValueError:
        names = ", ".join(m.value for m in Memory)
        raise TargetError(f"memory policy {value!r} is not one of {names}") from None


def _to_max_size(value: int | str | None) -> int | None:
    return None if value is None else parse_size(value)


def _to_include(value: Iterable[str | tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple(parse_range(v) for v in value)


def _to_max_stack(value: int | str | None) -> int | None:
    return None if value is None else parse_size(value)


@records.frozen(kw_only=True)
class CaptureOptions:
    """What a capture saves (see the module doc). Text values are parsed: ``max_size="8M"``,
    ``include=["0x7f0000:4K"]``; a bad one raises ``TargetError`` (bad input)."""

    memory: Memory = records.field(default=Memory.STACKS, converter=_to_memory)
    #: a cap on the whole core file, in bytes (None: no cap)
    max_size: int | None = records.field(default=None, converter=_to_max_size)
    #: (address, size) ranges added by the caller; each must be mapped
    include: tuple[tuple[int, int], ...] = records.field(default=(), converter=_to_include)
    #: a thread's stack is saved from sp up to this many bytes (None: to its mapping's end)
    max_stack: int | None = records.field(default=DEFAULT_MAX_STACK, converter=_to_max_stack)
    code_window: int = 256
    #: save the environment strings too (left out by default: they hold tokens, keys)
    keep_environment: bool = False

    def to_argv(self) -> list[str]:
        """The command-line options that give these options back (the self-dump helper)."""
        argv = ["--memory", self.memory.value]
        if self.max_size is not None:
            argv += ["--max-size", str(self.max_size)]
        for address, size in self.include:
            argv += ["--include", f"{address:#x}:{size}"]
        argv += ["--max-stack", "0" if self.max_stack is None else str(self.max_stack)]
        argv += ["--code-window", str(self.code_window)]
        if self.keep_environment:
            argv.append("--keep-environment")
        return argv


class Want(NamedTuple):
    """A range a capture would like to save, and how much it matters (a tuple: a
    1,000-thread capture wants thousands)."""

    start: int
    end: int
    priority: Priority


#: a format's cost model for a Snapshot without memory (its threads, images, notes)
CostOf = Callable[["Snapshot"], CoreCost]


class Piece(NamedTuple):
    """A chosen range inside one mapping (so one protection); a tuple, as ``Want``."""

    start: int
    end: int
    protection: Protection
    priority: Priority


# ----------------------------------------------------------------- the policy's wants


def referenced(
    target: TargetOS,
    mappings: MappingIndex,
    values: Iterable[int],
    stack: tuple[int, int] | None,
    levels: int,
) -> list[Want]:
    """Windows around every pointer into readable, non-code memory among ``values`` and
    the words of ``stack`` (its first REFERENCED_SCAN bytes), ``levels`` deep."""
    words = list(values)
    if stack is not None:
        start, end = stack
        words += mappings.maybe_data(target.read(start, min(end - start, REFERENCED_SCAN)))
    wants: list[Want] = []
    seen: set[int] = set()
    for _level in range(levels):
        found = []
        for value in words:
            if value in seen:
                continue
            mapping = mappings.at(value)
            if mapping is None:
                continue
            if int(mapping.protection) & (READ | EXECUTE) != READ:
                continue
            seen.add(value)
            window = (
                max(mapping.start, value - REFERENCED_BEFORE),
                min(mapping.end, value + REFERENCED_AFTER),
            )
            found.append(window)
            if len(seen) >= REFERENCED_MAX * levels:
                break
        wants += [Want(a, b, Priority.REFERENCED) for a, b in found]
        words = [w for a, b in found for w in mappings.maybe_data(target.read(a, b - a))]
    return wants


def mapping_wants(
    target: TargetOS, options: CaptureOptions, mappings: Sequence[MemoryMapping]
) -> list[Want]:
    """The whole mappings ``dirty`` and ``full`` add, at the lowest priority."""
    if options.memory == Memory.FULL:
        chosen: Iterable[MemoryMapping] = mappings
    elif options.memory == Memory.DIRTY:
        chosen = target.modified_mappings(mappings)
    else:
        return []
    return [Want(m.start, m.end, Priority.REST) for m in chosen if int(m.protection) & READ]


def included(options: CaptureOptions, mappings: MappingIndex) -> list[Want]:
    """The caller's ranges, each of which must lie in readable mappings."""
    wants = []
    for address, size in options.include:
        cursor, end = address, address + size
        while cursor < end:
            mapping = mappings.at(cursor)
            if mapping is None or not int(mapping.protection) & READ:
                raise TargetError(
                    f"--include {address:#x}:{size:#x}: {cursor:#x} is not in readable "
                    "memory of the process"
                )
            cursor = mapping.end
        wants.append(Want(address, end, Priority.INCLUDED))
    return wants


def never_saved(
    target: TargetOS, options: CaptureOptions, mappings: Sequence[MemoryMapping]
) -> list[tuple[int, int]]:
    """Memory no policy saves, whatever asked for it: the final filter (see the module doc).

    What the process marked MADV_DONTDUMP, and the environment strings unless the caller
    keeps them. Left out means absent from the core, not zeroed: a debugger reports that
    memory unreadable.
    """
    excluded = list(target.dont_dump(mappings))
    environment = None if options.keep_environment else target.environment(mappings)
    if environment is not None:
        excluded.append(environment)
    return excluded


# ----------------------------------------------------------------- choosing within a budget


#: the bytes of a little-endian word that say which 16 MiB of the low 256 TiB it points
#: into (where user space lies): ``MappingIndex`` tests a run of words against the
#: chunks some of its mappings touch a byte column at a time, the most telling first
CHUNK_BYTES = (5, 4, 3)
#: past this many 16 MiB chunks, a mapping lets every byte pass (the test stays exact)
MANY_CHUNKS = 4096


class MappingIndex:
    """The target's mappings sorted by start, looked up by address in log time."""

    def __init__(self, mappings: Iterable[MemoryMapping]):
        self.sorted = sorted(mappings, key=lambda m: m.start)
        self._starts = [m.start for m in self.sorted]
        #: executable (True) or readable data (False) -> per byte of CHUNK_BYTES, a
        #: translate table: 1 for the values such mappings' 16 MiB chunks have there
        self._chunk_tables: dict[bool, list[tuple[int, bytes]]] = {}
        #: word -> whether it points into code, for the words ``in_code`` looked up
        #: (the threads of a process hold the same return addresses)
        self._in_code: dict[int, bool] = {}

    def at(self, address: int) -> MemoryMapping | None:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0:
            mapping = self.sorted[i]
            if mapping.start <= address < mapping.end:  # (contains(), without the call)
                return mapping
        return None

    def in_code(
        self, words: bytes, limit: int, strip: Callable[[int], int] | None = None
    ) -> list[int]:
        """Of the little-endian 64-bit ``words`` (each passed through ``strip``, if given),
        the first ``limit`` above 0x1000 that ``at`` finds in executable memory, in order.

        A stack scan asks this of every word of a thread's stack, and a thousand threads
        have half a million. Without ``strip``, the words are first tested a byte column
        at a time, in C (``translate``): a word whose bytes 3 to 5 are not each one some
        code's 16 MiB chunk has there points elsewhere (stack, heap, small numbers), and
        only the few left are looked up."""
        count = len(words) // 8
        if strip is not None:
            values = [strip(v) for v in struct.unpack_from(f"<{count}Q", words)]
            return [v for v in values if self._executable(v)][:limit]
        hits: list[int] = []
        known = self._in_code
        for value in self._in_chunks(words, True):
            executable = known.get(value)
            if executable is None:
                executable = known[value] = self._executable(value)
            if executable:
                hits.append(value)
                if len(hits) == limit:
                    break
        return hits

    def _executable(self, value: int) -> bool:
        mapping = self.at(value) if value > 0x1000 else None
        return mapping is not None and bool(int(mapping.protection) & EXECUTE)

    def maybe_data(self, words: bytes) -> list[int]:
        """The little-endian 64-bit ``words`` that may point into readable data (a
        readable mapping that is not code), in order: those in a 16 MiB chunk some such
        mapping touches, tested as ``in_code`` tests words (a superset: ``at`` decides)."""
        return list(self._in_chunks(words, False))

    def _in_chunks(self, words: bytes, code: bool) -> Iterator[int]:
        """The little-endian 64-bit ``words`` whose bytes CHUNK_BYTES are each one that
        the 16 MiB chunks of code (``code``) or of readable data have there, in order."""
        column = self._chunk_column(words, code)
        return compress(struct.unpack_from(f"<{len(column)}Q", words), column)

    def _chunk_column(self, words: bytes, code: bool) -> bytes:
        """A byte per whole word of ``words`` (none if it holds no such word): 1 where the
        word is in ``_in_chunks``, else 0."""
        count = len(words) // 8
        marks = -1
        for k, table in self._chunk_tables_of(code):
            marks &= int.from_bytes(words[k : count * 8 : 8].translate(table), "little")
            if not marks:
                return b""
        return marks.to_bytes(count, "little")

    def _chunk_tables_of(self, code: bool) -> list[tuple[int, bytes]]:
        tables = self._chunk_tables.get(code)
        if tables is None:
            allowed: list[set[int]] = [set() for _ in CHUNK_BYTES]
            for m in self.sorted:
                protection = int(m.protection)
                if code != bool(protection & EXECUTE) or not protection & (READ | EXECUTE):
                    continue
                first, last = m.start >> 24, (m.end - 1) >> 24
                if last - first > MANY_CHUNKS:
                    allowed = [set(range(256)) for _ in CHUNK_BYTES]
                    break
                for chunk in range(first, last + 1):
                    for k, values in zip(CHUNK_BYTES, allowed):
                        values.add((chunk >> (8 * (k - 3))) & 0xFF)
            tables = self._chunk_tables[code] = [
                (k, bytes(int(b in values) for b in range(256)))
                for k, values in zip(CHUNK_BYTES, allowed)
            ]
        return tables

    def overlapping(self, start: int, end: int) -> Iterator[MemoryMapping]:
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self.sorted) and self.sorted[i].start < end:
            if self.sorted[i].end > start:
                yield self.sorted[i]
            i += 1


class _Claimed:
    """Disjoint half-open ranges already taken, sorted; subtracts from new ranges."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def free_parts(self, start: int, end: int) -> list[tuple[int, int]]:
        out = []
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        cursor = start
        while cursor < end and i < len(self.starts):
            a, b = self.starts[i], self.ends[i]
            if b <= cursor:
                i += 1
                continue
            if a >= end:
                break
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
            i += 1
        if cursor < end:
            out.append((cursor, end))
        return out

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)


def _subtract(
    ranges: list[tuple[int, int]], holes: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    if not holes:
        return ranges
    out = []
    for start, end in ranges:
        cursor = start
        for a, b in holes:
            if b <= cursor or a >= end:
                continue
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < end:
            out.append((cursor, end))
    return out


@records.frozen
class Choice:
    pieces: tuple[Piece, ...]
    selection: MemorySelection


def fit(
    wants: Sequence[Want],
    mappings: MappingIndex,
    options: CaptureOptions,
    excluded: Sequence[tuple[int, int]],
    cost: CoreCost | None,
) -> Choice:
    """The pieces to save, in address order, and the record of what the budget cut."""
    budget = options.max_size
    holes = sorted(excluded)
    # by priority, in the given order within one (a stable sort)
    ordered = sorted(wants, key=_PRIORITY)
    claimed = _Claimed()
    pieces: list[Piece] = []
    omitted: list[OmittedRange] = []
    used = cost.fixed if cost is not None else 0
    if budget is not None and cost is not None:
        _check_floor(ordered, mappings, holes, cost, budget)
    cut = False
    seen: set[tuple[int, int]] = set()
    # (bound once: a 1,000-thread capture fits thousands of wants)
    free_parts, claim, at = claimed.free_parts, claimed.add, mappings.at
    new_piece = tuple.__new__  # (Piece(...) without its __new__'s Python frame)
    for want in ordered:
        span = (want.start, want.end)
        if span in seen:
            continue  # taken (or cut) before, whole: nothing left for it to add
        seen.add(span)
        free = free_parts(want.start, want.end)
        for start, end in _subtract(free, holes) if holes else free:
            # most lie in one mapping: that one, without overlapping()'s generator
            mapping = at(start)
            if mapping is not None and end <= mapping.end:
                inside: Iterable[MemoryMapping] = (mapping,)
            else:
                inside = mappings.overlapping(start, end)
            for mapping in inside:
                a, b = max(start, mapping.start), min(end, mapping.end)
                if not int(mapping.protection) & READ:
                    continue
                a, b = _fill_shared_pages(claimed, holes, mapping, a, b)
                claim(a, b)
                keep = b - a
                if budget is not None and cost is not None:
                    room = budget - used - cost.per_region
                    if cut or room < cost.alignment:
                        keep = 0
                    elif cost.region(keep) > budget - used:
                        keep = room // cost.alignment * cost.alignment
                    if keep < b - a:
                        cut = True
                        omitted.append(OmittedRange(a + keep, b - a - keep, KIND[want.priority]))
                    if keep:
                        used += cost.region(keep)
                if keep:
                    pieces.append(
                        new_piece(Piece, (a, a + keep, mapping.protection, want.priority))
                    )
    pieces.sort(key=lambda p: p.start)
    omitted.sort(key=lambda o: -o.size)
    selection = MemorySelection(
        policy=options.memory.value,
        max_size=budget,
        omitted_bytes=sum(o.size for o in omitted),
        omitted_count=len(omitted),
        omitted=tuple(sorted(omitted[:OMITTED_LISTED], key=lambda o: o.address)),
    )
    return Choice(tuple(_merge_pieces(pieces)), selection)


def _fill_shared_pages(
    claimed: _Claimed,
    holes: Sequence[tuple[int, int]],
    mapping: MemoryMapping,
    a: int,
    b: int,
) -> tuple[int, int]:
    """[a, b) grown over the gap to a saved neighbour that ends (starts) in its first
    (last) page, unless that gap is excluded. elfutils finds a core's segment for an
    address by whole pages: of two segments in one page it reads through the first, at
    the wrong file offset for the second (a misread return address, no library list)."""
    i = bisect.bisect_right(claimed.starts, a) - 1
    if i >= 0:
        end = claimed.ends[i]
        if mapping.start <= end < a and end // PAGE == a // PAGE and not _hit(holes, end, a):
            a = end
    j = bisect.bisect_left(claimed.starts, b)
    if j < len(claimed.starts):
        start = claimed.starts[j]
        if b < start <= mapping.end and (b - 1) // PAGE == start // PAGE:
            if not _hit(holes, b, start):
                b = start
    return a, b


def _hit(holes: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    return any(x < end and start < y for x, y in holes)


_PRIORITY = operator.attrgetter("priority")


def _check_floor(
    ordered: Sequence[Want],
    mappings: MappingIndex,
    holes: Sequence[tuple[int, int]],
    cost: CoreCost,
    budget: int,
) -> None:
    """A budget must hold the crashed thread's registers and the top of its stack."""
    floor = cost.fixed
    crashed = [w for w in ordered if w.priority == Priority.CRASHED_STACK]
    if crashed:
        top = crashed[0]
        top_end = min(top.end, top.start + TOP_OF_STACK)
        readable = [
            (max(top.start, m.start), min(top_end, m.end))
            for m in mappings.overlapping(top.start, top_end)
        ]
        for a, b in _subtract(readable, holes):
            floor += cost.region(b - a)
    if budget < floor:
        raise TargetError(
            f"--max-size {budget} is too small: the crashed thread's registers and the top "
            f"of its stack need {floor} bytes in this core"
        )


def _merge_pieces(pieces: list[Piece]) -> Iterator[Piece]:
    """Adjacent pieces of one mapping (same protection) become one region."""
    current: Piece | None = None
    for piece in pieces:
        if (
            current is not None
            and piece.start == current.end
            and (piece.protection == current.protection)
        ):
            # (not records.evolve: thousands of pieces merge in a many-thread capture)
            current = Piece(
                current.start, piece.end, current.protection, min(current.priority, piece.priority)
            )
            continue
        if current is not None:
            yield current
        current = piece
    if current is not None:
        yield current


def reserved_selection(options: CaptureOptions) -> MemorySelection:
    """The largest record of what was cut this capture could write: the budget is
    computed with it, so the real (never larger) record always fits."""
    widest = OmittedRange((1 << 64) - 1, (1 << 64) - 1, max(KIND.values(), key=len))
    return MemorySelection(
        policy=options.memory.value,
        max_size=options.max_size,
        omitted_bytes=(1 << 64) - 1,
        omitted_count=(1 << 64) - 1,
        omitted=(widest,) * OMITTED_LISTED if options.max_size is not None else (),
    )
