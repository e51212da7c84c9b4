"""Several faceapp programs on one gallery file at once, as a desk lives with it: a
kiosk's Live window, an admin's imports and enrolments, identify runs from a script,
a scan, renames and merges, exports; one program killed with SIGKILL and another
holding the file locked past every timeout. Real processes, real models, real LFW
photos. Afterwards SQLite's own integrity check passes and every change a program
confirmed (exit status 0, its JSON answer) is in the gallery exactly once.

This is the test for the corruption users hit when a second open of the gallery in
one process closed a descriptor of the file and dropped SQLite's POSIX locks (see
faceapp/core/gallery/files.py, LiveFiles)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from faceapp.core.enroll import name_from_folder

from .helpers.soak import make_video

WORKER = Path(__file__).parent / "helpers" / "gallery_worker.py"
SECONDS = 35  # per round: 70 s of programs side by side in all
# Round 0 is the setting users lost galleries in: short programs beside long writers
# and no program keeping the file open throughout (a connection open all the time,
# like Live's, would hide a dropped lock). Round 1 adds Live, a kill and a lock.
ROUNDS = ("writers and short programs", "everything, with Live, a kill and a lock")


def faceapp(db: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), "--threads", "1",
                           *args], capture_output=True, text=True, timeout=timeout)


def lfw_people(lfw: Path, photos: int) -> list[Path]:
    """LFW people folders with at least `photos` photos, in a fixed order."""
    return [d for d in sorted(lfw.iterdir()) if len(list(d.glob("*.jpg"))) >= photos]


def people_folder(root: Path, people: list[Path], per_person: int) -> Path:
    """A folder with one sub-folder per person, linking to LFW's photos in place."""
    root.mkdir(parents=True)
    for person in people:
        (root / person.name).mkdir()
        for photo in sorted(person.glob("*.jpg"))[:per_person]:
            (root / person.name / photo.name).symlink_to(photo)
    return root


def json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


class Loop(threading.Thread):
    """Runs one kind of program again and again until the round ends, keeping what
    each run confirmed."""

    def __init__(self, deadline: float, step):
        super().__init__(daemon=True)
        self.deadline, self.step = deadline, step
        self.confirmed: list = []
        self.failures: list[str] = []
        self.n = 0

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            self.n += 1
            try:
                self.step(self)
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.failures.append(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_programs_side_by_side_never_corrupt_the_gallery(shared_data, tmp_path):
    lfw = shared_data / "lfw" / "images"
    many = lfw_people(lfw, 4)
    db = tmp_path / "gallery.db"
    video = make_video(tmp_path / "three.mp4", lfw, frames=125)
    probe = sorted(many[0].glob("*.jpg"))[3]  # a photo nobody enrolls
    scan_folder = tmp_path / "scan"
    scan_folder.mkdir()
    for person in many[60:75]:
        (scan_folder / f"{person.name}.jpg").symlink_to(sorted(person.glob("*.jpg"))[2])
    first = faceapp(db, "enroll", many[0].name, str(sorted(many[0].glob("*.jpg"))[0]))
    assert first.returncode == 0, first.stderr

    enrolled: dict[str, int] = {many[0].name: 1}  # name -> samples a program confirmed
    absorbed: set[str] = set()
    imports: list[tuple[list[str], int]] = []  # (people of the folder, samples added)
    stations: dict[str, int] = {}  # an identify run's station -> events it confirmed
    exports: list[Path] = []
    pool = iter(many[1:60])
    for round_no, _what in enumerate(ROUNDS):
        full = round_no == 1
        deadline = time.monotonic() + SECONDS
        folders = []
        for k in range(2):
            chosen = [next(pool) for _ in range(6 if full else 9)]
            folders.append(people_folder(tmp_path / f"import-{round_no}-{k}", chosen,
                                         2 if full else 3))
        killed_folder = people_folder(tmp_path / f"killed-{round_no}",
                                      [next(pool) for _ in range(4)], 2)
        singles = [next(pool) for _ in range(3)]
        enrolled_now: set[str] = set()

        def identify(loop: Loop) -> None:
            station = f"identify-{round_no}-{loop.n}"
            run = faceapp(db, "--station", station, "identify", str(probe))
            if run.returncode != 0 or "could not be saved" in run.stderr:
                loop.failures.append(run.stderr[-500:])
                return
            faces = [json.loads(line) for line in run.stdout.splitlines()]
            loop.confirmed.append((station, sum(f["reason"] != "poor quality" for f in faces)))

        def enroll_and_merge(loop: Loop) -> None:
            if loop.n > len(singles):
                time.sleep(1)
                return
            person = singles[loop.n - 1]
            photo = sorted(person.glob("*.jpg"))
            run = faceapp(db, "enroll", person.name, str(photo[0]), str(photo[1]))
            if run.returncode != 0:
                loop.failures.append(run.stderr[-500:])
                return
            enrolled_now.add(person.name)
            loop.confirmed.append(("enroll", person.name, json_line(run.stdout)["added"]))
            if loop.n == 2 and singles[0].name in enrolled_now:  # a merge into the first
                keep = singles[0].name
                run = faceapp(db, "people", "merge", keep, person.name)
                if run.returncode == 0:
                    loop.confirmed.append(("merge", keep, person.name))
                else:
                    loop.failures.append(run.stderr[-500:])

        def export(loop: Loop) -> None:
            out = tmp_path / f"export-{round_no}-{loop.n}.zip"
            run = faceapp(db, "export", str(out))
            if run.returncode == 0:
                loop.confirmed.append(out)
            else:
                loop.failures.append(run.stderr[-500:])
            time.sleep(3)

        loops = [Loop(deadline, identify)]
        if full:
            loops += [Loop(deadline, enroll_and_merge), Loop(deadline, export)]
        importers = [subprocess.Popen(
            [sys.executable, "-m", "faceapp", "--db", str(db), "--threads", "1", "import",
             str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for folder in folders]
        scanner = None if not full else subprocess.Popen(
            [sys.executable, "-m", "faceapp", "--db", str(db), "--threads", "1", "scan",
             str(scan_folder), "--rescan"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        live = None if not full else subprocess.Popen(
            [sys.executable, "-m", "faceapp", "--gallery", str(db), "--settings",
             str(tmp_path / "settings.ini"), "--live", str(video), "--loop", "--quit-after",
             str(SECONDS - 5)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        victim = None if not full else subprocess.Popen(
            [sys.executable, "-m", "faceapp", "--db", str(db), "--threads", "1", "import",
             str(killed_folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for loop in loops:
            loop.start()
        holder = None
        if full:
            time.sleep(8)
            victim.send_signal(signal.SIGKILL)  # in the middle of its import
            victim.wait()
            # another program holds the file locked past every program's timeout (10 s)
            holder = subprocess.Popen([sys.executable, str(WORKER), "hold-lock", str(db),
                                       "12"], stdout=subprocess.PIPE, text=True)
        for loop in loops:
            loop.join(timeout=SECONDS + 300)
        if holder is not None:
            holder.wait(timeout=60)
        for proc, folder in zip(importers, folders):
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-2000:]
            imports.append(([name_from_folder(p.name) for p in folder.iterdir()],
                            json_line(out)["added"]))
        if full:
            out, err = scanner.communicate(timeout=600)
            assert scanner.returncode == 0, err[-2000:]
            log = live.communicate(timeout=300)[0]

        for kind, *rest in (loops[1].confirmed if full else []):
            if kind == "enroll":
                enrolled[rest[0]] = enrolled.get(rest[0], 0) + rest[1]
            else:
                keep, gone = rest
                enrolled[keep] += enrolled.pop(gone)
                absorbed.add(gone)
        stations.update(loops[0].confirmed)
        exports += loops[2].confirmed if full else []
        assert loops[0].confirmed and (not full or loops[2].confirmed), \
            [lp.failures for lp in loops]

        # the file after each round: whole, and everything confirmed is there once
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            samples = dict(conn.execute(
                "SELECT p.name, count(f.id) FROM people p LEFT JOIN faces f "
                "ON f.person_id = p.id GROUP BY p.id").fetchall())
            for name, count in enrolled.items():
                assert samples.get(name) == count, (name, samples.get(name), count)
            for name in absorbed:
                assert name not in samples
            for people, added in imports:
                assert sum(samples.get(name, 0) for name in people) == added, people
            events = dict(conn.execute("SELECT station, count(*) FROM events "
                                       "GROUP BY station").fetchall())
            for station, count in stations.items():
                assert events.get(station, 0) == count, (station, events.get(station), count)
            assert conn.execute("SELECT count(*) FROM (SELECT uid FROM events GROUP BY uid "
                                "HAVING count(*) > 1) AS twice").fetchone() == (0,)
        finally:
            conn.close()
        if full:
            assert live.returncode == 0 and "faceapp live:" in log, log[-3000:]

    # every export a program confirmed is a whole archive of the gallery of its time
    from faceapp.core.archive import is_archive

    assert exports and all(is_archive(path) for path in exports)
    run = faceapp(db, "people")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) >= len(enrolled)
