"""Forgetting forgets, checked in the raw bytes of the gallery file and its -wal: a
deleted person leaves no face picture and no name they ever had (events from before
they were named, old names after a rename, other events' nearest and runner-up); a
retention of 0 days keeps no stranger's face picture anywhere. And outputs never
replace a gallery; a damaged template is skipped by name, not fatal."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path


from faceapp.core.gallery import connect

from .helpers.cli import faceapp


def raw(db: Path) -> bytes:
    """Everything on disk: the file and its -wal (the app is closed between commands)."""
    wal = Path(f"{db}-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def lfw_photos(shared_data, name: str) -> list[Path]:
    return sorted((shared_data / "lfw" / "images" / name).glob("*.jpg"))


def folder_of(folder: Path, photos: list[Path]) -> Path:
    """Photos in a folder: identified as unrelated stills, each one logged."""
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
    return folder


def pieces(data: bytes) -> list[bytes]:
    """Stretches of a face picture to look for (a JPEG's header is common to many)."""
    return [data[len(data) // 3: len(data) // 3 + 48], data[-80:-32]]


def test_a_deleted_person_leaves_no_picture_and_no_name_they_ever_had(tmp_path, shared_data):
    db = tmp_path / "g.db"
    alice = lfw_photos(shared_data, "Colin_Powell")
    stranger = lfw_photos(shared_data, "Tony_Blair")
    faceapp(db, "enroll", "Alice Arbour", *alice[:2])
    # a stranger: unknown events with face pictures
    faceapp(db, "identify", folder_of(tmp_path / "seen", stranger[:4]))
    clusters = [json.loads(line) for line in faceapp(db, "unknowns").stdout.splitlines()]
    biggest = max(clusters, key=lambda c: c["size"])
    with connect(db) as g:  # the events that recorded the faces of the group named below
        before_naming = [(e.id, g.event_thumbnail(e.id)) for e in g.events(unknown_only=True)
                         if e.source in biggest["sources"]]
    assert len(before_naming) == biggest["size"] >= 2 and all(t for _, t in before_naming)
    faceapp(db, "name-cluster", biggest["cluster"], "Zelda Quist")
    faceapp(db, "identify", stranger[5])  # now named: an event of hers
    faceapp(db, "identify", alice[3])  # Alice's event: Zelda is her runner-up
    faceapp(db, "people", "rename", "Zelda Quist", "Yolanda Prim")
    faceapp(db, "identify", alice[4])  # runner-up by her new name
    with connect(db) as g:
        texts = [(e.name, e.nearest, e.runner_up) for e in g.events()]
        assert any("Zelda Quist" in t for t in texts)
        assert any("Yolanda Prim" in t for t in texts)
        hers = [g.event_thumbnail(e.id) for e in g.events(person_id=g.find_person(
            "Yolanda Prim").id)]
    assert len(hers) > len(before_naming)  # the events from before naming are hers now
    secrets = [p for _, thumb in before_naming for p in pieces(thumb)]
    secrets += [p for thumb in hers if thumb for p in pieces(thumb)]
    assert all(s in raw(db) for s in secrets)

    faceapp(db, "people", "delete", "Yolanda Prim", "--yes")
    data = raw(db)
    assert b"Zelda Quist" not in data and b"Yolanda Prim" not in data
    assert not any(s in data for s in secrets)
    csv = tmp_path / "log.csv"
    faceapp(db, "events", "--csv", csv)
    assert "Zelda" not in csv.read_text() and "Yolanda" not in csv.read_text()
    with connect(db) as g:  # Alice's events are still there, without her runner-up
        assert g.events(person_id=g.find_person("Alice Arbour").id)


def test_a_retention_of_zero_keeps_no_strangers_face_picture_anywhere(tmp_path, shared_data):
    db = tmp_path / "g.db"
    known = lfw_photos(shared_data, "Colin_Powell")
    stranger = lfw_photos(shared_data, "Tony_Blair")
    faceapp(db, "enroll", "Alice Arbour", known[0])
    faceapp(db, "identify", folder_of(tmp_path / "a", stranger[:2]))
    with connect(db) as g:
        thumbs = [g.event_thumbnail(e.id) for e in g.events(unknown_only=True)]
    assert thumbs and all(thumbs)
    run = faceapp(db, "unknowns", "--retention", "0")
    assert "kept 0 day(s)" in run.stderr
    data = raw(db)
    assert not any(p in data for t in thumbs for p in pieces(t))
    # new strangers: no picture kept from the start; a known face's event keeps its own
    faceapp(db, "identify", folder_of(tmp_path / "b", stranger[2:4] + known[1:2]))
    with connect(db) as g:
        events = g.events()
        assert all(not e.has_thumbnail for e in events if e.name is None)
        assert any(e.has_thumbnail for e in events if e.name == "Alice Arbour")
        with g.reading() as db_:
            assert db_.execute("SELECT count(*) FROM unknown_faces").fetchone()[0] == 0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_outputs_never_replace_a_gallery(tmp_path, photos):
    db = tmp_path / "g.db"
    faceapp(db, "enroll", "Ada", photos / "img1.jpg")
    faceapp(db, "identify", photos / "img2.jpg")
    before = sha256(db)
    for args in (["events", "--csv", db], ["export", db],
                 ["events", "--csv", db, "--overwrite"], ["export", db, "--overwrite"]):
        run = faceapp(db, *args, check=False)
        assert run.returncode == 1 and "gallery" in run.stderr, (args, run.stderr)
        assert sha256(db) == before
    other = tmp_path / "other.db"
    faceapp(other, "enroll", "Bob", photos / "img13.jpg")
    kept = sha256(other)
    run = faceapp(db, "export", other, check=False)
    assert run.returncode == 1 and "database" in run.stderr
    assert sha256(other) == kept
    faceapp(db, "export", tmp_path / "a.zip")
    run = faceapp(db, "export", tmp_path / "a.zip", check=False)  # an earlier export
    assert run.returncode == 1 and "--overwrite" in run.stderr
    faceapp(db, "export", tmp_path / "a.zip", "--overwrite")
    faceapp(db, "events", "--csv", tmp_path / "log.csv")
    faceapp(db, "events", "--csv", tmp_path / "log.csv")  # a CSV is just replaced


def test_a_damaged_template_is_skipped_by_name_and_rebuilt(tmp_path, photos):
    db = tmp_path / "g.db"
    faceapp(db, "enroll", "Ada", photos / "img1.jpg", photos / "img2.jpg")
    faceapp(db, "enroll", "Bob", photos / "img13.jpg")
    conn = sqlite3.connect(db)  # nothing else has the file open now
    face_id, dim = conn.execute("SELECT face_id, dim FROM embeddings ORDER BY face_id "
                                "LIMIT 1").fetchone()
    conn.execute("UPDATE embeddings SET vector = ? WHERE face_id = ?",
                 [bytes([0xFF]) * (4 * dim), face_id])  # NaNs
    conn.commit()
    conn.close()
    run = faceapp(db, "identify", photos / "img4.jpg")
    assert f"face id {face_id}" in run.stderr and "reembed" in run.stderr
    assert [json.loads(line)["person"] for line in run.stdout.splitlines()] == ["Ada"]
    run = faceapp(db, "enroll", "Carol", photos / "img20.jpg")
    run = faceapp(db, "export", tmp_path / "g.zip")
    assert f"template of sample {face_id}" in run.stderr
    assert json.loads(run.stdout)["samples"] == 4
    run = faceapp(db, "reembed")
    assert json.loads(run.stdout)["embedded"] == 1
    run = faceapp(db, "identify", photos / "img4.jpg")
    assert "damaged" not in run.stderr


def test_one_model_choice_per_command_keeps_the_gallerys_model(tmp_path, shared_data, photos):
    """The model a command uses is chosen once, from the gallery it opened once, and
    returned (pack and variant), never written into args: naming a group of unknown
    faces in a gallery enrolled with another model stores that model's vectors."""
    from faceapp.cli import _model, build_parser
    from faceapp.core.gallery import FaceSample

    db = tmp_path / "g.db"
    other = "dlib-taper-104-v1"  # not the default
    faceapp(db, "--model", other, "enroll", "Ada", photos / "img1.jpg")
    stranger = lfw_photos(shared_data, "Tony_Blair")
    faceapp(db, "identify", folder_of(tmp_path / "seen", stranger[:3]))  # no --model
    clusters = [json.loads(line) for line in faceapp(db, "unknowns").stdout.splitlines()]
    faceapp(db, "name-cluster", max(clusters, key=lambda c: c["size"])["cluster"], "Tony")
    with connect(db) as g:
        assert set(g.models()) == {f"{other}:int8"}
        # a variant is kept with its pack, and args are left as the user gave them
        import numpy as np

        g.enroll("Variant", [FaceSample(np.zeros((8, 8, 3), np.uint8), np.ones((5, 2)))],
                 {f"{other}:fp32": np.ones((1, 128), np.float32)})
        g.drop_embeddings(f"{other}:int8")
        args = build_parser().parse_args(["--db", str(db), "unknowns"])
        assert _model(args, g) == (other, "fp32") and args.model is None
