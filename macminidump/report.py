"""The report of a core (``macminidump inspect``): what it holds, as plain data (``--json``)
and as text for people.

The JSON shape is stable: keys are only ever added. Integers stay integers (addresses
and registers too); the text rendering shows them in hex.
"""

from __future__ import annotations

import os
from typing import Any

from . import records
from .arch import RegKind, arch_info
from .escape import printable
from .model import Image, RawItem, Snapshot
from .stopreason import describe_exception, describe_signal

JSON_VERSION = 1


def inspect_core(path: str | os.PathLike[str]) -> dict[str, Any]:
    from .parse import core_format

    if core_format(path) == "elf":
        return _inspect_elf(path)
    from .macho.parse import MachOCore

    core = MachOCore.open(path)
    snapshot = core.snapshot()
    report: dict[str, Any] = {
        "version": JSON_VERSION,
        "file": os.fspath(path),
        "size": len(core.buffer),
        "format": "macho",
        "header": dict(core.header),
    }
    report.update(snapshot_report(snapshot))
    offsets = {segment["vmaddr"]: segment["fileoff"] for segment in core.segments}
    for region in report["regions"]:
        region["file_offset"] = offsets.get(region["address"])
    report["notes"] = [
        {"owner": n.owner, "offset": n.offset, "size": n.size, "decoded": plain_value(n.decoded)}
        for n in core.notes
    ]
    report["load_commands"] = [
        {"cmd": c.cmd, "offset": c.offset, "size": c.size} for c in core.commands
    ]
    return report


def _inspect_elf(path: str | os.PathLike[str]) -> dict[str, Any]:
    from .elf.constants import CoreNoteType
    from .elf.parse import ElfCore
    from .linux_abi import SegmentType

    core = ElfCore.open(path)
    snapshot = core.snapshot()
    report: dict[str, Any] = {
        "version": JSON_VERSION,
        "file": os.fspath(path),
        "size": len(core.buffer),
        "format": "elf",
        "header": {k: v if isinstance(v, int) else bytes(v).hex() for k, v in core.header.items()},
    }
    report.update(snapshot_report(snapshot))
    offsets = {ph.p_vaddr: ph.p_offset for ph in core.program_headers if ph.p_type == 1}
    for region in report["regions"]:
        region["file_offset"] = offsets.get(region["address"])
    report["program_headers"] = [
        {
            "offset": ph.offset,
            "type": ph.p_type,
            "type_name": _enum_name(SegmentType, ph.p_type),
            "flags": ph.p_flags,
            "p_offset": ph.p_offset,
            "vaddr": ph.p_vaddr,
            "filesz": ph.p_filesz,
            "memsz": ph.p_memsz,
        }
        for ph in core.program_headers
    ]
    report["notes"] = [
        {
            "owner": n.owner,
            "type": n.type,
            "type_name": _enum_name(CoreNoteType, n.type) if n.owner in ("CORE", "LINUX") else None,
            "offset": n.offset,
            "size": n.size,
            "decoded": plain_value(n.decoded),
        }
        for n in core.notes
    ]
    return report


def _enum_name(enum: Any, value: int) -> str | None:
    try:
        return str(enum(value).name)
    except ValueError:
        return None


def snapshot_report(snapshot: Snapshot) -> dict[str, Any]:
    info = arch_info(snapshot.arch)
    threads = []
    for index, t in enumerate(snapshot.threads):
        threads.append(
            {
                "index": index,
                "id": t.id,
                "name": t.name,
                "crashed": t.crashed,
                "stop_reason": describe_exception(snapshot.arch, t.exception)
                or (
                    describe_signal(
                        snapshot.signal.signo, snapshot.signal.code, snapshot.signal.address
                    )
                    if t.crashed and snapshot.signal is not None
                    else None
                ),
                "pc": t.gpr.get(info.pc),
                "sp": t.gpr.get(info.sp),
                "fp": t.gpr.get(info.fp),
                "registers": {
                    rs.kind.value: {
                        n: rs.values[n] for n in info.registers[rs.kind] if n in rs.values
                    }
                    for rs in t.regsets
                },
                "xsave_size": len(t.xsave) if t.xsave is not None else None,
                "raw_states": [
                    {"flavor": r.kind, "name": _raw_state_name(r), "size": len(r.data)}
                    for r in t.raw_states
                ],
            }
        )
    return {
        "arch": snapshot.arch.value,
        "addressable_bits": records.asdict(snapshot.addressable_bits)
        if snapshot.addressable_bits
        else None,
        "threads": threads,
        "regions": [
            {
                "address": r.address,
                "size": r.size,
                "end": r.end,
                "protection": r.protection.text(),
                "max_protection": r.max_protection.text(),
                "name": r.name,
            }
            for r in snapshot.regions
        ],
        "images": [_image(i) for i in snapshot.images],
        "process": records.asdict(snapshot.process) if snapshot.process else None,
        "signal": records.asdict(snapshot.signal) if snapshot.signal else None,
        "auxv": [{"type": k, "value": v} for k, v in snapshot.auxv],
        "file_mappings": [records.asdict(m) for m in snapshot.file_mappings],
        "memory_selection": records.asdict(snapshot.memory_selection)
        if snapshot.memory_selection
        else None,
        "raw_notes": [
            {"owner": n.owner, "type": n.kind, "size": len(n.data)} for n in snapshot.raw_notes
        ],
        "raw_commands": [{"cmd": c.kind, "size": len(c.data)} for c in snapshot.raw_commands],
    }


def _raw_state_name(item: RawItem) -> str:
    """What a thread's unmodelled state is: an ELF note type or a Mach-O flavor number."""
    if item.format == "elf":
        from .elf.constants import CoreNoteType

        try:
            return CoreNoteType(item.kind).name
        except ValueError:
            return f"ELF note type {item.kind:#x}"
    return f"Mach-O flavor {item.kind}"


def _image(image: Image) -> dict[str, Any]:
    return {
        "path": image.path,
        "uuid": str(image.uuid).upper() if image.uuid else None,
        "build_id": image.build_id.hex() if image.build_id is not None else None,
        "load_address": image.load_address,
        "slide": image.slide,
        "main": image.main,
        "segments": [
            {"name": s.name, "address": s.address, "size": s.size} for s in image.segments
        ],
    }


def plain_value(value: Any) -> Any:
    """Decoded note values (attrs objects, images, UUIDs) as JSON-ready data."""
    if value is None or isinstance(value, (int, str, bool, float)):
        return value
    if isinstance(value, Image):
        return _image(value)
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if records.has(type(value)):
        return {k: plain_value(v) for k, v in records.asdict(value, recurse=False).items()}
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    return str(value).upper() if type(value).__name__ == "UUID" else str(value)


def _hex(value: int | None) -> str:
    return "-" if value is None else f"{value:#x}"


def render_text(report: dict[str, Any], registers: str = "gpr") -> str:
    lines = []
    h = report["header"]
    if report["format"] == "elf":
        lines.append(
            f"{report['file']}: ELF core, {report['arch']}, {report['size']:,} bytes, "
            f"{h['e_phnum']} program headers"
        )
        p = report["process"]
        if p:
            lines.append(
                f"process {p['pid']} {p['name']!r} (ppid {p['ppid']}, uid {p['uid']}, "
                f"gid {p['gid']}): {p['args']}"
            )
        s = report["signal"]
        if s:
            lines.append(f"signal: {describe_signal(s['signo'], s['code'], s['address'])}")
    else:
        lines.append(
            f"{report['file']}: Mach-O core, {report['arch']}, {report['size']:,} bytes, "
            f"{h['ncmds']} load commands ({h['sizeofcmds']:,} bytes)"
        )
    if report["addressable_bits"]:
        b = report["addressable_bits"]
        lines.append(f"addressable bits: low {b['low']}, high {b['high']}")
    lines.append("")
    lines.append(f"threads ({len(report['threads'])}):")
    for t in report["threads"]:
        name = f" {t['name']!r}" if t["name"] else ""
        mark = "  <- crashed" if t["crashed"] else ""
        lines.append(
            f"  #{t['index']} id {t['id']:#x}{name}: pc {_hex(t['pc'])} sp {_hex(t['sp'])} "
            f"fp {_hex(t['fp'])}{mark}"
        )
        if t["stop_reason"]:
            lines.append(f"      stop reason: {t['stop_reason']}")
        for kind, values in t["registers"].items():
            if registers == "none" or (registers == "gpr" and kind != RegKind.GPR.value):
                continue
            items = [f"{n}={v:#x}" for n, v in values.items()]
            lines.append(f"      {kind}:")
            for i in range(0, len(items), 4):
                lines.append("        " + "  ".join(f"{x:<24}" for x in items[i : i + 4]).rstrip())
        if t["xsave_size"] is not None:
            lines.append(f"      xsave: the XSAVE area ({t['xsave_size']} bytes)")
        for r in t["raw_states"]:
            lines.append(f"      {r['name']}: kept as is ({r['size']} bytes)")
    lines.append("")
    total = sum(r["size"] for r in report["regions"])
    lines.append(f"memory ({len(report['regions'])} regions, {total:,} bytes):")
    for r in report["regions"]:
        name = f"  {r['name']}" if r["name"] else ""
        lines.append(
            f"  {r['address']:#018x}-{r['end']:#018x} {r['protection']} {r['size']:>10,}{name}"
        )
    lines += _selection_lines(report.get("memory_selection"))
    if report["file_mappings"]:
        lines.append("")
        lines.append(f"file mappings ({len(report['file_mappings'])}):")
        for m in report["file_mappings"]:
            lines.append(
                f"  {m['start']:#018x}-{m['end']:#018x} offset {m['offset']:#x} {m['path']}"
            )
    lines.append("")
    lines.append(f"images ({len(report['images'])}):")
    for i in report["images"]:
        main = "  (main executable)" if i["main"] else ""
        slide = f" slide {_hex(i['slide'])}" if i["slide"] is not None else ""
        ident = i["uuid"] or (f"build-id {i['build_id']}" if i.get("build_id") else "-")
        lines.append(f"  {_hex(i['load_address'])}{slide} {ident} {i['path']}{main}")
    lines.append("")
    lines.append(f"notes ({len(report['notes'])}):")
    for n in report["notes"]:
        kind = f" {n.get('type_name') or hex(n['type'])}" if "type" in n else ""
        lines.append(f"  {n['owner']!r}{kind} at {n['offset']:#x}, {n['size']} bytes")
        decoded = n["decoded"]
        if isinstance(decoded, dict):
            lines.append("      " + ", ".join(f"{k}={_short(v)}" for k, v in decoded.items()))
        elif isinstance(decoded, list):
            lines.append(f"      {len(decoded)} entries")
        elif decoded is not None:
            lines.append(f"      {decoded}")
    # names, paths and arguments come from the core: shown, never obeyed by the terminal
    return "\n".join(printable(line) for line in lines) + "\n"


def _selection_lines(selection: dict[str, Any] | None) -> list[str]:
    """How a capture chose the memory: its policy, its budget, and what the budget cut."""
    if not selection:
        return []
    budget = selection["max_size"]
    head = f"memory policy: {selection['policy']}, " + (
        f"max size {budget:,} bytes" if budget is not None else "no size limit"
    )
    if not selection["omitted_count"]:
        return ["", head + ", nothing cut"]
    lines = [
        "",
        f"{head}; cut {selection['omitted_bytes']:,} bytes in "
        f"{selection['omitted_count']:,} ranges (largest listed):",
    ]
    for o in selection["omitted"]:
        end = o["address"] + o["size"]
        lines.append(f"  {o['address']:#018x}-{end:#018x} {o['size']:>14,}  {o['kind']}")
    return lines


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return hex(value)
    return str(value)
