"""The flavor table (``mach_flavors``) equals the SDK's thread states, field for field.

``tests/test_mach_abi.py`` checks the ctypes mirror of the SDK (``capture/mach/abi.py``)
against the SDK headers; this test proves the table equal to that mirror: the same
fields in the same order with the same widths (registers named as arch.py names them,
reserved bytes as ``None``), the same flavor numbers and counts, the same CPU type. The
construct declarations (``macho/schema.py``) and the backend's register conversion are
made from the table, so all three agree with the SDK.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from macminidump.arch import Arch, RegKind
from macminidump.capture.mach import abi
from macminidump.mach_flavors import MACH_ARCHES, flavor_layout, mach_arch

#: ctypes (SDK) field name -> arch.py register name, where they differ
RENAMES = {
    "pad": "flags",
    "fpu_fcw": "fcw",
    "fpu_fsw": "fsw",
    "fpu_ftw": "ftw",
    "fpu_fop": "fop",
    "fpu_mxcsr": "mxcsr",
    "fpu_mxcsrmask": "mxcsrmask",
    **{f"fpu_stmm{i}": f"stmm{i}" for i in range(8)},
    **{f"fpu_xmm{i}": f"xmm{i}" for i in range(16)},
}
#: SDK fields that hold no register
RESERVED = {"fpu_reserved", "fpu_rsrv1", "fpu_rsrv2", "fpu_rsrv3", "fpu_rsrv4", "fpu_reserved1"}


def sdk_fields(structure: Any) -> list[tuple[str | None, int, int]]:
    """(register name or None, offset, width) of every field of a ctypes thread state;
    the arrays ``x``/``v`` give one register per element."""
    fields: list[tuple[str | None, int, int]] = []
    for name, ctype, *_ in structure._fields_:
        offset = getattr(structure, name).offset
        if name in ("x", "v"):
            width = ctypes.sizeof(ctype._type_)
            fields += [(f"{name}{i}", offset + i * width, width) for i in range(ctype._length_)]
        elif name in RESERVED or name in structure._padding_:
            fields.append((None, offset, ctypes.sizeof(ctype)))
        else:
            fields.append((RENAMES.get(name, name), offset, ctypes.sizeof(ctype)))
    return fields


CASES = [(arch, kind) for arch in MACH_ARCHES for kind in RegKind]


@pytest.mark.parametrize(("arch", "kind"), CASES, ids=lambda v: str(v))
def test_table_equals_the_sdk_layout(arch: Arch, kind: RegKind) -> None:
    layout = flavor_layout(arch, kind)
    sdk = abi.layouts_for(arch).flavors[kind]
    offsets = [0]
    for _name, width in layout.fields:
        offsets.append(offsets[-1] + width)
    table = [(name, offset, width) for (name, width), offset in zip(layout.fields, offsets)]
    assert table == sdk_fields(sdk.structure)
    assert layout.size == ctypes.sizeof(sdk.structure)
    assert (layout.flavor, layout.count) == (sdk.flavor, sdk.count)
    assert layout.flavor == getattr(abi, layout.name)
    assert layout.count == getattr(abi, layout.name + "_COUNT")
    assert layout.kind is kind


@pytest.mark.parametrize("arch", list(MACH_ARCHES), ids=str)
def test_arch_records_equal_the_sdk(arch: Arch) -> None:
    m, sdk = mach_arch(arch), abi.layouts_for(arch)
    assert (m.cputype, m.cpusubtype) == (sdk.cpu_type, sdk.cpu_subtype)
    assert list(m.flavors) == list(sdk.flavors)  # GPR first, in the same order


def test_a_changed_table_would_be_caught() -> None:
    """The comparison sees a width, a name and an order change (it is not vacuous)."""
    sdk = sdk_fields(abi.layouts_for(Arch.X86_64).flavors[RegKind.EXC].structure)
    assert sdk == [("trapno", 0, 2), ("cpu", 2, 2), ("err", 4, 4), ("faultvaddr", 8, 8)]
    arm = sdk_fields(abi.layouts_for(Arch.ARM64).flavors[RegKind.FPR].structure)
    assert arm[0] == ("v0", 0, 16) and arm[-1] == (None, 520, 8)
