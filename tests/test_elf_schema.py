"""macminidump.elf.schema: sizes, round-trips, garbage input, and a real gcore core file."""

from __future__ import annotations

import io
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import construct
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macminidump import arch, linux_abi
from macminidump.elf import schema
from macminidump.elf.constants import (
    CoreNoteType,
    ElfMachine,
    ElfType,
    NoteOwner,
)
from macminidump.linux_abi import FAULT_SIGNALS, AuxvType, SegmentType

# -- strategies -------------------------------------------------------------------------------


def _uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


def _sint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


u8, u16, u32, u64 = _uint(8), _uint(16), _uint(32), _uint(64)
i8, i32, i64 = _sint(8), _sint(32), _sint(64)


def _blob(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


def _fits(size: int) -> Callable[[str], str]:
    def cut(text: str) -> str:
        while len(text.encode()) > size:
            text = text[:-1]
        return text

    return cut


def _text(max_bytes: int) -> st.SearchStrategy[str]:
    """Text that a NUL-padded field of max_bytes holds and gives back unchanged."""
    chars = st.characters(codec="utf-8", exclude_characters="\0")
    return st.text(chars, max_size=max_bytes).map(_fits(max_bytes))


def _padded(max_bytes: int) -> st.SearchStrategy[bytes]:
    """Raw bytes of such a field: UTF-8 without trailing NULs, then NUL padding."""
    return _text(max_bytes).map(lambda t: t.encode().ljust(max_bytes, b"\0"))


ehdr_st = st.fixed_dictionaries(
    {
        "ei_class": u8,
        "ei_data": u8,
        "ei_version": u8,
        "ei_osabi": u8,
        "ei_abiversion": u8,
        "ei_pad": _blob(7),
        "e_type": u16,
        "e_machine": u16,
        "e_version": u32,
        "e_entry": u64,
        "e_phoff": u64,
        "e_shoff": u64,
        "e_flags": u32,
        "e_ehsize": u16,
        "e_phentsize": u16,
        "e_phnum": u16,
        "e_shentsize": u16,
        "e_shnum": u16,
        "e_shstrndx": u16,
    }
).map(lambda d: {"ei_mag": b"\x7fELF", **d})

phdr_st = st.fixed_dictionaries(
    {
        "p_type": u32,
        "p_flags": u32,
        "p_offset": u64,
        "p_vaddr": u64,
        "p_paddr": u64,
        "p_filesz": u64,
        "p_memsz": u64,
        "p_align": u64,
    }
)

nhdr_st = st.fixed_dictionaries({"namesz": u32, "descsz": u32, "type": u32})

note_st = st.builds(
    lambda name, desc, typ: {
        "namesz": len(name),
        "descsz": len(desc),
        "type": typ,
        "name": name,
        "desc": desc,
    },
    st.binary(max_size=12),
    st.binary(max_size=64),
    u32,
)

timeval_st = st.fixed_dictionaries({"tv_sec": i64, "tv_usec": i64})


def _prstatus_st(reg_names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "si_signo": i32,
            "si_code": i32,
            "si_errno": i32,
            "pr_cursig": u16,
            "pad0": _blob(2),
            "pr_sigpend": u64,
            "pr_sighold": u64,
            "pr_pid": i32,
            "pr_ppid": i32,
            "pr_pgrp": i32,
            "pr_sid": i32,
            "pr_utime": timeval_st,
            "pr_stime": timeval_st,
            "pr_cutime": timeval_st,
            "pr_cstime": timeval_st,
            "pr_reg": st.fixed_dictionaries({name: u64 for name in reg_names}),
            "pr_fpvalid": i32,
            "pad1": _blob(4),
        }
    )


prpsinfo_st = st.fixed_dictionaries(
    {
        "pr_state": i8,
        "pr_sname": i8,
        "pr_zomb": i8,
        "pr_nice": i8,
        "pad0": _blob(4),
        "pr_flag": u64,
        "pr_uid": u32,
        "pr_gid": u32,
        "pr_pid": i32,
        "pr_ppid": i32,
        "pr_pgrp": i32,
        "pr_sid": i32,
        "pr_fname": _text(16),
        "pr_psargs": _text(80),
    }
)


@st.composite
def siginfo_st(draw: st.DrawFn) -> dict[str, Any]:
    signo = draw(st.one_of(st.sampled_from(sorted(FAULT_SIGNALS)), i32))
    code = draw(st.one_of(st.sampled_from([-6, 0, 1, 2, 0x80]), i32))
    fault = signo in FAULT_SIGNALS and code > 0
    return {
        "si_signo": signo,
        "si_errno": draw(i32),
        "si_code": code,
        "pad0": draw(_blob(4)),
        "si_addr": draw(u64) if fault else None,
        "si_rest": draw(_blob(104 if fault else 112)),
    }


def _auxv_list(entries: list[tuple[int, int]], last: int) -> list[dict[str, int]]:
    return [{"type": t, "value": v} for t, v in entries] + [{"type": 0, "value": last}]


auxv_st = st.builds(
    _auxv_list,
    st.lists(st.tuples(st.integers(1, (1 << 64) - 1), u64), max_size=30),
    u64,
)


@st.composite
def nt_file_st(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 8))
    names = st.text(st.characters(codec="utf-8", exclude_characters="\0"))
    return {
        "count": n,
        "page_size": draw(u64),
        "entries": draw(
            st.lists(
                st.fixed_dictionaries({"start": u64, "end": u64, "file_ofs": u64}),
                min_size=n,
                max_size=n,
            )
        ),
        "filenames": draw(st.lists(names, min_size=n, max_size=n)),
    }


fpregs_st = st.fixed_dictionaries(
    {
        "fcw": u16,
        "fsw": u16,
        "ftw": u16,
        "fop": u16,
        "fpu_ip": u64,
        "fpu_dp": u64,
        "mxcsr": u32,
        "mxcsrmask": u32,
        **{f"stmm{i}": _blob(16) for i in range(8)},
        **{f"xmm{i}": _blob(16) for i in range(16)},
        "padding": _blob(96),
    }
)

#: (name, struct, value strategy, raw-bytes strategy whose every draw must round-trip)
CASES: list[tuple[str, construct.Construct, st.SearchStrategy[Any], st.SearchStrategy[bytes]]] = [
    (
        "elf64_ehdr",
        schema.elf64_ehdr,
        ehdr_st,
        _blob(60).map(lambda b: b"\x7fELF" + b),
    ),
    ("elf64_phdr", schema.elf64_phdr, phdr_st, _blob(56)),
    ("elf64_nhdr", schema.elf64_nhdr, nhdr_st, _blob(12)),
    (
        "elf64_note",
        schema.elf64_note,
        note_st,
        # raw notes with zero alignment bytes (the only bytes not kept)
        st.builds(
            lambda name, desc, t: (
                len(name).to_bytes(4, "little")
                + len(desc).to_bytes(4, "little")
                + t
                + name.ljust(-(-len(name) // 4) * 4, b"\0")
                + desc.ljust(-(-len(desc) // 4) * 4, b"\0")
            ),
            st.binary(max_size=12),
            st.binary(max_size=64),
            _blob(4),
        ),
    ),
    ("timeval", schema.timeval, timeval_st, _blob(16)),
    (
        "elf_prstatus_x86_64",
        schema.elf_prstatus_x86_64,
        _prstatus_st(linux_abi.X86_64_USER_REGS),
        _blob(336),
    ),
    (
        "elf_prstatus_aarch64",
        schema.elf_prstatus_aarch64,
        _prstatus_st(schema.AARCH64_USER_REGS),
        _blob(392),
    ),
    (
        "elf_prpsinfo_x86_64",
        schema.elf_prpsinfo_x86_64,
        prpsinfo_st,
        st.builds(lambda a, b, c: a + b + c, _blob(40), _padded(16), _padded(80)),
    ),
    ("siginfo", schema.siginfo, siginfo_st(), _blob(128)),
    (
        "auxv",
        schema.auxv,
        auxv_st,
        st.builds(
            lambda body, last: b"".join(body) + b"\0" * 8 + last,
            st.lists(
                st.builds(lambda t, v: t + v, _blob(8), _blob(8)).filter(
                    lambda e: e[:8] != b"\0" * 8
                ),
                max_size=30,
            ),
            _blob(8),
        ),
    ),
    ("nt_file", schema.nt_file, nt_file_st(), nt_file_st().map(schema.nt_file.build)),
    ("user_fpregs_struct", schema.user_fpregs_struct, fpregs_st, _blob(512)),
]
IDS = [case[0] for case in CASES]

# -- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "struct, size",
    [
        (schema.elf64_ehdr, 64),
        (schema.elf64_phdr, 56),
        (schema.elf64_nhdr, 12),
        (schema.timeval, 16),
        (schema.user_regs_struct_x86_64, 27 * 8),
        (schema.user_pt_regs_aarch64, 34 * 8),
        (schema.elf_prstatus_x86_64, 336),
        (schema.elf_prstatus_aarch64, 392),
        (schema.elf_prpsinfo_x86_64, 136),
        (schema.user_fpregs_struct, 512),
        (schema.auxv_entry, 16),
        (schema.nt_file_entry, 24),
    ],
)
def test_sizeof(struct: construct.Construct, size: int) -> None:
    assert struct.sizeof() == size


@pytest.mark.parametrize("signo, code", [(11, 1), (11, 0), (19, 0x80), (5, 2), (7, -6)])
def test_siginfo_is_always_128_bytes(signo: int, code: int) -> None:
    fault = signo in FAULT_SIGNALS and code > 0
    value = {
        "si_signo": signo,
        "si_errno": 0,
        "si_code": code,
        "pad0": bytes(4),
        "si_addr": 0xDEAD if fault else None,
        "si_rest": bytes(104 if fault else 112),
    }
    raw = schema.siginfo.build(value)
    assert len(raw) == 128
    assert schema.siginfo.parse(raw).si_addr == (0xDEAD if fault else None)
    assert raw[16:24] == ((0xDEAD).to_bytes(8, "little") if fault else bytes(8))


def test_register_names_are_arch_names() -> None:
    x86 = arch.arch_info(arch.Arch.X86_64).registers
    assert set(linux_abi.X86_64_USER_REGS) <= set(x86[arch.RegKind.GPR])
    assert len(linux_abi.X86_64_USER_REGS) == 27
    assert set(linux_abi.X86_64_FPREGS) <= set(x86[arch.RegKind.FPR])
    arm = arch.arch_info(arch.Arch.ARM64).registers
    assert set(schema.AARCH64_USER_REGS) <= set(arm[arch.RegKind.GPR])
    assert len(schema.AARCH64_USER_REGS) == 34


def test_prstatus_register_offsets() -> None:
    """Linux order: r15 first at offset 112, rip 17th, gs last, then pr_fpvalid."""
    regs = {name: i + 1 for i, name in enumerate(linux_abi.X86_64_USER_REGS)}
    value = {
        "si_signo": 0,
        "si_code": 0,
        "si_errno": 0,
        "pr_cursig": 0,
        "pad0": bytes(2),
        "pr_sigpend": 0,
        "pr_sighold": 0,
        "pr_pid": 0,
        "pr_ppid": 0,
        "pr_pgrp": 0,
        "pr_sid": 0,
        **{k: {"tv_sec": 0, "tv_usec": 0} for k in ("pr_utime", "pr_stime", "pr_cutime")},
        "pr_cstime": {"tv_sec": 0, "tv_usec": 0},
        "pr_reg": regs,
        "pr_fpvalid": 1,
        "pad1": bytes(4),
    }
    raw = schema.elf_prstatus_x86_64.build(value)
    word = lambda off: int.from_bytes(raw[off : off + 8], "little")  # noqa: E731
    assert word(112) == regs["r15"]
    assert word(112 + 16 * 8) == regs["rip"]
    assert word(112 + 18 * 8) == regs["rflags"]
    assert word(112 + 19 * 8) == regs["rsp"]
    assert word(112 + 26 * 8) == regs["gs"]
    assert raw[328:332] == (1).to_bytes(4, "little")


def test_enums_parse_to_intenum_and_unknown_to_int() -> None:
    value = {"type": AuxvType.AT_ENTRY, "value": 1}
    parsed = schema.auxv_entry.parse(schema.auxv_entry.build(value))
    assert parsed.type is AuxvType.AT_ENTRY
    parsed = schema.auxv_entry.parse(schema.auxv_entry.build({"type": 12345, "value": 1}))
    assert parsed.type == 12345 and type(parsed.type) is int


# -- round-trips ------------------------------------------------------------------------------

_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name, struct, values, raws", CASES, ids=IDS)
@_settings
@given(data=st.data())
def test_parse_build_roundtrip(
    name: str,
    struct: construct.Construct,
    values: st.SearchStrategy[Any],
    raws: st.SearchStrategy[bytes],
    data: st.DataObject,
) -> None:
    value = data.draw(values)
    assert struct.parse(struct.build(value)) == value


@pytest.mark.parametrize("name, struct, values, raws", CASES, ids=IDS)
@_settings
@given(data=st.data())
def test_build_parse_roundtrip(
    name: str,
    struct: construct.Construct,
    values: st.SearchStrategy[Any],
    raws: st.SearchStrategy[bytes],
    data: st.DataObject,
) -> None:
    raw = data.draw(raws)
    assert struct.build(struct.parse(raw)) == raw


# -- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, struct, values, raws", CASES, ids=IDS)
@_settings
@given(data=st.data())
def test_garbage_raises_only_construct_errors(
    name: str,
    struct: construct.Construct,
    values: st.SearchStrategy[Any],
    raws: st.SearchStrategy[bytes],
    data: st.DataObject,
) -> None:
    garbage = data.draw(st.one_of(st.binary(max_size=700), raws.map(lambda b: b[:-1])))
    try:
        struct.parse(garbage)
    except construct.ConstructError:
        pass


@pytest.mark.parametrize("name, struct, values, raws", CASES, ids=IDS)
@_settings
@given(data=st.data())
def test_truncated_input_is_a_stream_error(
    name: str,
    struct: construct.Construct,
    values: st.SearchStrategy[Any],
    raws: st.SearchStrategy[bytes],
    data: st.DataObject,
) -> None:
    raw = data.draw(raws)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(construct.StreamError):
        struct.parse(raw[:cut])


def test_invalid_utf8_is_a_string_error() -> None:
    good = schema.elf_prpsinfo_x86_64.build(
        {
            "pr_state": 0,
            "pr_sname": ord("R"),
            "pr_zomb": 0,
            "pr_nice": 0,
            "pad0": bytes(4),
            "pr_flag": 0,
            "pr_uid": 0,
            "pr_gid": 0,
            "pr_pid": 1,
            "pr_ppid": 0,
            "pr_pgrp": 1,
            "pr_sid": 1,
            "pr_fname": "prog",
            "pr_psargs": "prog -x",
        }
    )
    bad = good[:40] + b"\xff\xfe" + good[42:]
    with pytest.raises(construct.StringError):
        schema.elf_prpsinfo_x86_64.parse(bad)
    # a multi-byte character cut by the kernel's 15-byte comm truncation
    cut = "ab" + "é" * 7  # 16 bytes: the last "é" loses its second byte at 15
    bad = good[:40] + cut.encode()[:15] + b"\0" + good[56:]
    with pytest.raises(construct.StringError):
        schema.elf_prpsinfo_x86_64.parse(bad)
    nt = schema.nt_file.build(
        {"page_size": 4096, "entries": [{"start": 0, "end": 1, "file_ofs": 0}], "filenames": ["x"]}
    )
    with pytest.raises(construct.StringError):
        schema.nt_file.parse(nt[:-2] + b"\xc3\0")


def test_huge_note_sizes_fail_before_reading() -> None:
    raw = (5).to_bytes(4, "little") + (0xFFFFFFFF).to_bytes(4, "little") + (1).to_bytes(4, "little")
    raw += b"CORE\0\0\0\0" + b"x" * 16
    with pytest.raises(construct.StreamError, match="exceeds"):
        schema.elf64_note.parse(raw)
    with pytest.raises(construct.StreamError):
        schema.nt_file.parse((1 << 62).to_bytes(8, "little") + bytes(8 + 48))


def test_auxv_without_at_null_is_a_stream_error() -> None:
    with pytest.raises(construct.StreamError):
        schema.auxv.parse((AuxvType.AT_ENTRY).to_bytes(8, "little") + bytes(8))


# -- a real core file from gcore --------------------------------------------------------------

PROGRAM = textwrap.dedent(
    r"""
    #include <pthread.h>
    #include <signal.h>
    #include <stdio.h>
    #include <sys/prctl.h>
    #include <unistd.h>

    static pthread_barrier_t barrier;

    static void *worker(void *arg) {
        (void)arg;
        pthread_barrier_wait(&barrier);
        for (;;) pause();
        return NULL;
    }

    int main(void) {
        pthread_t thread;
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* die with the test process */
        alarm(120);                       /* and never outlive a stuck test */
        pthread_barrier_init(&barrier, NULL, 2);
        if (pthread_create(&thread, NULL, worker, NULL) != 0) return 1;
        pthread_barrier_wait(&barrier);
        printf("ready\n");
        fflush(stdout);
        for (;;) pause();
    }
    """
)

PROGRAM_NAME = "mmd_probe"


def _gcore_missing() -> str | None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return "needs Linux x86_64"
    for tool in ("cc", "gdb"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


@pytest.fixture
def running_program(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    src = tmp_path / f"{PROGRAM_NAME}.c"
    src.write_text(PROGRAM)
    exe = tmp_path / PROGRAM_NAME
    subprocess.run(
        ["cc", "-O0", "-g", "-pthread", "-o", str(exe), str(src)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == b"ready\n", f"program did not start: {line!r}"
        yield proc, exe
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _take_gcore(pid: int, out: Path) -> None:
    # Make gdb dump private file-backed mappings too (coredump_filter bit 2), so thread
    # pcs inside libc's text land in a PT_LOAD. With the default filter (0x33) gcore
    # leaves out unmodified file-backed text and rip has no PT_LOAD around it.
    Path(f"/proc/{pid}/coredump_filter").write_text("0x37")
    result = subprocess.run(
        [
            "gdb",
            "-batch",
            "-nx",
            "-ex",
            "set debuginfod enabled off",
            "-p",
            str(pid),
            "-ex",
            f"gcore {out}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    if not out.exists():
        pytest.fail(f"gcore wrote no core (rc {result.returncode}):\n{result.stderr}")


def _walk_notes(f: io.BufferedReader, phdrs: list[Any]) -> Iterator[tuple[bytes, int, bytes]]:
    for ph in phdrs:
        if ph.p_type != SegmentType.PT_NOTE:
            continue
        f.seek(ph.p_offset)
        stream = io.BytesIO(f.read(ph.p_filesz))
        while stream.tell() < ph.p_filesz:
            note = schema.elf64_note.parse_stream(stream)
            yield note.name, note.type, note.desc


def test_gcore_core_file(
    running_program: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    # CI installs gdb and cc (the README's test command): a missing tool fails, not skips
    assert _gcore_missing() is None, _gcore_missing()
    proc, exe = running_program
    tids = {int(t) for t in os.listdir(f"/proc/{proc.pid}/task")}
    assert len(tids) == 2
    core = tmp_path / "core"
    _take_gcore(proc.pid, core)

    with core.open("rb") as f:
        raw_ehdr = f.read(schema.elf64_ehdr.sizeof())
        ehdr = schema.elf64_ehdr.parse(raw_ehdr)
        assert schema.elf64_ehdr.build(ehdr) == raw_ehdr
        assert ehdr.e_type == ElfType.ET_CORE and ehdr.e_machine == ElfMachine.EM_X86_64
        assert ehdr.e_phentsize == schema.elf64_phdr.sizeof()
        phdrs = []
        for i in range(ehdr.e_phnum):
            f.seek(ehdr.e_phoff + i * ehdr.e_phentsize)
            raw_phdr = f.read(ehdr.e_phentsize)
            phdrs.append(schema.elf64_phdr.parse(raw_phdr))
            assert schema.elf64_phdr.build(phdrs[-1]) == raw_phdr
        loads = [
            (p.p_vaddr, p.p_vaddr + p.p_memsz) for p in phdrs if p.p_type == SegmentType.PT_LOAD
        ]
        notes = list(_walk_notes(f, phdrs))

    def mapped(addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in loads)

    core_owner = NoteOwner.CORE.value.encode() + b"\0"
    linux_owner = NoteOwner.LINUX.value.encode() + b"\0"
    by_type: dict[int, list[bytes]] = {}
    for name, typ, desc in notes:
        if name in (core_owner, linux_owner):
            by_type.setdefault(typ, []).append(desc)

    # one NT_PRSTATUS per thread, for exactly the threads of the process
    prstatus = []
    for desc in by_type[CoreNoteType.NT_PRSTATUS]:
        assert len(desc) == schema.elf_prstatus_x86_64.sizeof()
        pr = schema.elf_prstatus_x86_64.parse(desc)
        assert schema.elf_prstatus_x86_64.build(pr) == desc
        prstatus.append(pr)
    assert sorted(pr.pr_pid for pr in prstatus) == sorted(tids)
    for pr in prstatus:
        assert mapped(pr.pr_reg.rip), f"rip {pr.pr_reg.rip:#x} of {pr.pr_pid} not in a PT_LOAD"
        assert mapped(pr.pr_reg.rsp), f"rsp {pr.pr_reg.rsp:#x} of {pr.pr_pid} not in a PT_LOAD"
        assert pr.pr_reg.cs == 0x33 and pr.pr_reg.ss == 0x2B  # Linux x86_64 user selectors
        assert pr.pr_reg.fs_base != 0  # every thread has its TLS
    assert prstatus[0].pr_pid == proc.pid  # gcore writes the main thread first

    (prpsinfo_desc,) = by_type[CoreNoteType.NT_PRPSINFO]
    prpsinfo = schema.elf_prpsinfo_x86_64.parse(prpsinfo_desc)
    assert schema.elf_prpsinfo_x86_64.build(prpsinfo) == prpsinfo_desc
    assert prpsinfo.pr_fname == PROGRAM_NAME
    assert prpsinfo.pr_pid == proc.pid
    assert prpsinfo.pr_psargs and str(exe).startswith(prpsinfo.pr_psargs)  # argv[0], maybe cut

    (auxv_desc,) = by_type[CoreNoteType.NT_AUXV]
    entries = schema.auxv.parse(auxv_desc)
    assert schema.auxv.build(entries) == auxv_desc[: 16 * len(entries)]
    auxv = {e.type: e.value for e in entries}
    assert AuxvType.AT_PHDR in auxv and AuxvType.AT_ENTRY in auxv
    assert auxv[AuxvType.AT_PAGESZ] == arch.arch_info("x86_64").page_size
    assert mapped(auxv[AuxvType.AT_PHDR])

    (file_desc,) = by_type[CoreNoteType.NT_FILE]
    files = schema.nt_file.parse(file_desc)
    assert schema.nt_file.build(files) == file_desc
    assert files.count == len(files.entries) == len(files.filenames)
    assert os.path.realpath(exe) in files.filenames
    assert all(e.start < e.end for e in files.entries)

    for desc in by_type.get(CoreNoteType.NT_SIGINFO, []):
        assert len(desc) == 128
        assert schema.siginfo.build(schema.siginfo.parse(desc)) == desc

    fpregs = by_type[CoreNoteType.NT_FPREGSET]
    assert len(fpregs) == len(tids)
    xstates = by_type.get(CoreNoteType.NT_X86_XSTATE, [])
    for i, desc in enumerate(fpregs):
        assert len(desc) == schema.user_fpregs_struct.sizeof()
        fp = schema.user_fpregs_struct.parse(desc)
        assert schema.user_fpregs_struct.build(fp) == desc
        assert fp.fcw == 0x037F  # the x87 control word after process start
        assert fp.mxcsr & 0xFFC0 == 0x1F80  # all SSE exceptions masked (flags may be set)
        if xstates:  # the xsave area starts with the same fxsave image
            legacy = schema.user_fpregs_struct.parse(xstates[i][:512])
            assert (legacy.fcw, legacy.mxcsr, legacy.xmm0) == (fp.fcw, fp.mxcsr, fp.xmm0)


def test_prstatus_struct_path_agrees_with_construct() -> None:
    """NT_PRSTATUS is packed and unpacked through the struct of its declaration
    (``schema_io.nested_format``): byte for byte what construct builds and parses."""
    import random

    from macminidump.elf import notes, schema
    from macminidump.model import ProcessInfo, SignalInfo
    from macminidump.schema_io import nested_format, plain

    rng = random.Random(10)
    gpr = {name: rng.getrandbits(64) for name in notes.X86_64_USER_REGS}
    process = ProcessInfo(pid=7, ppid=3, pgrp=-5, sid=2)
    data = notes.encode_prstatus(0x1234, gpr, process, SignalInfo(signo=11), True)
    values = schema.elf_prstatus_x86_64.parse(data)
    assert bytes(schema.elf_prstatus_x86_64.build(values)) == data
    assert plain(values.pr_reg) == gpr
    assert (values.pr_pid, values.pr_pgrp, values.pr_cursig) == (0x1234, -5, 11)
    decoded = notes.decode_prstatus(data, 0, len(data))
    assert decoded.registers == gpr
    assert (decoded.pid, decoded.ppid, decoded.pgrp, decoded.sid) == (0x1234, 3, -5, 2)
    assert (decoded.cursig, decoded.si_signo, decoded.fpvalid) == (11, 11, 1)
    fmt, paths = nested_format(schema.elf_prstatus_x86_64)
    assert fmt.size == schema.elf_prstatus_x86_64.sizeof() == len(data)
    assert ("pr_utime", "tv_usec") in paths and ("pr_reg", "rip") in paths


def test_note_bytes_agree_with_the_note_declaration() -> None:
    """The renderer packs each note's header through elf64_nhdr's struct and pads name and
    desc to NOTE_ALIGN: byte for byte what the elf64_note declaration builds."""
    from macminidump.elf import layout, schema

    for owner in ("", "CORE", "LINUX", "GNU", "macminidump-x"):
        for size in range(0, 13):
            desc = bytes(range(size))
            for kind in (0, 1, 0x46494C45, 0xFFFFFFFF):
                entry = layout.NoteEntry(owner, kind, desc)
                expected = schema.elf64_note.build(
                    dict(name=owner.encode() + b"\0", type=kind, desc=desc)
                )
                assert layout._note_bytes(entry) == bytes(expected), (owner, size, kind)
    with pytest.raises(Exception, match="[Ee]rror|out of range|must be"):
        layout._note_bytes(layout.NoteEntry("CORE", 1 << 32, b""))
