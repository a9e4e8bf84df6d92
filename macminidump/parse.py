"""Open any supported core file by its magic, not its name."""

from __future__ import annotations

import os

from .errors import ParseError
from .model import Snapshot

_MACHO_MAGICS = (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce")


def core_format(path: str | os.PathLike[str]) -> str:
    """``"macho"`` or ``"elf"``, from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror}", path=os.fspath(path)) from None
    if magic in _MACHO_MAGICS:
        return "macho"
    if magic == b"\x7fELF":
        return "elf"
    raise ParseError(
        f"not a core file this package reads (magic {magic.hex() or 'empty'})", 0, os.fspath(path)
    )


def parse_core(path: str | os.PathLike[str]) -> Snapshot:
    """Any supported core → Snapshot (memory stays in the mmapped file, read on demand)."""
    fmt = core_format(path)
    if fmt == "macho":
        from .macho.parse import parse_macho

        return parse_macho(path)
    from .elf.parse import parse_elf

    return parse_elf(path)
