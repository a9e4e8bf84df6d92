"""``python -m macminidump``: the command line (``cli.console``)."""

from .cli import console

raise SystemExit(console())
