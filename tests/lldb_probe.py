"""Probe script: runs *inside* a subprocess whose ``import lldb`` is one particular LLDB.

Not a test module and not imported by the test process (both LLDBs are called ``lldb``,
so one Python process can hold only one). ``tests/debuggers.py`` starts it as
``python lldb_probe.py`` with a JSON request on stdin and reads back one JSON object,
printed on a line that starts with ``RESULT_MARKER`` (LLDB may print to stdout too).

Requests (``op``):

- ``core``: create a target (``exe`` or none), ``LoadCore`` the core and report the
  process: state, threads (registers, frames), modules, memory reads, variables,
  ``bt all`` text.
- ``exe``: create a target for an executable without a core and report its modules and
  where some functions are (works with no library code at all).
- ``analyze``: static facts of an executable for laying out stacks: per function its
  file address range, instructions (address, size, mnemonic, operands, line) and the
  DWARF locations of its variables (from ``image lookup -v``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback

RESULT_MARKER = "@@MACMINIDUMP-PROBE@@"


def _lldb():
    import lldb  # the subprocess's PYTHONPATH chooses which LLDB

    return lldb


def _command(dbg, command: str) -> dict:
    lldb = _lldb()
    result = lldb.SBCommandReturnObject()
    dbg.GetCommandInterpreter().HandleCommand(command, result)
    return {
        "command": command,
        "succeeded": bool(result.Succeeded()),
        "output": result.GetOutput() or "",
        "error": result.GetError() or "",
    }


def _module_info(target, module) -> dict:
    lldb = _lldb()
    spec = module.GetFileSpec()
    text = module.FindSection("__TEXT")
    text_load = None
    if text.IsValid():
        addr = text.GetLoadAddress(target)
        if addr != lldb.LLDB_INVALID_ADDRESS:
            text_load = addr
    return {
        "path": spec.fullpath,
        "file": spec.GetFilename(),
        "uuid": module.GetUUIDString(),
        "triple": module.GetTriple(),
        "text_load_address": text_load,
        "num_symbols": module.GetNumSymbols(),
    }


def _modules(target) -> list[dict]:
    return [_module_info(target, target.GetModuleAtIndex(i)) for i in range(target.GetNumModules())]


def _register_value(reg):
    value = reg.GetValue()
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return value


def _gpr(frame) -> dict:
    """The general purpose register set of a frame: name -> int (or None)."""
    sets = frame.GetRegisters()
    chosen = None
    for i in range(sets.GetSize()):
        regset = sets.GetValueAtIndex(i)
        if "general" in (regset.GetName() or "").lower():
            chosen = regset
            break
    if chosen is None and sets.GetSize():
        chosen = sets.GetValueAtIndex(0)
    regs: dict = {}
    if chosen is not None:
        for j in range(chosen.GetNumChildren()):
            reg = chosen.GetChildAtIndex(j)
            regs[reg.GetName()] = _register_value(reg)
    return regs


def _frame_info(frame) -> dict:
    line_entry = frame.GetLineEntry()
    line = None
    source = None
    if line_entry.IsValid() and line_entry.GetLine():
        line = line_entry.GetLine()
        source = line_entry.GetFileSpec().GetFilename()
    module = frame.GetModule()
    return {
        "index": frame.GetFrameID(),
        "pc": frame.GetPC(),
        "sp": frame.GetSP(),
        "fp": frame.GetFP(),
        "function": frame.GetFunctionName(),
        "symbol": frame.GetSymbol().GetName() if frame.GetSymbol().IsValid() else None,
        "module": module.GetFileSpec().GetFilename() if module.IsValid() else None,
        "line": line,
        "file": source,
    }


def _thread_info(thread) -> dict:
    frames = [_frame_info(thread.GetFrameAtIndex(i)) for i in range(thread.GetNumFrames())]
    frame0 = thread.GetFrameAtIndex(0)
    return {
        "index_id": thread.GetIndexID(),
        "thread_id": thread.GetThreadID(),
        "stop_reason": thread.GetStopReason(),
        "stop_description": thread.GetStopDescription(256) or "",
        "pc": frame0.GetPC() if frame0.IsValid() else None,
        "sp": frame0.GetSP() if frame0.IsValid() else None,
        "fp": frame0.GetFP() if frame0.IsValid() else None,
        "registers": _gpr(frame0) if frame0.IsValid() else {},
        "frames": frames,
    }


def _read_memory(process, addr: int, size: int) -> dict:
    lldb = _lldb()
    error = lldb.SBError()
    data = process.ReadMemory(addr, size, error)
    if error.Fail() or data is None:
        return {"addr": addr, "size": size, "hex": None, "error": error.GetCString() or "failed"}
    return {"addr": addr, "size": size, "hex": bytes(data).hex(), "error": None}


def _variable(process, thread_index: int, frame_index: int, name: str) -> dict:
    out = {"thread": thread_index, "frame": frame_index, "name": name}
    thread = process.GetThreadAtIndex(thread_index)
    if not thread.IsValid():
        return {**out, "value": None, "error": "no such thread"}
    frame = thread.GetFrameAtIndex(frame_index)
    if not frame.IsValid():
        return {**out, "value": None, "error": "no such frame"}
    value = frame.FindVariable(name)
    if not value.IsValid():
        return {**out, "value": None, "error": "variable not found (no debug info?)"}
    error = value.GetError()
    return {
        **out,
        "function": frame.GetFunctionName(),
        "value": value.GetValue(),
        "type": value.GetTypeName(),
        "load_address": value.GetLoadAddress(),
        "error": error.GetCString() if error.Fail() else None,
    }


def probe_core(request: dict) -> dict:
    lldb = _lldb()
    dbg = lldb.SBDebugger.Create()
    dbg.SetAsync(False)
    out: dict = {"lldb_version": lldb.SBDebugger.GetVersionString(), "errors": []}
    if request.get("symfile"):
        # `target create EXE --symfile DWARF`: the executable with its symbols located
        result = lldb.SBCommandReturnObject()
        dbg.GetCommandInterpreter().HandleCommand(
            f"target create '{request['exe']}' --symfile '{request['symfile']}'", result
        )
        if not result.Succeeded():
            out["errors"].append(f"target create --symfile: {result.GetError()}")
            return out
        target = dbg.GetSelectedTarget()
    else:
        target = dbg.CreateTarget(request.get("exe") or "")
    if not target.IsValid():
        out["errors"].append("CreateTarget failed")
        return out
    error = lldb.SBError()
    process = target.LoadCore(request["core"], error)
    if error.Fail():
        out["errors"].append(f"LoadCore: {error.GetCString()}")
    out["process_valid"] = bool(process.IsValid())
    if not process.IsValid():
        out["modules"] = _modules(target)
        return out
    out["state"] = lldb.SBDebugger.StateAsCString(process.GetState())
    out["threads"] = [
        _thread_info(process.GetThreadAtIndex(i)) for i in range(process.GetNumThreads())
    ]
    out["modules"] = _modules(target)
    out["memory"] = [_read_memory(process, a, n) for a, n in request.get("memory", [])]
    out["variables"] = [_variable(process, t, f, n) for t, f, n in request.get("variables", [])]
    out["commands"] = [
        _command(dbg, c) for c in ["bt all", "image list", *request.get("commands", [])]
    ]
    out["bt_all"] = out["commands"][0]["output"] + out["commands"][0]["error"]
    for command in out["commands"]:
        if command["error"]:
            out["errors"].append(f"{command['command']}: {command['error'].strip()}")
    return out


def probe_exe(request: dict) -> dict:
    lldb = _lldb()
    dbg = lldb.SBDebugger.Create()
    dbg.SetAsync(False)
    out: dict = {"lldb_version": lldb.SBDebugger.GetVersionString(), "errors": []}
    target = dbg.CreateTarget(request["exe"])
    if not target.IsValid():
        out["errors"].append("CreateTarget failed")
        return out
    out["modules"] = _modules(target)
    functions = {}
    for name in request.get("functions", []):
        found = target.FindFunctions(name)
        entries = []
        for i in range(found.GetSize()):
            ctx = found.GetContextAtIndex(i)
            func = ctx.GetFunction()
            symbol = ctx.GetSymbol()
            start = func.GetStartAddress() if func.IsValid() else symbol.GetStartAddress()
            line_entry = start.GetLineEntry()
            entries.append(
                {
                    "file_address": start.GetFileAddress(),
                    "has_debug_info": bool(func.IsValid()),
                    "line": line_entry.GetLine() if line_entry.IsValid() else None,
                }
            )
        functions[name] = entries
    out["functions"] = functions
    out["commands"] = [_command(dbg, c) for c in request.get("commands", [])]
    return out


_VAR_RE = re.compile(r'Variable: .*?name = "(?P<name>[^"]+)".*?location = (?P<loc>[^,]+),')


def analyze(request: dict) -> dict:
    lldb = _lldb()
    dbg = lldb.SBDebugger.Create()
    dbg.SetAsync(False)
    out: dict = {"lldb_version": lldb.SBDebugger.GetVersionString(), "errors": []}
    target = dbg.CreateTarget(request["exe"])
    if not target.IsValid():
        out["errors"].append("CreateTarget failed")
        return out
    out["modules"] = _modules(target)
    flavor = "intel" if "x86_64" in target.GetTriple() else None
    functions = {}
    for name in request["functions"]:
        found = target.FindFunctions(name)
        if found.GetSize() != 1:
            out["errors"].append(f"{name}: {found.GetSize()} matches")
            continue
        ctx = found.GetContextAtIndex(0)
        func = ctx.GetFunction()
        if not func.IsValid():
            out["errors"].append(f"{name}: no debug info")
            continue
        start = func.GetStartAddress().GetFileAddress()
        end = func.GetEndAddress().GetFileAddress()
        instructions = []
        insts = func.GetInstructions(target, flavor) if flavor else func.GetInstructions(target)
        for i in range(insts.GetSize()):
            inst = insts.GetInstructionAtIndex(i)
            addr = inst.GetAddress()
            line_entry = addr.GetLineEntry()
            instructions.append(
                {
                    "addr": addr.GetFileAddress(),
                    "size": inst.GetByteSize(),
                    "mnemonic": inst.GetMnemonic(target),
                    "operands": inst.GetOperands(target),
                    "line": line_entry.GetLine() if line_entry.IsValid() else None,
                }
            )
        lookup = _command(dbg, f"image lookup -v -a {start:#x}")
        variables = {m["name"]: m["loc"].strip() for m in _VAR_RE.finditer(lookup["output"])}
        functions[name] = {
            "start": start,
            "end": end,
            "instructions": instructions,
            "variables": variables,
            "lookup": lookup["output"],
        }
    out["functions"] = functions
    return out


OPS = {"core": probe_core, "exe": probe_exe, "analyze": analyze}


def main() -> None:
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    request = json.loads(raw)
    try:
        lldb = _lldb()
        version = lldb.SBDebugger.GetVersionString()
        expected = request.get("expect_major")
        match = re.search(r"lldb version (\d+)\.", version)
        if expected is not None and (not match or int(match.group(1)) != expected):
            raise RuntimeError(f"expected LLDB {expected}.x, this is {version!r}")
        result = OPS[request["op"]](request)
    except Exception:  # report, don't die silently: the parent shows this text
        result = {"exception": traceback.format_exc()}
    sys.stdout.flush()
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter teardown: LLDB's static destructors have crashed it on exit
    os._exit(0)


if __name__ == "__main__":
    main()
