"""Replay the fuzz corpora and saved findings through ``fuzz/fuzzers.py``, and mutate seeds.

Every file of ``fuzz/corpus/<target>/`` and ``fuzz/regressions/<target>/`` goes through
the same function the atheris entry point calls, under a time limit (a hang fails).
Findings not fixed yet are listed in ``OPEN`` and expected to fail (strict xfail): when a
fix lands, the replay passes, the xfail turns into a failure, and the entry must go (the
file stays, as a regression test). The mutation test tolerates only those open signatures.

The Hypothesis test takes each seed core and applies truncations, byte flips, inserted
junk and overwritten u32/u64 fields (header counts, cmdsize, note offset/size, segment
fileoff/filesize, flavor counts, "all image infos" counts and offsets), and checks the
parser's promise: only ParseError, in bounded time, with a peak allocation bounded by the
input's size.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macminidump.errors import ParseError
from macminidump.macho.constants import LoadCommand, NoteOwner
from macminidump.macho.parse import MachOCore
from macminidump.report import inspect_core

FUZZ_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")
sys.path.insert(0, FUZZ_DIR)

import fuzzers  # noqa: E402

TIME_LIMIT = 5.0  # seconds per replayed file
MUTANT_TIME_LIMIT = 2.0  # seconds per mutant (seeds are < 64 KiB)
MiB = 1 << 20


def _peak_limit(size: int) -> int:
    """What a parse may allocate: a small multiple of the input, plus fixed overhead."""
    return 4 * size + MiB


#: findings saved in fuzz/regressions that the library does not handle yet:
#: file -> (signature as fuzzers.signature() prints it, why it fails)
# Findings not fixed yet: file -> (signature, what is wrong). Each is a strict xfail, so
# a fix shows up as XPASS: then delete its entry, and the file stays as a regression guard.
OPEN: dict[str, tuple[str, str]] = {}
#: what the mutation test tolerates (and counts) while the bug behind it is open
OPEN_SIGNATURES = frozenset(sig for sig, _ in OPEN.values())

TARGETS: dict[str, Callable[[bytes], None]] = {
    "elf": fuzzers.fuzz_elf,
    "macho": fuzzers.fuzz_macho,
    "spec": fuzzers.fuzz_spec,
    "tospec": fuzzers.fuzz_tospec,
}
#: the to-spec target reads cores: its seeds are the two core corpora
SEEDS_OF = {"tospec": ("macho", "elf")}


class Hang(BaseException):
    """Raised in the main thread when a call outlives its time limit (not an Exception,
    so no ``except Exception`` in the library can swallow it)."""


def run_with_timeout(seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, failing with Hang after ``seconds``: SIGALRM where possible (it
    interrupts a loop), else a watchdog thread (it can only report the hang afterwards)."""
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():

        def on_alarm(signum: int, frame: Any) -> None:
            raise Hang(f"{getattr(fn, '__name__', fn)} took more than {seconds} s")

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            result["error"] = e

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Hang(f"{getattr(fn, '__name__', fn)} took more than {seconds} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _parse_peak(data: bytes) -> int:
    """Peak traced allocation while parsing ``data`` and building its snapshot."""
    tracemalloc.start()
    try:
        try:
            MachOCore(data).snapshot()
        except ParseError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _files() -> list[Any]:
    params = []
    for kind in ("corpus", "regressions"):
        for target in sorted(TARGETS):
            folders = [target]
            if kind == "corpus":
                folders = list(SEEDS_OF.get(target, (target,)))
            for folder, name in sorted(
                (os.path.join(FUZZ_DIR, kind, f), n)
                for f in folders
                if os.path.isdir(os.path.join(FUZZ_DIR, kind, f))
                for n in os.listdir(os.path.join(FUZZ_DIR, kind, f))
            ):
                path = os.path.join(folder, name)
                if not os.path.isfile(path) or name.startswith("."):
                    continue
                key = f"{target}/{name}"
                marks = []
                if kind == "regressions" and key in OPEN:
                    marks.append(pytest.mark.xfail(reason=OPEN[key][1], strict=True))
                params.append(pytest.param(target, path, id=f"{kind}/{key}", marks=marks))
    return params


def test_corpora_exist() -> None:
    for target in TARGETS:
        for folder in SEEDS_OF.get(target, (target,)):
            assert os.listdir(os.path.join(FUZZ_DIR, "corpus", folder)), target


def test_open_findings_have_files() -> None:
    for key in OPEN:
        assert os.path.isfile(os.path.join(FUZZ_DIR, "regressions", key)), key


@pytest.mark.parametrize(("target", "path"), _files())
def test_replay(target: str, path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    run_with_timeout(TIME_LIMIT, TARGETS[target], data)
    if target == "macho":
        # the file path too: mmap, MachOCore.open and the full `inspect` report
        try:
            run_with_timeout(TIME_LIMIT, inspect_core, path)
        except ParseError:
            pass
        peak = run_with_timeout(TIME_LIMIT, _parse_peak, data)
        assert peak < _peak_limit(len(data)), f"parse of {len(data)} bytes peaked at {peak}"


def test_seed_cores_are_small_and_valid() -> None:
    for name in sorted(os.listdir(os.path.join(FUZZ_DIR, "corpus", "macho"))):
        with open(os.path.join(FUZZ_DIR, "corpus", "macho", name), "rb") as f:
            data = f.read()
        assert len(data) < 64 * 1024, name
        if name.endswith(".core"):
            MachOCore(data).snapshot()


# --------------------------------------------------------------------------- mutation


def _seed_cores() -> list[bytes]:
    folder = os.path.join(FUZZ_DIR, "corpus", "macho")
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".core"):
            with open(os.path.join(folder, name), "rb") as f:
                out.append(f.read())
    return out


def _fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every count, size and offset field of a valid seed core."""
    core = MachOCore(data)
    fields = [(16, 4), (20, 4)]  # ncmds, sizeofcmds
    for command in core.commands:
        fields.append((command.offset + 4, 4))  # cmdsize
        if command.cmd == LoadCommand.LC_SEGMENT_64:
            fields += [(command.offset + 24, 8), (command.offset + 32, 8)]  # vmaddr, vmsize
            fields += [(command.offset + 40, 8), (command.offset + 48, 8)]  # fileoff, filesize
            fields.append((command.offset + 64, 4))  # nsects
        elif command.cmd == LoadCommand.LC_NOTE:
            fields += [(command.offset + 24, 8), (command.offset + 32, 8)]  # offset, size
    for states in core.threads:
        for state in states:
            fields += [(state.offset, 4), (state.offset + 4, 4)]  # flavor, count
    for note in core.notes:
        fields.append((note.offset, 4))  # every payload starts with a version
        if note.owner == NoteOwner.ALL_IMAGE_INFOS:
            # imgcount, entries_fileoff, entries_size
            fields += [(note.offset + 4, 4), (note.offset + 8, 8), (note.offset + 16, 4)]
            header = struct.unpack_from("<IIQI", data, note.offset)
            for i in range(header[1]):
                at = header[2] + i * header[3]
                # filepath_offset, load_address, seg_addrs_offset, segment_count
                fields += [(at, 8), (at + 24, 8), (at + 32, 8), (at + 40, 4)]
        elif note.owner == NoteOwner.ADDRABLE_BITS:
            fields += [(note.offset + 4, 4), (note.offset + 8, 4)]
    return fields


SEEDS = _seed_cores()
SEED_FIELDS = [_fields(seed) for seed in SEEDS]


def test_seed_corpus_is_present() -> None:
    # an empty corpus would make every replay and mutation test pass vacuously
    assert len(SEEDS) >= 5, "fuzz/corpus/macho holds no seed cores: run fuzz/make_corpus.py"


def _interesting(width: int, size: int) -> st.SearchStrategy[int]:
    top = (1 << (8 * width)) - 1
    special = [0, 1, 2, 3, 4, 7, 8, 16, 0x7F, 0x80, 0xFF, 0x1000, 0x4000, top, top - 7, top >> 1]
    special += [v for v in (size - 1, size, size + 1, size // 2, size // 4, size // 8) if v >= 0]
    return st.one_of(
        st.sampled_from([v & top for v in special]), st.integers(min_value=0, max_value=top)
    )


@st.composite
def mutants(draw: st.DrawFn) -> bytes:
    index = draw(st.integers(min_value=0, max_value=len(SEEDS) - 1))
    data = bytearray(SEEDS[index])
    fields = SEED_FIELDS[index]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["field", "field", "field", "flip", "truncate", "insert"]))
        if op == "field" and fields:
            offset, width = draw(st.sampled_from(fields))
            if offset + width <= len(data):
                value = draw(_interesting(width, len(data)))
                data[offset : offset + width] = value.to_bytes(width, "little")
        elif op == "flip" and data:
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "truncate":
            data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
        elif op == "insert":
            at = draw(st.integers(min_value=0, max_value=len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutants())
def test_mutated_seed_cores(data: bytes) -> None:
    peak = run_with_timeout(MUTANT_TIME_LIMIT, _parse_peak, data)
    assert peak < _peak_limit(len(data)), f"parse of {len(data)} bytes peaked at {peak}"
    try:
        run_with_timeout(MUTANT_TIME_LIMIT, fuzzers.fuzz_macho, data)
    except Exception as e:
        # a known open finding, saved in fuzz/regressions and replayed as a strict xfail;
        # anything else fails here and Hypothesis shrinks it
        if fuzzers.signature(e) not in OPEN_SIGNATURES:
            raise
