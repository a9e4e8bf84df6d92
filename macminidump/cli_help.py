"""How ``--help`` lays out its text: argparse's formatters, given the terminal's width.

Imported only when a parser is built (a command line that is not the plain form
:mod:`macminidump.arguments` reads, ``--help``, an error), so that a ``dump`` does not
pay for argparse.
"""

from __future__ import annotations

import argparse
import os
import sys


def columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, then the
    terminal on stdout, else 80."""
    try:
        width = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        width = 0
    if width <= 0:
        try:
            width = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            width = 0
    return width or 80


def is_prose(paragraph: str) -> bool:
    """One line, not indented, longer than a line: a paragraph to fill."""
    return "\n" not in paragraph and not paragraph[:1].isspace() and len(paragraph) > 80


class ProseFormatter(argparse.HelpFormatter):
    """argparse's formatter, given the width, so that building a parser does not import
    shutil (and bz2, lzma and zlib with it): every command paid that at start-up."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:  # fmt: skip
        super().__init__(prog, indent_increment, max_help_position, width or columns() - 2)


class Formatter(ProseFormatter, argparse.RawDescriptionHelpFormatter):
    """The same, keeping the lines of the description and the epilog as written, except
    that a paragraph written as one line is prose, filled to 80 columns. (Filled here,
    when help is shown, and not when the parser is built: textwrap's import is then
    paid by --help alone.)"""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if not any(is_prose(p) for p in text.split("\n\n")):
            return super()._fill_text(text, width, indent)
        import textwrap

        return "\n\n".join(
            textwrap.fill(p, 80)
            if is_prose(p)
            else super(Formatter, self)._fill_text(p, width, indent)
            for p in text.split("\n\n")
        )
