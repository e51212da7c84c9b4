"""Many stations changing one gallery at once, and the count afterwards (for
tests/test_stations.py and bench/bench_stations.py).

    python -m tests.helpers.writers LOCATION WORKER SECONDS

runs one writer: for SECONDS it enrolls new people, adds samples to a few people
every writer shares (found or created by name at the same moment by several),
adds a sample again (the database must refuse the copy), renames, renames onto a
taken name (a conflict, with its message), merges two of its people, and imports an
archive into a shared person. A change the server could not confirm (it went away)
is tried again until it is: each one is safe to repeat. At the end it prints what
the gallery must now hold for it, as one JSON line; check_writers() compares.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceapp.core.archive import export_gallery, import_gallery
from faceapp.core.gallery import (FaceSample, GalleryError, GalleryUnavailable, NameTaken, NotFound,
                                  connect)
from faceapp.core.imageio import load_image

SHARED = [f"shared-{k}" for k in range(4)]
IMPORTED = "imported person"
DIM = 8
PHOTOS = Path(os.environ.get("FACEAPP_SHARED_DATA", Path(__file__).resolve().parents[2].parent
                           / "shared" / "data")) / "samples" / "photos"
LANDMARKS = np.array([[20, 24], [44, 24], [32, 36], [22, 48], [42, 48]], np.float32)


class Crops:
    """Distinct real photo regions: (writer, n) always gives the same 64 x 64 crop."""

    def __init__(self):
        self.images = [load_image(PHOTOS / f"img{k}.jpg") for k in (1, 2, 3, 4, 5)]

    def sample(self, writer: int, n: int) -> FaceSample:
        image = self.images[(writer + n) % len(self.images)]
        h, w = image.shape[:2]
        y = (writer * 7919 + n * 104729) % (h - 64)
        x = (writer * 15401 + n * 7) % (w - 64)
        crop = np.ascontiguousarray(image[y:y + 64, x:x + 64])
        crop[0, 0] = [writer % 256, n % 256, (n // 256) % 256]  # never two alike
        return FaceSample(crop, LANDMARKS, 0.8, f"w{writer}-{n}")


def vector(writer: int, n: int) -> np.ndarray:
    v = np.random.default_rng(writer * 1_000_003 + n).standard_normal((1, DIM)).astype(np.float32)
    return v / np.linalg.norm(v)


def confirmed(action, *args, **kwargs):
    """Run a change until the server confirms it (each change here is idempotent)."""
    while True:
        try:
            return action(*args, **kwargs)
        except GalleryUnavailable:
            time.sleep(0.5)


def writer(location: str, worker: int, seconds: float) -> dict:
    crops = Crops()
    rng = np.random.default_rng(worker)
    archive = Path(tempfile.mkdtemp()) / "import.fgx"
    with connect(Path(archive.parent) / "source.db") as source:  # 3 samples of one person
        source.enroll(IMPORTED, [crops.sample(10_000, k) for k in range(3)])
        export_gallery(source, archive)
    own: dict[str, tuple[int, int]] = {}  # name -> (person id, faces)
    shared_added = {name: 0 for name in SHARED}
    counts = {"enroll": 0, "shared": 0, "copies_refused": 0, "renames": 0, "conflicts": 0,
              "merged": 0, "imports": 0}
    messages: list[str] = []
    first_shared = None
    n = 0
    gallery = confirmed(connect, location, station=f"writer-{worker}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += 1
        op = rng.choice(["enroll", "shared", "copy", "rename", "conflict", "merge", "import"],
                        p=[0.3, 0.25, 0.1, 0.1, 0.05, 0.1, 0.1])
        if op == "enroll" or (op in ("rename", "merge", "conflict") and len(own) < 2):
            name = f"w{worker}-p{n}"
            pid, faces = confirmed(gallery.enroll, name, [crops.sample(worker, n)],
                                   {"m": vector(worker, n)})
            own[name] = (pid, 1)
            counts["enroll"] += 1
        elif op == "shared":
            name = SHARED[n % len(SHARED)]
            confirmed(gallery.enroll, name, [crops.sample(worker, n)], {"m": vector(worker, n)})
            shared_added[name] += 1
            counts["shared"] += 1
            if name == SHARED[0] and first_shared is None:
                first_shared = n
        elif op == "copy":
            if first_shared is None:
                continue
            # the first sample this writer gave shared-0, offered again
            _, added = confirmed(gallery.enroll, SHARED[0], [crops.sample(worker, first_shared)],
                                 {"m": vector(worker, first_shared)})
            assert added == [], "a copy of a sample was stored again"
            counts["copies_refused"] += 1
        elif op == "rename":
            old = sorted(own)[int(rng.integers(len(own)))]
            pid, faces = own.pop(old)
            new = f"w{worker}-r{n}"
            confirmed(gallery.rename_person, pid, new)
            own[new] = (pid, faces)
            counts["renames"] += 1
        elif op == "conflict":
            pid, _ = own[sorted(own)[0]]
            try:
                confirmed(gallery.rename_person, pid, SHARED[0].upper())
            except NameTaken as exc:
                counts["conflicts"] += 1
                messages = messages[-2:] + [str(exc)]
            else:
                raise AssertionError("a rename onto a taken name went through")
        elif op == "merge":
            keep_name, absorb_name = sorted(own)[:2]
            (keep, kept), (absorb, absorbed) = own[keep_name], own.pop(absorb_name)
            try:
                confirmed(gallery.merge_people, keep, absorb)
            except NotFound:  # merged already, but the answer was lost with the server
                pass
            own[keep_name] = (keep, kept + absorbed)
            counts["merged"] += 1
        elif op == "import":
            confirmed(import_gallery, gallery, archive, on_conflict="merge")
            counts["imports"] += 1
    gallery.close()
    return {"worker": worker, "own": {name: faces for name, (_, faces) in own.items()},
            "shared": shared_added, "counts": counts, "messages": messages}


def check_writers(location: str, reports: list[dict],
                  before: dict[str, int] | None = None) -> tuple[list[str], dict]:
    """What is wrong in the gallery after these writers (an empty list: nothing), and
    the totals. before: the people (name -> samples) it held when they started."""
    before = before or {}
    problems = []
    with connect(location) as gallery:
        people = {p.name: p.face_count for p in gallery.people()}
        with gallery.snapshot():
            with gallery.reading() as db:
                copies = db.execute("SELECT count(*) FROM (SELECT person_id, content_hash "
                                    "FROM faces GROUP BY person_id, content_hash "
                                    "HAVING count(*) > 1) AS twice").fetchone()[0]
                # imported samples get their templates from the app's model, not here
                missing = db.execute("SELECT count(*) FROM faces WHERE id NOT IN "
                                     "(SELECT face_id FROM embeddings) AND person_id NOT IN "
                                     "(SELECT id FROM people WHERE name = ?)",
                                     [IMPORTED]).fetchone()[0]
        faces = gallery.face_count()
    expected_faces = sum(before.values())
    for name, count in before.items():
        if people.get(name) != count:
            problems.append(f"{name}: {people.get(name)} samples, expected {count}")
    for report in reports:
        for name, count in report["own"].items():
            expected_faces += count
            if people.get(name) != count:
                problems.append(f"{name}: {people.get(name)} samples, expected {count}")
    for name in SHARED:
        count = sum(r["shared"][name] for r in reports)
        expected_faces += count
        if count and people.get(name) != count:
            problems.append(f"{name}: {people.get(name)} samples, expected {count}")
    if any(r["counts"]["imports"] for r in reports):
        expected_faces += 3
        if people.get(IMPORTED) != 3:
            problems.append(f"{IMPORTED}: {people.get(IMPORTED)} samples, expected 3")
    if copies:
        problems.append(f"{copies} samples stored twice for one person")
    if missing:
        problems.append(f"{missing} samples without their template")
    if faces != expected_faces:
        problems.append(f"{faces} samples in the gallery, expected {expected_faces}")
    expected_people = len(before) + sum(len(r["own"]) for r in reports) + sum(
        1 for name in SHARED if any(r["shared"][name] for r in reports)) + (
        1 if any(r["counts"]["imports"] for r in reports) else 0)
    if len(people) != expected_people:
        problems.append(f"{len(people)} people, expected {expected_people}")
    totals = {"people": len(people), "faces": faces,
              **{k: sum(r["counts"][k] for r in reports) for k in reports[0]["counts"]}}
    return problems, totals


if __name__ == "__main__":
    try:
        print(json.dumps(writer(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))), flush=True)
    except GalleryError as exc:
        print(f"writer {sys.argv[2]}: {exc}", file=sys.stderr)
        sys.exit(1)
