"""The helper process of a self dump: ``python -m macminidump._selfdump PID PATH
[POLICY OPTIONS]`` (the memory policy as ``CaptureOptions.to_argv`` writes it).

A process cannot safely capture itself: Linux cannot ptrace itself, and on macOS a
Python process that suspends its own threads can deadlock on the GIL
(``capture.mach.handover``). So ``write_core()`` starts this helper and waits, blocked
in a read with the GIL released. The helper gets hold of the caller (Linux: ptrace,
which the caller allowed through Yama; macOS: the task port the caller put in its
registered ports, inherited at spawn), waits for "go" on stdin, followed on macOS by the
crash context as JSON (``null`` for none), captures the caller with every thread
stopped, writes the core and exits. The caller's calling thread is recorded blocked
inside ``write_core``. Warnings (threads that exited during the capture) go to stderr,
one per line after ``WARNING``. When PATH is ``-`` (``capture_process()``), the helper
writes no core but the Snapshot itself, pickled, to stdout (its warnings inside): the
caller gets exactly what ``capture_process(pid)`` gives for another process.
"""

from __future__ import annotations

import json
import sys

from .arch import RegKind
from .capture.base import CaptureOptions, CrashContext
from .model import SignalInfo, Snapshot

WARNING = "macminidump: warning: "
#: the PATH that asks for the Snapshot on stdout instead of a core file
TO_STDOUT = "-"


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
        from .cli import capture_options, parse_policy_arguments

        options = capture_options(parse_policy_arguments(argv[2:]))
        if sys.platform == "darwin":
            warnings = _capture_darwin(pid, path, options)
        else:
            warnings = _capture_linux(pid, path, options)
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


def _capture_linux(pid: int, path: str, options: CaptureOptions) -> tuple[str, ...]:
    from .capture.linux import LinuxTarget
    from .streaming import capture_snapshot, write_captured

    _request()
    if path == TO_STDOUT:
        return _send(capture_snapshot(LinuxTarget(pid), "elf", options))
    return write_captured(LinuxTarget(pid), path, "elf", options).warnings


def _capture_darwin(pid: int, path: str, options: CaptureOptions) -> tuple[str, ...]:
    from .capture.mach import MachTarget
    from .capture.mach.handover import receive_task_port
    from .capture.mach.libsystem import load_libsystem
    from .streaming import capture_snapshot, write_captured

    lib = load_libsystem()
    port = receive_task_port(lib, pid)
    try:
        crash = crash_from_json(_request().decode())
        with MachTarget(task=port, lib=lib) as target:
            if path == TO_STDOUT:
                return _send(capture_snapshot(target, "macho", options, crash))
            return write_captured(target, path, "macho", options, crash).warnings
    finally:
        lib.mach_port_deallocate(lib.mach_task_self(), port)


def _send(snapshot: Snapshot) -> tuple[str, ...]:
    import pickle

    sys.stdout.buffer.write(pickle.dumps(snapshot, pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return ()  # the warnings travel inside the Snapshot


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
