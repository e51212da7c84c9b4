"""Hostile and messy input, through the public CLI as a careful tester tried it
(issue: the gallery stays right under hostile archives and messy photo folders)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

PHOTOS_A = ["img1.jpg", "img2.jpg"]  # one person of the sample set
PHOTOS_B = ["img13.jpg", "img14.jpg"]  # another


def faceapp(db, *args, check=True):
    run = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), *map(str, args)],
                         capture_output=True, text=True, timeout=600)
    if check:
        assert run.returncode == 0, run.stderr[-3000:]
    return run


def identities(run) -> list:
    return [json.loads(line)["person"] for line in run.stdout.splitlines() if line.strip()]


def test_a_crafted_export_cannot_plant_a_face_under_another_name(tmp_path, photos):
    """An archive holding A's crop (one pixel changed) with B's embedding, under A's
    name: B's photo must not be named A after the import."""
    src = tmp_path / "src.db"
    faceapp(src, "enroll", "Alice", photos / PHOTOS_A[0])
    faceapp(src, "enroll", "Bob", photos / PHOTOS_B[0])
    export = tmp_path / "honest.zip"
    faceapp(src, "export", export)
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(export) as zin:
        manifest = json.loads(zin.read("gallery.json"))
        alice = next(p["id"] for p in manifest["people"] if p["name"] == "Alice")
        face_a = next(f for f in manifest["faces"] if f["person_id"] == alice)
        face_b = next(f for f in manifest["faces"] if f["person_id"] != alice)
        entry = manifest["embeddings"][0]
        matrix = np.load(io.BytesIO(zin.read(entry["file"])))
        row_a, row_b = entry["face_ids"].index(face_a["id"]), entry["face_ids"].index(face_b["id"])
        matrix[row_a] = matrix[row_b]  # B's vector under A's crop
        crop = cv2.imdecode(np.frombuffer(zin.read(face_a["file"]), np.uint8), cv2.IMREAD_COLOR)
        crop[0, 0] ^= 1  # one pixel changed
        manifest["people"] = [p for p in manifest["people"] if p["id"] == alice]
        manifest["faces"] = [face_a]
        entry["face_ids"] = [face_a["id"]]
        buf = io.BytesIO()
        np.save(buf, matrix[row_a:row_a + 1])
        with zipfile.ZipFile(crafted, "w") as zout:
            zout.writestr("gallery.json", json.dumps(manifest))
            zout.writestr(face_a["file"], cv2.imencode(".png", crop)[1].tobytes())
            zout.writestr(entry["file"], buf.getvalue())
    dst = tmp_path / "dst.db"
    report = json.loads(faceapp(dst, "import-gallery", crafted).stdout.splitlines()[-1])
    assert report["people_added"] == 1 and report["templates_computed"] == 1
    named = identities(faceapp(dst, "identify", photos / PHOTOS_B[1], "--no-events"))
    assert "Alice" not in named, named
    # and Alice herself is still recognised from her (honest) crop
    assert "Alice" in identities(faceapp(dst, "identify", photos / PHOTOS_A[1], "--no-events"))


def test_imported_people_never_merge_silently(tmp_path, photos):
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    faceapp(src, "enroll", "Alice", photos / PHOTOS_A[0])
    faceapp(dst, "enroll", "Alice", photos / PHOTOS_B[0])  # another Alice
    export = tmp_path / "alice.zip"
    faceapp(src, "export", export)
    refused = faceapp(dst, "import-gallery", export, check=False)
    assert refused.returncode == 1
    assert "already in the gallery (Alice)" in refused.stderr and "merge" in refused.stderr
    people = lambda: {p["name"]: p["samples"] for p in map(json.loads, faceapp(dst, "people").stdout.splitlines())}  # noqa: E731
    assert people() == {"Alice": 1}
    faceapp(dst, "import-gallery", export, "--on-conflict", "skip")
    assert people() == {"Alice": 1}
    faceapp(dst, "import-gallery", export, "--on-conflict", "rename")
    assert people() == {"Alice": 1, "Alice (2)": 1}
    faceapp(dst, "import-gallery", export, "--on-conflict", "merge")
    assert people() == {"Alice": 2, "Alice (2)": 1}


def _sideways_phone_photo(source, path):
    """The photo as a phone stores a portrait: pixels turned, EXIF Orientation 6."""
    from PIL import Image

    upright = Image.open(source).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    return path


def test_sideways_phone_photos_are_read_upright(tmp_path, photos, shared_data):
    db = tmp_path / "g.db"
    phone = _sideways_phone_photo(photos / PHOTOS_A[0], tmp_path / "phone.jpg")
    faceapp(db, "enroll", "Alice", phone)
    assert "Alice" in identities(faceapp(db, "identify", photos / PHOTOS_A[1], "--no-events"))
    lfw = shared_data / "lfw" / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg"
    turned = _sideways_phone_photo(lfw, tmp_path / "lfw-sideways.jpg")
    rows = [json.loads(line) for line in faceapp(db, "detect", turned).stdout.splitlines()]
    assert rows and "box" in rows[0], rows  # a face is found


def test_a_huge_photo_gives_boxes_in_its_own_pixels(tmp_path, photos):
    """12000 x 12000 is decoded at a quarter of its size; the boxes must still be in
    the file's pixels, not at half or a quarter scale."""
    small = cv2.imread(str(photos / PHOTOS_A[0]))
    small = cv2.resize(small, (600, 600))
    huge = cv2.resize(small, (12000, 12000), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "huge.jpg"), huge, [cv2.IMWRITE_JPEG_QUALITY, 80])
    cv2.imwrite(str(tmp_path / "small.jpg"), small)
    del huge
    db = tmp_path / "g.db"
    rows = [json.loads(line) for line in
            faceapp(db, "detect", tmp_path / "small.jpg", tmp_path / "huge.jpg").stdout.splitlines()]
    box_small = np.array(next(r["box"] for r in rows if r["image"].endswith("small.jpg")))
    box_huge = np.array(next(r["box"] for r in rows if r["image"].endswith("huge.jpg")))
    np.testing.assert_allclose(box_huge / 20, box_small, rtol=0.08, atol=8)


def test_forgetting_a_person_deletes_their_traces(tmp_path, photos):
    db = tmp_path / "g.db"
    faceapp(db, "enroll", "Alice", photos / PHOTOS_A[0])
    faceapp(db, "enroll", "Bob", photos / PHOTOS_B[0])
    faceapp(db, "identify", photos / PHOTOS_A[1])  # an event with Alice's face picture
    from faceapp.core.gallery import Gallery

    with Gallery(db) as g:
        assert any(e.name == "Alice" for e in g.events())
    run = faceapp(db, "people", "delete", "Alice", "--yes")
    assert "their 1 event(s)" in run.stderr
    with Gallery(db) as g:
        assert all("Alice" not in (e.name, e.nearest, e.runner_up) for e in g.events())
        with open(db, "rb") as f:  # nor in the file's free pages (secure_delete)
            assert b"Alice" not in f.read()
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or b"Alice" not in wal.read_bytes()


def test_a_gallery_readable_by_others_becomes_owner_only(tmp_path, photos):
    import os
    import stat

    db = tmp_path / "g.db"
    faceapp(db, "enroll", "Alice", photos / PHOTOS_A[0])
    for path in tmp_path.glob("g.db*"):
        os.chmod(path, 0o644)
    faceapp(db, "people")
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.glob("g.db*")}
    assert modes and all(m == 0o600 for m in modes.values()), modes


def test_confusable_names_are_warned_about(tmp_path, photos):
    db = tmp_path / "g.db"
    faceapp(db, "enroll", "Alice", photos / PHOTOS_A[0])
    run = faceapp(db, "enroll", "\u0410lice", photos / PHOTOS_B[0])  # Cyrillic А
    assert "looks like 'Alice'" in run.stderr
    assert "looks like" not in faceapp(db, "enroll", "Alice", photos / PHOTOS_A[1]).stderr


def _export(tmp_path, photos):
    src = tmp_path / "src.db"
    faceapp(src, "enroll", "Alice", photos / PHOTOS_A[0])
    faceapp(src, "enroll", "Bob", photos / PHOTOS_B[0])
    return src


def test_archives_with_duplicate_members_or_absurd_counts_are_refused(tmp_path, photos):
    src = _export(tmp_path, photos)
    plain = tmp_path / "plain.zip"
    faceapp(src, "export", plain)
    with zipfile.ZipFile(plain) as zin:
        members = [(i, zin.read(i)) for i in zin.infolist()]
        manifest = json.loads(zin.read("gallery.json"))
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as zout:
        for info, body in members:
            zout.writestr(info.filename, body)
        face = next(n for n in (i.filename for i, _ in members) if n.startswith("faces/"))
        with pytest.warns(UserWarning, match="Duplicate name"):  # zipfile allows it
            zout.writestr(face, b"another body under the same name")
    many = tmp_path / "many.zip"
    manifest["people"] += [{"id": 10_000 + i, "name": f"p{i}", "created": manifest["created"]}
                           for i in range(20_000)]
    with zipfile.ZipFile(many, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, body in members:
            zout.writestr(info.filename, json.dumps(manifest) if info.filename == "gallery.json"
                          else body)
    dst = tmp_path / "dst.db"
    for archive, says in ((twice, "appears twice"), (many, "most without any face")):
        run = faceapp(dst, "import-gallery", archive, check=False)
        assert run.returncode == 1 and says in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
    assert faceapp(dst, "people").stdout == ""


def test_encrypted_export_damage_and_crafted_key_parameters(tmp_path, photos):
    import time as clock

    src = _export(tmp_path, photos)
    secret = tmp_path / "secret.txt"
    secret.write_text("correct horse")
    sealed = tmp_path / "sealed.faceapp"
    faceapp(src, "export", sealed, "--encrypt", "--passphrase-file", secret)
    data = sealed.read_bytes()
    dst = tmp_path / "dst.db"
    # a flipped byte in the header (the salt) is damage, not a wrong passphrase
    flipped = tmp_path / "flipped.faceapp"
    flipped.write_bytes(data[:20] + bytes([data[20] ^ 1]) + data[21:])
    run = faceapp(dst, "import-gallery", flipped, "--passphrase-file", secret, check=False)
    assert run.returncode == 1 and "damaged" in run.stderr and "wrong passphrase" not in run.stderr
    # a 200-byte file asking for the largest key parameters is refused at once
    crafted = tmp_path / "crafted.faceapp"
    crafted.write_bytes(data[:12] + bytes([1, 30, 255, 255]) + data[16:200])
    started = clock.monotonic()
    run = faceapp(dst, "import-gallery", crafted, "--passphrase-file", secret, check=False)
    assert run.returncode == 1 and "not the ones faceapp uses" in run.stderr
    assert clock.monotonic() - started < 30  # the process start; not 41 s of scrypt
    # the right passphrase on the intact file still works
    faceapp(dst, "import-gallery", sealed, "--passphrase-file", secret)


def test_a_killed_export_leaves_no_temp_files_for_ever(tmp_path, photos):
    import os

    src = _export(tmp_path, photos)
    out = tmp_path / "backup.zip"
    stale = tmp_path / ".backup.zip.abc123.tmp"  # what a SIGKILL mid-export leaves
    stale.write_bytes(b"half an export")
    old = clock_seconds = os.stat(stale).st_mtime - 7200
    os.utime(stale, (old, clock_seconds))
    recent = tmp_path / ".backup.zip.def456.tmp"  # maybe a write still running
    recent.write_bytes(b"in progress")
    faceapp(src, "export", out)
    assert not stale.exists() and recent.exists() and out.exists()


def test_a_folder_imported_twice_by_any_path_or_at_once_holds_each_photo_once(tmp_path, photos):
    import os

    root = tmp_path / "people"
    for name, files in (("Alice", PHOTOS_A), ("Bob", PHOTOS_B)):
        (root / name).mkdir(parents=True)
        for file in files:
            (root / name / file).write_bytes((photos / file).read_bytes())
    db = tmp_path / "g.db"
    faceapp(db, "import", root)
    run = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), "import", "people"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)  # relative
    assert run.returncode == 0, run.stderr
    assert "already in the gallery" in run.stderr
    samples = lambda d: {p["name"]: p["samples"] for p in map(json.loads, faceapp(d, "people").stdout.splitlines())}  # noqa: E731
    assert samples(db) == {"Alice": 2, "Bob": 2}
    # two imports of the same folder at once, into a fresh gallery
    fresh = tmp_path / "fresh.db"
    faceapp(fresh, "people")
    both = [subprocess.Popen([sys.executable, "-m", "faceapp", "--db", str(fresh), "import",
                              str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    for child in both:
        assert child.wait(timeout=600) == 0, child.stderr.read()
    assert samples(fresh) == {"Alice": 2, "Bob": 2}
    assert os.path.exists(fresh)


def test_one_bad_folder_never_stops_an_import(tmp_path, photos):
    root = tmp_path / "people"
    long_name = "N" * 220  # over the 200-character limit of a name
    for name in ("Alice", long_name):
        (root / name).mkdir(parents=True)
        (root / name / "a.jpg").write_bytes((photos / PHOTOS_A[0]).read_bytes())
    (root / "Bob").mkdir()
    (root / "Bob" / "b.jpg").write_bytes((photos / PHOTOS_B[0]).read_bytes())
    run = faceapp(tmp_path / "g.db", "import", root)
    assert json.loads(run.stdout.splitlines()[-1])["people"] == 2
    assert f"skipped {root / long_name}: not a usable name" in run.stderr


def test_identify_goes_on_while_another_program_holds_the_gallery(tmp_path, photos):
    """A write lock held far longer than the gallery's 10 s timeout: identify keeps
    naming faces, says events are waiting, and saves them once the lock is gone."""
    import sqlite3
    import threading
    import time as clock

    db = tmp_path / "g.db"
    faceapp(db, "enroll", "Alice", photos / PHOTOS_A[0])
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes((photos / PHOTOS_A[1]).read_bytes())
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another program's write lock
    release = threading.Timer(14, lambda: other.execute("COMMIT"))
    release.start()
    started = clock.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "faceapp", "--db", str(db), "identify",
                              str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    out, err = child.communicate(timeout=300)
    release.join()
    other.close()
    assert child.returncode == 0, err
    named = [json.loads(line)["person"] for line in out.splitlines()]
    assert named == ["Alice"] * 6
    assert "locked by another program: identifying goes on" in err
    from faceapp.core.gallery import Gallery

    with Gallery(db) as g:  # the waiting events were written at the end
        assert len(g.events()) == 6
    assert clock.monotonic() - started < 120


def test_a_reader_never_names_a_match_it_has_no_name_for(tmp_path, shared_data):
    """identify while an import writes: every "match" comes with its name (the index
    and the names are read from one snapshot)."""
    import os

    lfw = shared_data / "lfw" / "images"
    people = sorted(d for d in lfw.iterdir() if len(os.listdir(d)) >= 2)[:400]
    root, probes = tmp_path / "people", tmp_path / "probes"
    probes.mkdir()
    for d in people:
        files = sorted(d.iterdir())
        (root / d.name).mkdir(parents=True)
        os.symlink(files[0], root / d.name / files[0].name)
        if len(os.listdir(probes)) < 40:
            os.symlink(files[1], probes / files[1].name)
    db = tmp_path / "g.db"
    faceapp(db, "people")
    importing = subprocess.Popen([sys.executable, "-m", "faceapp", "--db", str(db), "import",
                                  str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows = []
    while importing.poll() is None:
        run = faceapp(db, "identify", probes, "--no-events")
        rows += [json.loads(line) for line in run.stdout.splitlines()]
    assert importing.returncode == 0
    rows += [json.loads(line) for line in faceapp(db, "identify", probes, "--no-events")
             .stdout.splitlines()]
    assert rows and any(r["reason"] == "match" for r in rows)
    for row in rows:
        assert (row["person"] is not None) == (row["reason"] == "match"), row


def test_another_programs_empty_sqlite_file_is_not_taken_over(tmp_path):
    import sqlite3

    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("PRAGMA application_id = 1234567")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = foreign.read_bytes()
    run = faceapp(foreign, "people", check=False)
    assert run.returncode == 1 and "another program's SQLite database" in run.stderr
    assert foreign.read_bytes() == before
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")  # a 0-byte file does become a gallery
    faceapp(empty, "people")


def test_a_read_only_gallery_in_a_read_only_folder_can_be_used(tmp_path, photos):
    """Listing, events and identify (without writing events) work on a gallery the
    user cannot write, in a folder the user cannot write (a CD, another account's)."""
    import os
    import shlex
    import shutil

    folder = tmp_path / "cd"
    folder.mkdir()
    db = folder / "g.db"
    faceapp(db, "enroll", "Alice", photos / PHOTOS_A[0])
    assert not list(folder.glob("g.db-*"))  # closed cleanly: no -wal or -shm left
    probe = tmp_path / "probe.jpg"
    shutil.copy(photos / PHOTOS_A[1], probe)
    if os.geteuid() == 0:
        # root may write any file: make the folder a read-only mount, as a CD is
        assert shutil.which("unshare"), "needs util-linux's unshare to test as root"
        mount = (f"mount --bind {folder} {folder} && "
                 f"mount -o remount,bind,ro {folder} && exec ")
    else:
        os.chmod(db, 0o400)
        os.chmod(folder, 0o500)
        mount = "exec "

    def run(*args):
        command = shlex.join([sys.executable, "-m", "faceapp", "--db", str(db), *args])
        wrap = ["unshare", "-m", "sh", "-c", mount + command] if os.geteuid() == 0 \
            else ["sh", "-c", mount + command]
        return subprocess.run(wrap, capture_output=True, text=True, timeout=300)

    try:
        listed = run("people")
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["Alice"]
        found = run("identify", str(probe))
        assert found.returncode == 0, found.stderr
        assert "read-only: identifying without saving events" in found.stderr
        assert "Alice" in [json.loads(line)["person"] for line in found.stdout.splitlines()]
        refused = run("enroll", "Bob", str(probe))
        assert refused.returncode == 1 and "read-only" in refused.stderr, refused.stderr
        assert not list(folder.glob("g.db-*"))
    finally:
        os.chmod(folder, 0o700)


@pytest.mark.parametrize("limit_mb", [900, 1100, 1400])
def test_an_image_that_exhausts_memory_is_skipped_by_name(tmp_path, photos, limit_mb):
    """With little memory left, a big (but allowed) photo fails to decode: the import
    names it and goes on with the others."""
    import resource

    root = tmp_path / "people"
    (root / "Alice").mkdir(parents=True)
    (root / "Alice" / "a.jpg").write_bytes((photos / PHOTOS_A[0]).read_bytes())
    (root / "Zed").mkdir()
    big = np.zeros((6000, 6000, 3), np.uint8)
    big[::7] = 255  # 36 megapixels, under the limit, about 100 MB decoded
    cv2.imwrite(str(root / "Zed" / "big.png"), big)
    del big

    def little_memory():  # enough for the models and a photo, not for the big one's work
        soft = limit_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (soft, soft))

    # glibc reserves address space per malloc arena, and how many arenas threads get
    # depends on how busy the machine is: two keep the limit's meaning the same
    run = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(tmp_path / "g.db"),
                          "import", str(root)], capture_output=True, text=True, timeout=300,
                         preexec_fn=little_memory, env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "cv2.error" not in run.stderr
    assert f"skipped {root / 'Zed' / 'big.png'}: " in run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["added"] == 1


# ------------------------------------------ the gallery survives every program beside it

def _cli(db, *args, timeout=120, **kwargs):
    """faceapp with bytes arguments allowed (names that are not UTF-8); a hang fails."""
    import os

    return subprocess.run([sys.executable, "-m", "faceapp", "--db", os.fspath(db),
                           *(a if isinstance(a, bytes) else os.fspath(a) for a in args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def _special_files(folder):
    """A FIFO, a link to /dev/zero and a socket, all named like photos."""
    import os
    import socket

    os.mkfifo(folder / "x.jpg")
    os.symlink("/dev/zero", folder / "z.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "s.jpg"))
    return sock


def test_fifos_and_devices_are_skipped_by_name_in_every_command(tmp_path, photos):
    """A FIFO named x.jpg hung `import` for ever; a link to /dev/zero was read until
    memory ran out. Every command that reads files names them and goes on."""
    import os

    from tests.test_imageio import run_measured

    root = tmp_path / "people"
    (root / "Alice").mkdir(parents=True)
    (root / "Alice" / "a.jpg").write_bytes((photos / PHOTOS_A[0]).read_bytes())
    sockets = [_special_files(root / "Alice")]
    os.mkfifo(root / "stray.jpg")  # beside the person folders
    db = tmp_path / "g.db"
    run, peak_mb, seconds = run_measured(
        [sys.executable, "-m", "faceapp", "--db", db, "import", root], timeout=30)
    assert run.returncode == 0, run.stderr[-2000:]
    assert seconds < 30
    assert json.loads(run.stdout.splitlines()[-1])["added"] == 1
    alice = root / "Alice"
    for line in (f"skipped {alice / 'x.jpg'}: a named pipe (FIFO)",
                 f"skipped {alice / 'z.jpg'}: a character device",
                 f"skipped {alice / 's.jpg'}: a socket",
                 f"skipped {root / 'stray.jpg'}: a named pipe (FIFO)"):
        assert line in run.stderr, run.stderr

    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "b.jpg").write_bytes((photos / PHOTOS_A[1]).read_bytes())
    sockets.append(_special_files(probes))
    try:
        run = _cli(db, "enroll", "Alice", photos / PHOTOS_A[1], probes / "x.jpg",
                   probes / "z.jpg")
        assert run.returncode == 0 and f"skipped {probes / 'x.jpg'}: a named pipe" in run.stderr
        assert f"skipped {probes / 'z.jpg'}: a character device" in run.stderr

        run = _cli(db, "detect", probes / "x.jpg", probes / "z.jpg", probes / "b.jpg")
        rows = [json.loads(line) for line in run.stdout.splitlines()]
        errors = {r["image"]: r["error"] for r in rows if "error" in r}
        assert "a named pipe" in errors[str(probes / "x.jpg")]
        assert "a character device" in errors[str(probes / "z.jpg")]
        assert any("box" in r for r in rows)  # the photo after them was read

        run = _cli(db, "identify", probes, "--no-events")  # the folder source (Live's)
        assert run.returncode == 0, run.stderr
        assert "skipped x.jpg: a named pipe" in run.stderr
        assert "skipped z.jpg: a character device" in run.stderr
        assert "skipped s.jpg: a socket" in run.stderr
        assert "Alice" in identities(run)

        os.mkfifo(tmp_path / "clip.mp4")
        for source, says in ((probes / "x.jpg", "a named pipe"),
                             (tmp_path / "clip.mp4", "a named pipe"),
                             (probes / "z.jpg", "a character device")):
            run = _cli(db, "identify", source, "--no-events", timeout=30)
            assert run.returncode == 1 and says in run.stderr, run.stderr
            assert source.name in run.stderr

        run = _cli(db, "compare", probes / "b.jpg", probes / "x.jpg", timeout=30)
        assert run.returncode == 1 and f"{probes / 'x.jpg'}: a named pipe" in run.stderr

        run = _cli(db, "scan", probes, timeout=60)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["files"] == 1
        assert "x.jpg: a named pipe" in run.stderr and "z.jpg: a character device" in run.stderr

        run = _cli(db, "import-gallery", probes / "x.jpg", timeout=30)
        assert run.returncode == 1 and "a named pipe" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
    finally:
        for sock in sockets:
            sock.close()


def test_names_that_are_not_utf8_are_imported_identified_and_scanned(tmp_path, photos):
    """b'Jos\\xe9' (Latin-1, as an old camera or a Windows share writes it) aborted
    `import` with a codec error; now it is a person 'Jos\\\\xe9', shown escaped."""
    import os
    import sqlite3

    root = os.path.join(os.fsencode(tmp_path), b"people")
    person = os.path.join(root, b"Jos\xe9")
    os.makedirs(person)
    for name, source in ((b"Jos\xe9.jpg", PHOTOS_A[0]), (b"b.jpg", PHOTOS_A[1])):
        with open(os.path.join(person, name), "wb") as f:
            f.write((photos / source).read_bytes())
    db = tmp_path / "g.db"
    run = _cli(db, "import", root)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["added"] == 2
    escaped = f"{tmp_path}/people/Jos\\xe9"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM people").fetchall() == [("Jos\\xe9",)]
        sources = {r[0] for r in conn.execute("SELECT source FROM faces")}
    assert sources == {f"{escaped}/Jos\\xe9.jpg", f"{escaped}/b.jpg"}
    again = _cli(db, "import", root)  # the escaped source is how a re-run knows it
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["added"] == 0
    assert f"skipped {escaped}/Jos\\xe9.jpg: already in the gallery" in again.stderr

    probes = os.path.join(os.fsencode(tmp_path), b"probes \xff")
    os.makedirs(probes)
    with open(os.path.join(probes, b"Jos\xe9 2.jpg"), "wb") as f:
        f.write((photos / PHOTOS_A[1]).read_bytes())
    run = _cli(db, "identify", probes)  # with events: the path is stored as text
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert rows and rows[0]["person"] == "Jos\\xe9"
    assert rows[0]["path"] == f"{tmp_path}/probes \\xff/Jos\\xe9 2.jpg"
    run = _cli(db, "detect", os.path.join(probes, b"Jos\xe9 2.jpg"))
    assert json.loads(run.stdout.splitlines()[0])["image"].endswith("/Jos\\xe9 2.jpg")
    run = _cli(db, "scan", probes)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    listed = _cli(db, "photos-of", "Jos\\xe9").stdout.splitlines()
    assert listed == [f"{tmp_path}/probes \\xff/Jos\\xe9 2.jpg"]


def test_a_file_scanned_by_a_relative_and_an_absolute_path_is_listed_once(tmp_path, photos):
    db = tmp_path / "g.db"
    assert _cli(db, "enroll", "Alice", photos / PHOTOS_A[0]).returncode == 0
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "b.jpg").write_bytes((photos / PHOTOS_A[1]).read_bytes())
    assert _cli(db, "scan", tmp_path / "archive").returncode == 0
    run = _cli(db, "scan", "archive", "--rescan", cwd=tmp_path)  # relative, scanned again
    assert run.returncode == 0 and json.loads(run.stdout)["files"] == 1, run.stderr
    assert _cli(db, "photos-of", "Alice").stdout.splitlines() == \
        [str(tmp_path / "archive" / "b.jpg")]


def test_huge_or_many_archive_crops_are_bounded_in_memory(tmp_path, photos):
    """A crafted export: one 20000 x 20000 PNG "crop" (1.2 GB decoded) is refused from
    its header, and 300 crops of 1024 x 1024 (each allowed, 900 MB together) are
    decoded a few at a time; the rest of the archive comes through."""
    from tests.test_imageio import run_measured, write_huge_png

    src = _export(tmp_path, photos)
    export = tmp_path / "honest.zip"
    faceapp(src, "export", export)
    with zipfile.ZipFile(export) as zin:
        manifest = json.loads(zin.read("gallery.json"))
        members = {i.filename: zin.read(i) for i in zin.infolist()}
    alice = next(p["id"] for p in manifest["people"] if p["name"] == "Alice")
    bob = next(p["id"] for p in manifest["people"] if p["name"] == "Bob")
    huge_face = next(f for f in manifest["faces"] if f["person_id"] == bob)
    members[huge_face["file"]] = write_huge_png(tmp_path / "huge.png", 20000).read_bytes()
    template = next(f for f in manifest["faces"] if f["person_id"] == alice)
    rng = np.random.default_rng(0)
    flat = np.full((1024, 1024, 3), 128, np.uint8)
    for n in range(300):
        flat[0, :3] = rng.integers(0, 255, 3)  # each crop distinct
        face = dict(template, id=100_000 + n, file=f"faces/big{n}.png")
        manifest["faces"].append(face)
        members[face["file"]] = cv2.imencode(".png", flat)[1].tobytes()
    members["gallery.json"] = json.dumps(manifest).encode()
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(crafted, "w") as zout:  # stored: the PNGs are compressed
        for name, body in members.items():
            zout.writestr(name, body)
    run, peak_mb, seconds = run_measured(
        [sys.executable, "-m", "faceapp", "--db", tmp_path / "dst.db", "import-gallery",
         crafted], timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["damaged"] == 1 and report["faces_added"] == 301, report
    assert (f"skipped face {huge_face['id']} ({huge_face['file']}): damaged crop: "
            "20000x20000 pixels: a face crop is at most 1024x1024") in run.stderr
    assert peak_mb < 500, peak_mb


@pytest.mark.parametrize("args, says", [
    (["ignore-cluster", "99999999999999999999"], "an id is from 1 to 9223372036854775807"),
    (["name-cluster", "0", "Alice"], "an id is from 1"),
    (["events", "--limit", "1" + "0" * 30], "--limit is from 1 to 1000000"),
    (["events", "--limit", "many"], "--limit is a whole number, not 'many'"),
    (["unknowns", "--retention", "99999999999"], "--retention is from 0 to 3650,"),
    (["identify", "x.jpg", "--max-frames", "-1"], "--max-frames is from 0"),
    (["compare", "a.jpg", "b.jpg", "--far", "nan"], "--far is a number above 0 and at most 1"),
    (["--min-face", "0", "detect", "a.jpg"], "--min-face is from 1 to 10000"),
    (["enroll", b"Jos\xe9", "a.jpg"], "'Jos\\\\xe9' is not UTF-8 text"),
])
def test_arguments_out_of_range_get_a_clear_message(tmp_path, args, says):
    run = _cli(tmp_path / "g.db", *args, timeout=60)
    assert run.returncode == 2 and says in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "Overflow" not in run.stderr


def test_threads_are_capped_at_the_machines_cores(tmp_path):
    import os

    cores = len(os.sched_getaffinity(0))
    run = _cli(tmp_path / "g.db", "--threads", "100000", "people")
    assert run.returncode == 0, run.stderr
    assert f"--threads 100000 is more than this machine's {cores} core(s): using {cores}" \
        in run.stderr
    from faceapp.cli import build_parser

    assert build_parser().parse_args(["--threads", "1", "people"]).threads == 1


def test_folders_made_for_a_new_gallery_are_owner_only_under_any_umask(tmp_path):
    import os
    import stat

    db = tmp_path / "a" / "b" / "g.db"
    run = _cli(db, "people", preexec_fn=lambda: os.umask(0))
    assert run.returncode == 0, run.stderr
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
