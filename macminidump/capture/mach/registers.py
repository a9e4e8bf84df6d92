"""Mach thread states <-> register dicts, and a crash's context from a signal handler.

``register_slots`` maps each flavor's SDK structure (:mod:`.abi`) to the register names
of :mod:`macminidump.arch`; ``state_to_registers``/``registers_to_state`` convert raw
``thread_get_state`` output. ``crash_context_from_mcontext``/``crash_context_from_ucontext``
turn the state a signal handler receives into a
:class:`~macminidump.capture.base.CrashContext`.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Mapping
from typing import Any

from ...arch import Arch, RegKind, arch_info
from ...errors import CaptureError
from ...model import SignalInfo
from ..base import CrashContext
from . import abi
from .libsystem import host_arch

_RENAMES = {
    "pad": "flags",
    "fpu_fcw": "fcw",
    "fpu_fsw": "fsw",
    "fpu_ftw": "ftw",
    "fpu_fop": "fop",
    "fpu_mxcsr": "mxcsr",
    "fpu_mxcsrmask": "mxcsrmask",
}


@functools.cache
def register_slots(arch: Arch | str, kind: RegKind | str) -> tuple[tuple[str, int, int], ...]:
    """(register name of arch.py, byte offset, width) of each register in the flavor's state.

    Arrays ``x``/``v`` give ``x0``…``x28``/``v0``…``v31``; x86_64's ``fpu_*`` fields are
    named as arch.py names them (``fpu_fcw`` → ``fcw``, ``fpu_xmm3`` → ``xmm3``, the whole
    16 bytes of an ``stmm`` slot); padding and reserved fields have no register.
    """
    arch, kind = Arch(arch), RegKind(kind)
    structure = abi.layouts_for(arch).flavors[kind].structure
    table = arch_info(arch).registers[kind]
    slots = []
    for field_name, field_type, *_ in structure._fields_:
        offset = getattr(structure, field_name).offset
        if field_name in ("x", "v") and issubclass(field_type, ctypes.Array):
            element: Any = field_type
            width = ctypes.sizeof(element._type_)
            for i in range(element._length_):
                slots.append((f"{field_name}{i}", offset + i * width, width))
            continue
        name = _RENAMES.get(field_name, field_name)
        if name.startswith(("fpu_stmm", "fpu_xmm")):
            name = name[len("fpu_") :]
        if name in table:
            slots.append((name, offset, ctypes.sizeof(field_type)))
    return tuple(slots)


def state_to_registers(arch: Arch | str, kind: RegKind | str, state: bytes) -> dict[str, int]:
    """A flavor's raw state (``thread_get_state`` output, an mcontext part) → register dict."""
    return {
        name: int.from_bytes(state[offset : offset + width], "little")
        for name, offset, width in register_slots(arch, kind)
    }


def registers_to_state(arch: Arch | str, kind: RegKind | str, values: Mapping[str, int]) -> bytes:
    """The inverse of ``state_to_registers``: missing registers are zero."""
    structure = abi.layouts_for(arch).flavors[RegKind(kind)].structure
    out = bytearray(ctypes.sizeof(structure))
    for name, offset, width in register_slots(arch, kind):
        out[offset : offset + width] = int(values.get(name, 0)).to_bytes(width, "little")
    return bytes(out)


# ------------------------------------------------------------------ crash context


def crash_context_from_mcontext(
    arch: Arch | str,
    thread_id: int,
    mcontext: bytes | bytearray | memoryview | ctypes.Structure,
    signal: SignalInfo | None = None,
) -> CrashContext:
    """The crashed thread's state from its ``struct __darwin_mcontext64``.

    A signal handler installed with ``sigaction`` and ``SA_SIGINFO`` gets
    ``void handler(int signo, siginfo_t *info, void *context)``; ``context`` is a
    ``ucontext_t *`` whose ``uc_mcontext`` points to the mcontext and whose ``uc_mcsize``
    gives its size (larger than ``sizeof(__darwin_mcontext64)`` when AVX/SVE state
    follows; the leading part is the same). Pass ``bytes`` of at least
    ``sizeof(layouts_for(arch).mcontext64)`` (``ctypes.string_at(uc_mcontext,
    uc_mcsize)``), or the mcontext structure itself; or call
    :func:`crash_context_from_ucontext` with the ``context`` pointer. ``thread_id`` is the
    crashed thread's id as ``pthread_threadid_np`` (or ``THREAD_IDENTIFIER_INFO``) gives
    it: in a handler, the calling thread's.

    arm64 decodes ``__es`` (far, esr, exception), ``__ss`` (x0–x28, fp, lr, sp, pc, cpsr)
    and ``__ns`` (v0–v31, fpsr, fpcr); x86_64 ``__es``, ``__ss`` and ``__fs``.
    """
    layouts = abi.layouts_for(arch)
    size = ctypes.sizeof(layouts.mcontext64)
    if isinstance(mcontext, ctypes.Structure):
        if not isinstance(mcontext, layouts.mcontext64):
            raise CaptureError(
                f"{type(mcontext).__name__} is not the {Arch(arch)} __darwin_mcontext64"
            )
        raw = bytes(mcontext)
    else:
        raw = bytes(mcontext)
    if len(raw) < size:
        raise CaptureError(
            f"an {Arch(arch)} __darwin_mcontext64 is {size} bytes, the context has {len(raw)}"
        )
    kinds: dict[Any, RegKind] = {f.structure: kind for kind, f in layouts.flavors.items()}
    regsets: dict[RegKind, dict[str, int]] = {}
    for field_name, field_type, *_ in layouts.mcontext64._fields_:
        offset = getattr(layouts.mcontext64, field_name).offset
        part = raw[offset : offset + ctypes.sizeof(field_type)]
        regsets[kinds[field_type]] = state_to_registers(arch, kinds[field_type], part)
    return CrashContext(thread_id=thread_id, regsets=regsets, signal=signal)


def crash_context_from_ucontext(
    ucontext: int,
    thread_id: int,
    arch: Arch | str | None = None,
    signal: SignalInfo | None = None,
) -> CrashContext:
    """``crash_context_from_mcontext`` from the address of a ``ucontext_t`` in *this*
    process: the third argument of an ``SA_SIGINFO`` signal handler."""
    arch = Arch(arch) if arch is not None else host_arch()
    if not ucontext:
        raise CaptureError("the signal handler's ucontext pointer is NULL")
    uc = abi.ucontext64.from_address(ucontext)
    size = ctypes.sizeof(abi.layouts_for(arch).mcontext64)
    if not uc.uc_mcontext or uc.uc_mcsize < size:
        raise CaptureError(
            f"ucontext at {ucontext:#x}: uc_mcontext {uc.uc_mcontext or 0:#x} of "
            f"{uc.uc_mcsize} bytes holds no {arch} __darwin_mcontext64 ({size} bytes)"
        )
    return crash_context_from_mcontext(
        arch, thread_id, ctypes.string_at(uc.uc_mcontext, size), signal
    )
