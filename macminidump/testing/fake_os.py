"""A fake OS behind the ``TargetOS`` interface, built from a Snapshot of a whole process.

The Snapshot is the "world": its regions are the process's mappings (all of their
memory), its threads the live threads, its images the loaded binaries. ``capture``
runs against it exactly as against a real OS, so the shared capture logic is tested
without one. Failures can be injected at any call, and every call is recorded, so a
test can check that the target is resumed on every path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import records
from ..arch import RegKind
from ..capture.base import CapturedThread, MemoryMapping
from ..errors import CaptureError
from ..model import (
    AddressableBits,
    FileMapping,
    Image,
    ProcessInfo,
    Protection,
    Snapshot,
    content_of,
)


class FakeTarget:
    def __init__(
        self,
        world: Snapshot,
        fail_at: str | None = None,
        extra: Iterable[tuple[int, int]] = (),
        unreadable: Iterable[tuple[int, int]] = (),
        dont_dump: Iterable[tuple[int, int]] = (),
        environment: tuple[int, int] | None = None,
    ):
        self.world = world
        self.arch = world.arch
        self.fail_at = fail_at
        self.calls: list[str] = []
        self.running = True
        self.exited = False
        self._extra = tuple(extra)
        self._unreadable = tuple(unreadable)
        self._dont_dump = tuple(dont_dump)
        self._environment = environment

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            raise CaptureError(f"injected failure in {name}")

    def stop(self) -> None:
        self._call("stop")
        self.running = False

    def resume(self) -> None:
        self.running = True
        self._call("resume")

    def threads(self) -> Sequence[CapturedThread]:
        self._call("threads")
        return [
            CapturedThread(
                id=t.id,
                name=t.name,
                regsets={RegKind(r.kind): dict(r.values) for r in t.regsets},
                raw_states=t.raw_states,
                xsave=t.xsave,
            )
            for t in self.world.threads
        ]

    def mappings(self) -> Sequence[MemoryMapping]:
        self._call("mappings")
        return [
            MemoryMapping(start=r.address, end=r.end, protection=r.protection, path=r.name)
            for r in self.world.regions
        ]

    def read(self, address: int, size: int) -> bytes:
        self._call("read")
        out = bytearray()
        while len(out) < size:
            here = address + len(out)
            if any(a <= here < b for a, b in self._unreadable):
                break
            region = self.world.memory.region_at(here)
            if region is None:
                break
            holes = [a for a, _ in self._unreadable if a > here]
            take = min([size - len(out), region.end - here, *(a - here for a in holes)])
            out += region.data.read(here - region.address, take)
        return bytes(out)

    def images(self) -> Sequence[Image]:
        self._call("images")
        return self.world.images

    def addressable_bits(self) -> AddressableBits | None:
        self._call("addressable_bits")
        return self.world.addressable_bits

    def extra_ranges(self, mappings: Sequence[MemoryMapping]) -> Iterable[tuple[int, int]]:
        self._call("extra_ranges")
        return self._extra

    def modified_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[MemoryMapping]:
        """The world's writable regions stand for the memory the process wrote."""
        self._call("modified_mappings")
        return [m for m in mappings if m.protection & Protection.WRITE]

    def dont_dump(self, mappings: Sequence[MemoryMapping]) -> Sequence[tuple[int, int]]:
        self._call("dont_dump")
        return self._dont_dump

    def environment(self, mappings: Sequence[MemoryMapping]) -> tuple[int, int] | None:
        self._call("environment")
        return self._environment

    def process_info(self) -> ProcessInfo | None:
        self._call("process_info")
        return self.world.process

    def auxv(self) -> Sequence[tuple[int, int]]:
        self._call("auxv")
        return self.world.auxv

    def file_mappings(self, mappings: Sequence[MemoryMapping]) -> Sequence[FileMapping]:
        self._call("file_mappings")
        return self.world.file_mappings


def world_from(snapshot: Snapshot, **changes: object) -> Snapshot:
    """A copy of ``snapshot`` to serve as a fake world (memory materialised as bytes)."""
    regions = tuple(records.evolve(r, data=content_of(r.data)) for r in snapshot.regions)
    return records.evolve(snapshot, regions=regions, **changes)  # type: ignore[arg-type]
