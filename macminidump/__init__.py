"""macminidump: minimal, debugger-openable core files, and the framework to read and build them.

>>> from macminidump import load_spec, render_macho, parse_core
>>> snapshot = load_spec("formats/examples/arm64-crash.yaml")   # doctest: +SKIP
>>> render_macho(snapshot, "crash.core")                          # doctest: +SKIP
>>> parse_core("crash.core").threads[0].gpr["pc"]                 # doctest: +SKIP
"""

from .arch import Arch, RegKind, arch_info
from .errors import (
    CaptureError,
    MacMiniDumpError,
    ModelError,
    ParseError,
    RenderError,
    SpecError,
)
from .macho.parse import MachOCore, parse_macho
from .macho.render import render_macho, render_macho_bytes
from .model import (
    AddressableBits,
    AddressSpace,
    BufferSource,
    BytesSource,
    DataSource,
    Image,
    ImageSegment,
    Protection,
    RawItem,
    Region,
    RegisterSet,
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
    "Image",
    "ImageSegment",
    "MacMiniDumpError",
    "MachOCore",
    "ModelError",
    "ParseError",
    "Protection",
    "RawItem",
    "RegKind",
    "Region",
    "RegisterSet",
    "RenderError",
    "Snapshot",
    "SpecError",
    "Thread",
    "__version__",
    "arch_info",
    "dump_spec",
    "load_spec",
    "parse_core",
    "parse_macho",
    "render_macho",
    "render_macho_bytes",
    "snapshot_from_spec",
    "spec_from_snapshot",
]
