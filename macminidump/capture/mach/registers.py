"""Mach thread states <-> register dicts, and a crash's context from a signal handler.

``state_to_registers``/``registers_to_state`` convert raw ``thread_get_state`` output
with the flavor table of :mod:`macminidump.mach_flavors` (``register_slots``);
``crash_context_from_mcontext``/``crash_context_from_ucontext`` turn the state a signal
handler receives into a :class:`~macminidump.capture.base.CrashContext`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any

from ...arch import Arch, RegKind
from ...errors import CaptureError
from ...mach_flavors import flavor_layout
from ...model import SignalInfo
from ..base import CrashContext
from . import abi
from .libsystem import host_arch


def register_slots(arch: Arch | str, kind: RegKind | str) -> tuple[tuple[str, int, int], ...]:
    """(register name of arch.py, byte offset, width) of each register in the flavor's state,
    from the flavor table (:mod:`macminidump.mach_flavors`); reserved bytes have none."""
    return flavor_layout(arch, kind).slots


def state_to_registers(arch: Arch | str, kind: RegKind | str, state: bytes) -> dict[str, int]:
    """A flavor's raw state (``thread_get_state`` output, an mcontext part) → register dict."""
    return {
        name: int.from_bytes(state[offset : offset + width], "little")
        for name, offset, width in register_slots(arch, kind)
    }


def registers_to_state(arch: Arch | str, kind: RegKind | str, values: Mapping[str, int]) -> bytes:
    """The inverse of ``state_to_registers``: missing registers are zero."""
    out = bytearray(flavor_layout(arch, kind).size)
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
