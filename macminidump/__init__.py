"""macminidump: minimal, debugger-openable core files, and the framework to read and build them.

>>> from macminidump import load_spec, render_macho, parse_core
>>> snapshot = load_spec("formats/examples/arm64-crash.yaml")   # doctest: +SKIP
>>> render_macho(snapshot, "crash.core")                          # doctest: +SKIP
>>> parse_core("crash.core").threads[0].gpr["pc"]                 # doctest: +SKIP
"""

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

__version__ = "0.1.0"

__all__ = [
    "AddressSpace",
    "AddressableBits",
    "Arch",
    "BufferSource",
    "BytesSource",
    "CaptureError",
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
