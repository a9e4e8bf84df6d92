"""The generated struct layouts (linux_abi_packed, elf/packed) and the glue around them.

The dump path never imports construct: it packs and unpacks the layouts generated from
the declarations. These tests keep the two the same thing: the checked-in modules are
what the generator makes of today's declarations, and on any values (encoders) and any
bytes (decoders) the struct path gives what construct gives, errors included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macminidump import generate_packed, linux_abi, linux_abi_packed, linux_abi_schema
from macminidump.elf import notes, packed, schema
from macminidump.errors import ParseError, RenderError
from macminidump.model import FileMapping, ProcessInfo, SignalInfo
from macminidump.schema_io import parse_at

PACKAGE = Path(generate_packed.__file__).resolve().parent
_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u64 = st.integers(0, (1 << 64) - 1)
i32 = st.integers(-(1 << 31), (1 << 31) - 1)


@pytest.mark.parametrize("target", generate_packed.TARGETS, ids=lambda t: t.path)
def test_generated_module_is_what_the_declarations_give(target: generate_packed.Target) -> None:
    checked_in = (PACKAGE / target.path).read_text()
    assert checked_in == generate_packed.render(target), (
        f"macminidump/{target.path} is out of date with {target.module}: "
        f"run `{generate_packed.COMMAND}`"
    )


def test_check_mode_passes_on_the_checked_in_modules() -> None:
    assert generate_packed.main(["--check"]) == 0


def test_every_layout_has_its_declarations_size() -> None:
    for module, declarations in (
        (linux_abi_packed, linux_abi_schema),
        (packed, schema),
    ):
        target = next(t for t in generate_packed.TARGETS if t.module == declarations.__name__)
        for layout in target.layouts:
            size = getattr(module, f"{layout.name}_SIZE")
            decl = getattr(declarations, layout.declaration)
            if layout.context is None:
                assert decl.sizeof() == size, layout.name
            fields = getattr(module, f"{layout.name}_FIELDS")
            assert len(set(fields)) == len(fields), layout.name


# -- encoders: the struct path builds what construct builds -------------------------------


@_settings
@given(
    tid=st.integers(1, 0x7FFFFFFF),
    gpr=st.fixed_dictionaries({name: u64 for name in linux_abi.X86_64_USER_REGS}),
    ids=st.tuples(i32, i32, i32, i32),
    signo=st.integers(0, 64),
    fpvalid=st.booleans(),
)
def test_prstatus_is_what_the_declaration_builds(
    tid: int, gpr: dict[str, int], ids: tuple[int, int, int, int], signo: int, fpvalid: bool
) -> None:
    pid, ppid, pgrp, sid = ids
    process = ProcessInfo(pid=pid, ppid=ppid, pgrp=pgrp, sid=sid)
    signal = SignalInfo(signo=signo) if signo else None
    data = notes.encode_prstatus(tid, gpr, process, signal, fpvalid)
    values = schema.elf_prstatus_x86_64.parse(data)
    assert bytes(schema.elf_prstatus_x86_64.build(values)) == data
    assert {name: values.pr_reg[name] for name in gpr} == gpr
    assert (values.pr_pid, values.pr_ppid, values.pr_pgrp, values.pr_sid) == (tid, ppid, pgrp, sid)
    assert (values.pr_cursig, values.si_signo, values.pr_fpvalid) == (signo, signo, int(fpvalid))
    decoded = notes.decode_prstatus(data, 0, len(data))
    assert decoded.registers == gpr and decoded.pid == tid


_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=100)


@_settings
@given(
    name=_text,
    args=_text,
    numbers=st.tuples(i32, i32, i32, i32, st.integers(0, (1 << 32) - 1)),
)
def test_prpsinfo_is_what_the_declaration_builds(
    name: str, args: str, numbers: tuple[int, int, int, int, int]
) -> None:
    pid, ppid, pgrp, sid, uid = numbers
    process = ProcessInfo(
        pid=pid, ppid=ppid, pgrp=pgrp, sid=sid, uid=uid, gid=uid, name=name, args=args
    )
    data = notes.encode_prpsinfo(process)
    expected = schema.elf_prpsinfo_x86_64.build(
        dict(
            pr_state=0,
            pr_sname=ord("R"),
            pr_zomb=0,
            pr_nice=0,
            pad0=bytes(4),
            pr_flag=0,
            pr_uid=uid,
            pr_gid=uid,
            pr_pid=pid,
            pr_ppid=ppid,
            pr_pgrp=pgrp,
            pr_sid=sid,
            pr_fname=notes._clip(name, notes.FNAME_MAX, ""),
            pr_psargs=notes._clip(args, notes.PSARGS_MAX, ""),
        )
    )
    assert data == bytes(expected)


@_settings
@given(
    signo=st.one_of(st.sampled_from(sorted(linux_abi.FAULT_SIGNALS)), st.integers(1, 64)),
    code=st.one_of(st.sampled_from([-6, 0, 1, 2, 0x80]), i32),
    errno=i32,
    address=u64,
)
def test_siginfo_is_what_the_declaration_builds(
    signo: int, code: int, errno: int, address: int
) -> None:
    fault = linux_abi.has_fault_address(signo, code)
    signal = SignalInfo(signo=signo, code=code, errno=errno, address=address if fault else None)
    data = notes.encode_siginfo(signal)
    expected = schema.siginfo.build(
        dict(
            si_signo=signo,
            si_errno=errno,
            si_code=code,
            pad0=bytes(4),
            si_addr=address if fault else None,
            si_rest=bytes(104 if fault else 112),
        )
    )
    assert data == bytes(expected)
    assert notes.decode_siginfo(data, 0, len(data)) == signal


@_settings
@given(st.lists(st.tuples(st.integers(1, (1 << 64) - 1), u64), max_size=40))
def test_auxv_is_what_the_declaration_builds(pairs: list[tuple[int, int]]) -> None:
    data = notes.encode_auxv(pairs)
    entries = [dict(type=t, value=v) for t, v in pairs] + [dict(type=0, value=0)]
    assert data == bytes(schema.auxv.build(entries))
    assert notes.decode_auxv(data, 0, len(data)) == tuple(pairs)


@_settings
@given(
    st.lists(
        st.tuples(
            st.integers(0, (1 << 63) - 1),
            st.integers(1, 1 << 40),
            st.integers(0, (1 << 40) - 1),
            _text,
        ),
        max_size=12,
    )
)
def test_nt_file_is_what_the_declaration_builds(
    raw: list[tuple[int, int, int, str]],
) -> None:
    mappings = [
        FileMapping(start, start + size, pages * notes.FILE_PAGE_SIZE, path)
        for start, size, pages, path in raw
    ]
    data = notes.encode_file(mappings)
    expected = schema.nt_file.build(
        dict(
            page_size=notes.FILE_PAGE_SIZE,
            entries=[
                dict(start=m.start, end=m.end, file_ofs=m.offset // notes.FILE_PAGE_SIZE)
                for m in mappings
            ],
            filenames=[m.path for m in mappings],
        )
    )
    assert data == bytes(expected)
    assert notes.decode_file(data, 0, len(data)) == tuple(mappings)


@_settings
@given(
    st.fixed_dictionaries(
        {name: st.integers(0, (1 << 128) - 1) for name in linux_abi.X86_64_FPREGS}
    )
)
def test_fpregset_is_what_the_declaration_builds(fpr: dict[str, int]) -> None:
    widths = dict(zip(linux_abi_packed.USER_FPREGS_STRUCT_FIELDS, (2, 2, 2, 2, 8, 8, 4, 4)))
    fpr = {name: value & ((1 << (8 * widths.get(name, 16))) - 1) for name, value in fpr.items()}
    data = notes.encode_fpregset(1, fpr)
    values = {
        name: value.to_bytes(16, "little") if widths.get(name) is None else value
        for name, value in fpr.items()
    }
    assert data == bytes(schema.user_fpregs_struct.build(dict(values, padding=bytes(96))))


def test_fpregset_encoded_once_is_encoded_alike() -> None:
    """The notes of threads with one floating-point state are encoded once: a repeat is
    the same bytes, another state other bytes, and a value that does not fit still fails
    after the same registers (but that one) were encoded."""
    fpr = dict.fromkeys(linux_abi.X86_64_FPREGS, 0) | {"xmm3": (1 << 128) - 1, "fcw": 0x37F}
    first = notes.encode_fpregset(1, fpr)
    assert notes.encode_fpregset(2, dict(fpr)) == first
    assert notes.encode_fpregset(3, {**fpr, "xmm3": 1}) != first
    with pytest.raises(RenderError, match=r"^thread 0x4: NT_FPREGSET: "):
        notes.encode_fpregset(4, {**fpr, "fcw": 1 << 16})


def test_fpregset_wide_register_that_does_not_fit_is_named() -> None:
    """A 16-byte register (st/xmm) whose value is negative, 2**128 or more, or not an
    integer gets a RenderError naming the thread and the register, not a bare
    OverflowError (the model refuses these earlier; the encoder is called directly too)."""
    fpr = dict.fromkeys(linux_abi.X86_64_FPREGS, 0)
    value: Any
    for name, value in (
        ("xmm3", 1 << 128),
        ("xmm15", -1),
        ("stmm0", (1 << 200) + 5),
        ("xmm0", "x"),
        ("xmm7", None),
    ):
        with pytest.raises(RenderError) as caught:
            notes.encode_fpregset(0x2A, {**fpr, name: value})
        assert str(caught.value) == (
            f"thread 0x2a: register {name} = {value!r} is not an unsigned 16-byte integer"
        )
    # the largest value that fits still encodes, through either path (a complete set,
    # and one missing registers); xmm3 is at 160 + 3 * 16 in the fxsave area
    for registers in ({**fpr, "xmm3": (1 << 128) - 1}, {"xmm3": (1 << 128) - 1}):
        assert notes.encode_fpregset(1, registers)[208:224] == b"\xff" * 16


def test_values_that_do_not_fit_get_constructs_error() -> None:
    """Whatever the struct refuses, construct builds, so the RenderError is its own."""
    gpr = dict.fromkeys(linux_abi.X86_64_USER_REGS, 0)
    with pytest.raises(RenderError, match=r"^thread 0x1: NT_PRSTATUS: struct '<Q' error"):
        notes.encode_prstatus(1, {**gpr, "rip": 1 << 64}, None, None, False)
    with pytest.raises(RenderError, match=r"^NT_AUXV: "):
        notes.encode_auxv([(3, 1 << 64)])
    with pytest.raises(RenderError, match=r"^NT_FILE: "):
        notes.encode_file([FileMapping(0, 1, 1 << 80, "x")])
    with pytest.raises(RenderError, match=r"^NT_FILE: .*encode"):
        notes.encode_file([FileMapping(0, 1, 0, "\udcff")])
    with pytest.raises(RenderError, match=r"^NT_SIGINFO: "):
        notes.encode_siginfo(SignalInfo(signo=11, code=1, address=1 << 64))
    with pytest.raises(RenderError, match=r"^NT_PRPSINFO: "):
        notes.encode_prpsinfo(ProcessInfo(pid=1 << 40))


# -- decoders: on any bytes, what construct parses (or its ParseError) --------------------


def _outcome(function: Any, *args: Any) -> Any:
    try:
        return ("value", function(*args))
    except ParseError as e:
        return ("error", e.message, e.offset)


def _auxv_declared(buffer: bytes, offset: int, size: int) -> Any:
    entries = parse_at(schema.auxv, buffer, offset, "NT_AUXV", offset + size)
    return tuple((int(e.type), e.value) for e in entries[:-1])


def _file_declared(buffer: bytes, offset: int, size: int) -> Any:
    return notes._decode_file_declared(buffer, offset, size)


def _prpsinfo_declared(buffer: bytes, offset: int, size: int) -> Any:
    if size != notes.PRPSINFO_SIZE:
        return None
    try:
        v = parse_at(schema.elf_prpsinfo_x86_64, buffer, offset, "NT_PRPSINFO", offset + size)
    except ParseError:
        return None
    return ProcessInfo(
        pid=v.pr_pid,
        ppid=v.pr_ppid,
        pgrp=v.pr_pgrp,
        sid=v.pr_sid,
        uid=v.pr_uid,
        gid=v.pr_gid,
        name=v.pr_fname,
        args=v.pr_psargs,
    )


def _siginfo_declared(buffer: bytes, offset: int, size: int) -> Any:
    if size != linux_abi.SIGINFO_SIZE:
        return None
    v = parse_at(schema.siginfo, buffer, offset, "NT_SIGINFO", offset + size)
    return SignalInfo(signo=v.si_signo, code=v.si_code, errno=v.si_errno, address=v.si_addr)


def _mostly_small(size: int) -> st.SearchStrategy[bytes]:
    """Bytes whose 8-byte words are often 0 or small (AT_NULL, counts, NULs) or UTF-8."""
    word = st.one_of(
        st.binary(min_size=8, max_size=8),
        st.integers(0, 40).map(lambda n: n.to_bytes(8, "little")),
        st.just(b"/lib/x\0\0"),
        st.just(b"\xff\xfe\0abc\0\0"),
    )
    return st.lists(word, max_size=size // 8).map(b"".join)


_padded_text = st.one_of(
    st.binary(max_size=16).map(lambda b: b.ljust(16, b"\0")),
    _text.map(lambda t: t.encode()[:16].ljust(16, b"\0")),
)


@st.composite
def _nt_file_bytes(draw: st.DrawFn) -> bytes:
    """NT_FILE payloads: valid ones (paths UTF-8 or not), then maybe cut or a byte changed."""
    n = draw(st.integers(0, 6))
    entries = draw(st.lists(st.tuples(u64, u64, u64), min_size=n, max_size=n))
    names = draw(
        st.lists(st.one_of(_text.map(str.encode), st.binary(max_size=12)), min_size=n, max_size=n)
    )
    page = draw(st.sampled_from([4096, 0, 1 << 63]))
    body = n.to_bytes(8, "little") + page.to_bytes(8, "little")
    body += b"".join(b"".join(v.to_bytes(8, "little") for v in e) for e in entries)
    body += b"".join(name.replace(b"\0", b"") + b"\0" for name in names)
    if draw(st.booleans()) and body:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    return body


#: per decoder: the bytes to try (the note's size is drawn around their length)
BODIES: dict[str, st.SearchStrategy[bytes]] = {
    "auxv": _mostly_small(400),
    "nt_file": st.one_of(_nt_file_bytes(), _mostly_small(200)),
    "prpsinfo": st.one_of(
        st.builds(
            lambda a, b, c: a + b + c * 5,
            st.binary(min_size=40, max_size=40),
            _padded_text,
            _padded_text,
        ),
        st.binary(max_size=140),
    ),
    "siginfo": st.binary(min_size=120, max_size=136),
}


@pytest.mark.parametrize(
    "kind, decode, declared",
    [
        ("auxv", notes.decode_auxv, _auxv_declared),
        ("nt_file", notes.decode_file, _file_declared),
        ("prpsinfo", notes.decode_prpsinfo, _prpsinfo_declared),
        ("siginfo", notes.decode_siginfo, _siginfo_declared),
    ],
    ids=["auxv", "nt_file", "prpsinfo", "siginfo"],
)
@_settings
@given(data=st.data())
def test_decoders_agree_with_construct_on_any_bytes(
    kind: str, decode: Any, declared: Any, data: st.DataObject
) -> None:
    prefix = data.draw(st.binary(max_size=8))
    body = data.draw(BODIES[kind])
    buffer = prefix + body + data.draw(st.binary(max_size=8))
    size = data.draw(
        st.one_of(
            st.just(len(body)),
            st.sampled_from([128, 136]),
            st.integers(0, len(body) + 8),
        )
    )
    offset = len(prefix)
    assert _outcome(decode, buffer, offset, size) == _outcome(declared, buffer, offset, size)
