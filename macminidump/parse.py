"""Open any supported core file by its magic, not its name."""

from __future__ import annotations

import os

from .errors import ParseError
from .model import Snapshot

_MACHO_MAGICS = (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce")


def core_format(path: str | os.PathLike[str]) -> str:
    """``"macho"`` or ``"elf"``, from the file's first bytes."""
    from .reader import open_regular

    try:
        with open(open_regular(os.fspath(path)), "rb") as f:
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


def parse_core(path: str | os.PathLike[str], private: bool = False) -> Snapshot:
    """Any supported core → Snapshot (memory stays in the mmapped file, read on demand).

    ``private``: read the file into memory instead, for a file another program may
    truncate in place while the Snapshot is used (a shared map would raise SIGBUS).
    """
    fmt = core_format(path)
    if fmt == "macho":
        from .macho.parse import parse_macho

        return parse_macho(path, private)
    from .elf.parse import parse_elf

    return parse_elf(path, private)
