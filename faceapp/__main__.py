"""`python -m faceapp`: the command line (the desktop app will open with no arguments)."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
