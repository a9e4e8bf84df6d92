"""The shared capture logic, run against a fake OS (testing/fake_os.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from macminidump import CaptureError, Image, Region, RegKind, Snapshot, Thread, records
from macminidump.capture.base import CrashContext, MemoryMapping, capture
from macminidump.capture.policy import EXECUTE, READ, MappingIndex
from macminidump.model import Protection, SignalInfo
from macminidump.testing.fake_os import FakeTarget

STACK = 0x7FFF0000
CODE = 0x400000


def world(arch: str = "x86_64") -> Snapshot:
    """One thread three frames deep: pc in f2, return addresses into f1 and main."""
    stack = bytearray(0x1000)
    sp = STACK + 0x800
    fp0, fp1, fp2 = sp + 0x20, sp + 0x60, sp + 0xA0
    struct.pack_into("<QQ", stack, fp0 - STACK, fp1, CODE + 0x1100)  # f2's record -> f1
    struct.pack_into("<QQ", stack, fp1 - STACK, fp2, CODE + 0x2200)  # f1's record -> main
    struct.pack_into("<QQ", stack, fp2 - STACK, 0, 0)  # main: end of chain
    struct.pack_into("<Q", stack, sp - STACK, CODE + 0x3300)  # [sp]: a leaf's return address
    names = ("rip", "rsp", "rbp") if arch == "x86_64" else ("pc", "sp", "fp")
    gpr = dict(zip(names, (CODE + 0x10, sp, fp0)))
    if arch == "arm64":
        gpr["lr"] = CODE + 0x4400
    return Snapshot(
        arch=arch,
        threads=[Thread(id=0x101, regsets={"gpr": gpr}), Thread(id=0x102, regsets={"gpr": {}})],
        regions=[
            Region(address=CODE, data=bytes(range(256)) * 0x50, protection="r-x"),
            Region(address=STACK, data=bytes(stack), protection="rw-"),
            Region(address=0x600000, data=b"heap" * 1024, protection="rw-"),
        ],
        images=[Image(path="/bin/prog", load_address=CODE, main=True)],
    )


def spans(snapshot: Snapshot) -> list[tuple[int, int]]:
    return [(r.address, r.end) for r in snapshot.regions]


def test_stack_and_code_windows_are_selected() -> None:
    target = FakeTarget(world())
    snap = capture(target)
    sp = STACK + 0x800
    assert (sp - 128, STACK + 0x1000) in spans(snap)  # sp less the red zone, to the end
    code = [s for s in spans(snap) if s[0] < CODE + 0x5000]
    # pc, the two walked return addresses and [sp], ±256 bytes each, clipped at CODE
    assert code == [
        (CODE, CODE + 0x10 + 256),
        (CODE + 0x1100 - 256, CODE + 0x1100 + 256),
        (CODE + 0x2200 - 256, CODE + 0x2200 + 256),
        (CODE + 0x3300 - 256, CODE + 0x3300 + 256),
    ]
    assert not any(a <= 0x600000 < b for a, b in spans(snap)), "the heap is not a stack"
    for region in snap.regions:  # bytes are the world's bytes
        assert region.data.read(0, region.size) == target.world.memory.read(
            region.address, region.size
        )
    assert target.running and target.calls[0] == "stop" and target.calls[-1] == "resume"
    assert snap.images == target.world.images


def test_arm64_has_no_red_zone_and_saves_lr() -> None:
    snap = capture(FakeTarget(world("arm64")))
    assert (STACK + 0x800, STACK + 0x1000) in spans(snap)
    assert any(a <= CODE + 0x4400 < b for a, b in spans(snap))  # lr's caller
    assert not any(a <= CODE + 0x3300 < b for a, b in spans(snap))  # no [sp] rule on arm64


@pytest.mark.parametrize(
    "call",
    ["threads", "mappings", "read", "images", "addressable_bits", "extra_ranges", "auxv"],
)
def test_target_is_resumed_when_any_call_fails(call: str) -> None:
    target = FakeTarget(world(), fail_at=call)
    with pytest.raises(CaptureError, match=f"injected failure in {call}"):
        capture(target)
    assert target.running and target.calls[-1] == "resume"
    assert target.calls.count("resume") == 1


def test_failed_stop_is_not_resumed_twice() -> None:
    target = FakeTarget(world(), fail_at="stop")
    with pytest.raises(CaptureError):
        capture(target)
    assert "resume" not in target.calls


def test_crash_context_replaces_the_crashed_threads_state() -> None:
    crash = CrashContext(
        thread_id=0x102,
        regsets={
            RegKind.EXC: {"trapno": 14, "err": 6, "faultvaddr": 0},
            RegKind.GPR: {"rip": CODE + 8},
        },
        signal=SignalInfo(signo=11, code=1, address=0),
    )
    snap = capture(FakeTarget(world()), crash=crash)
    first = snap.threads[0]
    assert first.id == 0x102 and first.crashed, "the crashed thread goes first"
    assert first.gpr["rip"] == CODE + 8 and first.exception["trapno"] == 14
    assert snap.signal == crash.signal
    assert not snap.threads[1].crashed
    with pytest.raises(CaptureError, match="crashed thread 0x999 is not in the process"):
        capture(FakeTarget(world()), crash=CrashContext(thread_id=0x999))


def test_unreadable_memory_is_left_out_not_invented() -> None:
    hole = (STACK + 0x900, STACK + 0x1000)
    snap = capture(FakeTarget(world(), unreadable=[hole]))
    stack = [s for s in spans(snap) if STACK <= s[0] < STACK + 0x1000]
    assert stack == [(STACK + 0x800 - 128, STACK + 0x900)]


def test_frame_walk_survives_a_corrupt_chain() -> None:
    w = world()
    stack = bytearray(w.regions[1].data.read(0, 0x1000))
    fp0 = STACK + 0x820
    struct.pack_into("<QQ", stack, fp0 - STACK, fp0, CODE + 0x1100)  # points at itself
    looped = Snapshot(
        arch=w.arch,
        threads=w.threads,
        regions=[w.regions[0], Region(address=STACK, data=bytes(stack)), w.regions[2]],
    )
    snap = capture(FakeTarget(looped))
    assert any(a <= CODE + 0x1100 < b for a, b in spans(snap))
    assert not any(a <= CODE + 0x2200 < b for a, b in spans(snap))


def test_extra_ranges_and_options() -> None:
    from macminidump.capture.base import CaptureOptions

    snap = capture(
        FakeTarget(world(), extra=[(0x600010, 0x600020)]),
        CaptureOptions(max_stack=0x100, include=((0x600100, 8),)),
    )
    # two ranges in one page become one region, the gap between them read too: elfutils
    # finds segments by page and reads the second through the first
    assert (0x600010, 0x600108) in spans(snap)
    assert (STACK + 0x800 - 128, STACK + 0x900) in spans(snap)


def test_dont_dump_and_environment_are_never_saved() -> None:
    """A MADV_DONTDUMP range and the environment strings are absent from the core (not
    zeroed), whatever asked for them; keep_environment keeps the environment only."""
    from macminidump.capture.base import CaptureOptions

    env = (STACK + 0x840, STACK + 0x860)
    marked = (0x600000, 0x600100)

    def target() -> FakeTarget:
        return FakeTarget(world(), extra=[marked], dont_dump=[marked], environment=env)

    options = CaptureOptions(max_stack=0x100, include=((0x600080, 8),))
    snap = capture(target(), options)
    assert not any(a < marked[1] and marked[0] < b for a, b in spans(snap)), spans(snap)
    assert (STACK + 0x800 - 128, env[0]) in spans(snap) and (env[1], STACK + 0x900) in spans(snap)
    kept = capture(target(), records.evolve(options, keep_environment=True))
    assert (STACK + 0x800 - 128, STACK + 0x900) in spans(kept)
    assert not any(a < marked[1] and marked[0] < b for a, b in spans(kept))


def test_write_captured_imports_the_renderer_while_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``write_captured`` resolves its renderer once the target's state is read and before
    the memory choice asks for the MADV_DONTDUMP ranges (a backend's background read, the
    kernel's smaps walk on Linux, runs meanwhile); an unknown format is refused before the
    target is touched."""
    from macminidump import streaming

    target = FakeTarget(world())
    real = streaming.format_of

    def noting(fmt: str) -> object:
        target.calls.append("format_of")
        return real(fmt)

    monkeypatch.setattr(streaming, "format_of", noting)
    streaming.write_captured(target, tmp_path / "core", "elf")
    calls = target.calls
    assert calls.index("threads") < calls.index("format_of") < calls.index("dont_dump")
    target_calls = [c for c in calls if c != "format_of"]  # (the render's lookup is last)
    assert target_calls[0] == "stop" and target_calls[-1] == "resume"
    assert calls.count("resume") == 1
    untouched = FakeTarget(world())
    with pytest.raises(ValueError, match="no core format 'pe'"):
        streaming.write_captured(untouched, tmp_path / "other", "pe")
    assert untouched.calls == [] and not (tmp_path / "other").exists()


@st.composite
def mappings_and_words(draw: st.DrawFn) -> tuple[list[MemoryMapping], list[int]]:
    """Mappings a page to 256 MiB long, apart or touching, code, data or neither, low and
    high in the address space; and words at, around and 16 MiB to 1 TiB off their
    bounds."""
    base = draw(st.sampled_from([0, 0x5555_0000_0000, 0x7F12_3400_0000, 0xFFFF_8000_0000_0000]))
    layout = st.tuples(st.integers(1, 64), st.integers(0, 64), st.sampled_from([0, 1, 3, 5, 7]))
    mappings, cursor = [], base
    for pages, gap, protection in draw(st.lists(layout, max_size=12)):
        cursor += gap * 0x100000
        end = cursor + pages * pages * 0x10000
        mappings.append(MemoryMapping(start=cursor, end=end, protection=Protection(protection)))
        cursor = end
    edges = [0, 0x1000, *(a for m in mappings for a in (m.start, m.end))]
    offsets = st.sampled_from([0, 1, -1, 2, 1 << 24, 1 << 32, 1 << 40])
    picks = draw(st.lists(st.tuples(st.integers(0, 12), offsets), max_size=80))
    return mappings, [(edges[i % len(edges)] + delta) % (1 << 64) for i, delta in picks]


def packed(words: list[int]) -> bytes:
    """The words as a stack holds them, and a ragged end that is no word."""
    return struct.pack(f"<{len(words)}Q", *words) + b"\x01" * (len(words) % 3)


@given(found=mappings_and_words(), limit=st.integers(1, 8), stripped=st.booleans())
@example(
    found=([MemoryMapping(start=0, end=0x10000, protection=Protection(5))], [0x1000, 0x1001]),
    limit=2,
    stripped=False,
)  # code from 0: 0x1000 is not
@example(
    found=([MemoryMapping(start=0x100000, end=0x140000, protection=Protection(5))], [0x100001] * 9),
    limit=3,
    stripped=False,
)  # more than the limit
def test_in_code_is_the_executable_lookup_of_each_word(
    found: tuple[list[MemoryMapping], list[int]], limit: int, stripped: bool
) -> None:
    """``MappingIndex.in_code`` (the stack scan's filter: byte columns tested in C first)
    keeps exactly the words ``at`` finds in executable memory above 0x1000, the first
    ``limit`` in order; and the same after a ``strip`` (arm64's pointer bits)."""
    mappings, words = found
    index = MappingIndex(mappings)

    def strip(word: int) -> int:
        return word & ((1 << 56) - 1)

    expected = []
    for word in words:
        value = strip(word) if stripped else word
        mapping = index.at(value) if value > 0x1000 else None
        if mapping is not None and int(mapping.protection) & EXECUTE:
            expected.append(value)
    assert index.in_code(packed(words), limit, strip if stripped else None) == expected[:limit]


@given(found=mappings_and_words())
def test_maybe_data_keeps_every_pointer_into_data(
    found: tuple[list[MemoryMapping], list[int]],
) -> None:
    """``MappingIndex.maybe_data`` (``referenced``'s filter) keeps, in their order, some of
    the words, among them every one ``at`` finds in readable memory that is not code."""
    mappings, words = found
    index = MappingIndex(mappings)

    def data(word: int) -> bool:
        mapping = index.at(word)
        return mapping is not None and int(mapping.protection) & (READ | EXECUTE) == READ

    kept = index.maybe_data(packed(words))
    rest = iter(words)
    assert all(any(k == w for w in rest) for k in kept), "not the words' subsequence"
    assert [w for w in kept if data(w)] == [w for w in words if data(w)]


def test_stack_is_scanned_when_there_is_no_frame_chain() -> None:
    """A thread blocked in a libc system call has fp = 0 (the wrapper reused it)."""
    w = world()
    thread = Thread(id=0x101, regsets={"gpr": {"rip": CODE + 0x10, "rsp": STACK + 0x800}})
    no_fp = Snapshot(arch=w.arch, threads=[thread], regions=w.regions)
    snap = capture(FakeTarget(no_fp))
    for ret in (CODE + 0x1100, CODE + 0x2200, CODE + 0x3300):  # found in the stack's words
        assert any(a <= ret < b for a, b in spans(snap)), hex(ret)


def test_a_target_that_exits_while_stopped_is_an_error() -> None:
    class Dying(FakeTarget):
        def images(self):  # type: ignore[no-untyped-def]
            self.exited = True
            return super().images()

    target = Dying(world())
    with pytest.raises(CaptureError, match="exited during capture"):
        capture(target)
    assert target.calls[-1] == "resume"


def test_environment_strings_found_above_the_main_stack() -> None:
    """The start-up arrays (argc, argv, NULL, envp, NULL) and the strings above them, as
    Linux and Darwin lay them out: the environment strings' range, found from memory."""
    from macminidump.capture.startup_stack import environment_strings

    top = 0x7FFF0000
    strings = b"./prog\0-v\0HOME=/root\0MY_TOKEN=hunter2\0"
    strings_at = top - len(strings) - 8
    arrays_at = (strings_at - 0x100) & ~0xF
    argv = [strings_at, strings_at + 7]
    envp = [strings_at + 10, strings_at + 21]
    words = [0xDEAD, 2, *argv, 0, *envp, 0, 0]
    memory = bytearray(0x1000)
    base = top - 0x1000
    for i, w in enumerate(words):
        memory[arrays_at - 8 - base + 8 * i : arrays_at - base + 8 * i] = w.to_bytes(8, "little")
    memory[strings_at - base : strings_at - base + len(strings)] = strings

    def read(address: int, size: int) -> bytes:
        return bytes(memory[address - base : address - base + size])

    start, end = environment_strings(read, base, top) or (0, 0)
    assert read(start, end - start) == b"HOME=/root\0MY_TOKEN=hunter2\0"
    assert environment_strings(lambda a, n: bytes(n), base, top) is None


def test_no_garbage_collection_while_capturing_and_rendering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector is off while a capture and a render build their objects (gc_pause),
    and as it was after, on every path: on again, or still off if the caller had it off."""
    import gc

    from macminidump.elf import render
    from macminidump.elf.parse import ElfCore

    seen: list[bool] = []

    class Watched(FakeTarget):
        def threads(self):  # type: ignore[no-untyped-def]
            seen.append(gc.isenabled())
            return super().threads()

    def watched(function):  # type: ignore[no-untyped-def]
        def call(*args):  # type: ignore[no-untyped-def]
            seen.append(gc.isenabled())
            return function(*args)

        return call

    assert gc.isenabled()
    snap = capture(Watched(world("x86_64")))
    assert seen == [False] and gc.isenabled()
    with pytest.raises(CaptureError, match="injected failure in read"):
        capture(Watched(world("x86_64"), fail_at="read"))
    assert seen == [False, False] and gc.isenabled()

    seen.clear()
    monkeypatch.setattr(render, "layout_elf", watched(render.layout_elf))

    class Checked(ElfCore):
        @classmethod
        def read_back(cls, snapshot: Snapshot):  # type: ignore[no-untyped-def]
            return watched(ElfCore.read_back(snapshot))

    monkeypatch.setattr(render, "ElfCore", Checked)
    render.render_elf(snap, tmp_path / "core")
    render.render_elf_bytes(snap)
    assert seen == [False, False, False] and gc.isenabled()
    gc.disable()
    try:
        capture(Watched(world("x86_64")))
        render.render_elf(snap, tmp_path / "core")
        assert not gc.isenabled()
    finally:
        gc.enable()
