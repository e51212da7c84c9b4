"""Runs `faceapp ARGS...` (the CLI, or the app with --live) in this process and prints
how many times a gallery file was opened: `opens: N` on stderr at exit."""

import atexit
import sys

from faceapp.core.gallery import sqlite_file

opens = []
real_open = sqlite_file.Gallery._open_file


def counted(self):
    opens.append(str(self.path))
    return real_open(self)


sqlite_file.Gallery._open_file = counted
atexit.register(lambda: print(f"opens: {len(opens)}", file=sys.stderr, flush=True))

if __name__ == "__main__":
    from faceapp.__main__ import main

    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.exit(code)
