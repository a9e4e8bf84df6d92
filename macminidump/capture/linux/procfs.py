"""Readers of /proc for one process and its threads: text files, maps, smaps, auxv, names.

Every reader takes a /proc directory (``directory(pid)`` for the process,
``directory(pid, tid)`` for one of its threads) and returns what it found, or an empty
value when the file cannot be read: the process may exit at any moment, and the caller
decides what a missing file means.
"""

from __future__ import annotations

import _thread
import os
import re
import struct

TYPE_CHECKING = False  # (not typing's: the supervisor starts without typing)

if TYPE_CHECKING:
    from ..base import MemoryMapping

# (the readers of maps and auxv import the model and the ABI declarations when called:
# the crash supervisor reads status and stat alone, and starts without them)

#: task flags in field 9 of /proc/PID/stat (index 6 after the state)
PF_EXITING = 0x4
PF_KTHREAD = 0x00200000

YAMA_SCOPES = {
    1: "only a parent process may trace",
    2: "only a process with CAP_SYS_PTRACE may trace",
    3: "no process may trace",
}


def directory(pid: int, tid: int | None = None) -> str:
    """/proc/PID, or /proc/PID/task/TID for one thread."""
    return f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"


def read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def status(where: str) -> dict[str, str]:
    """The ``Key: value`` lines of ``where``/status; empty when it cannot be read."""
    out = {}
    for line in (read_text(f"{where}/status") or "").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def tracer_pid(fields: dict[str, str]) -> int:
    """TracerPid of a ``status`` result: 0 when untraced (or unknown)."""
    return int(fields.get("TracerPid", "0") or 0)


def stat(where: str) -> tuple[str, list[str]] | None:
    """(comm, fields after the comm) of ``where``/stat; fields[0] is the state."""
    text = read_text(f"{where}/stat")
    if not text or ")" not in text:
        return None
    head, _, tail = text.rpartition(")")
    return head.partition("(")[2], tail.split()


def has_flag(fields: tuple[str, list[str]] | None, flag: int) -> bool:
    """Whether a ``stat`` result's task flags hold ``flag`` (PF_*)."""
    return fields is not None and len(fields[1]) > 6 and bool(int(fields[1][6]) & flag)


def task_ids(pid: int) -> list[int]:
    """The thread ids listed in /proc/PID/task (empty when the process is gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def name(where: str) -> str | None:
    """The comm of a process or thread, without its newline."""
    text = read_text(f"{where}/comm")
    return text.rstrip("\n") if text is not None else None


class ThreadNames:
    """The comm of each thread of process ``pid``, through one open /proc/PID/task: a
    read costs three system calls and no Python file object (1,000 threads, 1,000
    reads). Close it after use."""

    def __init__(self, pid: int):
        try:
            self._task: int | None = os.open(f"/proc/{pid}/task", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            self._task = None

    def name(self, tid: int) -> str | None:
        if self._task is None:
            return None
        try:
            fd = os.open(f"{tid}/comm", os.O_RDONLY, dir_fd=self._task)
        except OSError:
            return None
        try:
            data = os.read(fd, 256)  # comm is at most 16 bytes, and its newline
        except OSError:
            return None
        finally:
            os.close(fd)
        return data.decode("utf-8", "replace").rstrip("\n")

    def close(self) -> None:
        if self._task is not None:
            os.close(self._task)
            self._task = None


def yama_scope() -> int | None:
    text = read_text("/proc/sys/kernel/yama/ptrace_scope")
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


#: a line of /proc/PID/maps: start-end perms offset dev inode [path]
# (the patterns here are compiled when first used, through re's cache: the supervisor
# imports this module and never reads maps unless a program crashes)
_MAPS_LINE = r"(?m)^([0-9a-f]+)-([0-9a-f]+) (\S*) ([0-9a-f]+) \S+ \S+(?:[ \t]+([^\n]*))?$"
#: rwx of a maps line -> Protection bits
_PERMS = {
    f"{r}{w}{x}": (r == "r") + (w == "w") * 2 + (x == "x") * 4
    for r in "r-"
    for w in "w-"
    for x in "x-"
}


def maps(where: str) -> list[MemoryMapping]:
    """``where``/maps parsed; empty when it cannot be read."""
    from ...model import PROTECTIONS
    from ..base import MemoryMapping

    out = []
    # (one regex over the file, not a split per line: 2,000 mappings with 1,000 threads)
    for start, end, perms, offset, path in re.findall(_MAPS_LINE, read_text(f"{where}/maps") or ""):
        prot = _PERMS.get(perms[:3])
        if prot is None:
            prot = ("r" in perms[0:1]) * 1 + ("w" in perms[1:2]) * 2 + ("x" in perms[2:3]) * 4
        out.append(
            MemoryMapping(
                start=int(start, 16),
                end=int(end, 16),
                protection=PROTECTIONS[prot],
                path=path,
                offset=int(offset, 16),
            )
        )
    return out


def smaps(where: str) -> bytes | None:
    """``where``/smaps, whole; None when it cannot be read (or is empty: a process with no
    memory left). Costly: the kernel walks every resident page of the process to write it
    (8-10 ms for a 512 MiB heap), so a caller reads it once, for ``written_in`` and
    ``dont_dump_in``."""
    return _read_bytes(f"{where}/smaps") or None


class SmapsLater:
    """``smaps(where)`` read on a thread of its own from now, for ``text`` to give later.

    Why: for a process with a large resident heap the kernel spends 15-20 ms walking its
    pages inside the read (a 512 MiB heap: more than the rest of a dump together). That
    walk runs with the GIL released, so it proceeds on another core while the capture
    reads registers and stacks and the renderer is imported. (``_thread``, not
    ``threading``: nothing to import, and a read that outlives a failed capture needs no
    joining; a page of the file a call, each handed back under the GIL.)
    """

    def __init__(self, where: str):
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._result: list[bytes | None | BaseException] = []
        _thread.start_new_thread(self._read, (where,))

    def _read(self, where: str) -> None:
        try:
            self._result.append(smaps(where))
        except BaseException as e:  # (MemoryError and the like: raised by ``text``)
            self._result.append(e)
        finally:
            self._done.release()

    def text(self) -> bytes | None:
        """What ``smaps`` returned, once the read is done (waiting for it if need be)."""
        with self._done:
            result = self._result[0]
        if isinstance(result, BaseException):
            raise result
        return result


def written_in(text: bytes) -> set[int]:
    """Starts of the private mappings with pages of their own (a nonzero Anonymous or
    Private_Dirty) in smaps ``text``."""
    written: set[int] = set()
    start, private = -1, False
    # (one pattern for the header lines and the nonzero counts, which are the few lines a
    # Python loop then sees: 2,000 mappings of 25 lines each in a 1,000-thread process)
    for header in re.finditer(_WRITTEN, b"\n" + text):
        if header.group(1) is not None:
            start, private = int(header.group(1), 16), header.group(2) == b"p"
        elif private:
            written.add(start)
    return written


def dont_dump_in(text: bytes) -> list[tuple[int, int]]:
    """The mappings the process marked MADV_DONTDUMP in smaps ``text`` (``dd`` in VmFlags:
    keys, secrets; the kernel and gcore never dump them)."""
    # 25 lines a mapping and 2,000 mappings in a 1,000-thread process: find the few
    # marked ones (the kernel's [vvar] is one), then the header line above each
    marked = []
    smaps_header = re.compile(_SMAPS_HEADER)
    for flags in re.finditer(_DONT_DUMP, text):
        line = flags.start()  # (the newline before VmFlags)
        while line >= 0:
            line_start = text.rfind(b"\n", 0, line) + 1
            header = smaps_header.match(text, line_start)
            if header:
                marked.append((int(header.group(1), 16), int(header.group(2), 16)))
                break
            line = line_start - 1
    return marked


#: an smaps header line (start-end perms ...), and a VmFlags line holding ``dd`` (a
#: literal start, so the search skips through the text rather than trying every line;
#: at a line's start, so a file named "VmFlags: dd" is not taken for one)
_SMAPS_HEADER = rb"([0-9a-f]+)-([0-9a-f]+) "
_DONT_DUMP = rb"\nVmFlags:[^\n]*? dd(?=[ \t\n]|$)"
#: after a newline: a header line (its start and the p/s of its perms), or a nonzero
#: count of a mapping's own pages (the keys start upper-case: never a header's hex)
_WRITTEN = rb"\n(?:([0-9a-f]+)-[0-9a-f]+ [^ \n]{3}(.)|(?:Anonymous|Private_Dirty): *[1-9])"


#: /proc/PID/stat fields (1-based) of the environment strings' start and end
STAT_ENV_START, STAT_ENV_END = 50, 51


def environment(where: str) -> tuple[int, int] | None:
    """[env_start, env_end): where the environment strings lie (the top of the main
    thread's stack); None when unknown (a kernel that hides them from this caller)."""
    fields = stat(where)
    if fields is None or len(fields[1]) < STAT_ENV_END - 2:
        return None
    start, end = (int(fields[1][n - 3]) for n in (STAT_ENV_START, STAT_ENV_END))
    return (start, end) if 0 < start < end else None


def auxv(where: str) -> list[tuple[int, int]] | None:
    """The auxiliary vector's (type, value) pairs before AT_NULL; None when unreadable."""
    data = _read_bytes(f"{where}/auxv")
    if data is None:
        return None
    from ...linux_abi import AuxvType

    entry = _auxv_entry()
    pairs = []
    for kind, value in entry.iter_unpack(data[: len(data) // entry.size * entry.size]):
        if kind == AuxvType.AT_NULL:
            break
        pairs.append((kind, value))
    return pairs


def _auxv_entry() -> struct.Struct:
    global _AUXV_ENTRY
    if _AUXV_ENTRY is None:
        from ...linux_abi_packed import AUXV_ENTRY_FORMAT

        _AUXV_ENTRY = struct.Struct(AUXV_ENTRY_FORMAT)
    return _AUXV_ENTRY


_AUXV_ENTRY: struct.Struct | None = None


def command_line(where: str) -> str:
    """argv joined by spaces (empty when unreadable: a zombie, a kernel thread)."""
    data = _read_bytes(f"{where}/cmdline") or b""
    return b" ".join(a for a in data.split(b"\0") if a).decode("utf-8", "replace")


def executable(where: str) -> str | None:
    """The path of ``where``/exe, or None."""
    try:
        return os.readlink(f"{where}/exe")
    except OSError:
        return None
