"""Realistic crash snapshots of the fixture program, as macminidump spec dicts.

``crash_spec(arch)`` lays out what a core of ``tests/fixtures/prog.c`` would hold if main
and its two workers were all inside ``level3`` and main had just faulted on the store
through a null pointer: three threads, a stack per thread whose frame-pointer chain runs
level3 -> level2 -> level1 -> main/worker and ends with a zero caller fp, the ``local`` and
``depth`` variables at their DWARF locations, ±256 bytes of the executable's code around
every pc and return address, and the executable mapped with a non-zero slide.

Every address comes from the real executable: LLDB 23 (in a subprocess) disassembles the
functions and reports the DWARF locations of their variables; the prologues give each
frame's size and whether it has a frame record (the arm64 leaf ``level3`` has none: its
frame base is sp and its return address stays in lr). Nothing is hard-coded but the
program's structure, so a change of compiler keeps the layout right.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass

import debuggers
import fixtures

FUNCTIONS = ("main", "worker", "level1", "level2", "level3")
CALLS = (("main", "level1"), ("worker", "level1"), ("level1", "level2"), ("level2", "level3"))

SLIDES = {"arm64": 0x8000, "x86_64": 0x4000}
# stack tops (one past the highest byte) of main and of the two workers, as on macOS
STACK_TOPS = {
    "arm64": (0x16FE00000, 0x16FE8C000, 0x16FF18000),
    "x86_64": (0x7FF7BFC00000, 0x700001000000, 0x700001081000),
}
THREAD_IDS = (0x1F03, 0x1F3C, 0x1F3D)
CODE_WINDOW = 256
FRAME_BASE_REG = {"arm64": "fp", "x86_64": "rbp"}
PC_REG = {"arm64": "pc", "x86_64": "rip"}
SP_REG = {"arm64": "sp", "x86_64": "rsp"}
#: the x86_64 crashed thread's float state (x86_FLOAT_STATE64): values a reader must show
X86_64_FPR = {
    "fcw": 0x037F,
    "fsw": 0x0020,
    "mxcsr": 0x1FA0,
    "mxcsrmask": 0xFFFF,
    "xmm0": 0x0011_2233_4455_6677_8899_AABB_CCDD_EEFF,
    "xmm15": 0xF00D_0000_0000_0000_0000_0000_0000_BEEF,
}
RED_ZONE = {"arm64": 0, "x86_64": 128}
# main calls level1(0); worker i is started with (void *)(10 * (i + 1))
OUTER_DEPTH = (0, 10, 20)


class LayoutError(RuntimeError):
    pass


@dataclass
class Function:
    name: str
    start: int
    end: int
    instructions: list[dict]
    #: name -> (base, offset): base "fb" (DW_OP_fbreg), "sp" or "fp" (DW_OP_bregN)
    variables: dict[str, tuple[str, int]]
    #: sp in the function body, relative to its CFA (the caller's sp before the call)
    sp_offset: int
    #: fp relative to the CFA, or None when the function sets up no frame record
    fp_offset: int | None


@dataclass
class Program:
    arch: str
    exe: str
    uuid: str
    text_vmaddr: int
    text_bytes: bytes
    functions: dict[str, Function]
    #: (caller, callee) -> file address of the instruction after the call
    returns: dict[tuple[str, str], int]
    crash_pc: int
    crash_line_pc: int


def _imm(text: str) -> int:
    return int(text.strip().lstrip("#"), 0)


def _prologue(arch: str, fn_name: str, instructions: list[dict]) -> tuple[int, int | None]:
    """(sp offset, fp offset) from the CFA after the prologue (the instructions of its line)."""
    first_line = instructions[0]["line"]
    sp = 0 if arch == "arm64" else -8  # x86_64: the call pushed the return address
    fp: int | None = None
    saved_fp: int | None = None
    for inst in instructions:
        if inst["line"] != first_line:
            break
        mnem, ops = inst["mnemonic"], inst["operands"].replace(" ", "")
        if arch == "arm64":
            if mnem == "sub" and ops.startswith("sp,sp,#"):
                sp -= _imm(ops.split(",")[2])
            elif mnem == "stp" and ops.startswith("x29,x30,[sp"):
                m = re.match(r"x29,x30,\[sp(?:,#(-?0x[0-9a-f]+|-?\d+))?\](!?)", ops)
                if not m:
                    raise LayoutError(f"{fn_name}: cannot parse {mnem} {ops}")
                off = int(m.group(1), 0) if m.group(1) else 0
                if m.group(2):
                    sp += off
                    saved_fp = sp
                else:
                    saved_fp = sp + off
            elif mnem == "add" and ops.startswith("x29,sp,#"):
                fp = sp + _imm(ops.split(",")[2])
            elif mnem == "mov" and ops == "x29,sp":
                fp = sp
        else:
            if mnem == "push":
                sp -= 8
                if ops == "rbp":
                    saved_fp = sp
            elif mnem == "mov" and ops == "rbp,rsp":
                fp = sp
            elif mnem == "sub" and ops.startswith("rsp,"):
                sp -= _imm(ops.split(",")[1])
    if fp is not None and (saved_fp != fp or fp != -16):
        raise LayoutError(f"{fn_name}: unexpected frame record (fp {fp}, saved at {saved_fp})")
    return sp, fp


_BREG = {"31": "sp", "29": "fp", "7": "sp", "6": "fp"}  # arm64 WSP/W29, x86_64 RSP/RBP


def _parse_location(location: str) -> tuple[str, int] | None:
    """``DW_OP_fbreg N`` -> ("fb", N); ``DW_OP_breg31 WSP+8`` -> ("sp", 8); else None."""
    m = re.fullmatch(r"DW_OP_fbreg ([+-]?\d+)", location.strip())
    if m:
        return "fb", int(m.group(1))
    m = re.fullmatch(r"DW_OP_breg(\d+) \w+([+-]\d+)", location.strip())
    if m and m.group(1) in _BREG:
        return _BREG[m.group(1)], int(m.group(2))
    return None


def _call_target(inst: dict) -> int | None:
    if inst["mnemonic"] not in ("bl", "call", "callq"):
        return None
    m = re.match(r"\s*(0x[0-9a-fA-F]+)", inst["operands"])
    return int(m.group(1), 16) if m else None


def _is_store(arch: str, inst: dict) -> bool:
    if arch == "arm64":
        return inst["mnemonic"] in ("str", "stur", "strb", "strh", "sturb", "sturh")
    return inst["mnemonic"].startswith("mov") and "ptr [" in inst["operands"].split(",")[0]


@functools.cache
def load_program(arch: str) -> Program:
    """Build the fixture for ``arch`` and read its layout facts (LLDB 23, one subprocess)."""
    import lief

    exe = fixtures.build_fixture(arch)
    facts = debuggers.analyze_executable(exe, FUNCTIONS)
    if facts["errors"]:
        raise LayoutError(f"analyzing {exe}: {facts['errors']}")
    functions: dict[str, Function] = {}
    for name in FUNCTIONS:
        raw = facts["functions"][name]
        sp_offset, fp_offset = _prologue(arch, name, raw["instructions"])
        variables = {}
        for var, loc in raw["variables"].items():
            parsed = _parse_location(loc)
            if parsed is not None:
                variables[var] = parsed
        functions[name] = Function(
            name, raw["start"], raw["end"], raw["instructions"], variables, sp_offset, fp_offset
        )
    by_start = {f.start: f.name for f in functions.values()}
    returns: dict[tuple[str, str], int] = {}
    for caller, callee in CALLS:
        sites = [
            inst["addr"] + inst["size"]
            for inst in functions[caller].instructions
            if (target := _call_target(inst)) is not None and by_start.get(target) == callee
        ]
        if len(sites) != 1:
            raise LayoutError(f"{caller} -> {callee}: {len(sites)} call sites in {exe}")
        returns[(caller, callee)] = sites[0]
    crash_line = fixtures.source_line("*crash = local;")
    on_line = [i for i in functions["level3"].instructions if i["line"] == crash_line]
    stores = [i for i in on_line if _is_store(arch, i)]
    if not on_line or not stores:
        raise LayoutError(f"no store on line {crash_line} of level3 in {exe}")
    lief.logging.disable()
    fat = lief.MachO.parse(exe)
    binary = fat.at(0) if fat else None
    if binary is None or binary.uuid is None:
        raise LayoutError(f"lief cannot read {exe}")
    text = binary.get_segment("__TEXT")
    if text is None:
        raise LayoutError(f"{exe} has no __TEXT")
    uuid = bytes(binary.uuid.uuid).hex().upper()
    uuid = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
    return Program(
        arch=arch,
        exe=exe,
        uuid=uuid,
        text_vmaddr=text.virtual_address,
        text_bytes=bytes(text.content),
        functions=functions,
        returns=returns,
        crash_pc=stores[-1]["addr"],
        crash_line_pc=on_line[0]["addr"],
    )


class _Stack:
    """A thread's stack: sparse little-endian writes, rendered as one zero-filled region."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.words: dict[int, bytes] = {}

    def put(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.words[addr + i] = bytes([b])

    def put_u64(self, addr: int, value: int) -> None:
        self.put(addr, struct.pack("<Q", value))

    def put_i32(self, addr: int, value: int) -> None:
        self.put(addr, struct.pack("<i", value))

    def render(self, low: int) -> bytes:
        if any(a < low or a >= self.top for a in self.words):
            raise LayoutError("stack write outside the stack region")
        buf = bytearray(self.top - low)
        for addr, b in self.words.items():
            buf[addr - low] = b[0]
        return bytes(buf)


def _merge(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(windows):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _regs(names_values: dict[str, int]) -> list[dict]:
    return [{"name": n, "value": v} for n, v in names_values.items()]


def crash_spec(arch: str) -> tuple[dict, dict]:
    """(spec, expected) for a 3-thread crash of the fixture on ``arch`` ("arm64"/"x86_64")."""
    prog = load_program(arch)
    slide = SLIDES[arch]
    fns = prog.functions
    threads_spec: list[dict] = []
    threads_expected: list[dict] = []
    stack_regions: list[dict] = []
    code_addrs: list[int] = []

    for index, (tid, top, outer_depth) in enumerate(
        zip(THREAD_IDS, STACK_TOPS[arch], OUTER_DEPTH, strict=True)
    ):
        outer = "main" if index == 0 else "worker"
        chain = [outer, "level1", "level2", "level3"]  # outermost first
        stack = _Stack(top)
        cfa = top - 0x40  # slack above the outermost frame (where start/_pthread_start live)
        caller_fp = 0
        ret = 0  # the outermost frame returns to 0: the end of the chain
        frames: list[dict] = []  # outermost first
        live_fp = 0
        for depth_index, name in enumerate(chain):
            fn = fns[name]
            if arch == "x86_64":
                stack.put_u64(cfa - 8, ret)
            sp = cfa + fn.sp_offset
            fp = None if fn.fp_offset is None else cfa + fn.fp_offset
            if fp is not None:
                stack.put_u64(fp, caller_fp)
                stack.put_u64(fp + 8, ret)
                live_fp = fp
                caller_fp = fp
            bases = {"fb": fp if fp is not None else sp, "sp": sp, "fp": fp}

            def where(var: str, fn: Function = fn, bases: dict = bases) -> int:
                base, off = fn.variables[var]
                if bases[base] is None:
                    raise LayoutError(f"{fn.name}.{var}: fp-relative without a frame record")
                return bases[base] + off

            depth = outer_depth + depth_index - 1 if name != outer else None
            values: dict[str, int] = {}
            if depth is not None and "depth" in fn.variables:
                values["depth"] = depth
                stack.put_i32(where("depth"), depth)
            if name == "worker" and "arg" in fn.variables:
                values["arg"] = outer_depth  # (void *)(10 * (i + 1))
                stack.put_u64(where("arg"), outer_depth)
            if name == "level3":
                assert depth is not None  # level3 is never the outermost frame
                values["local"] = depth * 7 + 3
                stack.put_i32(where("local"), values["local"])
                stack.put_u64(where("crash"), 0)
            frames.append(
                {
                    "function": name,
                    "cfa": cfa,
                    "sp": sp,
                    "fp": live_fp,
                    "return_to": ret,
                    "values": values,
                    "variable_addrs": {v: where(v) for v in values},
                }
            )
            if depth_index + 1 < len(chain):
                ret = prog.returns[(name, chain[depth_index + 1])] + slide
                code_addrs.append(ret)
                cfa = sp  # the callee's CFA is the caller's sp at the call
        leaf = frames[-1]
        pc = (prog.crash_pc if index == 0 else prog.crash_line_pc) + slide
        code_addrs.append(pc)
        local = leaf["values"]["local"]
        depth = leaf["values"]["depth"]
        if arch == "arm64":
            gpr = {f"x{i}": 0 for i in range(29)}
            gpr.update({f"x{i}": 0xA0A0_0000_0000 + i for i in range(10, 29)})
            gpr.update({"x0": depth, "x8": local, "x9": 0})
            gpr.update({"fp": leaf["fp"], "lr": leaf["return_to"], "sp": leaf["sp"], "pc": pc})
            gpr["cpsr"] = 0x60000000
        else:
            gpr = {
                "rax": 0,
                "rbx": 0xB0B0_0000_0001,
                "rcx": local,
                "rdx": 0x1D,
                "rdi": depth,
                "rsi": 0x51,
                "rbp": leaf["fp"],
                "rsp": leaf["sp"],
            }
            gpr.update({f"r{i}": 0xB0B0_0000_0000 + i for i in range(8, 16)})
            gpr.update({"rip": pc, "rflags": 0x10246, "cs": 0x2B, "fs": 0, "gs": 0})
        regsets = [{"flavor": "gpr", "registers": _regs(gpr)}]
        crashed = index == 0
        exc: dict[str, int] = {}
        if crashed:
            if arch == "arm64":
                exc = {"far": 0, "esr": 0x92000046, "exception": 1}
            else:
                exc = {"trapno": 14, "cpu": 0, "err": 6, "faultvaddr": 0}
                regsets.append({"flavor": "fpr", "registers": _regs(X86_64_FPR)})
            regsets.append({"flavor": "exc", "registers": _regs(exc)})
        threads_spec.append({"thread-id": tid, "crashed": crashed, "regsets": regsets})

        low = (leaf["sp"] - RED_ZONE[arch]) & ~0xF
        data = stack.render(low)
        stack_regions.append({"addr": low, "hex": data.hex(), "protection": "rw-"})
        top_down = list(reversed(frames))
        threads_expected.append(
            {
                "thread_id": tid,
                "crashed": crashed,
                "functions": [f["function"] for f in top_down],
                "frame_pcs": [pc] + [f["return_to"] for f in top_down[:-1]],
                "frame_sps": [f["sp"] for f in top_down],
                "frame_fps": [f["fp"] for f in top_down],
                "pc": pc,
                "sp": leaf["sp"],
                "fp": leaf["fp"],
                "registers": gpr,
                "exception": exc,
                "local": local,
                "depths": [f["values"].get("depth") for f in top_down],
                "values": [f["values"] for f in top_down],
                "variable_addrs": [f["variable_addrs"] for f in top_down],
                "stack": (low, top),
                "stack_bytes": data,
            }
        )

    text_lo = prog.text_vmaddr + slide
    text_hi = text_lo + len(prog.text_bytes)
    windows = [(max(a - CODE_WINDOW, text_lo), min(a + CODE_WINDOW, text_hi)) for a in code_addrs]
    code_regions = []
    for lo, hi in _merge(windows):
        data = prog.text_bytes[lo - text_lo : hi - text_lo]
        code_regions.append({"addr": lo, "hex": data.hex(), "protection": "r-x"})

    spec = {
        "cpu": arch,
        "threads": threads_spec,
        "memory-regions": sorted(code_regions + stack_regions, key=lambda r: r["addr"]),
        "binaries": [{"name": prog.exe, "slide": slide, "main": True}],
    }
    expected = {
        "arch": arch,
        "exe": prog.exe,
        "uuid": prog.uuid,
        "slide": slide,
        "text_load_address": prog.text_vmaddr + slide,
        "threads": threads_expected,
        "memory": _memory_checks(prog, slide, threads_expected, code_regions),
        "unreadable": [STACK_TOPS[arch][0], STACK_TOPS[arch][0] + 0x10000],
        "regions": [(r["addr"], r["addr"] + len(r["hex"]) // 2) for r in spec["memory-regions"]],
    }
    return spec, expected


def _memory_checks(
    prog: Program, slide: int, threads: list[dict], code_regions: list[dict]
) -> list[tuple[int, str]]:
    """(address, expected hex) pairs: frame records, locals, code at the pcs."""
    checks: list[tuple[int, str]] = []
    for t in threads:
        low, _top = t["stack"]
        data: bytes = t["stack_bytes"]
        fp = t["frame_fps"][1]  # level2's frame record (exists on both arches)
        checks.append((fp, data[fp - low : fp - low + 16].hex()))
        addr = t["variable_addrs"][0]["local"]
        checks.append((addr, struct.pack("<i", t["local"]).hex()))
        checks.append((low, data[:8].hex()))
    for t in threads[:1]:
        pc = t["pc"]
        off = pc - slide - prog.text_vmaddr
        checks.append((pc, prog.text_bytes[off : off + 8].hex()))
    region = code_regions[0]
    checks.append((region["addr"], region["hex"][:32]))
    return checks
