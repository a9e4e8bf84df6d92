"""The ``macminidump`` command: wiring only; every piece of work lives in the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from . import __version__
from .arch import arch_info
from .errors import MacMiniDumpError
from .inspect import inspect_core, render_text
from .spec import dump_spec, read_spec, snapshot_from_spec, spec_format

EXIT_BAD_INPUT = 2

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

exit status: 0 success, 2 bad input (the message names the problem), 1 anything else.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="macminidump",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"macminidump {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    build = sub.add_parser(
        "build",
        help="write a core from a YAML/JSON spec",
        description="Write a core file from a declarative spec (see formats/spec.md). "
        "The spec's 'format' key picks the file format (macho, the default).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  macminidump build formats/examples/arm64-crash.yaml -o crash.core",
    )
    build.add_argument("spec", help="spec file (YAML or JSON)")
    build.add_argument("-o", "--output", required=True, help="core file to write (mode 0600)")
    build.add_argument("--json", action="store_true", help="print a JSON summary")
    build.set_defaults(run=_build)

    insp = sub.add_parser(
        "inspect",
        help="show what a core holds",
        description="Show a core's header, threads (registers, stop reason), memory "
        "segments, every note decoded and the loaded images.",
    )
    insp.add_argument("core", help="core file (Mach-O)")
    insp.add_argument("--json", action="store_true", help="stable machine-readable output")
    insp.add_argument(
        "--registers",
        choices=("gpr", "all", "none"),
        default="gpr",
        help="which register sets the text output shows (JSON always has all)",
    )
    insp.set_defaults(run=_inspect)

    to_spec = sub.add_parser(
        "to-spec",
        help="turn a core into a spec that rebuilds it",
        description="Print a spec (YAML, or JSON with --json) from which 'build' writes the "
        "same core. Memory is written as hex: meant for small cores.",
    )
    to_spec.add_argument("core", help="core file")
    to_spec.add_argument("-o", "--output", help="write the spec here instead of stdout")
    to_spec.add_argument("--json", action="store_true", help="JSON instead of YAML")
    to_spec.set_defaults(run=_to_spec)
    return parser


def _build(args: argparse.Namespace) -> int:
    from .macho.render import render_macho

    spec = read_spec(args.spec)
    fmt = spec_format(spec)
    snapshot = snapshot_from_spec(spec, base_dir=os.path.dirname(args.spec))
    if fmt != "macho":
        raise MacMiniDumpError(f"format {fmt!r} cannot be written yet")
    size = render_macho(snapshot, args.output)
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
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {args.output}: {size:,} bytes, {arch_info(snapshot.arch).arch} "
            f"{len(snapshot.threads)} threads, {len(snapshot.regions)} memory regions, "
            f"{len(snapshot.images)} images"
        )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    report = inspect_core(args.core)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(render_text(report, registers=args.registers))
    return 0


def _to_spec(args: argparse.Namespace) -> int:
    from .parse import parse_core

    snapshot = parse_core(args.core)
    text = dump_spec(snapshot, as_json=args.json)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except MacMiniDumpError as e:
        print(f"macminidump: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("macminidump: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:
        print(f"macminidump: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 1
