"""Unknown faces: kept, grouped, named in one step, found again in a photo archive,
and forgotten when their time is up. Real LFW photos through the real CLI and gallery
file (LFW: research data, read in place from ../shared/data)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from faceapp.core.clustering import FaceClusters, pairwise_scores
from faceapp.core.gallery import connect, purge_expired, retention_days, utc_now
from faceapp.core.unknowns import UnknownFace, UnknownFaces
from .helpers.cli import faceapp, json_lines

ENROLLED = ["Al_Gore", "Ali_Naimi"]
UNKNOWN = ["Bill_Frist", "Bob_Hope", "Ann_Veneman", "Catherine_Zeta-Jones"]


def person_of(path: str) -> str:
    return Path(path).stem.rsplit("_", 1)[0]


def link(files, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for file in files:
        os.symlink(file, folder / file.name)
        out.append(folder / file.name)
    return out


@pytest.fixture(scope="module")
def lfw(shared_data) -> Path:
    return shared_data / "lfw" / "images"


def photos_of_person(lfw: Path, name: str) -> list[Path]:
    return sorted((lfw / name).iterdir())


# ------------------------------------------------------------------ the rule itself

def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_average_linkage_joins_on_the_mean_and_merges_bridged_groups():
    a, b = np.eye(4)[0], np.eye(4)[1]
    near_a = _unit(a + 0.2 * np.eye(4)[2])  # cos to a: 0.98
    clusters = FaceClusters(4, threshold=0.9)
    first = clusters.add([a, near_a, b])
    assert first.assigned[0] == first.assigned[1] != first.assigned[2]
    # a face halfway (cos 0.7 to a and b) joins neither
    half = clusters.add([_unit(a + b)])
    assert half.assigned[0] not in (first.assigned[0], first.assigned[2])
    assert len(clusters) == 3
    # mean cosine, not the best member: 0.95 to one member and 0.75 to the other
    # averages 0.85, below the threshold, so the face starts its own cluster
    pair = FaceClusters(3, threshold=0.89)
    a3, m3 = np.array([1.0, 0, 0]), np.array([0.9, np.sqrt(1 - 0.81), 0])
    assert len(set(pair.add([a3, m3]).assigned.values())) == 1
    probe = _unit([0.95, -0.241, 0.199])
    assert float(probe @ a3) > 0.94 and float(probe @ m3) < 0.76
    assert pair.add([probe]).created and len(pair) == 2
    # two groups of one person seen apart merge once a face makes their average close
    c = FaceClusters(3, threshold=0.9)
    x = _unit([1, 0.3, 0])
    y = _unit([1, -0.3, 0])  # cos(x, y) = 0.83: two clusters
    step = c.add([x, y])
    assert step.assigned[0] != step.assigned[1]
    c.threshold = 0.8  # the same groups under a looser rule: the next face bridges them
    bridge = c.add([_unit([1, 0, 0])])
    assert bridge.merged and len(c) == 1


def test_cluster_scores_are_pairwise_and_bcubed():
    truth = ["a", "a", "a", "b", "b"]
    predicted = [1, 1, 2, 2, 2]  # one of a's faces lands with b's
    s = pairwise_scores(truth, predicted)
    assert s["pairwise_precision"] == pytest.approx(2 / 4)  # (a,a) and (b,b) of 4 pairs
    assert s["pairwise_recall"] == pytest.approx(2 / 4)  # of a's 3 and b's 1 true pairs
    assert s["bcubed_precision"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3) / 5)


def test_ten_thousand_faces_group_in_seconds_and_a_hundred_more_in_less():
    """Speed is measured by bench/bench_unknowns.py; this checks the incremental
    path gives what one pass over everything gives on well-separated people."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, 300, 3000)
    faces = centres[labels] + rng.normal(scale=0.02, size=(3000, 128))
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    once = FaceClusters(128, 0.9).add(faces)
    stepwise = FaceClusters(128, 0.9)
    assigned = {}
    for start in range(0, 3000, 100):
        change = stepwise.add(faces[start:start + 100], range(start, start + 100))
        assigned.update(change.assigned)
        for absorbed, into in change.merged:  # earlier faces follow their cluster
            assigned = {k: (into if v == absorbed else v) for k, v in assigned.items()}
    for grouping in (once.assigned, assigned):
        s = pairwise_scores(labels, [grouping[i] for i in range(3000)])
        assert s["pairwise_precision"] == 1.0 and s["pairwise_recall"] == 1.0


# ---------------------------------------------------------- through the command line

@pytest.fixture(scope="module")
def seen(tmp_path_factory, lfw):
    """Two people enrolled; four others' photos identified: their faces are kept."""
    root = tmp_path_factory.mktemp("unknowns")
    db = root / "gallery.db"
    for name in ENROLLED:
        link(photos_of_person(lfw, name)[:3], root / "enroll" / name)
    faceapp(db, "import", root / "enroll")
    seen_files, later = [], {}
    for name in UNKNOWN:
        files = photos_of_person(lfw, name)
        seen_files += files[:5]
        later[name] = link(files[-2:], root / "later" / name)
    link(seen_files, root / "seen")
    faceapp(db, "identify", root / "seen")
    return db, root, later


def test_unknown_faces_are_grouped_one_person_per_cluster(seen):
    db, _root, _later = seen
    clusters = json_lines(faceapp(db, "unknowns").stdout)
    assert clusters and {"cluster", "size", "paths"} <= set(clusters[0])
    assert [c["size"] for c in clusters] == sorted((c["size"] for c in clusters), reverse=True)
    for cluster in clusters:
        # a photo may hold a second, smaller face of someone else: the big clusters
        # are the subjects' and each holds one person only
        if cluster["size"] >= 3:
            assert len({person_of(p) for p in cluster["paths"]}) == 1, cluster["paths"]
    biggest = {}
    for cluster in clusters:
        for path in cluster["paths"]:
            name = person_of(path)
            biggest[name] = max(biggest.get(name, 0), cluster["size"])
    # most of each person's five photos end up together
    assert all(biggest.get(n, 0) >= 3 for n in UNKNOWN), biggest
    assert not any(person_of(p) in ENROLLED for c in clusters for p in c["paths"]
                   if c["size"] >= 3)


def test_naming_a_cluster_enrolls_it_and_their_other_photos_get_the_name(seen):
    db, root, later = seen
    clusters = json_lines(faceapp(db, "unknowns").stdout)
    target = next(c for c in clusters if person_of(c["paths"][0]) == "Bob_Hope"
                  and c["size"] >= 3)
    named = json.loads(faceapp(db, "name-cluster", target["cluster"], "Bob Hope").stdout)
    assert named["person"] == "Bob Hope" and named["added"] >= 2
    people = {p["name"]: p["samples"] for p in json_lines(faceapp(db, "people").stdout)}
    assert people["Bob Hope"] == named["added"]
    rows = json_lines(faceapp(db, "identify", root / "later" / "Bob_Hope", "--no-events").stdout)
    subjects = [r for r in rows if r["box"][2] - r["box"][0] > 60]
    assert subjects and all(r["person"] == "Bob Hope" for r in subjects), rows
    # the named cluster is gone from the unknowns, the others are still there
    left = json_lines(faceapp(db, "unknowns").stdout)
    assert target["cluster"] not in {c["cluster"] for c in left}
    assert any(person_of(c["paths"][0]) == "Ann_Veneman" for c in left)


def test_an_ignored_cluster_is_not_listed_and_keeps_its_look_alikes(seen, tmp_path):
    db, root, later = seen
    clusters = json_lines(faceapp(db, "unknowns").stdout)
    target = next(c for c in clusters if person_of(c["paths"][0]) == "Ann_Veneman")
    faceapp(db, "ignore-cluster", target["cluster"])
    listed = {c["cluster"] for c in json_lines(faceapp(db, "unknowns").stdout)}
    assert target["cluster"] not in listed
    # more photos of her: they join the ignored cluster instead of a new listed one
    faceapp(db, "identify", root / "later" / "Ann_Veneman")
    after = json_lines(faceapp(db, "unknowns").stdout)
    assert not any(person_of(p) == "Ann_Veneman" for c in after for p in c["paths"]
                   if c["size"] >= 2)
    everything = {c["cluster"]: c for c in json_lines(faceapp(db, "unknowns", "--all").stdout)}
    assert everything[target["cluster"]]["ignored"]
    assert everything[target["cluster"]]["size"] > target["size"]


def test_scan_remembers_the_files_each_person_is_in(tmp_path, lfw):
    db = tmp_path / "gallery.db"
    gore = photos_of_person(lfw, "Al_Gore")
    link(gore[:3], tmp_path / "enroll" / "Al_Gore")
    faceapp(db, "import", tmp_path / "enroll")
    archive = tmp_path / "archive"
    gore_files = link(gore[3:6], archive / "2019")
    frist_files = link(photos_of_person(lfw, "Bill_Frist")[:4], archive / "2020" / "trip")
    (archive / "notes.txt").write_text("not a photo")
    (archive / "2020" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    report = json.loads(faceapp(db, "scan", archive).stdout)
    assert report["files"] == 7 and report["known"] >= 3 and report["unknown"] >= 4
    assert report["skipped"] >= 2  # the text file and the broken photo, each named
    found = faceapp(db, "photos-of", "Al Gore").stdout.split()
    assert set(found) == {str(p) for p in gore_files}
    # a second scan decodes nothing it has seen
    again = json.loads(faceapp(db, "scan", archive).stdout)
    assert again["files"] == 0 and again["unchanged"] == 7
    # naming the cluster of the unknown man turns his sightings into his
    clusters = json_lines(faceapp(db, "unknowns").stdout)
    frist = max((c for c in clusters if person_of(c["paths"][0]) == "Bill_Frist"),
                key=lambda c: c["size"])
    faceapp(db, "name-cluster", frist["cluster"], "Bill Frist")
    listed = set(faceapp(db, "photos-of", "Bill Frist").stdout.split())
    assert listed == set(frist["paths"]) and listed <= {str(p) for p in frist_files}
    # deleting a person deletes where they were seen
    def sightings_of_people_in_trip():
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM sightings WHERE person_id IS NOT NULL "
                                "AND path LIKE ?", ["%trip%"]).fetchone()[0]

    assert sightings_of_people_in_trip() == len(listed)
    faceapp(db, "people", "delete", "Bill Frist", "--yes")
    assert sightings_of_people_in_trip() == 0


# ------------------------------------------------------------------- the store

def _face(rng, vector, seen=None, path=None) -> UnknownFace:
    crop = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # a unique canvas
    return UnknownFace(crop=crop, landmarks=np.full((5, 2), 128.0), vector=vector,
                       quality=0.9, enrollable=True, source="camera 1", path=path,
                       seen=seen)


def test_split_and_remove_change_only_what_was_asked(new_location):
    rng = np.random.default_rng(3)
    person = _unit(rng.normal(size=128))
    faces = [_face(rng, _unit(person + 0.02 * rng.normal(size=128))) for _ in range(6)]
    with connect(new_location()) as g:  # a file, and a gallery server
        store = UnknownFaces(g, "m:int8", 128, 0.9)
        kept = store.add(faces)
        assert len({c for _f, c in kept}) == 1
        cluster = kept[0][1]
        moved = [kept[0][0], kept[1][0]]
        new = store.split(moved)
        assert {f.id for f in store.faces(new)} == set(moved)
        assert store.cluster(cluster).size == 4
        # another program's view agrees (it reloads from the file)
        other = UnknownFaces(g, "m:int8", 128, 0.9)
        other.refresh()
        assert sorted(other.clusters.size(c) for c in other.clusters.ids) == [2, 4]
        assert store.remove_faces(moved) == 2
        assert [c.id for c in store.list()] == [cluster]
        # the same canvas twice is kept once
        assert store.add([faces[3]])[0][0] == kept[3][0]
        assert store.count() == 4


def test_unknown_faces_past_retention_leave_the_file_and_its_wal(tmp_path):
    rng = np.random.default_rng(4)
    db = tmp_path / "g.db"
    old = [_face(rng, _unit(rng.normal(size=128)), seen=utc_now() - timedelta(days=31))
           for _ in range(3)]
    new = _face(rng, _unit(rng.normal(size=128)))
    with connect(db) as g:
        assert retention_days(g) == 30
        UnknownFaces(g, "m:int8", 128, 0.9).add(old + [new])
    from faceapp.core.unknowns import _encode_jpeg

    secrets = [_encode_jpeg(f.crop)[1000:1064] for f in old]
    secrets += [np.asarray(f.vector, np.float32).tobytes()[:64] for f in old]
    raw = db.read_bytes() + (Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists()
                             else b"")
    assert all(s in raw for s in secrets)  # they were there before
    # the next start (the CLI opens the gallery as the app does)
    faceapp(db, "unknowns")
    raw = db.read_bytes() + (Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists()
                             else b"")
    assert not any(s in raw for s in secrets)
    with connect(db) as g:
        assert UnknownFaces(g, "m:int8", 128, 0.9).count() == 1


def test_a_retention_of_zero_keeps_no_unknown_face(tmp_path, lfw):
    db = tmp_path / "g.db"
    faceapp(db, "unknowns", "--retention", "0")
    folder = tmp_path / "seen"
    link(photos_of_person(lfw, "Bob_Hope")[:2], folder)
    faceapp(db, "identify", folder)
    with connect(db) as g:
        assert retention_days(g) == 0
        assert g._conn.execute("SELECT count(*) FROM unknown_faces").fetchone()[0] == 0
        assert purge_expired(g) == 0


def test_enroll_says_when_new_photos_look_like_someone_enrolled(tmp_path, photos):
    db = tmp_path / "g.db"
    faceapp(db, "enroll", "Bob", photos / "img13.jpg", photos / "img14.jpg")
    run = faceapp(db, "enroll", "Robert", photos / "img15.jpg")  # Bob again
    assert "warning: These photos look like Bob" in run.stderr
    run = faceapp(db, "enroll", "Carol", photos / "img20.jpg")
    assert "warning" not in run.stderr
    run = faceapp(db, "enroll", "Carol", photos / "img1.jpg")  # Alice, as Carol
    assert "do not look like the Carol already enrolled" in run.stderr


def test_unknown_commands_name_what_is_wrong(tmp_path):
    db = tmp_path / "g.db"

    def fails(*args):
        run = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), *map(str, args)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 1, (args, run.stderr)
        return run.stderr

    assert "no unknown cluster with id 999" in fails("name-cluster", 999, "Ada")
    assert "no unknown cluster with id 7" in fails("ignore-cluster", 7)
    assert f"{tmp_path / 'nowhere'} does not exist" in fails("scan", tmp_path / "nowhere")
    assert "nobody called 'Ada'" in fails("photos-of", "Ada")
    refused = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), "unknowns",
                              "--retention", "-1"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "from 0 to 3650, not -1" in refused.stderr


def test_faces_keep_joining_after_a_group_is_named_or_removed(tmp_path):
    """The groups in memory follow what naming and removing did to the stored ones: the
    next face like a removed or named group is kept (it once failed on a foreign key)."""
    rng = np.random.default_rng(7)
    people = [_unit(rng.normal(size=128)) for _ in range(2)]

    def like(person):
        return _face(rng, _unit(person + rng.normal(scale=0.02, size=128)))

    with connect(tmp_path / "g.db") as g:
        store = UnknownFaces(g, "m:int8", 128, 0.9)
        kept = store.add([like(people[0]), like(people[0]), like(people[1]), like(people[1])])
        first, second = kept[0][1], kept[2][1]
        assert first != second
        store.remove_cluster(first)
        assert store.add([like(people[0])])
        store.name_cluster(second, "Ada")
        assert store.add([like(people[1])])
        assert store.count() == 2
