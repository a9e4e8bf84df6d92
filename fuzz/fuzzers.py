"""Shared fuzz targets: plain functions that drive macminidump's public API end to end.

Each ``fuzz_*`` function takes arbitrary bytes and returns normally, or lets through
only the exceptions the library documents (``ParseError`` for a core, ``SpecError`` for
a spec, ``RenderError`` when a parsed or specified snapshot cannot be written back).
Anything else escaping is a finding. The same functions run under atheris
(``fuzz_macho.py``, ``fuzz_spec.py``) and under pytest (``tests/test_fuzz_replay.py``).

``MACMINIDUMP_FUZZ_IGNORE`` (comma-separated signatures as printed by :func:`signature`,
e.g. ``RecursionError@notes.py:decode_process_metadata``) swallows findings already saved in
``fuzz/regressions/``, so a long atheris run can go on past a bug that is not fixed yet.
It is read by the atheris entry points only, never by the tests.

``MACMINIDUMP_FUZZ_COLLECT=DIR`` (atheris entry points only) saves each finding's input
as ``DIR/<signature>-<sha1>`` and goes on, so one long run reports every kind of finding
instead of stopping at the first.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from collections.abc import Callable
from typing import Any

import macminidump
from macminidump.elf.parse import ElfCore
from macminidump.elf.render import render_elf_bytes
from macminidump.errors import ParseError, RenderError, SpecError
from macminidump.macho.parse import MachOCore
from macminidump.macho.render import render_macho_bytes
from macminidump.model import Snapshot
from macminidump.report import plain_value, snapshot_report
from macminidump.spec import dump_spec, parse_spec_text, snapshot_from_spec, spec_format

_PACKAGE = os.path.dirname(os.path.abspath(macminidump.__file__)) + os.sep

#: signatures of known, already-saved findings to swallow (empty unless enabled)
IGNORED: frozenset[str] = frozenset()


#: where findings are saved when collecting (None: a finding stops the run)
COLLECT: str | None = None


def enable_ignore_list() -> None:
    """Read ``MACMINIDUMP_FUZZ_IGNORE`` into :data:`IGNORED` and ``MACMINIDUMP_FUZZ_COLLECT``
    into :data:`COLLECT` (atheris entry points only)."""
    global IGNORED, COLLECT
    raw = os.environ.get("MACMINIDUMP_FUZZ_IGNORE", "")
    IGNORED = frozenset(s.strip() for s in raw.split(",") if s.strip())
    COLLECT = os.environ.get("MACMINIDUMP_FUZZ_COLLECT") or None


def run_under_atheris(target: Callable[[bytes], None]) -> None:
    """The body of every atheris entry point (``fuzz_*.py``): the ignore and collect
    settings read, then libFuzzer's loop over ``target`` with this process's arguments.
    (Each entry point imports this module under ``atheris.instrument_imports()`` itself:
    instrumenting has to wrap the import.)"""
    import sys

    import atheris

    enable_ignore_list()
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


def signature(exc: BaseException) -> str:
    """``ExceptionType@file.py:function`` of the innermost macminidump frame (else the last)."""
    # a RoundTripError is told apart by where its ParseError came from
    frames = traceback.extract_tb((exc.__cause__ or exc).__traceback__)
    ours = [f for f in frames if os.path.abspath(f.filename).startswith(_PACKAGE)] or frames
    where = f"{os.path.basename(ours[-1].filename)}:{ours[-1].name}" if ours else "?"
    return f"{type(exc).__name__}@{where}"


def _touch(snapshot: Snapshot) -> None:
    """Read the first and the last byte of every region, through the address space."""
    memory = snapshot.memory
    for region in snapshot.regions:
        first = memory.read(region.address, 1)
        last = memory.read(region.end - 1, 1)
        assert len(first) == 1 and len(last) == 1, region
    for thread in snapshot.threads:
        for regset in thread.regsets:
            dict(regset.values)


def _report(snapshot: Snapshot, core: MachOCore | None = None) -> str:
    """What ``macminidump inspect --json`` prints, minus the parts that need a file path."""
    report: dict[str, Any] = dict(snapshot_report(snapshot))
    if core is not None:
        report["header"] = dict(core.header)
        report["notes"] = [
            {
                "owner": n.owner,
                "offset": n.offset,
                "size": n.size,
                "decoded": plain_value(n.decoded),
            }
            for n in core.notes
        ]
    return json.dumps(report)


class RoundTripError(AssertionError):
    """The renderer wrote a core that the parser rejects, from a snapshot with no raw items."""


def _roundtrip(
    snapshot: Snapshot,
    render: Callable[[Snapshot], bytes] = render_macho_bytes,
    parse: Callable[[bytes], Snapshot] = lambda data: MachOCore(data).snapshot(),
) -> None:
    """Render ``snapshot`` as a core (RenderError allowed) and parse that back.

    ParseError on the way back is allowed only when the snapshot holds raw notes or raw
    load commands: those are copied verbatim and may point at offsets of another file (an
    "all image infos" note kept raw, a segment with sections). Without them, a rendered
    core the parser rejects is a finding (RoundTripError).
    """
    try:
        rendered = render(snapshot)
    except RenderError:
        return
    try:
        again = parse(rendered)
    except ParseError as e:
        if snapshot.raw_notes or snapshot.raw_commands:
            return
        raise RoundTripError(f"rendered core does not parse back: {e}") from e
    _touch(again)
    _report(again)


def _guarded(target: Any, data: bytes) -> None:
    try:
        target(data)
    except Exception as e:
        if IGNORED and signature(e) in IGNORED:
            return
        if COLLECT is not None:
            name = f"{signature(e)}-{hashlib.sha1(data).hexdigest()}".replace("/", "_")
            with open(os.path.join(COLLECT, name), "wb") as f:
                f.write(data)
            return
        raise


def fuzz_macho(data: bytes) -> None:
    """Parse a Mach-O core, build its snapshot, read its memory, report it, render it back."""
    try:
        core = MachOCore(data)
        snapshot = core.snapshot()
    except ParseError:
        return
    _touch(snapshot)
    _report(snapshot, core)
    _roundtrip(snapshot)


def fuzz_elf(data: bytes) -> None:
    """Parse an ELF core, build its snapshot, read its memory, report it, render it back."""
    try:
        snapshot = ElfCore(data).snapshot()
    except ParseError:
        return
    _touch(snapshot)
    _report(snapshot)
    _roundtrip(snapshot, render_elf_bytes, lambda data: ElfCore(data).snapshot())


def fuzz_elf_guarded(data: bytes) -> None:
    _guarded(fuzz_elf, data)


def fuzz_spec(data: bytes) -> None:
    """Load a YAML spec, build its snapshot, report it and, as ``macminidump build`` does,
    render it (RenderError allowed) and parse the result back."""
    try:
        spec = parse_spec_text(data)
        snapshot = snapshot_from_spec(spec)
        fmt = spec_format(spec)
    except SpecError:
        return
    _touch(snapshot)
    _report(snapshot)
    if fmt == "macho":
        _roundtrip(snapshot)


def _respec(snapshot: Snapshot, fmt: str) -> None:
    """What ``to-spec`` prints (YAML, as a user gets it) must load and build the same core.

    The spec is the snapshot's; loading it back may fail only as the original render
    would (RenderError), never as a SpecError or anything else.
    """
    text = dump_spec(snapshot, fmt=fmt)
    try:
        again = snapshot_from_spec(parse_spec_text(text))
    except SpecError as e:
        raise RoundTripError(f"to-spec output does not load: {e}") from e
    render = render_elf_bytes if fmt == "elf" else render_macho_bytes
    try:
        first = render(snapshot)
    except RenderError:
        return
    if render(again) != first:
        raise RoundTripError("to-spec output builds a different core")


def fuzz_tospec(data: bytes) -> None:
    """A core (either format, by magic) -> to-spec YAML -> load -> build: the same bytes."""
    try:
        if data[:4] == b"\x7fELF":
            snapshot, fmt = ElfCore(data).snapshot(), "elf"
        else:
            snapshot, fmt = MachOCore(data).snapshot(), "macho"
    except ParseError:
        return
    _respec(snapshot, fmt)


def fuzz_tospec_guarded(data: bytes) -> None:
    _guarded(fuzz_tospec, data)


def fuzz_macho_guarded(data: bytes) -> None:
    _guarded(fuzz_macho, data)


def fuzz_spec_guarded(data: bytes) -> None:
    _guarded(fuzz_spec, data)
