"""The quick reader of plain command lines (macminidump/arguments.py) reads every command
line as argparse does, or leaves it to argparse."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macminidump import arguments, cli


def argparse_reads(argv: list[str]) -> dict[str, object] | None:
    """What the full parser makes of ``argv``: its namespace, or None when it exits."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return vars(cli._parser(None).parse_args(argv))
        except SystemExit:
            return None


def quick_reads(argv: list[str]) -> dict[str, object] | None:
    read = arguments.quick_parse(arguments.declared(cli._COMMANDS[argv[0]]), argv[1:])
    return None if read is None else vars(read)


def tokens(command: str) -> st.SearchStrategy[str]:
    """Words a command line of ``command`` is made of: its options (whole, abbreviated,
    with ``=``), values of every kind, and what argparse treats apart."""
    declared = arguments.declared(cli._COMMANDS[command])
    flags = [f for a in declared.arguments for f in a.flags if f.startswith("-")]
    values = ["12", "0", "x", "", "8M", "stacks", "gpr", "all", "0x10:4K", "a=b", "-3", "a b"]
    return st.one_of(
        st.sampled_from(flags),
        st.sampled_from(flags).map(lambda f: f[:4]),
        st.builds(lambda f, v: f"{f}={v}", st.sampled_from(flags), st.sampled_from(values)),
        st.sampled_from(values),
        st.sampled_from(["--", "-", "-h", "--help", "--version", "--no-such", "-x"]),
        st.text(max_size=6),
    )


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(cli._COMMANDS)))
    return [command, *draw(st.lists(tokens(command), max_size=8))]


def value_for(argument: arguments.Argument) -> st.SearchStrategy[str]:
    choices = argument.keywords.get("choices")
    if choices:
        return st.sampled_from(choices)
    if argument.keywords.get("type") is int:
        return st.integers(0, 99999).map(str)
    return st.sampled_from(["x.core", "-", "8M", "stacks", "0x1000:4K", "a=b", ""])


@st.composite
def likely_plain_lines(draw: st.DrawFn) -> list[str]:
    """Command lines built from the declarations: each option maybe, with a value of its
    kind, in any order, the positionals among them; now and then a word of tokens()."""
    command = draw(st.sampled_from(sorted(cli._COMMANDS)))
    declared = arguments.declared(cli._COMMANDS[command])
    words: list[list[str]] = []
    for a in declared.arguments:
        for _ in range(draw(st.integers(0, 2 if a.action == "append" else 1))):
            if a.positional:
                count = draw(st.integers(0, 3)) if a.keywords.get("nargs") else 1
                words.append([draw(value_for(a)) for _ in range(count)])
            elif a.action == "store_true":
                words.append([draw(st.sampled_from(a.flags))])
            elif draw(st.booleans()) and a.flags[-1].startswith("--"):
                words.append([f"{a.flags[-1]}={draw(value_for(a))}"])
            else:
                words.append([draw(st.sampled_from(a.flags)), draw(value_for(a))])
    words = draw(st.permutations(words))
    argv = [command, *(w for ws in words for w in ws)]
    if draw(st.integers(0, 4)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), draw(tokens(command)))
    return argv


@given(st.one_of(command_lines(), likely_plain_lines()))
def test_the_quick_reader_reads_as_argparse_does_or_not_at_all(argv: list[str]) -> None:
    quick = quick_reads(argv)
    if quick is not None:
        assert quick == argparse_reads(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["dump", "4242", "-o", "x.core"],
        ["dump", "-o", "x.core", "4242", "--json"],
        ["dump", "4242", "--output=x.core", "--memory", "referenced", "--max-size", "8M"],
        ["dump", "4242", "-o", "x", "--include", "0x1000:4K", "--include", "0x9000:1"],
        ["dump", "4242", "-o", "x", "--keep-environment", "--code-window", "64"],
        ["run", "-o", "crash.core", "--", "./prog", "--flag", "-x"],
        ["run", "-o", "crash.core", "prog", "arg"],
        ["run", "--memory", "full", "-o", "c"],
        ["core-handler", "--dir", "/var/crash", "--max-count", "5", "1234", "1", "11", "99"],
        ["core-handler", "--install", "/var/crash/mini", "--memory", "referenced"],
        ["core-handler", "--uninstall"],
        ["build", "spec.yaml", "-o", "x.core"],
        ["inspect", "x.core", "--registers", "all", "--json"],
        ["to-spec", "x.core", "-o", "-"],
    ],
)
def test_plain_command_lines_are_read_quickly(argv: list[str]) -> None:
    """The forms the README, the core handler's launcher and scripts use."""
    quick = quick_reads(argv)
    assert quick is not None
    assert quick == argparse_reads(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["dump", "--help"],
        ["dump", "4242"],  # no -o: argparse says so
        ["dump", "x", "-o", "c"],  # not a pid
        ["dump", "4242", "--out", "c"],  # an abbreviation
        ["dump", "-5", "-o", "c"],
        ["inspect", "x.core", "--registers", "some"],
        ["core-handler", "--install", "d", "--uninstall"],
        ["core-handler"],
        ["build", "--json=1", "s", "-o", "c"],
    ],
)
def test_the_rest_is_left_to_argparse(argv: list[str]) -> None:
    assert quick_reads(argv) is None


@pytest.mark.parametrize(
    "argv",
    [[], ["--memory", "referenced", "--max-size", "8M"], ["--include", "0x10:4"],
     ["--max-stack", "0", "--keep-environment"], ["--memory"], ["--bogus"], ["--max-s", "1"]],
)  # fmt: skip
def test_the_self_dump_helpers_policy_options_read_as_argparse_does(argv: list[str]) -> None:
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            expected: object = vars(cli.policy_parser().parse_args(argv))
        except SystemExit as e:
            expected = e.code
        try:
            read: object = vars(cli.parse_policy_arguments(argv))
        except SystemExit as e:
            read = e.code
    if isinstance(read, dict):
        read.pop("command")  # (the quick reader names the declaration it read)
    assert read == expected


def test_the_markers_are_argparses() -> None:
    assert arguments.SUPPRESS == argparse.SUPPRESS
    assert arguments.REMAINDER == argparse.REMAINDER
