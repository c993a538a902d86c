"""`python -m archspec` (and the `archspec` command): the CLI, with Ctrl-C during start-up ending
as quietly as Ctrl-C later on (one line, exit code 130), not with a traceback of whichever import
it interrupted. The package itself imports almost nothing (archspec/__init__.py), so the guard
below covers all but the interpreter's own start.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from archspec.cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    cli_main()


if __name__ == "__main__":
    main()
