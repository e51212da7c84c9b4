"""Face tags from other photo programs in, and out again as standard tags: the real
exiftool writes and reads every tag here, LFW photos (copied into tmp_path) carry them,
and `faceapp import-tags` / `write-tags` run as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceapp.core.face_tags import (MAX_SIDECAR_BYTES, TagError, check_sidecar, import_tags,
                                    same_face, to_stored, to_upright)
from faceapp.core.imageio import apply_orientation, load_image

PEOPLE = ["George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld",
          "Gerhard_Schroeder"]
TAGGED = 4  # photos of each person tagged in the archive: 20 in all
STYLES = ("embedded", "photo.xmp", "photo.jpg.xmp")  # where a photo's tag is written

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE x [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF
 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""
 xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
 xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"><mwg-rs:Regions rdf:parseType="Resource">
 <mwg-rs:RegionList><rdf:Bag><rdf:li rdf:parseType="Resource"><mwg-rs:Area
 rdf:parseType="Resource"><stArea:x>0.5</stArea:x><stArea:y>0.5</stArea:y><stArea:w>0.4</stArea:w>
 <stArea:h>0.5</stArea:h><stArea:unit>normalized</stArea:unit></mwg-rs:Area>
 <mwg-rs:Name>&e;</mwg-rs:Name><mwg-rs:Type>Face</mwg-rs:Type></rdf:li></rdf:Bag>
 </mwg-rs:RegionList></mwg-rs:Regions></rdf:Description></rdf:RDF></x:xmpmeta>
"""


# -- helpers -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exiftool() -> str:
    path = shutil.which("exiftool")
    if path is None:
        pytest.fail("exiftool is not installed (Debian package libimage-exiftool-perl; "
                    ".ci/run installs it): the face tag tests cannot run")
    return path


@pytest.fixture(scope="module")
def pipeline():
    from faceapp.core.recognize import FacePipeline

    pipe = FacePipeline.create(threads=2)
    yield pipe
    pipe.detector.close()


def faceapp(db, *args, check=True, timeout=300, env=None):
    result = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db),
                             *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"faceapp {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_tags(*files: Path) -> dict[str, dict]:
    """What exiftool itself reads back: {file name: record}."""
    out = subprocess.run(["exiftool", "-j", "-struct", "-n", "-XMP-mwg-rs:RegionInfo",
                          "-XMP-MP:RegionInfoMP", *map(str, files)],
                         capture_output=True, text=True, timeout=60)
    return {Path(r["SourceFile"]).name: r for r in json.loads(out.stdout or "[]")}


def write_tag(photo: Path, tag: dict, where: str = "embedded") -> Path:
    """Tag a photo with exiftool itself: tag is {"RegionInfo": ...} or {"RegionInfoMP":
    ...}; written into the photo, or a new sidecar of either naming."""
    group = {"RegionInfo": "XMP-mwg-rs", "RegionInfoMP": "XMP-MP"}
    data = [{"SourceFile": "*", **{f"{group[k]}:{k}": v for k, v in tag.items()}}]
    spec = photo.parent / f".{photo.name}.json"
    spec.write_text(json.dumps(data))
    if where == "embedded":
        target, args = photo, ["-overwrite_original", str(photo)]
    else:
        target = photo.with_suffix(".xmp") if where == "photo.xmp" \
            else photo.with_name(photo.name + ".xmp")
        args = ["-o", str(target), str(photo)]
    subprocess.run(["exiftool", "-q", f"-json={spec}", *args], check=True, timeout=60)
    spec.unlink()
    return target


def subject(pipeline, photo: Path):
    """The detected face nearest the photo's centre (LFW centres its person): the box
    normalised (x1, y1, x2, y2) in the upright photo, and the image size."""
    image = load_image(photo)
    h, w = image.shape[:2]
    faces = pipeline.detect(image)
    assert faces, f"no face in {photo.name}"
    face = min(faces, key=lambda f: abs((f.box[0] + f.box[2]) / 2 - w / 2)
               + abs((f.box[1] + f.box[3]) / 2 - h / 2))
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return (x1 / w, y1 / h, x2 / w, y2 / h), (w, h)


def mwg(name: str, box, size, kind: str = "Face") -> dict:
    x1, y1, x2, y2 = box
    return {"RegionInfo": {
        "AppliedToDimensions": {"W": size[0], "H": size[1], "Unit": "pixel"},
        "RegionList": [{"Name": name, "Type": kind, "Area": {
            "X": (x1 + x2) / 2, "Y": (y1 + y2) / 2, "W": x2 - x1, "H": y2 - y1,
            "Unit": "normalized"}}]}}


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def name_of(folder: str) -> str:
    return folder.replace("_", " ")


def person_in(photo: Path) -> str:
    """LFW's file names hold their person's: George_W_Bush_0011.jpg."""
    return name_of(photo.stem.rsplit("_", 1)[0])


# -- the archive: 20 LFW photos tagged by exiftool, and other photos of the same people ----

@pytest.fixture(scope="module")
def archive(tmp_path_factory, shared_data, pipeline, exiftool):
    root = tmp_path_factory.mktemp("tags")
    tagged, others = root / "tagged", root / "others"
    for i, person in enumerate(PEOPLE):
        files = sorted((shared_data / "lfw" / "images" / person).glob("*.jpg"))
        folder = tagged / f"album{i % 2}" / ("2004" if i == 4 else "")  # subfolders too
        folder.mkdir(parents=True, exist_ok=True)
        for k, source in enumerate(files[:TAGGED]):
            photo = folder / source.name
            shutil.copyfile(source, photo)
            box, size = subject(pipeline, photo)
            write_tag(photo, mwg(name_of(person), box, size), STYLES[k % len(STYLES)])
        others.mkdir(exist_ok=True)
        for source in files[10:12]:  # photos of them nobody tagged
            shutil.copyfile(source, others / source.name)
    return root


@pytest.fixture(scope="module")
def imported(archive):
    """A gallery enrolled by `faceapp import-tags` from the tagged archive."""
    db = archive / "gallery.db"
    run = faceapp(db, "import-tags", archive / "tagged")
    return db, json.loads(run.stdout.strip().splitlines()[-1]), run.stderr


# -- import-tags ---------------------------------------------------------------------------

def test_import_tags_enrolls_the_tagged_people_and_identify_names_them(imported, archive):
    db, summary, stderr = imported
    # every photo's tag was found, wherever it was written (photo, photo.xmp, photo.jpg.xmp)
    assert summary["photos"] == 20 and summary["tagged_photos"] == 20
    assert summary["regions"] == 20 and summary["people"] == 5
    assert summary["added"] >= 16, stderr  # a few may fail the enrolment quality checks
    assert summary["added"] + summary["skipped"] == 20
    listed = {p["name"]: p["samples"] for p in json_lines(faceapp(db, "people").stdout)}
    assert set(listed) == {name_of(p) for p in PEOPLE}
    # a face left out says which photo and why
    for line in stderr.splitlines():
        if line.startswith("skipped "):
            assert ".jpg: the face tagged '" in line

    out = json_lines(faceapp(db, "identify", archive / "others", "--no-events").stdout)
    named = {}
    for row in out:
        if row["person"]:
            named.setdefault(person_in(Path(row["path"])), set()).add(row["person"])
    assert named == {name_of(p): {name_of(p)} for p in PEOPLE}

    again = faceapp(db, "import-tags", archive / "tagged")  # a re-run adds nothing twice
    assert json.loads(again.stdout.strip().splitlines()[-1])["added"] == 0
    assert "already in the gallery" in again.stderr


def test_a_microsoft_people_tag_is_read_and_bad_sidecars_are_skipped_by_name(
        tmp_path, shared_data, pipeline, exiftool):
    lfw = shared_data / "lfw" / "images"
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = {}
    for key, person, number in (("mp", "Ariel_Sharon", 1), ("bomb", "Ariel_Sharon", 2),
                                ("garbage", "Ariel_Sharon", 3), ("huge", "Hugo_Chavez", 1)):
        photos[key] = folder / f"{key}.jpg"
        shutil.copyfile(lfw / person / f"{person}_{number:04d}.jpg", photos[key])
    box, _size = subject(pipeline, photos["mp"])
    x1, y1, x2, y2 = box
    write_tag(photos["mp"], {"RegionInfoMP": {"Regions": [{
        "PersonDisplayName": "Ariel Sharon",
        "Rectangle": f"{x1:.6f}, {y1:.6f}, {x2 - x1:.6f}, {y2 - y1:.6f}"}]}})
    (folder / "bomb.xmp").write_bytes(BOMB)
    (folder / "garbage.jpg.xmp").write_bytes(os.urandom(3000))
    huge = folder / "huge.xmp"
    box, size = subject(pipeline, photos["huge"])
    write_tag(photos["huge"], mwg("Hugo Chavez", box, size), "photo.xmp")
    with open(huge, "ab") as f:  # still XML: only its size is wrong
        f.write(b"<!-- " + b"x" * (MAX_SIDECAR_BYTES + 1) + b" -->")
    originals = hashes(folder)

    run = faceapp(tmp_path / "g.db", "import-tags", folder, tmp_path / "missing.jpg")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["people"] == 1 and summary["added"] == 1, run.stderr
    listed = {p["name"] for p in json_lines(faceapp(tmp_path / "g.db", "people").stdout)}
    assert listed == {"Ariel Sharon"}
    lines = run.stderr.splitlines()

    def said(name: str, words: str) -> bool:
        return any(line.startswith("skipped ") and name in line and words in line
                   for line in lines)

    assert said("bomb.xmp", "entities")
    assert said("garbage.jpg.xmp", "not valid XMP")
    assert said("huge.xmp", "too large for a sidecar")
    assert said("missing.jpg", "no such file")
    assert hashes(folder) == originals  # reading changes nothing


def test_a_tag_whose_face_the_photo_search_missed_is_looked_for_in_its_box(
        tmp_path, shared_data, pipeline, exiftool):
    """--min-face 200 hides LFW's ~100-pixel faces from the search of the whole photo:
    the tagged face is found in its own box; a tag on the background is left out."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "blair.jpg"
    shutil.copyfile(shared_data / "lfw" / "images" / "Tony_Blair" / "Tony_Blair_0005.jpg",
                    photo)
    box, size = subject(pipeline, photo)
    tag = mwg("Tony Blair", box, size)
    tag["RegionInfo"]["RegionList"] += mwg("Wallpaper", (0.0, 0.0, 0.12, 0.12),
                                           size)["RegionInfo"]["RegionList"]
    write_tag(photo, tag, "photo.jpg.xmp")
    run = faceapp(tmp_path / "g.db", "--min-face", "200", "import-tags", folder)
    assert json.loads(run.stdout.strip().splitlines()[-1])["added"] == 1, run.stderr
    assert "the face tagged 'Wallpaper': no face found in the tagged area" in run.stderr


def test_a_photo_stored_sideways_has_its_regions_turned_with_it(
        tmp_path, shared_data, pipeline, exiftool):
    """MWG regions describe the image as stored; EXIF orientation 6 turns it upright."""
    import cv2

    from faceapp.core.enroll import Enroller
    from faceapp.core.gallery import Gallery

    portrait = load_image(shared_data / "lfw" / "images" / "Colin_Powell" /
                          "Colin_Powell_0003.jpg")
    # in a corner of a larger, not square picture: a turn that is missed looks elsewhere
    upright = np.full((400, 600, 3), 128, np.uint8)
    upright[:250, :250] = portrait
    photo = tmp_path / "sideways.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(np.rot90(upright, 1), cv2.COLOR_RGB2BGR))
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-Orientation#=6", str(photo)],
                   check=True, timeout=60)
    assert load_image(photo).shape == upright.shape  # faceapp turns it upright
    box, _ = subject(pipeline, photo)
    h, w = upright.shape[:2]
    write_tag(photo, mwg("Colin Powell", to_stored(box, 6), (h, w)))  # stored: h x w turned
    with Gallery(tmp_path / "g.db") as gallery:
        report = import_tags(Enroller(pipeline, gallery), [photo])
        assert report.people == {"Colin Powell": 1}, report.skipped


# -- write-tags ----------------------------------------------------------------------------

def test_write_tags_writes_sidecars_beside_hand_made_tags_and_dry_run_changes_nothing(
        imported, archive, tmp_path, pipeline):
    db = imported[0]
    folder = tmp_path / "library"
    shutil.copytree(archive / "others", folder)
    photos = sorted(folder.rglob("*.jpg"))
    # a person tagged this face by hand, under another name, with a focus point
    hand = photos[0]
    box, size = subject(pipeline, hand)
    tag = mwg("The Boss", box, size)
    tag["RegionInfo"]["RegionList"] += mwg("Focus", (0.05, 0.05, 0.15, 0.15), size,
                                           kind="Focus")["RegionInfo"]["RegionList"]
    write_tag(hand, tag, "photo.xmp")
    hand_made = read_tags(hand.with_suffix(".xmp"))[hand.with_suffix(".xmp").name]
    before = hashes(folder)

    dry = faceapp(db, "write-tags", "--dry-run", folder)
    assert hashes(folder) == before  # not a byte changed, no file made
    planned = {Path(c["photo"]).name: c for c in json_lines(dry.stdout)}
    assert set(planned) == {p.name for p in photos[1:]}, dry.stderr
    assert not any(c["written"] for c in planned.values())

    run = faceapp(db, "write-tags", folder)
    written = {Path(c["photo"]).name: c for c in json_lines(run.stdout)}
    assert set(written) == set(planned) and all(c["written"] for c in written.values())
    after = hashes(folder)
    assert {k: v for k, v in after.items() if k.endswith(".jpg")} == \
        {k: v for k, v in before.items() if k.endswith(".jpg")}  # photos untouched
    for photo in photos[1:]:
        sidecar = photo.with_suffix(".xmp")
        info = read_tags(sidecar)[sidecar.name]["RegionInfo"]
        (region,) = info["RegionList"]
        assert region["Name"] == person_in(photo) and region["Type"] == "Face"
        assert region["Area"]["Unit"] == "normalized"
        (x1, y1, x2, y2), size = subject(pipeline, photo)
        assert abs(region["Area"]["X"] - (x1 + x2) / 2) < 0.02
        assert abs(region["Area"]["Y"] - (y1 + y2) / 2) < 0.02
        assert info["AppliedToDimensions"] == {"W": size[0], "H": size[1], "Unit": "pixel"}
    # the hand-made tags are there as they were, and nothing was added beside them
    assert read_tags(hand.with_suffix(".xmp"))[hand.with_suffix(".xmp").name] == hand_made

    again = faceapp(db, "write-tags", folder)  # nothing twice
    assert json_lines(again.stdout) == []
    assert hashes(folder) == after


def test_write_tags_darktable_sidecars_and_into_the_photo(imported, archive, tmp_path):
    db = imported[0]
    person = PEOPLE[1]
    first, second = sorted((archive / "others").glob(f"{person}_*.jpg"))
    a, b = tmp_path / first.name, tmp_path / second.name
    shutil.copyfile(first, a)
    shutil.copyfile(second, b)

    faceapp(db, "write-tags", "--sidecar", "photo.jpg.xmp", a)
    darktable = a.with_name(a.name + ".xmp")
    assert not a.with_suffix(".xmp").exists()
    names = [r["Name"] for r in read_tags(darktable)[darktable.name]["RegionInfo"]["RegionList"]]
    assert names == [name_of(person)]

    faceapp(db, "write-tags", "--in-file", b)
    assert not b.with_suffix(".xmp").exists() and not b.with_name(b.name + ".xmp").exists()
    names = [r["Name"] for r in read_tags(b)[b.name]["RegionInfo"]["RegionList"]]
    assert names == [name_of(person)]
    assert load_image(b).shape == load_image(second).shape  # still the photo it was


def test_write_tags_leaves_a_damaged_sidecar_alone_and_says_so(imported, archive, tmp_path):
    db = imported[0]
    first, second = sorted((archive / "others").glob(f"{PEOPLE[2]}_*.jpg"))
    a, b = tmp_path / first.name, tmp_path / second.name
    shutil.copyfile(first, a)
    shutil.copyfile(second, b)
    damaged = a.with_suffix(".xmp")
    damaged.write_bytes(b"<x:xmpmeta>half a sidecar")  # the one write-tags would merge into
    bomb = b.with_name(b.name + ".xmp")
    bomb.write_bytes(BOMB)  # darktable's, not the one written: said, and b is still tagged
    run = faceapp(db, "write-tags", tmp_path)
    assert [Path(c["photo"]).name for c in json_lines(run.stdout)] == [b.name]
    assert f"skipped {a}: its sidecar {damaged.name} is left as it is: not valid XMP" \
        in run.stderr
    assert f"skipped {bomb}: refused: the XML declares entities" in run.stderr
    assert damaged.read_bytes() == b"<x:xmpmeta>half a sidecar" and bomb.read_bytes() == BOMB
    names = [r["Name"] for r in read_tags(b.with_suffix(".xmp"))[b.with_suffix(".xmp").name]
             ["RegionInfo"]["RegionList"]]
    assert names == [name_of(PEOPLE[2])]


# -- parts ---------------------------------------------------------------------------------

def test_a_new_sidecar_keeps_the_photos_own_tags_and_any_name_is_written_whole(
        tmp_path, shared_data, exiftool):
    from faceapp.core.face_tags import ExifTool, TagChange, TagWrite

    photo = tmp_path / "p.jpg"
    shutil.copyfile(shared_data / "lfw" / "images" / "Hugo_Chavez" / "Hugo_Chavez_0001.jpg",
                    photo)
    write_tag(photo, mwg("Embedded, by hand", (0.3, 0.3, 0.7, 0.7), (250, 250)))
    before = photo.read_bytes()
    name = "O'Brien, {Jr.} [x] | a=b"
    region = {"name": name, "x": 0.25, "y": 0.5, "w": 0.1, "h": 0.2}
    sidecar = tmp_path / "p.xmp"
    job = TagWrite(photo, sidecar, True, [region], None,
                           TagChange(str(photo), str(sidecar), True, [region], []))
    assert ExifTool().write([job]) == {}
    regions = read_tags(sidecar)["p.xmp"]["RegionInfo"]["RegionList"]
    assert [r["Name"] for r in regions] == ["Embedded, by hand", name]
    assert regions[1]["Area"] == {"X": 0.25, "Y": 0.5, "W": 0.1, "H": 0.2, "Unit": "normalized"}
    assert photo.read_bytes() == before
    # a sidecar that cannot be made is said, and no bare one appears in its place
    gone = tmp_path / "gone.jpg"
    job = TagWrite(gone, tmp_path / "gone.xmp", True, [region], None, job.change)
    assert tmp_path / "gone.xmp" in ExifTool().write([job])
    assert not (tmp_path / "gone.xmp").exists()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_turn_as_the_pixels_do(orientation):
    """A box marked in the stored pixels lands where imageio's turn puts those pixels."""
    stored = np.zeros((60, 100), np.uint8)
    stored[10:25, 20:50] = 1  # rows 10-24, columns 20-49
    turned = apply_orientation(stored, orientation)
    rows, cols = np.nonzero(turned)
    h, w = turned.shape
    expected = (cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h)
    box = (20 / 100, 10 / 60, 50 / 100, 25 / 60)
    assert np.allclose(to_upright(box, orientation), expected)
    assert np.allclose(to_stored(to_upright(box, orientation), orientation), box)


def test_a_tag_matches_the_face_it_marks_not_its_neighbour():
    face = (0.40, 0.30, 0.60, 0.55)
    assert same_face((0.38, 0.28, 0.62, 0.57), face)  # a slightly larger box
    assert same_face((0.35, 0.20, 0.65, 0.70), face)  # the whole head (digiKam)
    assert not same_face((0.65, 0.30, 0.85, 0.55), face)  # the person beside


def test_sidecars_are_checked_before_anyone_reads_them(tmp_path):
    good = tmp_path / "good.xmp"
    good.write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    assert check_sidecar(good) is None
    bomb = tmp_path / "bomb.xmp"
    bomb.write_bytes(BOMB)
    assert "entities" in check_sidecar(bomb)
    external = tmp_path / "external.xmp"
    external.write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    assert "entities or external references" in check_sidecar(external)
    garbage = tmp_path / "garbage.xmp"
    garbage.write_bytes(b"\x00\xffnot xml at all")
    assert "not valid XMP" in check_sidecar(garbage)
    (tmp_path / "empty.xmp").write_bytes(b"")
    assert "empty" in check_sidecar(tmp_path / "empty.xmp")
    huge = tmp_path / "huge.xmp"
    huge.write_bytes(b"<x>" + b" " * MAX_SIDECAR_BYTES + b"</x>")
    assert "too large" in check_sidecar(huge)
    fifo = tmp_path / "fifo.xmp"
    os.mkfifo(fifo)
    assert "left unread" in check_sidecar(fifo)  # never opened: it would block


def test_without_exiftool_the_commands_say_so(tmp_path, monkeypatch):
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH with no exiftool on it
    for command in ("import-tags", "write-tags"):
        run = faceapp(tmp_path / "g.db", command, tmp_path, check=False, env=env)
        assert run.returncode == 1
        assert "exiftool is not installed" in run.stderr and "Traceback" not in run.stderr
    from faceapp.core.face_tags import ExifTool

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TagError, match="libimage-exiftool-perl"):
        ExifTool()


# -- the app -------------------------------------------------------------------------------

def test_the_enroll_page_reads_tagged_photos_in_the_background(
        qtbot, tmp_path, shared_data, pipeline, exiftool):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import QSettings

    from faceapp.ui.jobs import Job
    from faceapp.ui.main_window import MainWindow
    from faceapp.ui.settings import AppSettings

    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(tmp_path / "qsettings"))  # not the user's
    folder = tmp_path / "digikam"
    folder.mkdir()
    for number in (1, 2):
        photo = folder / f"Jean_Chretien_{number:04d}.jpg"
        shutil.copyfile(shared_data / "lfw" / "images" / "Jean_Chretien" / photo.name, photo)
        box, size = subject(pipeline, photo)
        write_tag(photo, mwg("Jean Chrétien", box, size), "photo.xmp")
    (folder / "Jean_Chretien_0002.jpg.xmp").write_bytes(BOMB)  # beside a good one

    settings = AppSettings(tmp_path / "settings.ini")
    settings.gallery_path = tmp_path / "gallery.db"
    window = MainWindow(settings, pipeline=pipeline)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.state.is_ready, timeout=20_000)
    page = window.enroll
    assert page.tags_button.text() == "Photos already tagged in another program…"
    assert page.tags_button.isEnabled()

    page.import_tagged(str(folder))
    assert page.importing and not page.tags_button.isEnabled()  # a job, not the GUI thread
    qtbot.waitUntil(lambda: not page.importing and not Job.running(), timeout=60_000)
    report = page.last_report
    assert report.people == {"Jean Chrétien": 2}, report.skipped
    assert "2 of 2 photo(s) have named face tags" in page.summary.text()
    rows = [(page.skipped.topLevelItem(i).text(0), page.skipped.topLevelItem(i).child(j).text(0),
             page.skipped.topLevelItem(i).child(j).text(1))
            for i in range(page.skipped.topLevelItemCount())
            for j in range(page.skipped.topLevelItem(i).childCount())]
    assert ("Files left out", "Jean_Chretien_0002.jpg.xmp") in [r[:2] for r in rows]
    assert any("entities" in r[2] for r in rows)
