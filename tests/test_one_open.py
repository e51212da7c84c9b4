"""Every program opens its gallery exactly once: a second open of the same file in one
process closed a descriptor of it and dropped SQLite's locks, which corrupted
galleries that another program was writing (tests/test_integrity.py). Counted in real
processes running the real CLI commands and the app's window."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

COUNTER = Path(__file__).parent / "helpers" / "count_opens.py"


def counted(*args: str, env: dict | None = None) -> tuple[int, subprocess.CompletedProcess]:
    run = subprocess.run([sys.executable, str(COUNTER), *map(str, args)], capture_output=True,
                         text=True, timeout=600, env={**os.environ, **(env or {})})
    found = re.search(r"opens: (\d+)", run.stderr)
    assert found, run.stderr[-2000:]
    return int(found.group(1)), run


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, photos, shared_data):
    root = tmp_path_factory.mktemp("one-open")
    db = root / "g.db"
    people = root / "people"
    for name, files in (("Ada", ["img1.jpg", "img2.jpg"]), ("Bob", ["img13.jpg"])):
        (people / name).mkdir(parents=True)
        for f in files:
            (people / name / f).symlink_to(photos / f)
    strangers = root / "strangers"
    strangers.mkdir()
    for photo in sorted((shared_data / "lfw" / "images" / "Tony_Blair").glob("*.jpg"))[:3]:
        (strangers / photo.name).symlink_to(photo)
    return db, people, strangers, root


def test_every_cli_command_opens_the_gallery_once(gallery, photos):
    db, people, strangers, root = gallery
    commands = [
        ["import", people],
        ["enroll", "Carol", photos / "img20.jpg"],
        ["identify", strangers],
        ["identify", photos / "img4.jpg"],
        ["compare", photos / "img1.jpg", photos / "img2.jpg"],
        ["unknowns"],
        ["ignore-cluster", "{cluster}", "--undo"],
        ["name-cluster", "{cluster}", "Tony"],
        ["scan", strangers],
        ["photos-of", "Tony"],
        ["people"],
        ["people", "rename", "Carol", "Caroline"],
        ["people", "merge", "Ada", "Caroline"],
        ["events"],
        ["events", "--csv", root / "log.csv"],
        ["export", root / "g.zip"],
        ["import-gallery", root / "g.zip", "--on-conflict", "skip"],
        ["reembed"],
        ["people", "delete", "Tony", "--yes"],
    ]
    cluster = None
    for command in commands:
        args = [str(a).format(cluster=cluster) for a in command]
        opens, run = counted("--db", db, *args)
        assert run.returncode == 0, (args, run.stderr[-2000:])
        assert opens == 1, (args, opens)
        if args[0] == "unknowns":
            cluster = max((json.loads(line) for line in run.stdout.splitlines()),
                          key=lambda c: c["size"])["cluster"]
    opens, run = counted("--db", db, "detect", photos / "img1.jpg")  # needs no gallery
    assert run.returncode == 0 and opens == 0


@pytest.mark.slow
def test_the_app_opens_the_gallery_once(gallery, photos, tmp_path):
    db = gallery[0]
    opens, run = counted("--gallery", db, "--settings", tmp_path / "settings.ini",
                         "--live", photos / "img4.jpg", "--quit-after", "4",
                         env={"QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert opens == 1
