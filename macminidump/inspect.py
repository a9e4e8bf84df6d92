"""What a core holds, as plain data (``--json``) and as text for people.

The JSON shape is stable: keys are only ever added. Integers stay integers (addresses
and registers too); the text rendering shows them in hex.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from .arch import RegKind, arch_info
from .model import Image, Snapshot
from .stopreason import describe_exception

JSON_VERSION = 1


def inspect_core(path: str | os.PathLike[str]) -> dict[str, Any]:
    from .macho.parse import MachOCore
    from .parse import core_format

    fmt = core_format(path)
    if fmt != "macho":
        from .errors import ParseError

        raise ParseError("ELF cores are not supported yet", 0, os.fspath(path))
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
    offsets = {fields[3]: fields[5] for _, fields in core.segments}
    for region in report["regions"]:
        region["file_offset"] = offsets.get(region["address"])
    report["notes"] = [
        {"owner": n.owner, "offset": n.offset, "size": n.size, "decoded": _plain(n.decoded)}
        for n in core.notes
    ]
    report["load_commands"] = [
        {"cmd": c.cmd, "offset": c.offset, "size": c.size} for c in core.commands
    ]
    return report


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
                "stop_reason": describe_exception(snapshot.arch, t.exception),
                "pc": t.gpr.get(info.pc),
                "sp": t.gpr.get(info.sp),
                "fp": t.gpr.get(info.fp),
                "registers": {
                    rs.kind.value: {
                        n: rs.values[n] for n in info.registers[rs.kind] if n in rs.values
                    }
                    for rs in t.regsets
                },
                "raw_states": [{"flavor": r.kind, "size": len(r.data)} for r in t.raw_states],
            }
        )
    return {
        "arch": snapshot.arch.value,
        "addressable_bits": attrs.asdict(snapshot.addressable_bits)
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
        "raw_notes": [{"owner": n.owner, "size": len(n.data)} for n in snapshot.raw_notes],
        "raw_commands": [{"cmd": c.kind, "size": len(c.data)} for c in snapshot.raw_commands],
    }


def _image(image: Image) -> dict[str, Any]:
    return {
        "path": image.path,
        "uuid": str(image.uuid).upper() if image.uuid else None,
        "load_address": image.load_address,
        "slide": image.slide,
        "main": image.main,
        "segments": [
            {"name": s.name, "address": s.address, "size": s.size} for s in image.segments
        ],
    }


def _plain(value: Any) -> Any:
    """Decoded note values (attrs objects, images, UUIDs) as JSON-ready data."""
    if value is None or isinstance(value, (int, str, bool, float)):
        return value
    if isinstance(value, Image):
        return _image(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if attrs.has(type(value)):
        return {k: _plain(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value).upper() if type(value).__name__ == "UUID" else str(value)


def _hex(value: int | None) -> str:
    return "-" if value is None else f"{value:#x}"


def render_text(report: dict[str, Any], registers: str = "gpr") -> str:
    lines = []
    h = report["header"]
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
        for r in t["raw_states"]:
            lines.append(f"      raw flavor {r['flavor']} ({r['size']} bytes)")
    lines.append("")
    total = sum(r["size"] for r in report["regions"])
    lines.append(f"memory ({len(report['regions'])} regions, {total:,} bytes):")
    for r in report["regions"]:
        name = f"  {r['name']}" if r["name"] else ""
        lines.append(
            f"  {r['address']:#018x}-{r['end']:#018x} {r['protection']} {r['size']:>10,}{name}"
        )
    lines.append("")
    lines.append(f"images ({len(report['images'])}):")
    for i in report["images"]:
        main = "  (main executable)" if i["main"] else ""
        slide = f" slide {_hex(i['slide'])}" if i["slide"] is not None else ""
        lines.append(f"  {_hex(i['load_address'])}{slide} {i['uuid'] or '-'} {i['path']}{main}")
    lines.append("")
    lines.append(f"notes ({len(report['notes'])}):")
    for n in report["notes"]:
        lines.append(f"  {n['owner']!r} at {n['offset']:#x}, {n['size']} bytes")
        decoded = n["decoded"]
        if isinstance(decoded, dict):
            lines.append("      " + ", ".join(f"{k}={_short(v)}" for k, v in decoded.items()))
        elif isinstance(decoded, list):
            lines.append(f"      {len(decoded)} entries")
        elif decoded is not None:
            lines.append(f"      {decoded}")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return hex(value)
    return str(value)
