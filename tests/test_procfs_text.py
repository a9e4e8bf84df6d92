"""The readers of /proc text a dump uses (procfs.maps_lines, maps, dont_dump_in) read
what the regular expressions they replaced read, kept here as the oracles (one property
per invariant): on the kernel's own output, on hostile file names (newlines as the
kernel escapes them, "VmFlags: dd", " (deleted)", odd spacing) and on any text."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from macminidump.capture.base import MemoryMapping
from macminidump.capture.linux import procfs
from macminidump.model import PROTECTIONS

# -- the oracles: procfs as it read these files with re ------------------------------------

MAPS_LINE = r"(?m)^([0-9a-f]+)-([0-9a-f]+) (\S*) ([0-9a-f]+) \S+ \S+(?:[ \t]+([^\n]*))?$"
SMAPS_HEADER = rb"([0-9a-f]+)-([0-9a-f]+) "
DONT_DUMP = rb"\nVmFlags:[^\n]*? dd(?=[ \t\n]|$)"


def maps_lines_by_regex(text: str) -> list[tuple[str, str, str, str, str]]:
    return re.findall(MAPS_LINE, text)


def maps_by_regex(text: str) -> list[MemoryMapping]:
    out = []
    for start, end, perms, offset, path in re.findall(MAPS_LINE, text):
        prot = procfs._PERMS.get(perms[:3])
        if prot is None:
            prot = ("r" in perms[0:1]) * 1 + ("w" in perms[1:2]) * 2 + ("x" in perms[2:3]) * 4
        out.append(
            MemoryMapping(
                start=int(start, 16),
                end=int(end, 16),
                protection=PROTECTIONS[prot],
                path=path,
                offset=int(offset, 16),
            )
        )
    return out


def dont_dump_by_regex(text: bytes) -> list[tuple[int, int]]:
    marked = []
    smaps_header = re.compile(SMAPS_HEADER)
    for flags in re.finditer(DONT_DUMP, text):
        line = flags.start()
        while line >= 0:
            line_start = text.rfind(b"\n", 0, line) + 1
            header = smaps_header.match(text, line_start)
            if header:
                marked.append((int(header.group(1), 16), int(header.group(2), 16)))
                break
            line = line_start - 1
    return marked


# -- inputs: the kernel's lines built from their fields, hostile ones, any text -------------

# (as the kernel writes them: at least 8 digits; and any width)
hex_numbers = st.integers(0, (1 << 64) - 1).map(lambda n: f"{n:08x}") | st.integers(0, 1 << 64).map(
    lambda n: f"{n:x}"
)
perms = st.sampled_from(["r--p", "rw-p", "r-xp", "---p", "rwxs", "--xp", "rw-s"])
devices = st.sampled_from(["00:00", "fe:00", "103:02", "08:01"])
inodes = st.integers(0, 1 << 40).map(str)
kernel_paths = st.sampled_from(
    [
        "",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "[heap]",
        "[stack]",
        "[vvar]",
        "[anon:stack guard]",
        "/tmp/a b (deleted)",
        "/tmp/x\\012VmFlags: dd",
        "/tmp/ x",
        "/tmp/\u00e9t\u00e9",
    ]
)
# what a hostile name or a kernel other than this one may hold
odd_texts = st.lists(
    st.sampled_from(
        list(" \t\r\x0b\x0c\x1c\x85\xa0\u2028\u3000-:0123456789abcdefABx_+/\\()[]dV")
        + ["VmFlags: dd", "\\012", " (deleted)", "\ufffd", "é"]
    ),
    max_size=8,
).map("".join)


@st.composite
def kernel_lines(draw: st.DrawFn) -> str:
    """A maps line as the kernel writes it: fields, one space apart, the path padded."""
    head = (
        f"{draw(hex_numbers)}-{draw(hex_numbers)} {draw(perms)} {draw(hex_numbers)} "
        f"{draw(devices)} {draw(inodes)}"
    )
    path = draw(kernel_paths)
    padding = " " * draw(st.integers(1, 30))
    return f"{head}{padding}{path}" if path or draw(st.booleans()) else head


@st.composite
def near_kernel_lines(draw: st.DrawFn) -> str:
    """A kernel's line with one field or gap changed in ASCII (the text stays on the
    column path, whose checks must then refuse the line as the regex does)."""
    fields = [draw(hex_numbers), draw(hex_numbers), draw(perms), draw(hex_numbers)]
    fields += [draw(devices), draw(inodes)]
    gaps = ["-", " ", " ", " ", " ", " " * draw(st.integers(1, 4))]
    changed = draw(st.integers(0, 11))
    odd = draw(st.sampled_from(["", "-", " ", "  ", "A", "_", "0x1", "1-2", "g", "-1", "ff-"]))
    if changed < 6:
        fields[changed] = odd
    else:
        gaps[changed - 6] = odd
    path = draw(kernel_paths)
    return "".join(f + g for f, g in zip(fields, gaps, strict=True)) + path


@st.composite
def odd_lines(draw: st.DrawFn) -> str:
    """A line whose fields or spacing may be anything a hostile name or an odd file holds."""
    field = st.one_of(hex_numbers, odd_texts, st.just(""))
    fields = [draw(field) for _ in range(6)]
    gaps = [draw(st.sampled_from([" ", " ", " ", "  ", "\t", "", " \t", "\r"])) for _ in range(6)]
    return "".join(f + g for f, g in zip(fields, gaps, strict=True))


def joined(lines: list[str], trailing: bool) -> str:
    return "\n".join(lines) + ("\n" if trailing and lines else "")


kernel_maps = st.builds(joined, st.lists(kernel_lines(), max_size=12), st.booleans())
near_kernel_maps = st.builds(
    joined, st.lists(kernel_lines() | near_kernel_lines(), max_size=12), st.booleans()
)
mixed_maps = st.builds(
    joined, st.lists(kernel_lines() | near_kernel_lines() | odd_lines(), max_size=12), st.booleans()
)
maps_alphabet = st.text(
    alphabet=st.sampled_from(list("0123456789abcdef- \t\n\r:/rwxps[]\x0b\u3000é")), max_size=80
)


@given(kernel_maps)
def test_the_kernels_maps_read_as_the_regex_read_them(text: str) -> None:
    assert list(procfs.maps_lines(text)) == maps_lines_by_regex(text)


@given(kernel_maps)
def test_a_line_at_a_time_reads_the_kernels_maps_as_the_columns_do(text: str) -> None:
    """(the kernel's output takes the column path; this checks the other on it too)"""
    lines = text.split("\n")
    assert procfs._maps_lines_one_by_one(lines) == list(procfs.maps_lines(text))


@given(near_kernel_maps)
def test_lines_near_the_kernels_read_as_the_regex_read_them(text: str) -> None:
    assert list(procfs.maps_lines(text)) == maps_lines_by_regex(text)


#: lines one change away from the kernel's, each refused by a check of its own
NEAR_MISSES = [
    "-2 r 0 0:0 7 x",
    "3- r 0 0:0 7 x",
    "5-6-7 r 0 0:0 7 x",
    "4-5 r  0:0 7 x",
    "6-7 r 0  7 x",
    "3-4 r 0 0:0  x",
    "8-9 r - 0:0 7 x",
    "3-4 r 0x1 0:0 7 ",
    "A-B r 0 0:0 7 ",
    "1_0-2 r 0 0:0 7 ",
    "0-1 r 1 0:0 7",
    "5-6  0 0:0 7 ",
    "",
]


@pytest.mark.parametrize("line", NEAR_MISSES)
def test_each_near_miss_reads_as_the_regex_reads_it(line: str) -> None:
    text = f"1-2 r 0 0:0 7 x\n{line}\n3-4 rw-p 0 0:0 7 "
    assert list(procfs.maps_lines(text)) == maps_lines_by_regex(text)


@given(mixed_maps)
@example("1-2 rw-p 0 0:0 7\tpath\n1-2 r 0 0:0 7\r\n1-2  0 0:0 \t7 x\n1-2 r 0 0\t:0 7 x")
@example("1-2 r 0 0:0 7\x0b x\n1-2 r 0 0:0 7\u3000x\n1-2 \xa0 0 0:0 7 x\n-2 r 0 0:0 7 x")
@example("1-2 r 0 0:0 7 \t \t x \n1-2 r 0 0:0 7\n1-2 r 0 0:0 7 \r")
def test_hostile_maps_lines_read_as_the_regex_read_them(text: str) -> None:
    assert list(procfs.maps_lines(text)) == maps_lines_by_regex(text)


@given(maps_alphabet | st.text(max_size=60))
def test_any_text_reads_as_the_regex_read_it(text: str) -> None:
    assert list(procfs.maps_lines(text)) == maps_lines_by_regex(text)


@given(kernel_maps | mixed_maps)
def test_maps_makes_the_mappings_the_regex_made(text: str) -> None:
    with tempfile.TemporaryDirectory() as where:  # (given: no tmp_path fixture)
        Path(where, "maps").write_text(text, encoding="utf-8")
        assert procfs.maps(where) == maps_by_regex(text)


def test_this_process_maps_read_as_the_regex_read_them() -> None:
    text = procfs.read_text("/proc/self/maps")
    assert text and list(procfs.maps_lines(text)) == maps_lines_by_regex(text)


# -- smaps: the MADV_DONTDUMP marks ---------------------------------------------------------

flags = st.sampled_from(["rd", "wr", "ex", "mr", "mw", "me", "ac", "sd", "dd", "dc", "ddd"])


@st.composite
def flags_lines(draw: st.DrawFn) -> str:
    """A VmFlags line: the kernel's ("xx " after each flag), or spaced oddly."""
    chosen = draw(st.lists(flags, max_size=6))
    if draw(st.booleans()):
        return "VmFlags: " + "".join(f"{f} " for f in chosen)
    gaps = st.sampled_from([" ", "\t", "  ", "", " \r"])
    return "VmFlags:" + "".join(draw(gaps) + f for f in chosen) + draw(gaps | st.just(""))


@st.composite
def smaps_blocks(draw: st.DrawFn) -> str:
    header = draw(kernel_lines() | odd_lines())
    counts = [
        f"{key}:{' ' * draw(st.integers(1, 12))}{draw(st.integers(0, 99))} kB"
        for key in draw(st.lists(st.sampled_from(["Size", "Rss", "Anonymous"]), max_size=3))
    ]
    return "\n".join([header, *counts, draw(flags_lines() | odd_texts)])


smaps_texts = st.builds(
    lambda blocks, trailing: joined(blocks, trailing).encode("utf-8", "surrogatepass"),
    st.lists(smaps_blocks(), max_size=6),
    st.booleans(),
)
smaps_alphabet = st.lists(
    st.sampled_from([b"\n", b" ", b"\t", b"d", b"dd", b"VmFlags:", b"0", b"a-f ", b"-", b"x"]),
    max_size=30,
).map(b"".join)


@given(smaps_texts)
@example(b"0-10 x\nVmFlags: dd\tx\n20-30 y\nVmFlags: rd dd\n40-50 z\nVmFlags: dd")
@example(b"VmFlags: dd \n0-1 y\nVmFlags:\tdd dd \n-1 z\n2- \n3-4 \nVmFlags: ddd  dd ")
@example(b"0-1 x\nVmFlags: ddx dd\r\n2-3 y\n x\nVmFlags: dd\x0b\n4-5  \nVmFlags: dd ")
def test_dont_dump_marks_read_as_the_regex_read_them(text: bytes) -> None:
    assert procfs.dont_dump_in(text) == dont_dump_by_regex(text)


@given(smaps_alphabet | st.binary(max_size=60))
def test_dont_dump_marks_in_any_bytes_read_as_the_regex_read_them(text: bytes) -> None:
    assert procfs.dont_dump_in(text) == dont_dump_by_regex(text)


def test_this_process_smaps_marks_read_as_the_regex_read_them() -> None:
    text = procfs.smaps("/proc/self")
    assert text is not None and procfs.dont_dump_in(text) == dont_dump_by_regex(text)
