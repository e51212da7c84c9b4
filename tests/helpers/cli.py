"""The CLI as a user runs it: `python -m faceapp --db DB ARGS...` in its own process."""

from __future__ import annotations

import json
import subprocess
import sys


def faceapp(db, *args, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout)
    if check:
        assert run.returncode == 0, f"faceapp {args}: {run.stderr[-3000:]}"
    return run


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
