"""Readers of /proc for one process and its threads: text files, maps, smaps, auxv, names.

Every reader takes a /proc directory (``directory(pid)`` for the process,
``directory(pid, tid)`` for one of its threads) and returns what it found, or an empty
value when the file cannot be read: the process may exit at any moment, and the caller
decides what a missing file means.
"""

from __future__ import annotations

import _thread
import os
import struct

TYPE_CHECKING = False  # (not typing's: the supervisor starts without typing)

if TYPE_CHECKING:
    from collections.abc import Iterable

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


def resident(where: str) -> int:
    """The process's resident bytes (``where``/statm); 0 where it cannot be read."""
    try:
        return int((read_text(f"{where}/statm") or "").split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, IndexError):
        return 0


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

    # (the kernel's perms, "rw-p", looked up whole: 2,000 mappings with 1,000 threads)
    protections = {rwx + ps: PROTECTIONS[bits] for rwx, bits in _PERMS.items() for ps in "ps"}
    out = []
    for start, end, perms, offset, path in maps_lines(read_text(f"{where}/maps") or ""):
        protection = protections.get(perms)
        if protection is None:
            prot = _PERMS.get(perms[:3])
            if prot is None:
                prot = ("r" in perms[0:1]) * 1 + ("w" in perms[1:2]) * 2 + ("x" in perms[2:3]) * 4
            protection = PROTECTIONS[prot]
        out.append(
            MemoryMapping(
                start=int(start, 16),
                end=int(end, 16),
                protection=protection,
                path=path,
                offset=int(offset, 16),
            )
        )
    return out


def maps_lines(text: str) -> Iterable[tuple[str, str, str, str, str]]:
    """(start, end, perms, offset, path) of each line of a maps ``text`` that reads
    ``start-end perms offset dev inode[ path]``: hex numbers, single spaces between the
    fields (perms may be empty), the path after spaces or tabs and up to the newline (the
    kernel writes a newline in a file name as ``\\012``); other lines are skipped."""
    # (str methods, not a regex: a dump imports no re, ~5 ms.) 2,000 mappings with 1,000
    # threads: a Python loop over the lines costs twice the regex, so the kernel's own
    # output (ASCII, every line with its space after the inode) is read a column at a
    # time, and anything else a line at a time.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or not text.isascii() or any(c in text for c in _ODD_SPACES):
        return _maps_lines_one_by_one(lines)
    count = len(lines)
    rows = list(map(str.split, lines, [" "] * count, [5] * count))
    if set(map(len, rows)) != {6}:
        return _maps_lines_one_by_one(lines)
    spans, perms, offsets, devs, inodes, paths = zip(*rows)
    # every span hex-hex and every offset hex, checked at once: with the hex digits
    # deleted, a span leaves its dash and the newline after it, an offset its newline
    numbers = "\n".join(spans + offsets)
    if (
        numbers.encode().translate(None, _HEX_BYTES) != b"-\n" * count + b"\n" * (count - 1)
        or numbers.startswith("-")
        or "\n-" in numbers
        or "-\n" in numbers
        or "" in offsets
        or "" in devs
        or "" in inodes
    ):
        return _maps_lines_one_by_one(lines)
    bounds = "\n".join(spans).replace("-", "\n").split("\n")
    # (no white space in the text but spaces and newlines: lstrip() strips spaces)
    return zip(bounds[0::2], bounds[1::2], perms, offsets, map(str.lstrip, paths))


#: the ASCII white space other than a space and a newline
_ODD_SPACES = ("\t", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f")
_HEX = "0123456789abcdef"
_HEX_BYTES = _HEX.encode()


def _maps_lines_one_by_one(lines: list[str]) -> list[tuple[str, str, str, str, str]]:
    out = []
    for line in lines:
        fields = line.split(" ", 5)
        if len(fields) < 5:
            continue
        span, perms, offset, dev, inode = fields[:5]
        start, _, end = span.partition("-")
        numbers = start + end + offset
        if not (start and end and offset and dev and inode) or numbers.strip(_HEX):
            continue
        if not (perms + dev).isprintable() and _has_space(perms + dev):
            continue  # (the only printable white space is the space they were split on)
        if inode.isprintable() or not _has_space(inode):
            path = fields[5].lstrip(" \t") if len(fields) == 6 else ""
        else:  # white space other than a space right after the inode
            tail = line.split(" ", 4)[4]
            solid = next(i for i, c in enumerate(tail) if c.isspace())
            if solid == 0 or tail[solid] != "\t":
                continue
            path = tail[solid:].lstrip(" \t")
        out.append((start, end, perms, offset, path))
    return out


def _has_space(text: str) -> bool:
    return any(map(str.isspace, text))


def smaps(where: str) -> bytes | None:
    """``where``/smaps, whole; None when it cannot be read (or is empty: a process with no
    memory left). Costly: the kernel walks every resident page of the process to write it
    (15-20 ms for a 512 MiB heap on the 2-core test machine, more than the rest of a dump
    together), so a caller reads it once, for ``written_in`` and ``dont_dump_in``, and
    a capture on a thread of its own (``SmapsLater``)."""
    return _read_bytes(f"{where}/smaps") or None


class SmapsLater:
    """``smaps(where)`` read on a thread of its own from now, for ``text`` to give later.

    Why: for a process with a large resident heap the kernel walks its pages inside the
    read (see ``smaps``). That walk runs with the GIL released, so it proceeds on another
    core while the capture reads registers and stacks and the renderer is imported.
    (``_thread``, not ``threading``: nothing to import, and a read that outlives a failed
    capture needs no joining; a page of the file a call, each handed back under the GIL.)
    """

    def __init__(self, where: str):
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._result: list[bytes | None | BaseException] = []
        running = _thread.allocate_lock()
        running.acquire()
        _thread.start_new_thread(self._read, (where, running))
        # (wait until the reader runs: a new thread waits for the GIL, up to the switch
        # interval of 5 ms, while this one imports or captures)
        running.acquire()

    def _read(self, where: str, running: _thread.LockType) -> None:
        running.release()
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
    # (re imported here: only ``--memory dirty`` asks, and a dump imports no re, ~5 ms)
    import re

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


#: after a newline: a header line (its start and the p/s of its perms), or a nonzero
#: count of a mapping's own pages (the keys start upper-case: never a header's hex)
_WRITTEN = rb"\n(?:([0-9a-f]+)-[0-9a-f]+ [^ \n]{3}(.)|(?:Anonymous|Private_Dirty): *[1-9])"


def dont_dump_in(text: bytes) -> list[tuple[int, int]]:
    """The mappings the process marked MADV_DONTDUMP in smaps ``text`` (``dd`` in VmFlags:
    keys, secrets; the kernel and gcore never dump them): (start, end) of the header line
    above each line that starts with ``VmFlags:`` (after a newline) and holds `` dd``
    followed by a space, a tab or the line's end."""
    # 25 lines a mapping and 2,000 mappings in a 1,000-thread process: find the few
    # " dd" in the text (the kernel's [vvar] is one), keep those on a VmFlags line (at a
    # line's start, so a file named "VmFlags: dd" is not taken for one), then look for
    # the header line above each. (bytes methods, not a regex: a dump imports no re.)
    marked = []
    at = _find_dd(text, 0)
    while at >= 0:
        line = text.rfind(b"\n", 0, at)  # (the newline before the flags' line)
        if line < 0 or not text.startswith(b"\nVmFlags:", line):
            at = _next_line_dd(text, at)
            continue
        if text[at + 3 : at + 4] not in _AFTER_DD:
            at = _find_dd(text, at + 1)
            continue
        while line >= 0:
            line_start = text.rfind(b"\n", 0, line) + 1
            span, space, _ = text[line_start:line].partition(b" ")
            start, _, end = span.partition(b"-")
            if space and start and end and not (start + end).strip(_HEX_BYTES):
                marked.append((int(start, 16), int(end, 16)))
                break
            line = line_start - 1
        at = _next_line_dd(text, at)
    return marked


def _find_dd(text: bytes, start: int) -> int:
    """Where the first `` dd`` at or after ``start`` is, or -1."""
    # (found by its "dd": a search for " dd" is slowed twentyfold by smaps' runs of
    # spaces, and "dd" is rare)
    at = text.find(b"dd", start + 1)
    while at >= 0 and text[at - 1] != 0x20:
        at = text.find(b"dd", at + 1)
    return at - 1 if at >= 0 else -1


def _next_line_dd(text: bytes, at: int) -> int:
    """The first `` dd`` after the line holding ``at``, or -1."""
    line_end = text.find(b"\n", at)
    return -1 if line_end < 0 else _find_dd(text, line_end)


#: what may follow `` dd`` on a VmFlags line: a space, a tab, the end of the line or of
#: the text
_AFTER_DD = (b" ", b"\t", b"\n", b"")


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
