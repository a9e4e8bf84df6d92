"""The helper process of a self dump: ``python -m macminidump._selfdump PID PATH``.

A process cannot safely capture itself: Linux cannot ptrace itself, and on macOS a
Python process that suspends its own threads can deadlock on the GIL
(``capture.mach.handover``). So ``write_core()`` starts this helper and waits, blocked
in a read with the GIL released. The helper gets hold of the caller (Linux: ptrace,
which the caller allowed through Yama; macOS: the task port the caller put in its
registered ports, inherited at spawn), waits for "go" on stdin, followed on macOS by the
crash context as JSON (``null`` for none), captures the caller with every thread
stopped, writes the core and exits. The caller's calling thread is recorded blocked
inside ``write_core``. Warnings (threads that exited during the capture) go to stderr,
one per line after ``WARNING``.
"""

from __future__ import annotations

import json
import sys

from .arch import RegKind
from .capture.base import CrashContext
from .model import SignalInfo

WARNING = "macminidump: warning: "


def crash_to_json(crash: CrashContext | None) -> str:
    if crash is None:
        return "null"
    signal = crash.signal
    return json.dumps(
        {
            "thread_id": crash.thread_id,
            "regsets": {RegKind(k).value: v for k, v in crash.regsets.items()},
            "signal": None
            if signal is None
            else {
                "signo": signal.signo,
                "code": signal.code,
                "errno": signal.errno,
                "address": signal.address,
            },
        }
    )


def crash_from_json(text: str) -> CrashContext | None:
    data = json.loads(text or "null")
    if data is None:
        return None
    signal = data["signal"]
    return CrashContext(
        thread_id=int(data["thread_id"]),
        regsets={RegKind(k): {n: int(v) for n, v in r.items()} for k, r in data["regsets"].items()},
        signal=None if signal is None else SignalInfo(**signal),
    )


def main(argv: list[str]) -> int:
    from .errors import MacMiniDumpError

    pid, path = int(argv[0]), argv[1]
    try:
        if sys.platform == "darwin":
            warnings = _capture_darwin(pid, path)
        else:
            warnings = _capture_linux(pid, path)
    except MacMiniDumpError as e:
        print(f"macminidump: error: {e}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(WARNING + warning, file=sys.stderr)
    return 0


def _request() -> bytes:
    request = sys.stdin.buffer.read()
    if not request.startswith(b"go"):
        from .errors import CaptureError

        raise CaptureError("the calling process went away")
    return request[2:]


def _capture_linux(pid: int, path: str) -> tuple[str, ...]:
    from .capture.base import capture
    from .capture.linux import LinuxTarget
    from .elf.render import render_elf

    _request()
    snapshot = capture(LinuxTarget(pid))
    render_elf(snapshot, path)
    return snapshot.warnings


def _capture_darwin(pid: int, path: str) -> tuple[str, ...]:
    from .capture.mach import capture_mach
    from .capture.mach.handover import receive_task_port
    from .capture.mach.libsystem import load_libsystem
    from .macho.render import render_macho

    lib = load_libsystem()
    port = receive_task_port(lib, pid)
    try:
        crash = crash_from_json(_request().decode())
        snapshot = capture_mach(task=port, crash=crash, lib=lib)
    finally:
        lib.mach_port_deallocate(lib.mach_task_self(), port)
    render_macho(snapshot, path)
    return snapshot.warnings


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
