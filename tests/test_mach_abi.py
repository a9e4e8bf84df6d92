"""Check ``macminidump.capture.mach.abi`` against the real macOS SDK headers, without a Mac.

The test walks the module (every public integer constant, every ctypes type alias, every
:class:`SDKStructure` and each of its fields), generates a C probe from that walk and
compiles it with Zig for ``aarch64-macos`` and ``x86_64-macos``. The probe stores, in
section ``__DATA,__mmdabi`` of the object file, one ``{char name[96]; u64 value}`` entry
per number: constant values, ``sizeof``/signedness of aliases, ``sizeof``/``_Alignof`` of
structures and ``offsetof``/``sizeof`` of their fields. The test reads that section back
from the Mach-O object (parsed by hand) and compares every entry with ctypes.

Since the probe is generated from the module, a new constant, alias, structure or field
is checked as soon as it is declared; a public integer the SDK does not define breaks
the compile, which fails the test loudly.

Objects are cached per content hash in ``$MACMINIDUMP_TEST_CACHE`` (default
``~/.cache/macminidump-tests``). ``python tests/test_mach_abi.py [arm64|x86_64]`` prints
the generated C.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeGuard

import attrs
import pytest

from macminidump.arch import Arch
from macminidump.capture.mach import abi as mach_abi
from macminidump.capture.mach.libsystem import PROTOTYPES
from macminidump.macho import constants as macho_constants
from macminidump.macho import schema as macho_schema
from macminidump.macho.constants import MH_MAGIC_64, LoadCommand

ARCHES = (Arch.ARM64, Arch.X86_64)
ZIG_TARGET = {Arch.ARM64: "aarch64-macos", Arch.X86_64: "x86_64-macos"}
CFLAGS = ("-c", "-O0", "-Wall")
HEADERS = (
    "stddef.h",
    "mach/mach.h",
    "mach/thread_status.h",
    "mach/task_info.h",
    "mach/thread_info.h",
    "mach/vm_region.h",
    "mach/vm_statistics.h",
    "mach/machine.h",
    "mach-o/loader.h",
    "mach-o/fat.h",
    "mach-o/dyld_images.h",
    "sys/ucontext.h",
    "sys/sysctl.h",
    "sys/proc.h",
    "mach/mach_traps.h",
    "mach/ndr.h",
    "mach/exception_types.h",
    "spawn.h",
)
#: MIG's layouts of mach_exc.defs' messages (no SDK header declares them), written with
#: the SDK's own types: the ctypes declarations must lay out as clang does
MIG_PRELUDE = """
#pragma pack(push, 4)
typedef struct {
    mach_msg_header_t Head;
    mach_msg_body_t msgh_body;
    mach_msg_port_descriptor_t thread;
    mach_msg_port_descriptor_t task;
    NDR_record_t NDR;
    exception_type_t exception;
    mach_msg_type_number_t codeCnt;
    int64_t code[2];
} mmd_mach_exception_raise_request;
typedef struct {
    mach_msg_header_t Head;
    NDR_record_t NDR;
    kern_return_t RetCode;
} mmd_mach_exception_raise_reply;
#pragma pack(pop)
"""
MIG_STRUCTURES = {
    "mach_exception_raise_request": "mmd_mach_exception_raise_request",
    "mach_exception_raise_reply": "mmd_mach_exception_raise_reply",
}
#: functions the SDK declares only as a macro (``#define mach_task_self() mach_task_self_``):
#: their return type is checked, from a call
SDK_MACROS = frozenset({"mach_task_self"})
#: functions Zig's SDK subset does not declare (it has no mach/mach_vm.h); a test checks
#: they are still missing, so the day they appear they get checked too
NOT_IN_ZIG_SDK = frozenset({"mach_vm_region_recurse", "mach_vm_read_overwrite"})
SECTION = ("__DATA", "__mmdabi")
NAME_SIZE = 96
ENTRY = struct.Struct(f"<{NAME_SIZE}sQ")
U64 = (1 << 64) - 1

# ctypes integer codes (``_type_``) whose signedness is meaningful
_INT_CODES = "bBhHiIlLqQ"


# --------------------------------------------------------------------------------------
# What the module declares
# --------------------------------------------------------------------------------------


def _public() -> Iterator[tuple[str, object]]:
    for name, value in vars(mach_abi).items():
        if not name.startswith("_"):
            yield name, value


def public_constants() -> dict[str, int]:
    """Every public integer of the module (``x86_*`` flavors included)."""
    return {
        name: value
        for name, value in _public()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def _is_ctypes_type(value: object) -> TypeGuard[type]:
    return isinstance(value, type) and issubclass(
        value, (ctypes._SimpleCData, ctypes._Pointer, ctypes.Array)
    )


def type_aliases() -> dict[str, type]:
    """Every public ctypes type alias of the module (``mach_port_t``, ``uuid_t``, …)."""
    return {name: value for name, value in _public() if _is_ctypes_type(value)}


def public_structures() -> dict[str, type[mach_abi.SDKStructure]]:
    return {
        name: value
        for name, value in _public()
        if isinstance(value, type)
        and issubclass(value, mach_abi.SDKStructure)
        and value is not mach_abi.SDKStructure
    }


def constants_for(arch: Arch) -> dict[str, int]:
    """The constants the SDK defines when compiling for ``arch``."""
    others = set().union(*(mach_abi.layouts_for(a).arch_constants for a in ARCHES if a is not arch))
    return {name: v for name, v in public_constants().items() if name not in others}


def _is_integer_type(t: type) -> bool:
    return issubclass(t, ctypes._SimpleCData) and getattr(t, "_type_", "") in _INT_CODES


def _is_signed(t: type) -> bool:
    return bool(t(-1).value < 0)


# --------------------------------------------------------------------------------------
# Probe table: one row per number, with its C expression and the value ctypes expects
# --------------------------------------------------------------------------------------


@attrs.frozen
class ProbeItem:
    group: str  # "const", "alias" or the structure's Python name
    name: str  # entry name in the object file
    c_expr: str
    expected: int


#: the loader.h structures macho/schema.py declares (the Mach-O headers of cores and of
#: binaries: ``macho_headers`` reads binaries with them); C field names are the same
MACHO_STRUCTS = (
    "mach_header_64",
    "load_command",
    "segment_command_64",
    "section_64",
    "uuid_command",
    "note_command",
)


def macho_constants_by_c_name() -> dict[str, int]:
    """macho/constants.py's loader.h/machine.h numbers under their SDK names (flavor
    numbers are checked through mach_flavors, see tests/test_mach_flavors.py)."""
    out = {
        name: getattr(macho_constants, name)
        for name in ("MH_MAGIC_64", "MH_MAGIC", "MH_CIGAM_64", "FAT_MAGIC")
    }
    out |= {member.name: int(member) for member in macho_constants.LoadCommand}
    out |= {f"MH_{member.name}": int(member) for member in macho_constants.FileType}
    out |= {f"CPU_TYPE_{member.name}": int(member) for member in macho_constants.CpuType}
    del out["CPU_TYPE_RISCV"]  # newer than the SDK Zig ships (mach/machine.h has no RISC-V)
    out |= {f"CPU_SUBTYPE_{member.name}": int(member) for member in macho_constants.CpuSubtype}
    return out


def macho_items() -> list[ProbeItem]:
    """Probe rows for macho/schema.py's loader.h declarations and macho/constants.py."""
    items = [
        ProbeItem("macho", f"const:macho.{name}", f"({name})", value & U64)
        for name, value in sorted(macho_constants_by_c_name().items())
    ]
    for name in MACHO_STRUCTS:
        decl, ctype = getattr(macho_schema, name), f"struct {name}"
        items.append(ProbeItem("macho", f"size:macho.{name}", f"sizeof({ctype})", decl.sizeof()))
        offset = 0
        for field in decl.subcons:
            if field.name:
                row = f"macho.{name}.{field.name}"
                items.append(
                    ProbeItem("macho", f"offset:{row}", f"offsetof({ctype}, {field.name})", offset)
                )
                items.append(
                    ProbeItem(
                        "macho",
                        f"fsize:{row}",
                        f"sizeof((({ctype} *)0)->{field.name})",
                        field.sizeof(),
                    )
                )
            offset += field.sizeof()
    return items


@functools.cache
def probe_items(arch: Arch) -> tuple[ProbeItem, ...]:
    layouts = mach_abi.layouts_for(arch)
    items: list[ProbeItem] = []
    for name, value in sorted(constants_for(arch).items()):
        items.append(ProbeItem("const", f"const:{name}", f"({name})", value & U64))
    for name, alias in sorted(type_aliases().items()):
        t = layouts.type_overrides.get(name, alias)
        items.append(ProbeItem("alias", f"size:{name}", f"sizeof({name})", ctypes.sizeof(t)))
        if _is_integer_type(t):
            expr = f"(({name})-1 < ({name})0)"
            items.append(ProbeItem("alias", f"signed:{name}", expr, int(_is_signed(t))))
    for cls in layouts.structures:
        group, ctype = cls.__name__, cls._c_type_
        align = cls._c_align_ or ctypes.alignment(cls)
        items.append(ProbeItem(group, f"size:{group}", f"sizeof({ctype})", ctypes.sizeof(cls)))
        items.append(ProbeItem(group, f"align:{group}", f"_Alignof({ctype})", align))
        for field_name, *_ in cls._fields_:
            if field_name in cls._padding_:
                continue
            field = getattr(cls, field_name)
            c_name = cls.c_field_name(field_name)
            items.append(
                ProbeItem(
                    group,
                    f"offset:{group}.{field_name}",
                    f"offsetof({ctype}, {c_name})",
                    field.offset,
                )
            )
            items.append(
                ProbeItem(
                    group,
                    f"fsize:{group}.{field_name}",
                    f"sizeof((({ctype} *)0)->{c_name})",
                    field.size,
                )
            )
    items += macho_items()
    for py_name, c_name in MIG_STRUCTURES.items():
        mig = getattr(mach_abi, py_name)
        items.append(ProbeItem("mig", f"size:{py_name}", f"sizeof({c_name})", ctypes.sizeof(mig)))
        for field_name, *_ in mig._fields_:
            offset = getattr(mig, field_name).offset
            expr = f"offsetof({c_name}, {field_name})"
            items.append(ProbeItem("mig", f"offset:{py_name}.{field_name}", expr, offset))
    for fn, prototype in sorted(PROTOTYPES.items()):
        if fn in NOT_IN_ZIG_SDK:
            continue
        restype, _, args = prototype.partition(" (")
        if fn in SDK_MACROS:
            expr = f"__builtin_types_compatible_p(__typeof__({fn}()), {restype})"
        else:
            pointer = f"{restype} (*)({args}"
            expr = f"__builtin_types_compatible_p(__typeof__(&{fn}), {pointer})"
        items.append(ProbeItem("proto", f"proto:{fn}", expr, 1))
    names = [item.name for item in items]
    assert len(names) == len(set(names)), "duplicate probe entry names"
    too_long = [n for n in names if len(n.encode()) >= NAME_SIZE]
    assert not too_long, f"probe entry names too long for char[{NAME_SIZE}]: {too_long}"
    return tuple(items)


def probe_source(arch: Arch) -> str:
    includes = "\n".join(f"#include <{h}>" for h in HEADERS) + MIG_PRELUDE
    rows = "\n".join(
        f'    {{"{item.name}", (unsigned long long)({item.c_expr})}},' for item in probe_items(arch)
    )
    segment, section = SECTION
    return textwrap.dedent(
        """\
        /* Generated by tests/test_mach_abi.py from macminidump/capture/mach/abi.py. */
        {includes}

        struct mmd_abi_entry {{
            char name[{name_size}];
            unsigned long long value;
        }};
        _Static_assert(sizeof(struct mmd_abi_entry) == {entry_size}, "entry layout");

        __attribute__((used, section("{segment},{section}")))
        static const struct mmd_abi_entry mmd_abi[] = {{
        {rows}
        }};
        """
    ).format(
        includes=includes,
        name_size=NAME_SIZE,
        entry_size=ENTRY.size,
        segment=segment,
        section=section,
        rows=rows,
    )


# --------------------------------------------------------------------------------------
# Compiling (cached) and reading the object back
# --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    root = os.environ.get("MACMINIDUMP_TEST_CACHE") or Path.home() / ".cache/macminidump-tests"
    path = Path(root) / "mach_abi"
    path.mkdir(parents=True, exist_ok=True)
    return path


class ProbeBuildError(Exception):
    pass


def compile_probe(arch: Arch) -> tuple[Path, float | None]:
    """The probe object for ``arch`` and the compile time (None when it came from cache)."""
    return _compile(probe_source(arch), arch)


def compile_source(source: str, arch: Arch) -> Path:
    """A probe object built from ``source`` (cached like the probe)."""
    return _compile(source, arch)[0]


def _compile(source: str, arch: Arch) -> tuple[Path, float | None]:
    target = ZIG_TARGET[arch]
    try:
        zig_version = importlib.metadata.version("ziglang")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ProbeBuildError("the ziglang package is not installed (pip install ziglang)") from exc
    digest = hashlib.sha256("\0".join([source, target, zig_version, *CFLAGS]).encode())
    key = digest.hexdigest()[:24]
    directory = cache_dir()
    obj = directory / f"probe-{arch.value}-{key}.o"
    if obj.exists():
        return obj, None
    src = directory / f"probe-{arch.value}-{key}.c"
    src.write_text(source)
    tmp = obj.with_suffix(f".{os.getpid()}.tmp.o")
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", target, *CFLAGS, str(src)]
    cmd += ["-o", str(tmp)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    if proc.returncode != 0 or not tmp.exists():
        raise ProbeBuildError(
            f"zig cc for {target} failed (exit {proc.returncode}); source kept at {src}\n"
            f"$ {' '.join(cmd)}\n{proc.stderr}{proc.stdout}"
        )
    os.replace(tmp, obj)
    return obj, elapsed


def read_section(data: bytes, segname: str, sectname: str) -> tuple[int, bytes]:
    """(cputype, bytes) of one section of a 64-bit little-endian Mach-O object."""
    magic, cputype, _sub, _ftype, ncmds, _sizeofcmds, _flags, _res = struct.unpack_from(
        "<IiiIIIII", data, 0
    )
    assert magic == MH_MAGIC_64, f"not a 64-bit Mach-O: {magic:#x}"
    offset = 32
    for _ in range(ncmds):
        cmd, cmdsize = struct.unpack_from("<II", data, offset)
        if cmd == LoadCommand.LC_SEGMENT_64:
            nsects = struct.unpack_from("<I", data, offset + 64)[0]
            for i in range(nsects):
                sect = struct.unpack_from("<16s16sQQIIIIIIII", data, offset + 72 + 80 * i)
                name, seg, _addr, size, fileoff, _align, _reloff, nreloc = sect[:8]
                if name.rstrip(b"\0").decode() == sectname and seg.rstrip(b"\0").decode() == (
                    segname
                ):
                    assert nreloc == 0, "probe section has relocations: values are not final"
                    return cputype, data[fileoff : fileoff + size]
        offset += cmdsize
    raise AssertionError(f"section {segname},{sectname} not found")


def read_probe(path: Path) -> tuple[int, dict[str, int]]:
    cputype, raw = read_section(path.read_bytes(), *SECTION)
    assert len(raw) % ENTRY.size == 0, f"section size {len(raw)} is not a multiple of entries"
    entries: dict[str, int] = {}
    for name, value in ENTRY.iter_unpack(raw):
        entries[name.split(b"\0", 1)[0].decode()] = value
    return cputype, entries


@attrs.frozen
class Probe:
    arch: Arch
    cputype: int
    entries: dict[str, int]
    compile_seconds: float | None


@pytest.fixture(scope="session")
def sdk() -> Callable[[Arch], Probe]:
    """``sdk(arch)``: the SDK's values for ``arch``, compiled once per session."""
    done: dict[Arch, Probe | str] = {}

    def get(arch: Arch) -> Probe:
        if arch not in done:
            try:
                path, seconds = compile_probe(arch)
                cputype, entries = read_probe(path)
                done[arch] = Probe(arch, cputype, entries, seconds)
            except ProbeBuildError as exc:
                done[arch] = str(exc)
        result = done[arch]
        if isinstance(result, str):
            pytest.fail(result, pytrace=False)
        return result

    return get


def _check(probe: Probe, items: list[ProbeItem]) -> None:
    missing = [item.name for item in items if item.name not in probe.entries]
    if missing:
        pytest.fail(f"{probe.arch}: not in the compiled probe: {missing}")
    wrong = [
        f"  {item.name}: mach_abi {item.expected:#x}, SDK {probe.entries[item.name]:#x}"
        for item in items
        if probe.entries[item.name] != item.expected
    ]
    if wrong:
        pytest.fail(f"{probe.arch}: mach_abi disagrees with the SDK:\n" + "\n".join(wrong))


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------

STRUCT_CASES = [
    pytest.param(arch, cls.__name__, id=f"{arch.value}-{cls.__name__}")
    for arch in ARCHES
    for cls in mach_abi.layouts_for(arch).structures
]


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_probe_object_is_for_the_target(sdk: Callable[[Arch], Probe], arch: Arch) -> None:
    probe = sdk(arch)
    assert probe.cputype == mach_abi.layouts_for(arch).cpu_type
    assert set(probe.entries) == {item.name for item in probe_items(arch)}


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_constants_match_sdk(sdk: Callable[[Arch], Probe], arch: Arch) -> None:
    _check(sdk(arch), [i for i in probe_items(arch) if i.group == "const"])


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_function_prototypes_match_sdk(sdk: Callable[[Arch], Probe], arch: Arch) -> None:
    """Each prototype the backend binds is the SDK's declaration (C type compatibility:
    ``__builtin_types_compatible_p`` of the function's address and our pointer type)."""
    items = [i for i in probe_items(arch) if i.group == "proto"]
    assert {i.name for i in items} == {
        f"proto:{fn}" for fn in PROTOTYPES if fn not in NOT_IN_ZIG_SDK
    }
    _check(sdk(arch), items)


def test_functions_zig_does_not_declare_are_still_missing() -> None:
    import ziglang

    include = Path(ziglang.__file__).parent / "lib/libc/include/any-darwin-any"
    declared = " ".join(p.read_text(errors="replace") for p in include.rglob("*.h"))
    assert NOT_IN_ZIG_SDK <= set(PROTOTYPES)
    for fn in NOT_IN_ZIG_SDK:
        assert f"{fn}(" not in declared and f"{fn}\n(" not in declared, fn


def test_function_prototype_check_can_fail(sdk: Callable[[Arch], Probe]) -> None:
    """The probe tells a wrong prototype from a right one (so the check above can fail)."""
    source = probe_source(Arch.ARM64).replace(
        "__typeof__(&task_threads), kern_return_t (*)(task_t,",
        "__typeof__(&task_threads), kern_return_t (*)(mach_vm_address_t,",
    )
    assert source != probe_source(Arch.ARM64)
    obj = compile_source(source, Arch.ARM64)
    assert read_probe(obj)[1]["proto:task_threads"] == 0


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_exception_messages_match_mig(sdk: Callable[[Arch], Probe], arch: Arch) -> None:
    """The exception request and reply as MIG lays them out with the SDK's types."""
    items = [i for i in probe_items(arch) if i.group == "mig"]
    assert len(items) == 2 + sum(len(getattr(mach_abi, n)._fields_) for n in MIG_STRUCTURES)
    _check(sdk(arch), items)


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_type_aliases_match_sdk(sdk: Callable[[Arch], Probe], arch: Arch) -> None:
    _check(sdk(arch), [i for i in probe_items(arch) if i.group == "alias"])


@pytest.mark.parametrize(("arch", "struct_name"), STRUCT_CASES)
def test_structure_layout_matches_sdk(
    sdk: Callable[[Arch], Probe], arch: Arch, struct_name: str
) -> None:
    items = [i for i in probe_items(arch) if i.group == struct_name]
    cls = getattr(mach_abi, struct_name)
    probed = {i.name.split(".", 1)[1].rsplit(":", 1)[0] for i in items if "." in i.name}
    declared = {f[0] for f in cls._fields_} - set(cls._padding_)
    assert probed == declared
    _check(sdk(arch), items)


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_macho_schema_and_constants_match_sdk(sdk: Callable[[Arch], Probe], arch: Arch) -> None:
    """The core format's loader.h layouts and numbers, which the ctypes layer no longer
    mirrors, are checked against the SDK too."""
    items = [i for i in probe_items(arch) if i.group == "macho"]
    assert {f"size:macho.{name}" for name in MACHO_STRUCTS} <= {i.name for i in items}
    assert len([i for i in items if i.name.startswith("offset:macho.segment_command_64.")]) == 11
    _check(sdk(arch), items)


def test_every_public_number_is_probed() -> None:
    """A constant, alias or structure that no probe checks fails here."""
    per_arch = {arch: {i.name for i in probe_items(arch)} for arch in ARCHES}
    everything = set().union(*per_arch.values())
    unchecked_constants = [n for n in public_constants() if f"const:{n}" not in everything]
    unchecked_aliases = [n for n in type_aliases() if f"size:{n}" not in everything]
    unchecked_structs = [n for n in public_structures() if f"size:{n}" not in everything]
    assert not unchecked_constants, unchecked_constants
    assert not unchecked_aliases, unchecked_aliases
    assert not unchecked_structs, f"not listed in any layouts_for(arch): {unchecked_structs}"
    # every alias is checked on both architectures
    for arch in ARCHES:
        assert all(f"size:{n}" in per_arch[arch] for n in type_aliases())


def test_arch_constants_are_declared() -> None:
    constants = public_constants()
    seen: set[str] = set()
    for arch in ARCHES:
        names = mach_abi.layouts_for(arch).arch_constants
        assert names <= set(constants), names - set(constants)
        assert not names & seen, "a constant cannot belong to two architectures only"
        seen |= names


def test_structures_declare_c_names() -> None:
    for name, cls in public_structures().items():
        assert cls._c_type_, name
        for pad in cls._padding_:
            assert pad in {f[0] for f in cls._fields_}, (name, pad)


@pytest.mark.parametrize("arch", ARCHES, ids=str)
def test_flavors(arch: Arch) -> None:
    layouts = mach_abi.layouts_for(arch)
    assert layouts.arch is arch
    assert list(layouts.flavors)[0] is mach_abi.RegKind.GPR
    for kind, flavor in layouts.flavors.items():
        assert flavor.kind is kind
        assert flavor.count * 4 == ctypes.sizeof(flavor.structure)
        assert flavor.structure in layouts.structures
    assert layouts.flavors[mach_abi.RegKind.GPR].structure is layouts.thread_state
    assert layouts.flavors[mach_abi.RegKind.FPR].structure is layouts.float_state
    assert layouts.flavors[mach_abi.RegKind.EXC].structure is layouts.exception_state
    mcontext = {f[0]: f[1] for f in layouts.mcontext64._fields_}
    assert list(mcontext.values()) == [
        layouts.exception_state,
        layouts.thread_state,
        layouts.float_state,
    ]
    assert layouts.mcontext64 in layouts.structures
    assert layouts.ucontext in layouts.structures
    for name, t in layouts.type_overrides.items():
        assert ctypes.sizeof(t) == ctypes.sizeof(getattr(mach_abi, name))


def test_layouts_for_accepts_strings() -> None:
    assert mach_abi.layouts_for("arm64") is mach_abi.layouts_for(Arch.ARM64)
    assert mach_abi.layouts_for("x86_64") is mach_abi.layouts_for(Arch.X86_64)
    with pytest.raises(ValueError):
        mach_abi.layouts_for("ppc")


def test_kern_return_names() -> None:
    codes = {
        n: v
        for n, v in public_constants().items()
        if n.startswith(("KERN_", "MACH_SEND_", "MACH_RCV_")) and n not in mach_abi.NOT_RETURN_CODES
    }
    # one name per value: a colliding KERN_* (e.g. a sysctl name) would drop a code
    assert len(mach_abi.KERN_RETURN_NAMES) == len(codes)
    assert mach_abi.KERN_RETURN_NAMES[mach_abi.KERN_SUCCESS] == "KERN_SUCCESS"
    assert mach_abi.kern_return_name(mach_abi.KERN_INVALID_ARGUMENT) == "KERN_INVALID_ARGUMENT (4)"
    assert mach_abi.kern_return_name(0x7777).startswith("kern_return_t 0x7777")


def test_import_loads_no_library() -> None:
    code = textwrap.dedent(
        """\
        import ctypes, ctypes.util
        def refuse(*args, **kwargs):
            raise AssertionError(f"library load at import: {args!r}")
        ctypes.CDLL.__init__ = refuse
        ctypes.util.find_library = refuse
        import macminidump.capture.mach
        """
    )
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


if __name__ == "__main__":
    print(probe_source(Arch(sys.argv[1] if len(sys.argv) > 1 else "arm64")))
