"""A command's arguments declared once, then read two ways: the plain command lines by a
quick reader here, everything else by argparse.

A command's ``_add_*`` function in :mod:`macminidump.cli` makes argparse's calls
(``add_parser``, ``add_argument``, groups, ``set_defaults``) on a :class:`Commands`
recorder. :func:`quick_parse` reads the plain forms from the record: exact option names,
``--name=value``, values that do not start with ``-``, one-value and ``*`` positionals, a
program's arguments after its name (``run``).
Anything else (``--help``, an abbreviation, a missing or conflicting option, a value that
its type refuses) it leaves to argparse, which :func:`replay` builds from the same
record, so every error and every help text stays argparse's. Importing argparse (with
re, gettext and locale) and its translation lookups took about a tenth of a ``dump``.
``tests/test_arguments.py`` checks that both read every command line alike.
"""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False  # (not typing's: a dump imports no typing; see plain_typing)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

#: argparse's markers (``argparse.SUPPRESS``, ``argparse.REMAINDER``), to declare with
#: without importing it (:func:`replay` gives argparse its own); tests/test_arguments.py
#: checks they are argparse's
SUPPRESS = "==SUPPRESS=="
REMAINDER = "..."

#: the add_argument keywords and actions the quick reader knows; a command declaring
#: anything else is always read by argparse
_KEYWORDS = frozenset({"action", "type", "default", "required", "help", "metavar", "dest",
                       "choices", "nargs"})  # fmt: skip
_ACTIONS = (None, "store", "store_true", "append")


class Argument:
    """One ``add_argument`` call, and the group it was made in (None: the parser's own)."""

    def __init__(self, flags: tuple[str, ...], keywords: dict[str, Any], group: Group | None):
        self.flags = flags
        self.keywords = keywords
        self.group = group
        self.positional = not flags[0].startswith("-")
        self.dest: str = keywords.get("dest") or _dest(flags)
        self.action = keywords.get("action")


def _dest(flags: tuple[str, ...]) -> str:
    """argparse's name for an argument: a positional's own, else the first long option's
    (or the first short one's) without its dashes, ``-`` made ``_``."""
    if not flags[0].startswith("-"):
        return flags[0]
    long = [f for f in flags if f.startswith("--")]
    return (long or list(flags))[0].lstrip("-").replace("-", "_")


class Group:
    """An ``add_argument_group`` or ``add_mutually_exclusive_group`` call."""

    def __init__(self, command: Command, exclusive: bool, keywords: dict[str, Any]):
        self.command = command
        self.exclusive = exclusive
        self.keywords = keywords

    def add_argument(self, *flags: str, **keywords: Any) -> None:
        self.command.events.append(Argument(flags, keywords, self))


class Command:
    """One command's ``add_parser`` call and what was then declared on it, in order."""

    def __init__(self, name: str, keywords: dict[str, Any]):
        self.name = name
        self.keywords = keywords
        self.events: list[Argument | Group] = []
        self.defaults: dict[str, Any] = {}

    @property
    def epilog(self) -> str | None:
        return self.keywords.get("epilog")

    @epilog.setter
    def epilog(self, text: str | None) -> None:
        self.keywords["epilog"] = text

    def add_argument(self, *flags: str, **keywords: Any) -> None:
        self.events.append(Argument(flags, keywords, None))

    def add_argument_group(self, title: str | None = None, **keywords: Any) -> Group:
        group = Group(self, False, {"title": title, **keywords})
        self.events.append(group)
        return group

    def add_mutually_exclusive_group(self, **keywords: Any) -> Group:
        group = Group(self, True, keywords)
        self.events.append(group)
        return group

    def set_defaults(self, **defaults: Any) -> None:
        self.defaults.update(defaults)

    @property
    def arguments(self) -> list[Argument]:
        return [e for e in self.events if isinstance(e, Argument)]


class Commands:
    """What a command's ``_add_*`` function is given in place of argparse's subparsers."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add_parser(self, name: str, **keywords: Any) -> Command:
        command = self.commands[name] = Command(name, keywords)
        return command


def declared(add: Callable[[Any], None]) -> Command:
    """The one command that ``add`` declares."""
    commands = Commands()
    add(commands)
    (command,) = commands.commands.values()
    return command


def replay(command: Command, parser: argparse.ArgumentParser) -> None:
    """Make ``command``'s declarations on argparse's ``parser``, in their order."""
    import argparse

    # (argparse tells its markers by identity: ``help is SUPPRESS``)
    markers = {SUPPRESS: argparse.SUPPRESS, REMAINDER: argparse.REMAINDER}
    groups: dict[int, Any] = {}
    for event in command.events:
        if isinstance(event, Group):
            make = (
                parser.add_mutually_exclusive_group
                if event.exclusive
                else parser.add_argument_group
            )
            groups[id(event)] = make(**event.keywords)
        else:
            into = parser if event.group is None else groups[id(event.group)]
            keywords: dict[str, Any] = {
                k: markers.get(v, v) if isinstance(v, str) else v for k, v in event.keywords.items()
            }
            into.add_argument(*event.flags, **keywords)
    parser.set_defaults(**command.defaults)


def quick_parse(command: Command, argv: Sequence[str]) -> SimpleNamespace | None:
    """``argv`` (the command's arguments, after its name) as argparse would read it, when
    it is a plain command line: else None, and argparse reads it."""
    arguments = command.arguments
    if any(not _plain(a) for a in arguments):
        return None
    options = {flag: a for a in arguments if not a.positional for flag in a.flags}
    positionals = [a for a in arguments if a.positional]
    rest = [a for a in positionals if a.keywords.get("nargs") == REMAINDER]
    if rest and len(positionals) > 1:
        return None
    given: dict[str, Any] = {}
    seen: set[Argument] = set()
    free: list[str] = []
    chunks = 0  # runs of positional values: argparse reads a `*` from the first only
    previous_was_free = False
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if rest and (token == "--" or _value(token)):
            given[rest[0].dest] = list(argv[i - 1 :])  # (the program's own, `--` kept)
            break
        if _value(token):
            free.append(token)
            chunks += not previous_was_free
            previous_was_free = True
            continue
        previous_was_free = False
        flag, equals, value = token.partition("=") if token.startswith("--") else (token, "", "")
        argument = options.get(flag)
        if argument is None:
            return None  # --help, -h, --, an abbreviation, a negative number, a typo
        if argument.action == "store_true":
            if equals:
                return None
            given[argument.dest] = True
        else:
            if not equals:
                if i >= len(argv) or not _value(argv[i]):
                    return None
                value = argv[i]
                i += 1
            converted = _converted(argument, value)
            if converted is _REFUSED:
                return None
            if argument.action == "append":
                given.setdefault(argument.dest, list(argument.keywords.get("default") or []))
                given[argument.dest].append(converted)
            else:
                given[argument.dest] = converted
        seen.add(argument)
    if rest:
        given.setdefault(rest[0].dest, [])
    elif not _positionals(positionals, free, chunks, given):
        return None
    for a in arguments:
        if a.keywords.get("required") and a not in seen:
            return None
    exclusive = [e for e in command.events if isinstance(e, Group) and e.exclusive]
    for group in exclusive:
        members = sum(a in seen for a in arguments if a.group is group)
        if members > 1 or (members == 0 and group.keywords.get("required")):
            return None
    values: dict[str, Any] = {"command": command.name}
    for a in arguments:
        values[a.dest] = given[a.dest] if a.dest in given else default(a)
    for name, value in command.defaults.items():
        values.setdefault(name, value)
    return SimpleNamespace(**values)


def _value(token: str) -> bool:
    """Whether argparse reads ``token`` as a value in any case (``-`` alone is one, often a
    file name for stdout); for a token that starts with ``-`` it depends on the parser's
    options, and the quick reader leaves the command line to argparse."""
    return token == "-" or not token.startswith("-")


def _plain(argument: Argument) -> bool:
    """Whether the quick reader reads this argument as argparse does."""
    nargs = argument.keywords.get("nargs")
    return (
        set(argument.keywords) <= _KEYWORDS
        and argument.action in _ACTIONS
        and (nargs is None or (nargs in ("*", REMAINDER) and argument.positional))
        and not (argument.positional and argument.action is not None)
        and argument.keywords.get("default") != SUPPRESS
    )


#: a value the argument's type or choices refuse (argparse then says why)
_REFUSED = object()


def _converted(argument: Argument, value: str) -> Any:
    convert = argument.keywords.get("type")
    if convert is not None:
        try:
            value = convert(value)
        except (TypeError, ValueError):
            return _REFUSED
    choices = argument.keywords.get("choices")
    if choices is not None and value not in choices:
        return _REFUSED
    return value


def _positionals(
    positionals: list[Argument], free: list[str], chunks: int, given: dict[str, Any]
) -> bool:
    """Deal the positional values out as argparse does; False when it would refuse them
    or read them otherwise."""
    star = [a for a in positionals if a.keywords.get("nargs") == "*"]
    if star:
        # one `*` positional after the one-value ones, its values in one run
        if len(star) > 1 or positionals[-1] is not star[0] or chunks > 1:
            return False
        single = positionals[:-1]
        if len(free) < len(single):
            return False
    elif len(free) != len(positionals):
        return False
    else:
        single = positionals
    for argument, value in zip(single, free):
        converted = _converted(argument, value)
        if converted is _REFUSED:
            return False
        given[argument.dest] = converted
    if star:
        values = [_converted(star[0], v) for v in free[len(single) :]]
        if any(v is _REFUSED for v in values):
            return False
        given[star[0].dest] = values
    return True


def default(argument: Argument) -> Any:
    """What argparse sets when the argument is not given."""
    if argument.action == "store_true":
        return argument.keywords.get("default", False)
    declared = argument.keywords.get("default")
    if argument.keywords.get("nargs") == "*" and argument.positional:
        return [] if declared is None else declared
    if isinstance(declared, str) and "type" in argument.keywords:
        return argument.keywords["type"](declared)  # (argparse converts a string default)
    return declared
