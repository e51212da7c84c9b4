"""`python -m faceapp`: the command line (the desktop app will open with no arguments)."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    """The desktop app with no arguments (or only --gallery / --settings), else the CLI."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0].split("=")[0] in ("--gallery", "--settings"):
        from .ui.app import run

        return run(args)
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
