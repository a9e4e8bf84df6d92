"""``python -m macminidump``: the command line (``cli.main``)."""

from .cli import main

raise SystemExit(main())
