"""Mach-O cores of a real program, opened in two real LLDBs (16 and 23).

For arm64 and x86_64, ``stacks.crash_spec`` lays out a 3-thread crash of
``tests/fixtures/prog.c`` (cross-compiled with Zig); macminidump writes the core; each
LLDB loads it with no executable ("core-only": LLDB must find the binary from the core's
metadata), with the executable given ("with-exe"), and with the executable and its dSYM
given ("with-exe-dsym", what LLDB on a Mac does by itself when a dSYM exists). The
checks: process state, threads and their ids, the stop reason, exact backtraces with
symbols, a local variable from DWARF, memory, registers, the modules, and two
independent Mach-O parsers.

Every test runs; a missing debugger or compiler fails with how to install it.
"""

from __future__ import annotations

import os
from pathlib import Path

import debuggers
import fixtures
import pytest
import stacks

ARCHES = ("arm64", "x86_64")
LLDBS = (16, 23)
MODES = ("core-only", "with-exe", "with-exe-dsym")
COMBOS = [(a, v, m) for a in ARCHES for v in LLDBS for m in MODES]
COMBO_IDS = [f"{a}-lldb{v}-{m}" for a, v, m in COMBOS]

_cores: dict[str, tuple[str, dict, dict]] = {}
_probes: dict[tuple[str, int, str], dict] = {}


@pytest.fixture(scope="session")
def core_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("macho-cores")


def write_core(arch: str, directory: Path) -> tuple[str, dict, dict]:
    """(core path, spec, expected) for ``arch``; written once per session."""
    if arch not in _cores:
        from macminidump.macho.render import render_macho
        from macminidump.spec import snapshot_from_spec

        spec, expected = stacks.crash_spec(arch)
        snapshot = snapshot_from_spec(spec)
        core = directory / f"prog_{arch}.core"
        render_macho(snapshot, core)
        _cores[arch] = (str(core), spec, expected)
    return _cores[arch]


def _variables(expected: dict) -> list[tuple[int, int, str]]:
    return [
        (t, f, name)
        for t, thread in enumerate(expected["threads"])
        for f, values in enumerate(thread["values"])
        for name in values
    ]


def probe(arch: str, version: int, mode: str, directory: Path) -> tuple[dict, dict]:
    """(probe result, expected), cached per (arch, LLDB, mode)."""
    core, _spec, expected = write_core(arch, directory)
    key = (arch, version, mode)
    if key not in _probes:
        reads = [(addr, len(hex_) // 2) for addr, hex_ in expected["memory"]]
        reads += [(addr, 8) for addr in expected["unreadable"]]
        result = debuggers.probe_core(
            version,
            core,
            exe=expected["exe"] if mode.startswith("with-exe") else None,
            symfile=fixtures.build_dsym(arch) if mode == "with-exe-dsym" else None,
            memory=reads,
            variables=_variables(expected),
        )
        print(f"--- LLDB {version} {arch} {mode}: {result['lldb_version']}")
        print(result.get("bt_all", ""))
        for thread in result.get("threads", []):
            print(f"thread #{thread['index_id']} stop description: {thread['stop_description']!r}")
        if result.get("errors") or result.get("stderr"):
            print("errors:", result.get("errors"), "\nstderr:", result.get("stderr"))
        _probes[key] = result
    return _probes[key], expected


def _context(result: dict) -> str:
    return (
        f"\n{result.get('lldb_version')}\nbt all:\n{result.get('bt_all', '')}"
        f"\nerrors: {result.get('errors')}\nstderr: {result.get('stderr', '')[-2000:]}"
        f"\nmodules: {result.get('modules')}"
    )


# ---------------------------------------------------------------- harness, no core


@pytest.mark.parametrize("version", LLDBS)
@pytest.mark.parametrize("arch", ARCHES)
def test_probe_bare_executable(arch: str, version: int) -> None:
    """The harness alone: both LLDBs read the fixture's symbols and DWARF (no core)."""
    import lief

    exe = fixtures.build_fixture(arch)
    result = debuggers.probe_executable(
        version, exe, functions=stacks.FUNCTIONS, commands=["image lookup -v -n level3"]
    )
    assert result["lldb_version"].startswith(f"lldb version {version}.")
    assert len(result["modules"]) == 1, result["modules"]
    module = result["modules"][0]
    assert os.path.realpath(module["path"]) == os.path.realpath(exe)
    lief.logging.disable()
    fat = lief.MachO.parse(exe)
    binary = fat.at(0) if fat else None
    assert binary is not None and binary.uuid is not None, f"lief cannot read {exe}"
    uuid = bytes(binary.uuid.uuid).hex().upper()
    assert module["uuid"].replace("-", "") == uuid
    expected_arch = "arm64" if arch == "arm64" else "x86_64"
    assert module["triple"].startswith(expected_arch), module["triple"]
    for name in stacks.FUNCTIONS:
        entries = result["functions"][name]
        assert len(entries) == 1, (name, entries)
        assert entries[0]["has_debug_info"], f"{name}: no DWARF (N_OSO .o files missing?)"
    lookup = result["commands"][0]["output"]
    assert 'name = "local"' in lookup and "DW_OP_fbreg" in lookup, lookup


@pytest.mark.parametrize("arch", ARCHES)
def test_stack_layout_is_consistent(arch: str) -> None:
    """stacks.crash_spec's own invariants, checked without the library."""
    spec, expected = stacks.crash_spec(arch)
    prog = stacks.load_program(arch)
    regions = sorted(expected["regions"])
    for (_, hi), (lo, _) in zip(regions, regions[1:], strict=False):
        assert hi < lo, f"regions overlap or touch: {regions}"
    assert len(spec["threads"]) == 3
    slide = expected["slide"]
    by_addr = {r["addr"]: bytes.fromhex(r["hex"]) for r in spec["memory-regions"]}

    def read(addr: int, size: int) -> bytes:
        for lo, data in by_addr.items():
            if lo <= addr and addr + size <= lo + len(data):
                return data[addr - lo : addr - lo + size]
        raise AssertionError(f"{addr:#x} not in any region")

    for thread in expected["threads"]:
        # every pc and return address has code around it, equal to the file's bytes
        for pc in thread["frame_pcs"]:
            off = pc - slide - prog.text_vmaddr
            assert read(pc - 16, 32) == prog.text_bytes[off - 16 : off + 16]
        # the frame-pointer chain leads from the leaf to a zero caller fp
        fp, seen = thread["frame_fps"][0], []
        while fp:
            seen.append(fp)
            fp = int.from_bytes(read(fp, 8), "little")
        assert seen == sorted(set(thread["frame_fps"]))
        addr = thread["variable_addrs"][0]["local"]
        assert int.from_bytes(read(addr, 4), "little", signed=True) == thread["local"]
        assert read(thread["sp"], 8) is not None
    for addr, hex_ in expected["memory"]:
        assert read(addr, len(hex_) // 2).hex() == hex_


# ---------------------------------------------------------------- cores in LLDB


@pytest.mark.parametrize(("arch", "version", "mode"), COMBOS, ids=COMBO_IDS)
def test_process_and_threads(arch: str, version: int, mode: str, core_dir: Path) -> None:
    result, expected = probe(arch, version, mode, core_dir)
    assert result.get("process_valid"), _context(result)
    assert result["state"] == "stopped", _context(result)
    threads = result["threads"]
    assert len(threads) == 3, _context(result)
    if version >= 18:  # LLDB 16 ignores "process metadata" and numbers threads 0, 1, 2
        assert [t["thread_id"] for t in threads] == [t["thread_id"] for t in expected["threads"]]


@pytest.mark.parametrize(("arch", "version", "mode"), COMBOS, ids=COMBO_IDS)
def test_stop_reason(arch: str, version: int, mode: str, core_dir: Path) -> None:
    result, expected = probe(arch, version, mode, core_dir)
    crashed = [i for i, t in enumerate(expected["threads"]) if t["crashed"]]
    assert crashed == [0]
    description = result["threads"][0]["stop_description"]
    print(f"LLDB {version} {arch} {mode}: crashed thread says {description!r}")
    if arch == "arm64":
        assert "EXC_BAD_ACCESS" in description or "ESR_EC_DABORT" in description, _context(result)
        assert "0x0" in description, description


@pytest.mark.parametrize(("arch", "version", "mode"), COMBOS, ids=COMBO_IDS)
def test_backtraces(arch: str, version: int, mode: str, core_dir: Path) -> None:
    result, expected = probe(arch, version, mode, core_dir)
    exe_name = os.path.basename(expected["exe"])
    for t, (got, want) in enumerate(zip(result["threads"], expected["threads"], strict=True)):
        functions = [f["function"] for f in got["frames"]]
        assert functions == want["functions"], f"thread {t}: {functions}" + _context(result)
        assert [f["pc"] for f in got["frames"]] == want["frame_pcs"], f"thread {t}"
        assert all(f["module"] == exe_name for f in got["frames"]), got["frames"]
        assert got["frames"][0]["line"] == fixtures.source_line("*crash = local;") or t != 0


@pytest.mark.parametrize(("arch", "version", "mode"), COMBOS, ids=COMBO_IDS)
def test_frame_registers(arch: str, version: int, mode: str, core_dir: Path) -> None:
    result, expected = probe(arch, version, mode, core_dir)
    for t, (got, want) in enumerate(zip(result["threads"], expected["threads"], strict=True)):
        assert (got["pc"], got["sp"], got["fp"]) == (want["pc"], want["sp"], want["fp"]), t
        assert [f["sp"] for f in got["frames"]] == want["frame_sps"], f"thread {t} sp"
        assert [f["fp"] for f in got["frames"]] == want["frame_fps"], f"thread {t} fp"
        regs = got["registers"]
        pc_name, sp_name = stacks.PC_REG[arch], stacks.SP_REG[arch]
        fp_name = stacks.FRAME_BASE_REG[arch]
        for name in (pc_name, sp_name, fp_name):
            assert name in regs, f"{name} not in LLDB's GPR set {sorted(regs)}"
        mismatched = {
            name: (regs[name], value)
            for name, value in want["registers"].items()
            if name in regs and regs[name] != value
        }
        assert not mismatched, f"thread {t}: (lldb, spec) {mismatched}"
        missing = set(want["registers"]) - set(regs)
        assert not missing, f"LLDB shows no {sorted(missing)}; it has {sorted(regs)}"


@pytest.mark.parametrize(("arch", "version", "mode"), COMBOS, ids=COMBO_IDS)
def test_local_variables(arch: str, version: int, mode: str, core_dir: Path) -> None:
    result, expected = probe(arch, version, mode, core_dir)
    for var in result["variables"]:
        thread = expected["threads"][var["thread"]]
        want = thread["values"][var["frame"]][var["name"]]
        assert var["error"] is None and var["value"] is not None, var
        assert int(var["value"], 0) == want, var
        addr = thread["variable_addrs"][var["frame"]][var["name"]]
        assert var["load_address"] == addr, var


@pytest.mark.parametrize(("arch", "version", "mode"), COMBOS, ids=COMBO_IDS)
def test_memory_reads(arch: str, version: int, mode: str, core_dir: Path) -> None:
    result, expected = probe(arch, version, mode, core_dir)
    reads = result["memory"]
    checks = expected["memory"]
    for read, (addr, hex_) in zip(reads[: len(checks)], checks, strict=True):
        assert read["addr"] == addr
        assert read["error"] is None, read
        assert read["hex"] == hex_, f"{addr:#x}: {read['hex']} != {hex_}"
    for read in reads[len(checks) :]:
        assert read["hex"] is None, f"{read['addr']:#x} is outside the core but reads {read}"


@pytest.mark.parametrize(("arch", "version", "mode"), COMBOS, ids=COMBO_IDS)
def test_modules(arch: str, version: int, mode: str, core_dir: Path) -> None:
    result, expected = probe(arch, version, mode, core_dir)
    exe = os.path.realpath(expected["exe"])
    ours = [m for m in result["modules"] if m["path"] and os.path.realpath(m["path"]) == exe]
    by_uuid = [m for m in result["modules"] if m["uuid"] == expected["uuid"]]
    assert ours == by_uuid, result["modules"]
    for module in ours:
        assert module["uuid"] == expected["uuid"]
        assert module["text_load_address"] == expected["text_load_address"], module
    if version == 23 and mode == "with-exe":
        # LLDB 23 (DynamicLoader::LoadBinaryWithUUIDAndAddress) builds a second Module
        # for any image entry whose path exists when the module it already has lacks a
        # located symbol file: the executable shows twice, at the same address. With the
        # dSYM known ("with-exe-dsym") or without the executable ("core-only") it does
        # not; dropping the path from the core would lose core-only mode instead.
        assert len(ours) in (1, 2), f"modules for {exe}: {ours}" + _context(result)
    else:
        assert len(ours) == 1, f"modules for {exe}: {ours}" + _context(result)


@pytest.mark.parametrize("arch", ARCHES)
def test_core_parses_in_lief_and_macholib(arch: str, core_dir: Path) -> None:
    import lief
    from macholib.mach_o import MH_CORE
    from macholib.MachO import MachO

    core, spec, _expected = write_core(arch, core_dir)
    lief.logging.disable()
    parsed = lief.parse(core)
    assert isinstance(parsed, lief.MachO.Binary), "lief rejects the core"
    assert parsed.header.file_type == lief.MachO.Header.FILE_TYPE.CORE
    assert len(parsed.commands) == parsed.header.nb_cmds
    macho = MachO(core)
    header = macho.headers[0]
    assert header.header.filetype == MH_CORE
    assert len(header.commands) == header.header.ncmds == parsed.header.nb_cmds
    threads = [c for c in parsed.commands if isinstance(c, lief.MachO.ThreadCommand)]
    assert len(threads) == len(spec["threads"])


# ------------------------------------------- packed segments: every reader, every offset


def _odd_segments_core(arch: str, path: Path) -> list[tuple[int, bytes]]:
    """50 segments of 1 to 4,097 bytes packed back to back, so most start at odd offsets."""
    from macminidump.macho.render import render_macho
    from macminidump.spec import snapshot_from_spec

    sizes = [1, 3, 7, 8, 13, 100, 255, 4097]
    regions = [
        (0x10000 + i * 0x2000, bytes((i * 7 + j) % 251 for j in range(sizes[i * 5 % 8])))
        for i in range(50)
    ]
    pc, sp = ("pc", "sp") if arch == "arm64" else ("rip", "rsp")
    spec = {
        "cpu": arch,
        # the gpr flavor alone: llvm-objdump 16 knows no arm64 exception flavor
        "threads": [
            {
                "thread-id": 5,
                "regsets": [
                    {
                        "flavor": "gpr",
                        "registers": [
                            {"name": pc, "value": 0x10000},
                            {"name": sp, "value": 0x12000},
                        ],
                    }
                ],
            }
        ],
        "memory-regions": [{"addr": a, "hex": d.hex(), "protection": "rw-"} for a, d in regions],
    }
    render_macho(snapshot_from_spec(spec), path)
    return regions


@pytest.mark.parametrize("arch", ARCHES)
def test_packed_segments_read_back_everywhere(arch: str, tmp_path: Path) -> None:
    """Segments at any byte offset: LLDB 16 and 23, LIEF, macholib and llvm-objdump 16."""
    import shutil
    import subprocess

    import lief
    from macholib.MachO import MachO

    core = tmp_path / "packed.core"
    regions = _odd_segments_core(arch, core)
    for version in LLDBS:
        result = debuggers.probe_core(version, str(core), memory=[(a, len(d)) for a, d in regions])
        assert result["state"] == "stopped", _context(result)
        got = [m.get("hex") for m in result["memory"]]
        assert got == [d.hex() for _, d in regions], _context(result)
    lief.logging.disable()
    parsed = lief.parse(str(core))
    assert isinstance(parsed, lief.MachO.Binary), "lief rejects the core"
    segments = [c for c in parsed.commands if isinstance(c, lief.MachO.SegmentCommand)]
    assert [bytes(s.content) for s in segments] == [d for _, d in regions]
    assert {s.file_offset % 2 for s in segments} == {0, 1}  # really packed
    commands = MachO(str(core)).headers[0].commands
    assert [c[1].fileoff for c in commands if c[0].cmd == 0x19] == [s.file_offset for s in segments]
    objdump = shutil.which("llvm-objdump-16")
    assert objdump, "llvm-objdump-16 is missing: apt-get install -y llvm-16"
    out = subprocess.run(
        [objdump, "--macho", "--private-headers", str(core)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("LC_SEGMENT_64") == 50


# ---------------------------------------------------------------- x86_64 thread states


def _llvm_tool(name: str) -> str:
    import shutil

    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install llvm-16"
    return path


def test_llvm_object_tools_read_x86_64_thread_states(core_dir: Path) -> None:
    """llvm-objdump and llvm-readobj accept the x86_64 core (they reject a bare
    x86_FLOAT_STATE64, "unknown flavor (5)") and print every register set's values."""
    import subprocess

    core, _spec, _expected = write_core("x86_64", core_dir)
    dump = subprocess.run(
        [_llvm_tool("llvm-objdump-16"), "--macho", "--private-headers", core],
        capture_output=True,
        text=True,
    )
    assert dump.returncode == 0 and not dump.stderr, dump.stderr
    out = dump.stdout
    assert out.count("flavor x86_THREAD_STATE64") == 3, out
    assert out.count("flavor x86_EXCEPTION_STATE64") == 1, out
    assert "fsh.flavor x86_FLOAT_STATE64 fsh.count x86_FLOAT_STATE64_COUNT" in out, out
    assert "trapno 0x0000000e err 0x00000006 faultvaddr 0x0000000000000000" in out, out
    assert "fpu_mxcsr 0x00001fa0 fpu_mxcsrmask 0x0000ffff" in out, out
    xmm0 = stacks.X86_64_FPR["xmm0"].to_bytes(16, "little").hex(" ")
    assert f"fpu_xmm0:\n\t      xmm_reg {xmm0} \n" in out, out
    readobj = subprocess.run(
        [_llvm_tool("llvm-readobj-16"), "--file-headers", core], capture_output=True, text=True
    )
    assert readobj.returncode == 0 and not readobj.stderr, readobj.stderr
    assert "Mach-O 64-bit x86-64" in readobj.stdout


@pytest.mark.parametrize("version", LLDBS)
def test_lldb_reads_x86_64_register_sets(version: int, core_dir: Path) -> None:
    """What each LLDB shows of the crashed x86_64 thread's three register sets.

    GPR in both. The exception state in LLDB 23 only: LLDB 16 stops after the first
    flavor it recognises. The float state in neither: LLDB's Mach-O x86_64 register
    context has no FPU reader ("TODO: fill in FPU regs" in 16; 23 shows an empty
    "Floating Point Registers" set, as it does for the kernel's own cores). The FP values
    are in the file all the same: llvm-objdump (above) and our parser read them back.
    """
    core, _spec, expected = write_core("x86_64", core_dir)
    result = debuggers.probe_core(version, core, commands=["register read --all"])
    text = result["commands"][-1]["output"]
    crashed = text.split("Floating Point Registers")[0]
    assert f"rip = {expected['threads'][0]['pc']:#018x}" in crashed, text
    exc = text.split("Exception State Registers")[1]
    if version >= 23:
        assert "trapno = 0x0000000e" in exc and "err = 0x00000006" in exc, text
        fpu = text.split("Floating Point Registers:")[1].split("Exception State")[0]
        assert "xmm0" not in fpu and "mxcsr" not in fpu, f"LLDB {version} now reads FP:\n{text}"
    else:
        assert "trapno = 0x0000000e" not in exc, f"LLDB {version} now reads exc:\n{text}"


def test_x86_64_float_state_round_trips(core_dir: Path) -> None:
    from macminidump.macho.parse import parse_macho

    core, _spec, _expected = write_core("x86_64", core_dir)
    fpr = parse_macho(core).threads[0].regset("fpr")
    assert {k: fpr[k] for k in stacks.X86_64_FPR} == stacks.X86_64_FPR


def test_why_only_the_float_state_is_wrapped(
    core_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The macOS kernel wraps all three x86_64 states (7/8/9). LLDB 23 reads no registers
    (no pc, no frame) from a wrapped GPR state, so macminidump wraps only the float state (the one
    flavor LLVM's object tools reject bare); if LLDB 23 learns to read the kernel's
    layout, this fails and the layout can follow the kernel's."""
    import struct

    from macminidump.arch import Arch
    from macminidump.macho import layout
    from macminidump.macho.constants import X86_WRAPPER_OF
    from macminidump.macho.render import render_macho
    from macminidump.model import Thread
    from macminidump.spec import snapshot_from_spec

    plain = layout.thread_command

    def kernel_layout(arch: Arch, thread: Thread) -> bytes:
        body, out, offset = plain(arch, thread)[8:], b"", 0
        while offset < len(body):
            flavor, count = struct.unpack_from("<II", body, offset)
            state = body[offset : offset + 8 + 4 * count]
            if flavor in (4, 6):  # the bare ones get their wrapper
                state = struct.pack("<II", X86_WRAPPER_OF[flavor], count + 2) + state
            out += state
            offset += 8 + 4 * count
        return struct.pack("<II", 4, 8 + len(out)) + out

    spec, expected = stacks.crash_spec("x86_64")
    monkeypatch.setattr(layout, "thread_command", kernel_layout)
    core = core_dir / "kernel_layout_x86_64.core"
    render_macho(snapshot_from_spec(spec), core)
    result = debuggers.probe_core(23, str(core))
    # the threads are there, but without their registers: no pc, no frame
    pcs = [t["pc"] for t in result.get("threads", [])]
    assert expected["threads"][0]["pc"] not in pcs, result.get("bt_all")
    assert not any(f["function"] for t in result["threads"] for f in t["frames"]), pcs
