"""A fake Mach kernel: the libSystem functions ``MachTarget`` calls, at the ctypes level.

``FakeMachKernel(world)`` stands in for ``ctypes.CDLL("/usr/lib/libSystem.B.dylib")``:
each method has the name and the argument list of the C function, takes what ctypes
would pass (ints, ``byref`` objects, pointers), checks each argument against the
signature ``capture.mach.SIGNATURES`` binds the real function with, and answers as the kernel
does: it writes results through the caller's pointers (``ctypes.memmove`` into the
caller's memory) and returns a ``kern_return_t``. ``MachTarget`` therefore runs
unchanged against it, on any OS.

The target process is built from a Snapshot "world":

- its threads (ids, names, registers packed into the SDK's thread-state structures);
- its memory: the world's regions (stacks tagged ``VM_MEMORY_STACK``, grown down by a
  page, with a guard page below), each image's segments as the file lays them out (the
  real Mach-O header and load commands of the executable, read from its file; a
  synthesized header for an image without a file, and for dyld), and a dyld data page
  holding ``dyld_all_image_infos``, the ``dyld_image_info`` array and the path strings;
- as on macOS, the shared cache sits inside a submap (``mach_vm_region_recurse`` must
  descend) and dyld outside it; ``dyld_all_image_infos`` can be an older, smaller version
  (``dyld_infos_version``);
- threads can exit between ``task_threads`` and their own calls (``exiting_threads``);
- the registered ports (``mach_ports_register``/``mach_ports_lookup``) a spawned helper
  inherits (``spawn()``, ``inherited_slots``), the read port, ``pid_for_task``, and
  ``sysctl``'s ``kinfo_proc`` with Rosetta's ``P_TRANSLATED`` (``translated``).

Accounting, for tests: port names are handed out per kernel object with user
references (``leaked_rights()`` counts those the caller was given and did not release),
arrays allocated in the caller's space (``leaked_allocations()``), suspend counts of the
task and of every thread, the threads ever suspended, reads of a target that was not
stopped, and every call (``calls``). A failure (``KERN_FAILURE``, or an ``OSError``
raised from the call) can be injected at any named call: its first (``fail_on=0``),
n-th, or every (``fail_on=None``) call. Misuse that would hang or corrupt a real
process (a thread suspending itself, suspending the calling task) raises
``FakeKernelViolation``, which the backend does not catch.
"""

from __future__ import annotations

import ctypes
import errno
import os
import uuid as uuid_mod
from collections.abc import Iterable, Mapping
from typing import Any

from .. import records
from ..arch import Arch, RegKind, arch_info
from ..capture.mach import abi
from ..capture.mach.libsystem import SIGNATURES
from ..macho import schema
from ..macho.constants import MH_MAGIC_64, FileType, LoadCommand
from ..macho_headers import read_headers_file
from ..model import Image, ImageSegment, Snapshot, content_of
from ..schema_io import build

DYLD_PATH = "/usr/lib/dyld"
DYLD_UUID = uuid_mod.UUID("D1D1D1D1-0000-4000-8000-00000000D1D1")
THREAD_HANDLE_BASE = 0x7000_0000_1000


class FakeKernelViolation(AssertionError):
    """The backend did something a real kernel would let it regret (deadlock, bad free)."""


# ------------------------------------------------------------------ packing helpers


def pack_state(arch: Arch | str, kind: RegKind | str, regs: Mapping[str, int]) -> abi.SDKStructure:
    """A thread-state structure of ``capture.mach.abi`` filled from an arch.py register dict,
    field by field (independently of ``mach.register_slots``)."""
    arch, kind = Arch(arch), RegKind(kind)
    st: Any = abi.layouts_for(arch).flavors[kind].structure()

    def get(name: str) -> int:
        return int(regs.get(name, 0))

    def put16(target: Any, value: int) -> None:
        ctypes.memmove(ctypes.addressof(target), value.to_bytes(16, "little"), 16)

    if arch is Arch.ARM64:
        if kind is RegKind.GPR:
            for i in range(29):
                st.x[i] = get(f"x{i}")
            st.fp, st.lr, st.sp, st.pc = get("fp"), get("lr"), get("sp"), get("pc")
            st.cpsr, st.pad = get("cpsr"), get("flags")
        elif kind is RegKind.FPR:
            for i in range(32):
                put16(st.v[i], get(f"v{i}"))
            st.fpsr, st.fpcr = get("fpsr"), get("fpcr")
        else:
            st.far, st.esr, st.exception = get("far"), get("esr"), get("exception")
    else:
        if kind is RegKind.GPR:
            for name, *_ in st._fields_:
                setattr(st, name, get(name))
        elif kind is RegKind.FPR:
            st.fpu_fcw, st.fpu_fsw, st.fpu_ftw, st.fpu_fop = (
                get("fcw"),
                get("fsw"),
                get("ftw"),
                get("fop"),
            )
            st.fpu_ip, st.fpu_cs, st.fpu_dp, st.fpu_ds = (
                get("fpu_ip"),
                get("fpu_cs"),
                get("fpu_dp"),
                get("fpu_ds"),
            )
            st.fpu_mxcsr, st.fpu_mxcsrmask = get("mxcsr"), get("mxcsrmask")
            for i in range(8):
                put16(getattr(st, f"fpu_stmm{i}"), get(f"stmm{i}"))
            for i in range(16):
                put16(getattr(st, f"fpu_xmm{i}"), get(f"xmm{i}"))
        else:
            st.trapno, st.cpu, st.err, st.faultvaddr = (
                get("trapno"),
                get("cpu"),
                get("err"),
                get("faultvaddr"),
            )
    return st  # type: ignore[no-any-return]


def pack_mcontext(
    arch: Arch | str, regsets: Mapping[RegKind, Mapping[str, int]]
) -> abi.SDKStructure:
    """A ``__darwin_mcontext64`` as a signal handler would receive it."""
    layouts = abi.layouts_for(arch)
    mc: Any = layouts.mcontext64()
    mc.es = pack_state(arch, RegKind.EXC, regsets.get(RegKind.EXC, {}))
    mc.ss = pack_state(arch, RegKind.GPR, regsets.get(RegKind.GPR, {}))
    float_field = "ns" if Arch(arch) is Arch.ARM64 else "fs"
    setattr(mc, float_field, pack_state(arch, RegKind.FPR, regsets.get(RegKind.FPR, {})))
    return mc  # type: ignore[no-any-return]


def synthesize_macho(
    arch: Arch | str,
    filetype: int,
    uuid: uuid_mod.UUID | None,
    segments: Iterable[tuple[str, int, int, int]],
) -> bytes:
    """A Mach-O header with LC_SEGMENT_64 (name, vmaddr, vmsize, initprot) and LC_UUID."""
    layouts = abi.layouts_for(arch)
    commands = []
    for name, vmaddr, vmsize, prot in segments:
        segment = {
            "cmd": LoadCommand.LC_SEGMENT_64,
            "cmdsize": schema.segment_command_64.sizeof(),
            "segname": name,
            "vmaddr": vmaddr,
            "vmsize": vmsize,
            "fileoff": 0,
            "filesize": vmsize if name == "__TEXT" else 0,
            "maxprot": prot,
            "initprot": prot,
            "nsects": 0,
            "flags": 0,
        }
        commands.append(build(schema.segment_command_64, segment))
    if uuid is not None:
        command = {"cmd": LoadCommand.LC_UUID, "cmdsize": 24, "uuid": uuid.bytes}
        commands.append(build(schema.uuid_command, command))
    header = {
        "magic": MH_MAGIC_64,
        "cputype": layouts.cpu_type,
        "cpusubtype": layouts.cpu_subtype,
        "filetype": filetype,
        "ncmds": len(commands),
        "sizeofcmds": sum(map(len, commands)),
        "flags": 0,
        "reserved": 0,
    }
    return build(schema.mach_header_64, header) + b"".join(commands)


def dyld_infos_size(version: int) -> int:
    """sizeof(dyld_all_image_infos) as a dyld writing ``version`` declares it: the fields up
    to those that version added (the SDK's comments; v4 and v14 added none)."""
    first_after = {
        1: "libSystemInitialized",
        2: "jitInfo",
        3: "dyldVersion",
        5: "coreSymbolicationShmPage",
        6: "systemOrderFlag",
        7: "uuidArrayCount",
        8: "dyldAllImageInfosAddress",
        9: "initialImageCount",
        10: "errorKind",
        11: "sharedCacheSlide",
        12: "sharedCacheUUID",
        14: "sharedCacheBaseAddress",
        15: "sharedCacheFSID",
    }
    if version >= 17:
        return ctypes.sizeof(abi.dyld_all_image_infos)
    name = first_after[max(v for v in first_after if v <= version)]
    return int(getattr(abi.dyld_all_image_infos, name).offset)


# ------------------------------------------------------------------ the fake's pieces


@records.define
class VMRegion:
    start: int
    data: bytearray
    protection: int
    tag: int = 0
    #: inside the submap (depth 1), as the shared region is on macOS
    in_submap: bool = False

    @property
    def end(self) -> int:
        return self.start + len(self.data)


@records.define
class FakeThread:
    id: int
    name: str | None
    states: dict[int, bytes]  # flavor -> raw state
    suspend_count: int = 0


@records.define
class _Right:
    obj: Any
    urefs: int
    baseline: int = 0  # references the caller held before the backend ran


def _align_down(value: int, page: int) -> int:
    return value - value % page


def _align_up(value: int, page: int) -> int:
    return _align_down(value + page - 1, page)


# ------------------------------------------------------------------ the kernel


class FakeMachKernel:
    """libSystem's Mach calls over a world Snapshot. See the module docstring.

    ``self_capture``: the process being captured is the caller (``mach_task_self`` is
    the target and ``calling_thread`` the thread calling the backend); otherwise the
    target is process ``pid``, reached through ``task_for_pid`` (refused when
    ``task_for_pid_allowed`` is false) or ``grant_task_port()``. ``live_regsets``
    overrides threads' registers (a crash handler's thread is elsewhere than the fault
    it reports). ``unreadable`` pages refuse reads though mapped readable.
    ``dyld_updating`` leaves ``infoArray`` NULL, as while dyld rewrites its list.
    """

    def __init__(
        self,
        world: Snapshot,
        *,
        self_capture: bool = False,
        calling_thread: int | None = None,
        pid: int = 4242,
        task_for_pid_allowed: bool = True,
        live_regsets: Mapping[int, Mapping[RegKind, Mapping[str, int]]] | None = None,
        addressable_bits: int | None = 47,
        unreadable: Iterable[int] = (),
        dyld_updating: bool = False,
        dyld_infos_version: int = 17,
        exiting_threads: Mapping[int, str] | None = None,
        exit_answer: int = abi.KERN_TERMINATED,
        immovable: bool = False,
        read_port: bool = True,
        inherited_slots: Iterable[Any] = (),
        translated: bool = False,
        caller_translated: bool = False,
        crash_on_run: tuple[int, int, int, int, int] | None = None,
        exit_code_on_run: int = 0,
        crash_in_grandchild: bool = False,
        fail_at: str | None = None,
        fail_on: int | None = 0,
        fail_with: str = "kern",
    ):
        self.arch = Arch(world.arch)
        self.layouts = abi.layouts_for(self.arch)
        self.page = arch_info(self.arch).page_size
        self.pid = pid
        self.self_capture = self_capture
        self.dyld_infos_version = dyld_infos_version
        #: thread id -> the per-thread call before which it exits
        self.exiting_threads = dict(exiting_threads or {})
        self.exit_answer = exit_answer
        self.exited_threads: set[int] = set()
        self.task_dead = False
        self.immovable = immovable
        self.read_port = read_port
        self.registered: list[Any] = [None] * abi._TASK_PORT_REGISTER_MAX
        self.inherited_slots = list(inherited_slots)
        #: the registered slots each spawn() saw (what each child inherited)
        self.spawned: list[list[Any]] = []
        self.translated = translated
        self.caller_translated = caller_translated
        #: ``run`` of a child: (thread id, exception, code, subcode, signal) of its crash,
        #: delivered as EXC_CRASH to its exception port; else it exits with exit_code_on_run
        self.crash_on_run = crash_on_run
        self.exit_code_on_run = exit_code_on_run
        #: the crash is a grandchild's (it inherited the exception port): pid + 1
        self.crash_in_grandchild = crash_in_grandchild
        self._spawn_attrs: dict[int, dict[str, Any]] = {}
        self._queues: dict[Any, list[bytes]] = {}
        self.child: dict[str, Any] | None = None
        self.replies: list[int] = []
        self.task_for_pid_allowed = task_for_pid_allowed
        self.addressable_bits = addressable_bits
        self.unreadable = {_align_down(p, 0x1000) for p in unreadable}
        self.fail_at, self.fail_on, self.fail_with = fail_at, fail_on, fail_with
        if fail_with not in ("kern", "exception", "gone"):
            raise ValueError(f"fail_with {fail_with!r}: 'kern', 'exception' or 'gone'")

        self.calls: list[str] = []
        self.failed: list[tuple[str, tuple[Any, ...]]] = []
        self._counts: dict[str, int] = {}
        self.task_suspend_count = 0
        self.suspended_ever: set[int] = set()
        self.reads_while_running = 0
        self._rights: dict[int, _Right] = {}
        self._names: dict[Any, int] = {}
        self._next_name = 0x103
        self._allocations: dict[int, tuple[Any, int]] = {}

        live = live_regsets or {}
        self.threads: list[FakeThread] = []
        for t in world.threads:
            regs = {RegKind(r.kind): dict(r.values) for r in t.regsets}
            if t.id in live:
                regs = {RegKind(k): dict(v) for k, v in live[t.id].items()}
            states = {
                flavor.flavor: bytes(pack_state(self.arch, kind, regs.get(kind, {})))
                for kind, flavor in self.layouts.flavors.items()
            }
            self.threads.append(FakeThread(t.id, t.name, states))
        self.calling_thread = calling_thread
        if self_capture:
            if calling_thread is None:
                self.calling_thread = self.threads[0].id
            elif all(t.id != calling_thread for t in self.threads):
                raise ValueError(f"calling thread {calling_thread:#x} is not in the world")

        self.regions: list[VMRegion] = []
        self.images: list[tuple[Image, int]] = []  # (image as the backend should see it, filetype)
        self._build_memory(world, dyld_updating)

        # the caller's own task port: held before the backend runs, never to be released
        self.self_task = self._grant("self-task" if not self_capture else "task", baseline=True)

    # ---- building the address space

    def _add_region(self, region: VMRegion) -> None:
        for other in self.regions:
            if region.start < other.end and other.start < region.end:
                raise ValueError(
                    f"fake memory overlaps: [{region.start:#x}, {region.end:#x}) and "
                    f"[{other.start:#x}, {other.end:#x})"
                )
        self.regions.append(region)
        self.regions.sort(key=lambda r: r.start)

    def _build_memory(self, world: Snapshot, dyld_updating: bool) -> None:
        page = self.page
        image_regions: list[VMRegion] = []
        for image in world.images:
            image_regions += self._map_image(image)
        for mapped in image_regions:
            self._add_region(mapped)
        sps = [
            t.gpr.get(arch_info(self.arch).sp, 0) - arch_info(self.arch).red_zone
            for t in world.threads
        ]
        for w in world.regions:
            saved = content_of(w.data)
            covering = [i for i in image_regions if i.start <= w.address and w.end <= i.end]
            if covering:
                # code the world saved of a mapped image: it must be the image's own bytes
                mapped = covering[0]
                offset = w.address - mapped.start
                if bytes(mapped.data[offset : offset + len(saved)]) != saved:
                    raise ValueError(f"world region {w.address:#x} differs from its image")
                continue
            if any(w.address <= sp < w.end for sp in sps):
                # a stack: page-aligned, a page more below sp, and a guard page under it
                start = _align_down(w.address, page) - page
                grown = bytes(w.address - start) + saved
                self._add_region(VMRegion(start - page, bytearray(page), 0, abi.VM_MEMORY_GUARD))
                self._add_region(
                    VMRegion(start, bytearray(grown), int(w.protection), abi.VM_MEMORY_STACK)
                )
            else:
                self._add_region(VMRegion(w.address, bytearray(saved), int(w.protection)))
        top = _align_up(max(r.end for r in self.regions), page) + 0x10_0000
        # the shared cache, inside a submap (its bytes are not an image here)
        self.submap = (top, top + 4 * page)
        self._add_region(VMRegion(top, bytearray(page), 5, 0, True))
        self._add_region(VMRegion(top + 2 * page, bytearray(page), 1, 0, True))
        # dyld itself, outside the submap
        dyld_address = self.submap[1] + 0x10_0000
        dyld_header = synthesize_macho(
            self.arch, FileType.DYLINKER, DYLD_UUID, [("__TEXT", dyld_address, page, 5)]
        )
        self._add_region(VMRegion(dyld_address, bytearray(dyld_header.ljust(page, b"\0")), 5))
        dyld_image = Image(
            path=DYLD_PATH,
            uuid=DYLD_UUID,
            load_address=dyld_address,
            slide=0,
            segments=(ImageSegment("__TEXT", dyld_address, page),),
        )
        # dyld's data: all_image_infos, the image array, the strings
        base = dyld_address + page + 0x10_0000
        infos_size = dyld_infos_size(self.dyld_infos_version)
        entry_size = ctypes.sizeof(abi.dyld_image_info)
        array_at = base + _align_up(infos_size, 0x40)
        strings_at = array_at + _align_up(entry_size * len(self.images), 0x40)
        blob = bytearray()
        string_addrs = []
        for image, _ in self.images:
            string_addrs.append(strings_at + len(blob))
            blob += image.path.encode() + b"\0"
        dyld_path_at = strings_at + len(blob)
        blob += DYLD_PATH.encode() + b"\0"
        infos = abi.dyld_all_image_infos(
            version=self.dyld_infos_version,
            infoArrayCount=len(self.images),
            infoArray=0 if dyld_updating else array_at,
            libSystemInitialized=True,
            dyldImageLoadAddress=dyld_address,
            dyldAllImageInfosAddress=base,
            initialImageCount=len(self.images),
            dyldPath=dyld_path_at,
        )
        page_data = bytearray(_align_up(strings_at - base + len(blob), page))
        page_data[:infos_size] = bytes(infos)[:infos_size]
        for i, (image, _) in enumerate(self.images):
            entry = abi.dyld_image_info(
                imageLoadAddress=image.load_address or 0, imageFilePath=string_addrs[i]
            )
            at = array_at - base + i * entry_size
            page_data[at : at + entry_size] = bytes(entry)
        page_data[strings_at - base : strings_at - base + len(blob)] = blob
        self._add_region(VMRegion(base, page_data, 3, abi.VM_MEMORY_DYLD))
        self.dyld_info = abi.task_dyld_info(
            all_image_info_addr=base,
            all_image_info_size=infos_size,
            all_image_info_format=abi.TASK_DYLD_ALL_IMAGE_INFO_64,
        )
        self.dyld_image = dyld_image

    def _map_image(self, image: Image) -> list[VMRegion]:
        """The image's segments at their addresses: from its file if it exists."""
        if image.path and os.path.isfile(image.path):
            headers = read_headers_file(image.path)
            with open(image.path, "rb") as f:
                data = f.read()
            if image.slide is not None:
                load, slide = headers.place(None, image.slide)
            elif image.load_address is not None:
                load, slide = headers.place(image.load_address, None)
            else:
                raise ValueError(f"image {image.path}: no slide or load address")
            out = []
            for segment in headers.loaded_segments:
                if segment.vmsize == 0:
                    continue
                start, end = segment.fileoff, segment.fileoff + segment.filesize
                content = data[start:end].ljust(segment.vmsize, b"\0")
                out.append(VMRegion(segment.vmaddr + slide, bytearray(content), segment.initprot))
            filetype = headers.filetype
            seen = records.evolve(image, load_address=load, slide=slide)
        else:
            if image.load_address is None:
                raise ValueError(
                    f"image {image.path}: a fake image without a file needs its address"
                )
            filetype = FileType.EXECUTE if image.main else FileType.DYLIB
            text_size = next((s.size for s in image.segments if s.name == "__TEXT"), self.page)
            header = synthesize_macho(
                self.arch,
                filetype,
                image.uuid,
                [("__TEXT", image.load_address, text_size, 5)],
            )
            out = [VMRegion(image.load_address, bytearray(header.ljust(text_size, b"\0")), 5)]
            seen = records.evolve(
                image,
                slide=0,
                segments=(ImageSegment("__TEXT", image.load_address, text_size),),
            )
        self.images.append((seen, filetype))
        return out

    # ---- what a test asks

    def expected_images(self) -> list[Image]:
        """The images as a correct backend reports them: the list, then dyld."""
        return [image for image, _ in self.images] + [self.dyld_image]

    def grant_task_port(self) -> int:
        """A send right to the target task the caller holds already (not the backend's)."""
        return self._grant("task", baseline=True)

    def leaked_rights(self) -> int:
        return sum(r.urefs - r.baseline for r in self._rights.values())

    def baseline_intact(self) -> bool:
        return all(r.urefs >= r.baseline for r in self._rights.values())

    def leaked_allocations(self) -> int:
        return len(self._allocations)

    def suspended_threads(self) -> dict[int, int]:
        return {t.id: t.suspend_count for t in self.threads if t.suspend_count}

    def all_resumed(self) -> bool:
        return self.task_suspend_count == 0 and not self.suspended_threads()

    def stopped(self) -> bool:
        if self.task_suspend_count:
            return True
        return self.self_capture and all(
            t.suspend_count for t in self.threads if t.id != self.calling_thread
        )

    # ---- ports

    def _grant(self, obj: Any, baseline: bool = False) -> int:
        name = self._names.get(obj)
        if name is None or name not in self._rights:
            name = self._next_name
            self._next_name += 0x100
            self._names[obj] = name
            self._rights[name] = _Right(obj, 0)
        right = self._rights[name]
        right.urefs += 1
        if baseline:
            right.baseline += 1
        return name

    def _object(self, name: Any) -> Any:
        right = self._rights.get(_value(name))
        return right.obj if right is not None else None

    def _thread(self, name: Any, call: str = "") -> FakeThread | int:
        """The thread behind a port, or the kern_return_t a call on it gets."""
        obj = self._object(name)
        if self.task_dead or not (isinstance(obj, tuple) and obj[0] == "thread"):
            return abi.MACH_SEND_INVALID_DEST
        if self.exiting_threads.get(obj[1]) == call:
            self.exited_threads.add(obj[1])
        if obj[1] in self.exited_threads:
            return self.exit_answer
        return next(t for t in self.threads if t.id == obj[1])

    def _is_task(self, name: Any) -> bool:
        return not self.task_dead and self._object(name) in ("task", "task-read")

    def _is_self_space(self, name: Any) -> bool:
        return _value(name) == self.self_task

    # ---- calls

    def _enter(self, fn: str, args: tuple[Any, ...]) -> int:
        """Record and type-check a call; the injected failure's kern_return_t, else 0."""
        restype, argtypes = SIGNATURES[fn]
        if len(args) != len(argtypes):
            raise TypeError(f"{fn}() takes {len(argtypes)} arguments, got {len(args)}")
        for i, (t, a) in enumerate(zip(argtypes, args)):
            try:
                t.from_param(a)
            except (TypeError, ctypes.ArgumentError) as e:
                raise ctypes.ArgumentError(f"{fn}: argument {i + 1}: {e}") from None
        n = self._counts.get(fn, 0)
        self._counts[fn] = n + 1
        self.calls.append(fn)
        if fn == self.fail_at and (self.fail_on is None or self.fail_on == n):
            self.failed.append((fn, args))
            if self.fail_with == "exception":
                raise OSError(errno.EIO, f"injected failure in {fn}")
            if self.fail_with == "gone":  # what the kernel says once the task has exited
                self.task_dead = True
                return abi.MACH_SEND_INVALID_DEST
            return abi.KERN_FAILURE
        return abi.KERN_SUCCESS

    def mach_task_self(self) -> int:
        if self._enter("mach_task_self", ()):
            return abi.MACH_PORT_NULL
        return self.self_task

    def task_for_pid(self, target_tport: Any, pid: Any, t: Any) -> int:
        if kr := self._enter("task_for_pid", (target_tport, pid, t)):
            return kr
        if not self._is_self_space(target_tport):
            return abi.KERN_INVALID_ARGUMENT
        if not self.task_for_pid_allowed or _value(pid) != self.pid:
            return abi.KERN_FAILURE
        _store(t, abi.mach_port_name_t, self._grant("task"))
        return abi.KERN_SUCCESS

    def task_suspend(self, task: Any) -> int:
        if kr := self._enter("task_suspend", (task,)):
            return kr
        if not self._is_task(task):
            return abi.MACH_SEND_INVALID_DEST
        if self.self_capture:
            raise FakeKernelViolation("task_suspend of the calling task: it would never return")
        self.task_suspend_count += 1
        return abi.KERN_SUCCESS

    def task_resume(self, task: Any) -> int:
        if kr := self._enter("task_resume", (task,)):
            return kr
        if not self._is_task(task):
            return abi.MACH_SEND_INVALID_DEST
        if self.task_suspend_count == 0:
            return abi.KERN_FAILURE
        self.task_suspend_count -= 1
        return abi.KERN_SUCCESS

    def thread_suspend(self, thread: Any) -> int:
        if kr := self._enter("thread_suspend", (thread,)):
            return kr
        t = self._thread(thread, "thread_suspend")
        if isinstance(t, int):
            return t
        if self.self_capture and t.id == self.calling_thread:
            raise FakeKernelViolation("the calling thread suspended itself: it would never return")
        t.suspend_count += 1
        self.suspended_ever.add(t.id)
        return abi.KERN_SUCCESS

    def thread_resume(self, thread: Any) -> int:
        if kr := self._enter("thread_resume", (thread,)):
            return kr
        t = self._thread(thread, "thread_resume")
        if isinstance(t, int):
            return t
        if t.suspend_count == 0:
            return abi.KERN_FAILURE
        t.suspend_count -= 1
        return abi.KERN_SUCCESS

    def task_threads(self, target_task: Any, act_list: Any, act_list_cnt: Any) -> int:
        if kr := self._enter("task_threads", (target_task, act_list, act_list_cnt)):
            return kr
        if not self._is_task(target_task):
            return abi.MACH_SEND_INVALID_DEST
        alive = [t for t in self.threads if t.id not in self.exited_threads]
        array = (abi.thread_act_t * len(alive))()
        for i, t in enumerate(alive):
            array[i] = self._grant(("thread", t.id))
        address = ctypes.addressof(array)
        self._allocations[address] = (array, ctypes.sizeof(array))
        _store(act_list, ctypes.c_void_p, address)
        _store(act_list_cnt, abi.mach_msg_type_number_t, len(alive))
        return abi.KERN_SUCCESS

    def pid_for_task(self, t: Any, x: Any) -> int:
        if kr := self._enter("pid_for_task", (t, x)):
            return kr
        if self._object(t) == "grandchild-task":
            _store(x, ctypes.c_int, self.pid + 1)
            return abi.KERN_SUCCESS
        if not self._is_task(t):
            return abi.KERN_FAILURE
        _store(x, ctypes.c_int, self.pid)
        return abi.KERN_SUCCESS

    def task_get_special_port(self, task: Any, which_port: Any, special_port: Any) -> int:
        if kr := self._enter("task_get_special_port", (task, which_port, special_port)):
            return kr
        if not self._is_self_space(task):
            return abi.KERN_INVALID_ARGUMENT
        if _value(which_port) != abi.TASK_READ_PORT or not self.read_port:
            return abi.KERN_INVALID_ARGUMENT  # as before macOS 11.3
        # an immovable task is handed its immovable control port instead (XNU substitutes it)
        _store(
            special_port, abi.mach_port_t, self._grant("task" if self.immovable else "task-read")
        )
        return abi.KERN_SUCCESS

    def mach_ports_register(self, target_task: Any, init_port_set: Any, count: Any) -> int:
        if kr := self._enter("mach_ports_register", (target_task, init_port_set, count)):
            return kr
        if not self._is_self_space(target_task) or _value(count) > len(self.registered):
            return abi.KERN_INVALID_ARGUMENT
        names = [init_port_set[i] for i in range(_value(count))]
        objects = [self._object(n) if n else None for n in names]
        if any(n and o is None for n, o in zip(names, objects)):
            return abi.KERN_INVALID_NAME
        if self.immovable and any(o in ("task", "self-task") for o in objects):
            return abi.KERN_INVALID_RIGHT  # rdar://70585367: no immovable right in a slot
        self.registered = objects + [None] * (len(self.registered) - len(objects))
        return abi.KERN_SUCCESS

    def mach_ports_lookup(self, target_task: Any, init_port_set: Any, count: Any) -> int:
        if kr := self._enter("mach_ports_lookup", (target_task, init_port_set, count)):
            return kr
        if not self._is_self_space(target_task):
            return abi.KERN_INVALID_ARGUMENT
        slots = self.inherited_slots or self.registered
        array = (abi.mach_port_t * len(slots))()
        for i, obj in enumerate(slots):
            array[i] = self._grant(obj) if obj is not None else abi.MACH_PORT_NULL
        address = ctypes.addressof(array)
        self._allocations[address] = (array, ctypes.sizeof(array))
        _store(init_port_set, ctypes.c_void_p, address)
        _store(count, abi.mach_msg_type_number_t, len(slots))
        return abi.KERN_SUCCESS

    def spawn(self) -> list[Any]:
        """A child process starts: it inherits the registered slots as they are now."""
        self.spawned.append(list(self.registered))
        return self.spawned[-1]

    # ---- ports, messages and posix_spawn (the `run` supervisor)

    def mach_port_allocate(self, task: Any, right: Any, name: Any) -> int:
        if kr := self._enter("mach_port_allocate", (task, right, name)):
            return kr
        if not self._is_self_space(task) or _value(right) != abi.MACH_PORT_RIGHT_RECEIVE:
            return abi.KERN_INVALID_ARGUMENT
        obj = ("receive", len(self._queues))
        self._queues[obj] = []
        _store(name, abi.mach_port_name_t, self._grant(obj))
        return abi.KERN_SUCCESS

    def mach_port_insert_right(self, task: Any, name: Any, poly: Any, poly_poly: Any) -> int:
        if kr := self._enter("mach_port_insert_right", (task, name, poly, poly_poly)):
            return kr
        obj = self._object(name)
        if _value(poly_poly) != abi.MACH_MSG_TYPE_MAKE_SEND or obj not in self._queues:
            return abi.KERN_INVALID_RIGHT
        self._rights[_value(name)].urefs += 1  # the send right shares the receive's name
        return abi.KERN_SUCCESS

    def mach_port_mod_refs(self, task: Any, name: Any, right: Any, delta: Any) -> int:
        if kr := self._enter("mach_port_mod_refs", (task, name, right, delta)):
            return kr
        obj = self._object(name)
        if _value(right) != abi.MACH_PORT_RIGHT_RECEIVE or obj not in self._queues:
            return abi.KERN_INVALID_RIGHT
        del self._queues[obj]
        self._rights[_value(name)].urefs += _value(delta)
        return abi.KERN_SUCCESS

    def posix_spawnattr_init(self, attr: Any) -> int:
        self._enter("posix_spawnattr_init", (attr,))
        token = 0x5A000 + len(self._spawn_attrs) * 0x10 + 0x10
        self._spawn_attrs[token] = {}
        _store(attr, ctypes.c_void_p, token)
        return 0

    def posix_spawnattr_destroy(self, attr: Any) -> int:
        self._enter("posix_spawnattr_destroy", (attr,))
        token = _load(attr, ctypes.c_void_p)
        if self._spawn_attrs.pop(token, None) is None:
            raise FakeKernelViolation(f"posix_spawnattr_destroy of {token:#x}: not initialized")
        return 0

    def posix_spawnattr_setexceptionports_np(
        self, attr: Any, mask: Any, new_port: Any, behavior: Any, flavor: Any
    ) -> int:
        args = (attr, mask, new_port, behavior, flavor)
        self._enter("posix_spawnattr_setexceptionports_np", args)
        token = _load(attr, ctypes.c_void_p)
        self._spawn_attrs[token]["exception"] = (
            _value(mask),
            self._object(new_port),
            _value(behavior) & 0xFFFFFFFF,
            _value(flavor),
        )
        return 0

    def posix_spawnp(
        self, pid: Any, path: Any, file_actions: Any, attrp: Any, argv: Any, envp: Any
    ) -> int:
        if self._enter("posix_spawnp", (pid, path, file_actions, attrp, argv, envp)):
            return errno.EIO
        if not os.path.basename(path.decode()).startswith("prog"):
            return errno.ENOENT
        words = ctypes.cast(argv, ctypes.POINTER(ctypes.c_char_p))
        args: list[str] = []
        while words[len(args)] is not None:
            args.append(words[len(args)].decode())
        config = self._spawn_attrs[_load(attrp, ctypes.c_void_p)].get("exception")
        self.child = {"argv": args, "exception": config, "status": None, "polls": 0}
        _store(pid, abi.pid_t, self.pid)
        return 0

    def _child_runs(self) -> None:
        """The child, given one more poll: it crashes (EXC_CRASH to its port) or exits."""
        child = self.child
        assert child is not None
        child["polls"] += 1
        if child["status"] is not None or child["polls"] < 2 or child.get("crashed"):
            return
        if self.crash_on_run is None:
            child["status"] = self.exit_code_on_run << 8
            return
        tid, exception, code, subcode, signo = self.crash_on_run
        mask, port, behavior, _flavor = child["exception"] or (0, None, 0, 0)
        child["crashed"] = True
        if not mask & abi.EXC_MASK_CRASH or port not in self._queues:
            child["status"] = signo  # nobody listens: it dies at once
            return
        assert behavior == abi.EXCEPTION_DEFAULT | abi.MACH_EXCEPTION_CODES, behavior
        child["signo"] = signo
        self._queues[port].append(
            _exc_crash(
                self._grant(("reply", tid)),
                self._grant(("thread", tid)),
                self._grant("grandchild-task" if self.crash_in_grandchild else "task"),
                ((signo & 0xFF) << 24) | ((exception & 0xF) << 20) | (code & 0xFFFFF),
                subcode,
            )
        )

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        """os.waitpid for the spawned child (the supervisor's ``wait``)."""
        if self.child is None or pid != self.pid or options != os.WNOHANG:
            raise ChildProcessError(f"waitpid({pid}, {options}): not the fake's child")
        self._child_runs()
        status = self.child["status"]
        return (pid, status) if status is not None else (0, 0)

    def mach_msg(
        self,
        msg: Any,
        option: Any,
        send_size: Any,
        rcv_size: Any,
        rcv_name: Any,
        timeout: Any,
        notify: Any,
    ) -> int:
        args = (msg, option, send_size, rcv_size, rcv_name, timeout, notify)
        if kr := self._enter("mach_msg", args):
            return kr
        option = _value(option)
        address = _address(msg)
        if option & abi.MACH_SEND_MSG:
            head = abi.mach_msg_header_t.from_address(address)
            reply = self._object(head.msgh_remote_port)
            if not (isinstance(reply, tuple) and reply[0] == "reply"):
                return abi.MACH_SEND_INVALID_DEST
            if _value(send_size) != head.msgh_size or head.msgh_size < ctypes.sizeof(
                abi.mach_exception_raise_reply
            ):
                return abi.MACH_SEND_MSG_TOO_SMALL
            body = abi.mach_exception_raise_reply.from_address(address)
            if body.Head.msgh_id != abi._MACH_EXCEPTION_RAISE_REPLY_ID:
                raise FakeKernelViolation(f"reply with msgh_id {body.Head.msgh_id}")
            self.replies.append(body.RetCode)
            del self._rights[head.msgh_remote_port]  # a send-once right is used up
            assert self.child is not None
            self.child["status"] = self.child["signo"]  # the process goes on dying
            return abi.KERN_SUCCESS
        if option & abi.MACH_RCV_MSG:
            queue = self._queues.get(self._object(rcv_name))
            if queue is None:
                return abi.MACH_RCV_INVALID_NAME
            if not queue:
                return abi.MACH_RCV_TIMED_OUT
            data = queue.pop(0)
            if _value(rcv_size) < len(data):
                return abi.MACH_RCV_TOO_LARGE
            ctypes.memmove(address, data, len(data))
            return abi.KERN_SUCCESS
        return abi.KERN_INVALID_ARGUMENT

    def sysctl(
        self, name: Any, namelen: Any, oldp: Any, oldlenp: Any, newp: Any, newlen: Any
    ) -> int:
        if self._enter("sysctl", (name, namelen, oldp, oldlenp, newp, newlen)):
            return -1
        mib = [ctypes.cast(name, ctypes.POINTER(ctypes.c_int))[i] for i in range(_value(namelen))]
        if mib[:3] != [abi.CTL_KERN, abi.KERN_PROC, abi.KERN_PROC_PID] or len(mib) != 4:
            return -1
        if mib[3] != self.pid or newp is not None:
            return -1
        if _load(oldlenp, ctypes.c_size_t) < ctypes.sizeof(abi.kinfo_proc):
            return -1
        info = abi.kinfo_proc(p_flag=abi.P_TRANSLATED if self.translated else 0)
        _write(oldp, bytes(info))
        _store(oldlenp, ctypes.c_size_t, ctypes.sizeof(info))
        return 0

    def mach_port_deallocate(self, task: Any, name: Any) -> int:
        if kr := self._enter("mach_port_deallocate", (task, name)):
            return kr
        if not self._is_self_space(task):
            return abi.KERN_INVALID_TASK
        right = self._rights.get(_value(name))
        if right is None:
            return abi.KERN_INVALID_NAME
        right.urefs -= 1
        if right.urefs < right.baseline:
            raise FakeKernelViolation(f"port {_value(name):#x}: released a right the caller owns")
        if right.urefs == 0:
            del self._rights[_value(name)]
        return abi.KERN_SUCCESS

    def vm_deallocate(self, target_task: Any, address: Any, size: Any) -> int:
        if kr := self._enter("vm_deallocate", (target_task, address, size)):
            return kr
        if not self._is_self_space(target_task):
            return abi.KERN_INVALID_ARGUMENT
        allocation = self._allocations.get(_value(address))
        if allocation is None:
            raise FakeKernelViolation(f"vm_deallocate of {_value(address):#x}: not allocated")
        if _value(size) != allocation[1]:
            raise FakeKernelViolation(
                f"vm_deallocate of {_value(address):#x}: size {_value(size)} != {allocation[1]}"
            )
        del self._allocations[_value(address)]
        return abi.KERN_SUCCESS

    def thread_info(
        self, target_act: Any, flavor: Any, thread_info_out: Any, thread_info_outCnt: Any
    ) -> int:
        args = (target_act, flavor, thread_info_out, thread_info_outCnt)
        if kr := self._enter("thread_info", args):
            return kr
        t = self._thread(target_act, "thread_info")
        if isinstance(t, int):
            return t
        info: abi.SDKStructure
        if _value(flavor) == abi.THREAD_IDENTIFIER_INFO:
            need = abi.THREAD_IDENTIFIER_INFO_COUNT
            info = abi.thread_identifier_info(
                thread_id=t.id, thread_handle=THREAD_HANDLE_BASE + t.id * 0x1000
            )
        elif _value(flavor) == abi.THREAD_EXTENDED_INFO:
            need = abi.THREAD_EXTENDED_INFO_COUNT
            info = abi.thread_extended_info(
                pth_run_state=abi.TH_STATE_STOPPED if t.suspend_count else abi.TH_STATE_WAITING,
                pth_name=(t.name or "").encode()[: abi.MAXTHREADNAMESIZE - 1],
            )
        else:
            return abi.KERN_INVALID_ARGUMENT
        if _load(thread_info_outCnt, abi.mach_msg_type_number_t) < need:
            return abi.KERN_INVALID_ARGUMENT
        _write(thread_info_out, bytes(info))
        _store(thread_info_outCnt, abi.mach_msg_type_number_t, need)
        return abi.KERN_SUCCESS

    def thread_get_state(
        self, target_act: Any, flavor: Any, old_state: Any, old_stateCnt: Any
    ) -> int:
        if kr := self._enter("thread_get_state", (target_act, flavor, old_state, old_stateCnt)):
            return kr
        t = self._thread(target_act, "thread_get_state")
        if isinstance(t, int):
            return t
        state = t.states.get(_value(flavor))
        if state is None:
            return abi.KERN_INVALID_ARGUMENT
        if _load(old_stateCnt, abi.mach_msg_type_number_t) * 4 < len(state):
            return abi.KERN_INVALID_ARGUMENT
        if not self.stopped() and not (self.self_capture and t.id == self.calling_thread):
            self.reads_while_running += 1
        _write(old_state, state)
        _store(old_stateCnt, abi.mach_msg_type_number_t, len(state) // 4)
        return abi.KERN_SUCCESS

    def task_info(
        self, target_task: Any, flavor: Any, task_info_out: Any, task_info_outCnt: Any
    ) -> int:
        if kr := self._enter("task_info", (target_task, flavor, task_info_out, task_info_outCnt)):
            return kr
        if not self._is_task(target_task):
            return abi.MACH_SEND_INVALID_DEST
        if _value(flavor) != abi.TASK_DYLD_INFO:
            return abi.KERN_INVALID_ARGUMENT
        if _load(task_info_outCnt, abi.mach_msg_type_number_t) < abi.TASK_DYLD_INFO_COUNT:
            return abi.KERN_INVALID_ARGUMENT
        _write(task_info_out, bytes(self.dyld_info))
        _store(task_info_outCnt, abi.mach_msg_type_number_t, abi.TASK_DYLD_INFO_COUNT)
        return abi.KERN_SUCCESS

    def mach_vm_region_recurse(
        self, target_task: Any, address: Any, size: Any, nesting_depth: Any, info: Any, infoCnt: Any
    ) -> int:
        args = (target_task, address, size, nesting_depth, info, infoCnt)
        if kr := self._enter("mach_vm_region_recurse", args):
            return kr
        if not self._is_task(target_task):
            return abi.MACH_SEND_INVALID_DEST
        count = _load(infoCnt, abi.mach_msg_type_number_t)
        if count < abi.VM_REGION_SUBMAP_INFO_V0_COUNT_64:
            return abi.KERN_INVALID_ARGUMENT
        if not self.stopped():
            self.reads_while_running += 1
        at = _load(address, abi.mach_vm_address_t)
        depth = _load(nesting_depth, abi.natural_t)
        sub_start, sub_end = self.submap
        found: tuple[int, int, int, int, bool, int] | None = (
            None  # start, end, prot, tag, submap, depth
        )
        for r in self.regions:
            if r.in_submap:
                continue
            if r.end <= at:
                continue
            found = (r.start, r.end, r.protection, r.tag, False, 0)
            break
        # the submap, when it comes first
        if at < sub_end and (found is None or sub_start < found[0]):
            if depth >= 1:
                nested = [r for r in self.regions if r.in_submap and r.end > at]
                if nested:
                    r = nested[0]
                    found = (r.start, r.end, r.protection, r.tag, False, 1)
                elif found is None:
                    return abi.KERN_INVALID_ADDRESS
            else:
                found = (sub_start, sub_end, abi.VM_PROT_READ | abi.VM_PROT_EXECUTE, 0, True, 0)
        if found is None:
            return abi.KERN_INVALID_ADDRESS
        start, end, prot, tag, is_submap, level = found
        result = abi.vm_region_submap_info_64(
            protection=prot,
            max_protection=abi.VM_PROT_ALL,
            user_tag=tag,
            is_submap=int(is_submap),
            share_mode=abi.SM_TRUESHARED if is_submap else abi.SM_PRIVATE,
            # the world's writable memory stands for memory the task wrote
            pages_dirtied=(end - start) // 4096 if prot & abi.VM_PROT_WRITE else 0,
        )
        written = min(count, abi.VM_REGION_SUBMAP_INFO_COUNT_64)
        _write(info, bytes(result)[: written * 4])
        _store(infoCnt, abi.mach_msg_type_number_t, written)
        _store(address, abi.mach_vm_address_t, start)
        _store(size, abi.mach_vm_size_t, end - start)
        _store(nesting_depth, abi.natural_t, level)
        return abi.KERN_SUCCESS

    def mach_vm_read_overwrite(
        self, target_task: Any, address: Any, size: Any, data: Any, outsize: Any
    ) -> int:
        if kr := self._enter("mach_vm_read_overwrite", (target_task, address, size, data, outsize)):
            return kr
        if not self._is_task(target_task):
            return abi.MACH_SEND_INVALID_DEST
        if not self.stopped():
            self.reads_while_running += 1
        start, length = _value(address), _value(size)
        content = self.read_target(start, length)
        if content is None:
            return abi.KERN_INVALID_ADDRESS
        ctypes.memmove(_value(data), content, length)
        _store(outsize, abi.mach_vm_size_t, length)
        return abi.KERN_SUCCESS

    def read_target(self, address: int, length: int) -> bytes | None:
        """The target's bytes, or None if any of them is unmapped, unreadable or refused."""
        out = bytearray()
        while len(out) < length:
            here = address + len(out)
            if _align_down(here, 0x1000) in self.unreadable:
                return None
            region = next((r for r in self.regions if r.start <= here < r.end), None)
            if region is None or not region.protection & abi.VM_PROT_READ:
                return None
            take = min(length - len(out), region.end - here, 0x1000 - here % 0x1000)
            out += region.data[here - region.start : here - region.start + take]
        return bytes(out)

    def sysctlbyname(self, name: Any, oldp: Any, oldlenp: Any, newp: Any, newlen: Any) -> int:
        if self._enter("sysctlbyname", (name, oldp, oldlenp, newp, newlen)):
            return -1
        key = name if isinstance(name, bytes) else _value(name)
        if key == abi.SYSCTL_PROC_TRANSLATED.encode():
            if not self.caller_translated or _load(oldlenp, ctypes.c_size_t) < 4:
                return -1  # ENOENT, as on an Intel Mac (native arm64 gives 0)
            _write(oldp, bytes(ctypes.c_int(1)))
            _store(oldlenp, ctypes.c_size_t, 4)
            return 0
        if key != abi.SYSCTL_VIRTUAL_ADDRESS_SIZE.encode() or self.addressable_bits is None:
            return -1  # ENOENT
        if self.arch is not Arch.ARM64 or newp is not None:
            return -1
        if _load(oldlenp, ctypes.c_size_t) < 4:
            return -1
        _write(oldp, bytes(ctypes.c_int(self.addressable_bits)))
        _store(oldlenp, ctypes.c_size_t, 4)
        return 0


def _exc_crash(reply: int, thread: int, task: int, code: int, subcode: int) -> bytes:
    """The EXC_CRASH message the kernel sends an EXCEPTION_DEFAULT|MACH_EXCEPTION_CODES port."""
    request = abi.mach_exception_raise_request()
    request.Head.msgh_bits = abi.MACH_MSGH_BITS_COMPLEX | abi.MACH_MSG_TYPE_MOVE_SEND_ONCE
    request.Head.msgh_size = ctypes.sizeof(request)
    request.Head.msgh_remote_port = reply
    request.Head.msgh_id = abi._MACH_EXCEPTION_RAISE_ID
    request.msgh_body.msgh_descriptor_count = 2
    request.thread.name, request.task.name = thread, task
    request.NDR.int_rep = abi.NDR_INT_LITTLE_ENDIAN
    request.exception = abi.EXC_CRASH
    request.codeCnt = 2
    request.code[0], request.code[1] = code, subcode
    return bytes(request)


# ------------------------------------------------------------------ writing the caller's memory


def _value(arg: Any) -> Any:
    """A scalar argument as ctypes would convert it: ``c_uint32(5)`` or ``5`` -> 5."""
    return arg.value if isinstance(arg, ctypes._SimpleCData) else arg


def _address(pointer: Any) -> int:
    """The address a byref()/pointer argument points to."""
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    if not address:
        raise FakeKernelViolation("NULL pointer passed where the kernel writes")
    return address


def _write(pointer: Any, data: bytes) -> None:
    ctypes.memmove(_address(pointer), data, len(data))


def _store(pointer: Any, ctype: Any, value: int) -> None:
    _write(pointer, bytes(ctype(value)))


def _load(pointer: Any, ctype: Any) -> int:
    return int(ctype.from_address(_address(pointer)).value)
