"""Subprocess worker for tests/test_gallery.py: things that need a second process.

    gallery_worker.py enroll DB PHOTOS COUNT [STALL_AT]
        enroll person-0000 ... one transaction each (4 faces, embeddings from two
        models derived from the index), printing "enrolled N" after each commit.
        With STALL_AT, print "stalled" and sleep inside that person's transaction
        (after its faces were inserted, before its embeddings), to be killed there.
    gallery_worker.py hold-write DB SECONDS
        open a write transaction (a new person, uncommitted), print "writing", sleep.
    gallery_worker.py hold-lock DB SECONDS
        take SQLite's exclusive lock on the file itself (locking_mode=EXCLUSIVE),
        print "locked", sleep.
    gallery_worker.py read DB
        print the people (name, face count), the model counts and the data version
        as one JSON line.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from faceapp.core.gallery import FaceSample, connect
from faceapp.core.imageio import load_image

FACES_PER_PERSON = 4
MODELS = {"model-a": 128, "model-b": 64}


def person_crops(photos: Path) -> list[np.ndarray]:
    """Real photo regions, 150 x 130 (H x W), from a few sample photos."""
    crops = []
    for name in ("img1.jpg", "img2.jpg", "img3.jpg", "img4.jpg"):
        image = load_image(photos / name)
        h, w = image.shape[:2]
        y, x = h // 3, w // 3
        crops.append(np.ascontiguousarray(image[y:y + 150, x:x + 130]))
    return crops


def person_embeddings(index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(index)
    return {model: rng.standard_normal((FACES_PER_PERSON, dim)).astype(np.float32)
            for model, dim in MODELS.items()}


def landmarks(index: int) -> np.ndarray:
    base = np.array([[40, 55], [90, 55], [65, 80], [45, 110], [85, 110]], np.float32)
    return base + np.float32(index % 7) / 4


def enroll(db: str, photos: str, count: int, stall_at: int | None) -> None:
    crops = person_crops(Path(photos))
    with connect(db, timeout=30) as gallery:
        current = {"index": -1}
        if stall_at is not None:
            def trace(sql: str) -> None:
                if current["index"] == stall_at and sql.startswith("INSERT INTO embeddings"):
                    print("stalled", flush=True)
                    time.sleep(120)
            gallery._conn.set_trace_callback(trace)
        for i in range(count):
            current["index"] = i
            samples = [FaceSample(crop, landmarks(i), quality=0.5 + k / 10, source=f"photo{k}")
                       for k, crop in enumerate(crops)]
            gallery.enroll(f"person-{i:04d}", samples, person_embeddings(i))
            print(f"enrolled {i + 1}", flush=True)


def hold_write(db: str, seconds: float) -> None:
    with connect(db) as gallery:
        with gallery.writing() as tx:
            gallery.insert_person(tx, "Uncommitted Person")
            print("writing", flush=True)
            time.sleep(seconds)


def hold_lock(db: str, seconds: float) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE meta SET value = value WHERE key = 'app'")
    conn.execute("COMMIT")  # in exclusive locking mode the lock outlives the commit
    print("locked", flush=True)
    time.sleep(seconds)
    conn.close()


def read(db: str) -> None:
    with connect(db, timeout=30) as gallery:
        print(json.dumps({"people": [[p.name, p.face_count] for p in gallery.people()],
                          "models": gallery.models(), "data_version": gallery.data_version()}),
              flush=True)


def main(argv: list[str]) -> None:
    command, db = argv[0], argv[1]
    if command == "enroll":
        enroll(db, argv[2], int(argv[3]), int(argv[4]) if len(argv) > 4 else None)
    elif command == "hold-write":
        hold_write(db, float(argv[2]))
    elif command == "hold-lock":
        hold_lock(db, float(argv[2]))
    elif command == "read":
        read(db)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
