"""Linux x86_64 live capture through ptrace: the ``TargetOS`` side of ``capture``.

``LinuxTarget(pid)`` stops every thread of a process, reads what ``capture`` asks for
while they are stopped, and detaches from every thread on every path. See
``../shared/reference/elf-core.md`` for the measured facts behind each choice. The rooms:

- ``ptrace``: the system calls, and ``Tracee``, the seize/interrupt/wait/detach state
  machine of one process's threads (also driven by the crash supervisor, ``supervise``);
- ``procfs``: readers of /proc (status, stat, the task list, maps, auxv, names);
- ``dynlinker``: the dynamic linker's list of libraries (r_debug and link_map);
- ``registers``: user_regs_struct, the fxsave and XSAVE areas -> register dicts;
- ``target``: ``LinuxTarget`` and ``capture_pid``, built from the rooms above.

Memory is read with ``process_vm_readv`` (no seek, so no trouble with addresses above
2^63); memory that cannot be read (``[vvar]``, ``[vsyscall]``, guard pages) gives a
short read, never an error. ptrace requests are only honoured from the thread that
attached: use one LinuxTarget from one thread. If the target is a child of this process,
do not wait for it from another thread while it is being captured (that wait would take
ptrace stops).
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: the supervisor starts without typing)

if TYPE_CHECKING:
    from .target import LinuxTarget, capture_pid

__all__ = ["LinuxTarget", "capture_pid"]


def __getattr__(name: str) -> object:
    # lazily: the crash supervisor uses the ptrace and procfs rooms and starts without
    # the capture (the model, the ABI declarations) until a program crashes
    if name in __all__:
        from . import target

        return getattr(target, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
