"""Fake operating systems for people who test crash tooling (and for our own tests).

A fake stands where a live process would, so the real capture path runs end to end on
any machine, with no process, no privileges and no Mac:

- ``FakeTarget(world)`` (``fake_os``) implements the ``TargetOS`` interface that the
  Linux and Mach backends implement, over a Snapshot "world": its regions are the
  process's memory, its threads the live threads, its images the loaded binaries.
  Failures can be injected at any call (``fail_at="threads"``) and every call is
  recorded, so a test can check that the target is resumed on every path.
- ``FakeMachKernel(world)`` (``fake_mach``) stands in for libSystem itself: the Mach
  calls the macOS backend makes through ctypes, answered as XNU answers them, so the
  backend's own code (ports, suspension, ``mach_vm_region_recurse``, dyld's image
  list) runs unchanged on Linux.

Typical use, a synthetic crash written by the real capture path::

    from macminidump import load_spec, render_elf
    from macminidump.capture.base import capture
    from macminidump.testing import FakeTarget

    world = load_spec("formats/examples/x86_64-linux.yaml")
    render_elf(capture(FakeTarget(world)), "synthetic.core")

This package is public API: its names are kept stable as the rest of the library's.
"""

from __future__ import annotations

from .fake_os import FakeTarget, world_from

__all__ = ["FakeTarget", "world_from", "FakeMachKernel"]


def __getattr__(name: str) -> object:
    # fake_mach pulls in the Mach ctypes layer: load it only for those who ask
    if name == "FakeMachKernel":
        from .fake_mach import FakeMachKernel

        return FakeMachKernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
