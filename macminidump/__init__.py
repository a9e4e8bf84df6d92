"""macminidump: minimal, debugger-openable core files, and the framework to read and build them.

>>> from macminidump import load_spec, render_macho, parse_core
>>> snapshot = load_spec("formats/examples/arm64-crash.yaml")   # doctest: +SKIP
>>> render_macho(snapshot, "crash.core")                          # doctest: +SKIP
>>> parse_core("crash.core").threads[0].gpr["pc"]                 # doctest: +SKIP
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing costs as much as this whole module

__version__ = "0.1.0"

# Each public name is imported from its module when first used, so `import macminidump`
# (and a command that needs one corner of the package) pays only for what it uses:
# yaml, construct, attrs and both parsers stay unloaded until something asks for them.
_HOMES = {
    "capture_process": ".api",
    "write_core": ".api",
    "Arch": ".arch",
    "RegKind": ".arch",
    "arch_info": ".arch",
    "ElfCore": ".elf.parse",
    "parse_elf": ".elf.parse",
    "parse_elf_bytes": ".elf.parse",
    "render_elf": ".elf.render",
    "render_elf_bytes": ".elf.render",
    "CaptureError": ".errors",
    "CaptureWarning": ".errors",
    "MacMiniDumpError": ".errors",
    "ModelError": ".errors",
    "ParseError": ".errors",
    "RenderError": ".errors",
    "SpecError": ".errors",
    "TargetError": ".errors",
    "WriteError": ".errors",
    "MachOCore": ".macho.parse",
    "parse_macho": ".macho.parse",
    "render_macho": ".macho.render",
    "render_macho_bytes": ".macho.render",
    "AddressableBits": ".model",
    "AddressSpace": ".model",
    "BufferSource": ".model",
    "BytesSource": ".model",
    "DataSource": ".model",
    "FileMapping": ".model",
    "Image": ".model",
    "ImageSegment": ".model",
    "ProcessInfo": ".model",
    "Protection": ".model",
    "RawItem": ".model",
    "Region": ".model",
    "RegisterSet": ".model",
    "SignalInfo": ".model",
    "Snapshot": ".model",
    "Thread": ".model",
    "parse_core": ".parse",
    "dump_spec": ".spec",
    "load_spec": ".spec",
    "snapshot_from_spec": ".spec",
    "spec_from_snapshot": ".spec",
}

if TYPE_CHECKING:
    from .api import capture_process, write_core
    from .arch import Arch, RegKind, arch_info
    from .elf.parse import ElfCore, parse_elf, parse_elf_bytes
    from .elf.render import render_elf, render_elf_bytes
    from .errors import (
        CaptureError,
        MacMiniDumpError,
        ModelError,
        ParseError,
        RenderError,
        SpecError,
        TargetError,
        WriteError,
    )
    from .macho.parse import MachOCore, parse_macho
    from .macho.render import render_macho, render_macho_bytes
    from .model import (
        AddressableBits,
        AddressSpace,
        BufferSource,
        BytesSource,
        DataSource,
        FileMapping,
        Image,
        ImageSegment,
        ProcessInfo,
        Protection,
        RawItem,
        Region,
        RegisterSet,
        SignalInfo,
        Snapshot,
        Thread,
    )
    from .parse import parse_core
    from .spec import dump_spec, load_spec, snapshot_from_spec, spec_from_snapshot


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # (__import__, not importlib.import_module: importlib loads warnings, ~1 ms of a dump)
    __import__(home[1:], globals(), None, (), 1)  # (each home is ".module" of this package)
    value = getattr(sys.modules[__name__ + home], name)
    globals()[name] = value  # later lookups are plain attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


__all__ = [
    "AddressSpace",
    "AddressableBits",
    "Arch",
    "BufferSource",
    "BytesSource",
    "CaptureError",
    "CaptureWarning",
    "DataSource",
    "ElfCore",
    "FileMapping",
    "Image",
    "ImageSegment",
    "MacMiniDumpError",
    "MachOCore",
    "ModelError",
    "ParseError",
    "ProcessInfo",
    "Protection",
    "RawItem",
    "RegKind",
    "Region",
    "RegisterSet",
    "RenderError",
    "SignalInfo",
    "Snapshot",
    "SpecError",
    "TargetError",
    "WriteError",
    "Thread",
    "__version__",
    "capture_process",
    "write_core",
    "arch_info",
    "dump_spec",
    "load_spec",
    "parse_core",
    "parse_elf",
    "parse_elf_bytes",
    "parse_macho",
    "render_elf",
    "render_elf_bytes",
    "render_macho",
    "render_macho_bytes",
    "snapshot_from_spec",
    "spec_from_snapshot",
]
