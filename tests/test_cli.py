"""The command line, run as a user would: separate processes on a real gallery file."""

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from faceapp.core.gallery import Gallery

from .test_recognition import letterbox

PEOPLE = {"Alice": ["img1.jpg", "img2.jpg"], "Bob": ["img13.jpg"]}


def faceapp(db, *args, check=True, timeout=300, **kwargs):
    result = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"faceapp {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def enrolled_db(tmp_path_factory, photos):
    db = tmp_path_factory.mktemp("cli") / "gallery.db"
    for name, files in PEOPLE.items():
        faceapp(db, "enroll", name, *(photos / f for f in files))
    return db


def test_enroll_people_and_list(enrolled_db):
    people = {p["name"]: p["samples"] for p in json_lines(faceapp(enrolled_db, "people").stdout)}
    assert people == {"Alice": 2, "Bob": 1}
    assert stat.S_IMODE(os.stat(enrolled_db).st_mode) == 0o600


def test_identify_a_folder_writes_json_lines_and_events(enrolled_db, photos, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("img4.jpg", "img14.jpg", "img20.jpg"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    # a folder's photos are stills without asking: no track ids carried between photos
    out = json_lines(faceapp(enrolled_db, "identify", folder).stdout)
    assert {r["track"] for r in out} == {-1}
    by_file = {}
    for row in out:
        by_file.setdefault(os.path.basename(row["path"]), []).append(row)
    assert set(by_file) == {"img4.jpg", "img14.jpg", "img20.jpg"}
    assert "Alice" in [r["person"] for r in by_file["img4.jpg"]]
    assert "Bob" in [r["person"] for r in by_file["img14.jpg"]]
    assert all(r["person"] is None for r in by_file["img20.jpg"])

    csv_path = tmp_path / "events.csv"
    faceapp(enrolled_db, "events", "--csv", csv_path)
    text = csv_path.read_text()
    assert "Alice" in text and "Bob" in text and "unknown" in text.lower()
    # each event names its photo and where the face was, and why it got its answer
    with Gallery(enrolled_db) as g:
        logged = [e for e in g.events() if os.path.basename(e.source) in by_file]
    assert {os.path.basename(e.source) for e in logged} == set(by_file)
    assert all(e.box is not None and e.reason for e in logged)
    alice = next(e for e in logged if e.name == "Alice")
    assert alice.source == str(folder / "img4.jpg") and alice.reason == "match"
    assert alice.nearest == "Alice" and alice.runner_up == "Bob"


def test_identify_a_video(enrolled_db, photos, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    frame = letterbox(cv2.imread(str(photos / "img5.jpg")))
    for _ in range(8):
        writer.write(frame)
    writer.release()
    before = {e.id for e in Gallery(enrolled_db).events()}
    rows = json_lines(faceapp(enrolled_db, "identify", video).stdout)
    assert len(rows) == 8 and {r["track"] for r in rows} == {1}
    assert {r["person"] for r in rows} == {"Alice"}
    with Gallery(enrolled_db) as g:
        new = [e for e in g.events() if e.id not in before]
    # video events say the frame's number and media time
    assert len(new) == 1 and new[0].source.startswith(f"{video} #0 00:00:00.")


def test_rename_merge_delete(tmp_path, photos):
    db = tmp_path / "g.db"
    faceapp(db, "enroll", "A", photos / "img1.jpg")
    faceapp(db, "enroll", "A2", photos / "img2.jpg")
    faceapp(db, "people", "rename", "A", "Alice")
    faceapp(db, "people", "merge", "Alice", "A2")
    assert json_lines(faceapp(db, "people").stdout) == [
        {"id": 1, "name": "Alice", "samples": 2}]
    refused = faceapp(db, "people", "delete", "Alice", check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    faceapp(db, "people", "delete", "Alice", "--yes")
    assert faceapp(db, "people").stdout.strip() == ""
    missing = faceapp(db, "people", "rename", "Nobody", "X", check=False)
    assert missing.returncode == 1 and "Nobody" in missing.stderr


def test_export_and_import_encrypted(enrolled_db, tmp_path):
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse battery staple\n")
    archive = tmp_path / "backup.faces"
    faceapp(enrolled_db, "export", archive, "--passphrase-file", secret)
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    assert b"Alice" not in archive.read_bytes()
    fresh = tmp_path / "fresh.db"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope")
    failed = faceapp(fresh, "import-gallery", archive, "--passphrase-file", wrong, check=False)
    assert failed.returncode == 1 and "passphrase" in failed.stderr.lower()
    faceapp(fresh, "import-gallery", archive, "--passphrase-file", secret)
    people = {p["name"]: p["samples"] for p in json_lines(faceapp(fresh, "people").stdout)}
    assert people == {"Alice": 2, "Bob": 1}


def test_corrupt_database_is_refused_and_kept(tmp_path, photos):
    db = tmp_path / "broken.db"
    junk = os.urandom(8192)
    db.write_bytes(junk)
    result = faceapp(db, "enroll", "X", photos / "img1.jpg", check=False)
    assert result.returncode == 1 and "faceapp:" in result.stderr
    assert db.read_bytes() == junk


def test_compare(photos, tmp_path):
    same = json.loads(faceapp(tmp_path / "unused.db", "compare", photos / "img1.jpg",
                              photos / "img2.jpg").stdout)
    other = json.loads(faceapp(tmp_path / "unused.db", "compare", photos / "img1.jpg",
                               photos / "img20.jpg").stdout)
    assert same["same_person"] and not other["same_person"]
    assert same["similarity"] > other["similarity"]


@pytest.mark.slow
def test_sigkill_during_folder_import_leaves_whole_people(tmp_path, shared_data):
    """Kill the import mid-way: each person is in the gallery with all their
    usable photos, or not at all, and the gallery opens and takes more work."""
    root = tmp_path / "people"
    lfw = shared_data / "lfw" / "images"
    folders = sorted(d for d in lfw.iterdir() if len(list(d.iterdir())) >= 3)[:60]
    for folder in folders:
        (root / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[:3]:
            (root / folder.name / photo.name).write_bytes(photo.read_bytes())
    db = tmp_path / "g.db"
    process = subprocess.Popen([sys.executable, "-m", "faceapp", "--db", str(db), "import",
                                str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                    if con.execute("select count(*) from people").fetchone()[0] >= 5:
                        break
            except sqlite3.Error:
                pass
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Gallery(db) as gallery:
        people = gallery.people()
        assert 5 <= len(people) < len(folders)
        model_ids = list(gallery.models())
        assert len(model_ids) == 1
        for person in people:
            assert 1 <= person.face_count <= 3
            face_ids = {f.id for f in gallery.faces(person.id)}
            assert len(face_ids) == person.face_count
        ids, _, matrix = gallery.embeddings(model_ids[0])
        assert len(ids) == sum(p.face_count for p in people)
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-4)
    # the import can simply be run again and completes the rest
    faceapp(db, "import", root)
    reference = tmp_path / "reference.db"
    faceapp(reference, "import", root)
    with Gallery(db) as gallery, Gallery(reference) as uninterrupted:
        after = {p.name: p.face_count for p in gallery.people()}
        assert after == {p.name: p.face_count for p in uninterrupted.people()}
        assert len(after) >= 0.9 * len(folders)


def test_detect_reports_bad_files_and_goes_on(tmp_path, photos):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    grey = tmp_path / "grey16.png"
    image = cv2.imread(str(photos / "img1.jpg"), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257
    cv2.imwrite(str(grey), image)
    huge = tmp_path / "huge.jpg"
    canvas = np.full((12000, 12000, 3), 120, np.uint8)
    face = cv2.imread(str(photos / "img5.jpg"))
    canvas[4000:4000 + face.shape[0], 4000:4000 + face.shape[1]] = cv2.resize(
        face, None, fx=1, fy=1)
    cv2.imwrite(str(huge), canvas)
    result = faceapp(tmp_path / "g.db", "detect", empty, text, grey, huge, check=False)
    rows = json_lines(result.stdout)
    assert result.returncode == 1  # some inputs were bad
    assert "empty" in rows[0]["error"] and "not a readable image" in rows[1]["error"]
    assert rows[2]["image"] == str(grey) and rows[2]["score"] > 0.9
    assert rows[3]["image"] == str(huge) and rows[3]["score"] > 0.9


def test_global_options_also_after_the_command(tmp_path, photos):
    db = tmp_path / "after.db"
    run = subprocess.run([sys.executable, "-m", "faceapp", "enroll", "Ada",
                          str(photos / "img1.jpg"), "--db", str(db), "--threshold", "strict"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    with Gallery(db) as g:
        assert [p.name for p in g.people()] == ["Ada"]


def test_identify_into_a_closed_pipe_ends_quietly(enrolled_db, photos, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes((photos / "couple.jpg").read_bytes())
    child = subprocess.Popen([sys.executable, "-m", "faceapp", "--db", str(enrolled_db),
                              "identify", str(folder), "--no-events"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.readline()  # `| head -1`: read one line, then go away
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=300) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_encrypted_export_without_a_terminal_asks_for_a_passphrase_file(enrolled_db, tmp_path):
    run = faceapp(enrolled_db, "export", tmp_path / "b.faces", "--encrypt", check=False,
                  stdin=subprocess.DEVNULL)
    assert run.returncode == 1
    assert "--passphrase-file" in run.stderr and "Warning" not in run.stderr
    assert not (tmp_path / "b.faces").exists()


def test_a_gallery_enrolled_with_another_model_is_identified_with_it(tmp_path, photos):
    """Enrolled with --model (the fast student), identified without: the gallery's own
    model, not a refusal for want of the default's templates."""
    db = tmp_path / "fast.db"
    faceapp(db, "enroll", "Alice", photos / "img1.jpg", photos / "img2.jpg",
            "--model", "dlib-taper-150-v1")
    faceapp(db, "enroll", "Bob", photos / "img13.jpg", "--model", "dlib-taper-150-v1")
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("img4.jpg", "img14.jpg", "img20.jpg"):
        (folder / name).write_bytes((photos / name).read_bytes())
    rows = json_lines(faceapp(db, "identify", folder).stdout)
    named = {os.path.basename(row["path"]): row["person"] for row in rows}
    assert named == {"img4.jpg": "Alice", "img14.jpg": "Bob", "img20.jpg": None}
    with Gallery(db) as g:
        assert set(g.models()) == {"dlib-taper-150-v1:int8"}


def test_identify_with_a_model_the_gallery_has_no_templates_for(enrolled_db, photos):
    run = faceapp(enrolled_db, "identify", photos / "img4.jpg", "--model",
                  "mobilefacenet-64-v1", check=False)
    assert run.returncode == 1
    assert "reembed --model mobilefacenet-64-v1" in run.stderr


def test_merging_an_archive_warns_when_the_photos_are_someone_else(tmp_path, photos):
    """import-gallery --on-conflict merge says what enroll says: photos merged under
    a name that do not look like the person of that name already enrolled."""
    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs.db"
    faceapp(ours, "enroll", "Ada", photos / "img1.jpg", photos / "img2.jpg")
    faceapp(ours, "enroll", "Bob", photos / "img13.jpg")
    faceapp(theirs, "enroll", "Ada", photos / "img14.jpg")  # Bob's face, named Ada
    faceapp(theirs, "enroll", "Bob", photos / "img15.jpg")  # Bob again
    faceapp(theirs, "export", tmp_path / "theirs.zip")
    run = faceapp(ours, "import-gallery", tmp_path / "theirs.zip", "--on-conflict", "merge")
    assert "the photos merged into Ada do not look like the Ada already enrolled" in run.stderr
    assert "merged into Bob" not in run.stderr
