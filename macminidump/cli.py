"""The ``macminidump`` command: wiring only; every piece of work lives in the library."""

from __future__ import annotations

import gc
import os
import sys
import time

from . import __version__
from .arguments import (
    REMAINDER,
    SUPPRESS,
    Command,
    Commands,
    declared,
    default,
    quick_parse,
    replay,
)
from .errors import CaptureError, MacMiniDumpError, TargetError, WriteError

# (typing's TYPE_CHECKING would import typing, which costs `--help` a few ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

    from .capture.linux.held import Held
    from .capture.policy import CaptureOptions
    from .progress import Progress

# Each command imports what it uses inside its function: `--help` and `dump` must not pay
# for yaml, construct or the parsers (README, Speed).

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

_DESCRIPTION = """\
Minimal, debugger-openable core files. A core holds only what a debugger needs for full
backtraces (threads, stack memory, the list of loaded binaries, a little code around each
return address), in the platform's own format, so LLDB (Mach-O) or gdb (ELF) opens it.
"""

_EPILOG = """\
examples:
  macminidump build formats/examples/arm64-crash.yaml -o crash.core
  macminidump inspect crash.core            # threads, stop reason, registers, memory, notes
  macminidump inspect --json crash.core     # the same, for programs
  macminidump to-spec crash.core > crash.yaml   # edit, then build it again
  lldb -o 'target create --core crash.core' -o 'bt all'
  macminidump build formats/examples/x86_64-linux.yaml -o linux.core   # an ELF core
  gdb -batch -ex 'thread apply all bt' EXE linux.core

exit status (every command; `run` exits with the program's status when it ran):
  0  done
  2  bad input: a malformed core or spec, an output that is not a regular file, a
     process that cannot be captured (missing, not permitted, already traced, 32-bit)
  1  a failure midway: a full disk, a capture that failed, a closed or full stdout,
     a terminating signal (the file being written is removed first)
Errors are one line on stderr naming the problem. Outputs are written atomically (mode
0600): the old file or the whole new one, never half of one; a symlink at the output
path is replaced, never followed.
"""


#: the help's layout of a command (cli_help's formatters, named: argparse is not imported
#: to declare a command): its description and epilog as written, or filled as prose
_LINES = "Formatter"
_PROSE = "ProseFormatter"


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``command`` (a command's name), only that command is added:
    what a run of it parses. (All seven parsers took ~4 ms of a dump: argparse looks up
    a translation for every heading and help string it makes.)"""
    import argparse

    from . import cli_help

    parser = argparse.ArgumentParser(
        prog="macminidump",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=cli_help.Formatter,
    )
    parser.add_argument("--version", action="version", version=f"macminidump {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for name, add in _COMMANDS.items():
        if command is None or name == command:
            declaration = declared(add)
            keywords = dict(declaration.keywords)
            keywords["formatter_class"] = getattr(cli_help, keywords["formatter_class"])
            replay(declaration, sub.add_parser(name, **keywords))
    return parser


def _add_build(sub: Any) -> None:
    build = sub.add_parser(
        "build",
        help="write a core from a YAML/JSON spec",
        description=(
            "Write a core file from a declarative spec (see formats/spec.md). "
            "The spec's 'format' key picks the file format: macho (the default) or elf "
            "(Linux x86_64)."
        ),
        formatter_class=_LINES,
        epilog="example:\n  macminidump build formats/examples/arm64-crash.yaml -o crash.core",
    )
    build.add_argument("spec", help="spec file (YAML or JSON)")
    build.add_argument("-o", "--output", required=True, help="core file to write (mode 0600)")
    build.add_argument("--json", action="store_true", help="print a JSON summary")
    build.set_defaults(run=_build)


def _add_inspect(sub: Any) -> None:
    insp = sub.add_parser(
        "inspect",
        help="show what a core holds",
        formatter_class=_PROSE,
        description=(
            "Show a core's header, threads (registers, stop reason), memory "
            "segments, every note decoded and the loaded images."
        ),
    )
    insp.add_argument("core", help="core file (Mach-O or ELF)")
    insp.add_argument("--json", action="store_true", help="stable machine-readable output")
    insp.add_argument(
        "--registers",
        choices=("gpr", "all", "none"),
        default="gpr",
        help="which register sets the text output shows (JSON always has all)",
    )
    insp.set_defaults(run=_inspect)


def _add_to_spec(sub: Any) -> None:
    to_spec = sub.add_parser(
        "to-spec",
        help="turn a core into a spec that rebuilds it",
        formatter_class=_PROSE,
        description=(
            "Print a spec (YAML, or JSON with --json) from which 'build' writes the "
            "same core. Memory is written as hex: meant for small cores."
        ),
    )
    to_spec.add_argument("core", help="core file")
    to_spec.add_argument(
        "-o", "--output", help="write the spec here (atomically, mode 0600); '-' is stdout"
    )
    to_spec.add_argument("--json", action="store_true", help="JSON instead of YAML")
    to_spec.set_defaults(run=_to_spec)


def _add_dump(sub: Any) -> None:
    dump = sub.add_parser(
        "dump",
        help="write a minimal core of a running process",
        description=(
            "Write a minimal core of a running process: every thread's registers "
            "and stack, the list of loaded libraries, and a little code around each return "
            "address, so gdb and LLDB show complete backtraces. The process is stopped only "
            "while its state is read (about 10 ms for a few threads; large regions, as "
            "--memory dirty and full save, keep it stopped until they are written) and never "
            "signalled."
        ),
        formatter_class=_LINES,
        epilog="example:\n  macminidump dump $(pidof myserver) -o myserver.core\n"
        "  gdb -ex 'thread apply all bt' /path/to/myserver myserver.core\n"
        "  macminidump dump 4242 -o big.core --memory referenced --max-size 8M\n"
        "  macminidump dump 4242 -o all.core --memory full     # like gcore, streamed\n\n"
        "exit status: 0 written, 2 the process cannot be captured (missing, not "
        "permitted), 1 the capture failed (e.g. the process exited meanwhile).",
    )
    dump.add_argument("pid", type=int, help="process id")
    dump.add_argument("-o", "--output", required=True, help="core file to write (mode 0600)")
    dump.add_argument("--json", action="store_true", help="print a JSON summary")
    add_policy_arguments(dump)
    dump.set_defaults(run=_dump)


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a program and write a minimal core if it crashes",
        description=(
            "Run PROGRAM with its stdin, stdout and stderr untouched. If it dies "
            "of a crash signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS), "
            "write a minimal core of the exact crash state first, then let it die of that "
            "signal. The exit status is the program's (128 + signal when it died of one)."
        ),
        formatter_class=_LINES,
        epilog="example:\n  macminidump run -o crash.core -- ./myprogram --flag\n"
        "  gdb ./myprogram crash.core        # Linux (ptrace)\n"
        "  lldb --core crash.core            # macOS (the program's exception port)",
    )
    run.add_argument("-o", "--output", required=True, help="core file to write on a crash")
    add_policy_arguments(run)
    run.add_argument("argv", nargs=REMAINDER, metavar="-- PROGRAM [ARGS...]")
    run.set_defaults(run=_run)


def _add_core_handler(sub: Any) -> None:
    handler = sub.add_parser(
        "core-handler",
        help="write a core of every crash on the machine (Linux core_pattern)",
        formatter_class=_LINES,
        description=(
            "The command the kernel pipes every crash to, through "
            "/proc/sys/kernel/core_pattern. --install DIR (as root) writes a launcher into "
            "DIR, points core_pattern at it with the memory policy given, and prints the "
            "previous pattern; --uninstall restores that pattern. For each crash the kernel "
            "then runs the handler, which reads the dying process through /proc while the "
            "kernel waits on the pipe, writes DIR/PROGRAM.PID.TIME.core (crashing thread "
            "first, with its signal and fault address), drains the pipe, and removes the "
            "oldest cores beyond --max-count or --max-use. A failure is one line in "
            "DIR/handler.log."
        ),
        epilog="example:\n"
        "  macminidump core-handler --install /var/crash/mini --memory referenced --max-size 8M\n"
        "  macminidump core-handler --uninstall\n\n"
        "exit status: 0 done, 2 bad input (not root, a directory that cannot be written), "
        "1 failure.",
    )
    what = handler.add_mutually_exclusive_group(required=True)
    what.add_argument("--install", metavar="DIR", help="set core_pattern to write cores in DIR")
    what.add_argument("--uninstall", action="store_true", help="restore the previous pattern")
    what.add_argument("--dir", help=SUPPRESS)  # how the kernel runs it
    handler.add_argument(
        "--max-count", type=int, default=50, help="keep at most N cores in DIR (default 50)"
    )
    handler.add_argument(
        "--max-use", default="1G", metavar="SIZE", help="keep DIR within SIZE (default 1G)"
    )
    handler.add_argument("crash", nargs="*", help=SUPPRESS)  # %P %I %s %t
    add_policy_arguments(handler)
    handler.set_defaults(run=_core_handler)


#: each command's name and the function that adds its parser, in --help's order
_COMMANDS: dict[str, Callable[[Any], None]] = {
    "build": _add_build,
    "inspect": _add_inspect,
    "to-spec": _add_to_spec,
    "dump": _add_dump,
    "run": _add_run,
    "core-handler": _add_core_handler,
}


_POLICY_HELP = """\
memory saved (the same for dump, run, core-handler and write_core()):
  --memory stacks      the default: every thread's stack from sp (at most --max-stack),
                       code around each return address, the dynamic linker's lists
  --memory referenced  plus a window around every pointer in registers and stack words
                       (one more level for the crashed thread): gdb prints what a
                       frame's pointer locals point to
  --memory dirty       plus every private mapping the process wrote (heap, data, anon)
  --memory full        plus everything readable, like gcore
  --max-size SIZE      cap the core (64K, 8M, 1G). Memory is kept in this order and
                       cut from its end: the crashed thread's registers and stack near
                       sp, other threads' stacks near sp, module headers and code,
                       --include ranges, referenced memory, the rest. The core records
                       what was cut (`macminidump inspect` shows it).
never saved: memory the process marked MADV_DONTDUMP (keys), and the environment
  strings unless --keep-environment (argv stays); left out, not zeroed
"""


def add_policy_arguments(parser: Any) -> None:
    """The memory-policy options, shared by every command that captures (declared on an
    :class:`arguments.Command`; a command that takes them lays out its help with _LINES)."""
    group = parser.add_argument_group("memory policy")
    group.add_argument(
        "--memory",
        default="stacks",
        metavar="POLICY",
        help="stacks (default), referenced, dirty or full",
    )
    group.add_argument(
        "--max-size", metavar="SIZE", help="cap on the core's size (64K, 8M, 1G); see below"
    )
    group.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="ADDR:SIZE",
        help="also save this range (e.g. 0x7f12a000:4K); repeatable; must be mapped",
    )
    group.add_argument(
        "--max-stack",
        metavar="SIZE",
        help="save at most SIZE of each stack from sp (default 8M; 0: the whole mapping)",
    )
    group.add_argument(
        "--keep-environment",
        action="store_true",
        help="also save the environment strings (left out by default: they hold tokens)",
    )
    group.add_argument("--code-window", type=int, default=256, help=SUPPRESS)
    if parser.epilog is not None:
        parser.epilog = f"{_POLICY_HELP}\n{parser.epilog}"
    else:
        parser.epilog = _POLICY_HELP


def capture_options(args: argparse.Namespace) -> CaptureOptions:
    """The CaptureOptions the policy options ask for (bad values: TargetError, exit 2)."""
    from .capture.policy import CaptureOptions

    extra: dict[str, Any] = {}
    if args.max_stack is not None:
        extra["max_stack"] = None if args.max_stack.strip() == "0" else args.max_stack
    return CaptureOptions(
        memory=args.memory,
        max_size=args.max_size,
        include=args.include,
        code_window=args.code_window,
        keep_environment=args.keep_environment,
        **extra,
    )


def _policy_given(args: argparse.Namespace) -> bool:
    """Whether any memory-policy option differs from its default."""
    return any(getattr(args, a.dest) != default(a) for a in _policy().arguments)


def _policy() -> Command:
    """The policy options alone, declared (as a command of their own)."""
    policy = Commands().add_parser("policy")
    add_policy_arguments(policy)
    return policy


def policy_parser() -> argparse.ArgumentParser:
    """A parser of the policy options alone."""
    import argparse

    from .cli_help import Formatter

    parser = argparse.ArgumentParser(prog="macminidump", add_help=False, formatter_class=Formatter)
    replay(_policy(), parser)
    return parser


def parse_policy_arguments(argv: Sequence[str]) -> Any:
    """The policy options in ``argv`` (the self-dump helper's command line), read as
    :func:`_parse` reads a command's."""
    args = quick_parse(_policy(), argv)
    return args if args is not None else policy_parser().parse_args(argv)


#: the resident size from which ``dump`` stops a process before it loads the capture.
#: Stopped first, the process is paused for the loading too (~20 ms) where the kernel's
#: walk of its pages for smaps is shorter, and the dump ends sooner by as much of the
#: walk as the loading hides. The walk goes at ~40 MiB/ms here (13 ms for 512 MiB): from
#: 400 MiB on, it takes half the loading, and the dump gains what the pause loses
#: (bench/bench_pause.py and bench_dump.py measure both sides).
EARLY_HOLD_RESIDENT = 400 << 20


def _held_ahead(pid: int) -> Held | None:
    """On Linux, a large process ``pid`` (``EARLY_HOLD_RESIDENT``) stopped now, before the
    capture loads the rest of the package: the kernel's walk of its pages for smaps (see
    ``procfs.smaps``) then runs on another core meanwhile (capture/linux/held.py), and the
    dump ends sooner. A smaller process is stopped once the capture is loaded, so the
    loading is no part of its pause. Its refusals (no such process, a 32-bit
    program...) are the capture's own. None where the capture does not stop a process
    this way (other systems, this process, a small process): write_core says why."""
    if sys.platform != "linux" or pid == os.getpid():
        return None
    from .capture.linux import procfs

    if procfs.resident(procfs.directory(pid)) < EARLY_HOLD_RESIDENT:
        return None
    from .capture.linux.held import Held
    from .capture.linux.ptrace import check_platform

    try:
        check_platform()
    except TargetError:
        return None
    held = Held(pid)
    held.stop()
    return held


def _progress() -> Progress | None:
    """A progress line when stderr is a terminal (captures that take seconds)."""
    if not sys.stderr.isatty():
        return None
    from .progress import Progress

    return Progress(sys.stderr)


def _build(args: argparse.Namespace) -> int:
    import gc

    # a large spec is hundreds of thousands of objects (the document, the Snapshot, the
    # layout), none in a cycle: the cyclic collector's passes over them free nothing and
    # took a third of the command's time (1,000 threads, 10,000 regions)
    if not gc.isenabled():
        return _build_core(args)
    gc.disable()
    try:
        return _build_core(args)
    finally:
        gc.enable()


def _build_core(args: argparse.Namespace) -> int:
    from .arch import arch_info
    from .spec import read_spec, snapshot_from_spec, spec_format

    spec = read_spec(args.spec)
    fmt = spec_format(spec)
    snapshot = snapshot_from_spec(spec, base_dir=os.path.dirname(args.spec))
    if fmt == "elf":
        from .elf.render import render_elf as render
    else:
        from .macho.render import render_macho as render
    size = render(snapshot, args.output)
    summary = {
        "output": args.output,
        "format": fmt,
        "size": size,
        "arch": snapshot.arch.value,
        "threads": len(snapshot.threads),
        "regions": len(snapshot.regions),
        "images": len(snapshot.images),
    }
    if args.json:
        import json

        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {args.output}: {size:,} bytes, {arch_info(snapshot.arch).arch} "
            f"{len(snapshot.threads)} threads, {len(snapshot.regions)} memory regions, "
            f"{len(snapshot.images)} images"
        )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .report import inspect_core, render_text

    report = inspect_core(args.core)
    if args.json:
        import json

        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(render_text(report, registers=args.registers))
    return 0


def _to_spec(args: argparse.Namespace) -> int:
    from .parse import core_format, parse_core
    from .spec import dump_spec

    snapshot = parse_core(args.core)
    text = dump_spec(snapshot, fmt=core_format(args.core), as_json=args.json)
    if args.output and args.output != "-":
        from .writer import write_text

        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _dump(args: argparse.Namespace) -> int:
    # bad policy values are refused before the process is touched; without any the
    # policy (and what it imports) loads after the stop, which then comes sooner
    options = capture_options(args) if _policy_given(args) else None
    started = time.perf_counter()
    held = _held_ahead(args.pid)
    said: list[str] = []
    try:
        from .api import write_core  # (loaded while the process is held: see _held_ahead)

        size = write_core(
            args.output,
            args.pid,
            options=options,
            progress=_progress(),
            held=held,
            on_warning=said.append,
        )
    finally:
        if held is not None:
            held.resume()  # (a failure before the capture took the stop over)
    elapsed = time.perf_counter() - started
    for message in said:
        print(f"macminidump: warning: {message}", file=sys.stderr)
    if args.json:
        import json

        print(
            json.dumps(
                {
                    "output": args.output,
                    "pid": args.pid,
                    "size": size,
                    "seconds": elapsed,
                    "warnings": said,
                }
            )
        )
    else:
        print(f"wrote {args.output}: {size:,} bytes in {elapsed * 1000:.0f} ms")
    return 0


def _run(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise TargetError("no program given: macminidump run -o CORE -- PROGRAM [ARGS...]")
    if sys.platform == "darwin":
        from .capture.mach.supervise import run_supervised as run_mach

        return run_mach(
            argv,
            args.output,
            capture_options(args),
            report=lambda line: print(line, file=sys.stderr),
        )
    from .capture.supervise import run_supervised

    # the default policy: None, so that a program that does not crash runs without the
    # capture path imported (policy options that were given are checked before it starts)
    options = capture_options(args) if _policy_given(args) else None
    # This process ends when the program does: what it holds now is never garbage, so
    # no collection walks it again (the one at exit took a sixth of `run -- /bin/true`).
    gc.freeze()
    # nothing else in this process forks or waits: the supervisor may wait for any child
    return run_supervised(argv, args.output, options, only_child=True, progress=_progress())


def _core_handler(args: argparse.Namespace) -> int:
    from . import core_handler
    from .capture.policy import parse_size

    options = capture_options(args)  # bad options fail here, before anything is changed
    max_use = parse_size(args.max_use)
    if args.max_count < 1:
        raise TargetError(f"--max-count {args.max_count}: keep at least one core")
    if args.uninstall:
        removed, restored = core_handler.uninstall()
        print(f"core_pattern restored to {restored!r} (was {removed!r})")
        return 0
    if args.install:
        previous = core_handler.install(args.install, options.to_argv(), args.max_count, max_use)
        print(f"previous core_pattern: {previous}")
        return 0
    return core_handler.run_handler(
        args.dir, args.crash, options, args.max_count, max_use, sys.stdin.buffer
    )


class _StdoutFailed(Exception):
    """Standard output is closed or cannot take what we print."""


def _uses_stdout(args: argparse.Namespace) -> bool:
    return args.command not in ("run", "core-handler") and not (
        args.command == "to-spec" and args.output and args.output != "-"
    )


def _guard_standard_fds() -> bool:
    """Put /dev/null on closed fds 0-2 (so no file we open lands there); was 1 open?"""
    stdout_open = sys.stdout is not None
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            stdout_open = stdout_open and fd != 1
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    return stdout_open


def _error(message: str) -> None:
    from .escape import printable  # (only on an error)

    # one line, and a name in it must not forge a second one or drive the terminal
    line = printable(message)
    try:
        print(f"macminidump: error: {line}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass  # nowhere to say it: the exit status does


def _discard_stdout() -> None:
    """After stdout failed: let nothing try again at exit (no 'Exception ignored')."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115


def console(argv: Sequence[str] | None = None) -> int:
    """``main`` in a process of its own, that ends when it returns: the installed
    ``macminidump`` command, ``python -m macminidump`` and the core handler's launcher.

    Start-up creates a few hundred thousand objects (modules, classes, the schemas), none
    of them garbage: with the collector's default thresholds every full collection
    walked them all again. Here the collector runs less often; and once the command is
    done and its output flushed, the process ends at once, without the interpreter's
    teardown (a last full collection, every module emptied): nothing of this package
    waits for it (no atexit hook; every file is closed where it is written). Together
    about a fifth of a `dump`'s CPU time.
    """
    gc.set_threshold(100_000, 50, 100)
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # (started with the descriptor closed)
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or EXIT_FAILED  # (main() has said why where it could)
    os._exit(code)


def _parse(argv: Sequence[str]) -> Any:
    """``argv`` read: by the quick reader when it is a plain command line, else by
    argparse (its help, its errors; it exits with 2 on an error, as before)."""
    if argv and argv[0] in _COMMANDS:
        args = quick_parse(declared(_COMMANDS[argv[0]]), argv[1:])
        if args is not None:
            return args
    return _parser(argv[0] if argv and argv[0] in _COMMANDS else None).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    stdout_open = _guard_standard_fds()
    if argv is None:
        argv = sys.argv[1:]
    args = _parse(argv)
    try:
        if _uses_stdout(args) and not stdout_open:
            raise _StdoutFailed("standard output is closed")
        code = int(args.run(args))
        if _uses_stdout(args):
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                raise
            except OSError as e:
                raise _StdoutFailed(f"cannot write standard output: {e.strerror}") from None
        return code
    except _StdoutFailed as e:
        _error(str(e))
        _discard_stdout()
        return EXIT_FAILED
    except WriteError as e:
        _error(str(e))
        return EXIT_FAILED
    except CaptureError as e:
        # a process that cannot be captured at all is bad input; a capture that failed is not
        _error(str(e))
        return EXIT_BAD_INPUT if isinstance(e, TargetError) else EXIT_FAILED
    except MacMiniDumpError as e:
        _error(str(e))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error of ours
        _discard_stdout()
        return 0
    except OSError as e:
        where = e.filename if e.filename is not None else "standard output"
        _error(f"{where}: {e.strerror or e}")
        _discard_stdout()
        return EXIT_FAILED
