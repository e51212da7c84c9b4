"""One person per face in a photo: two faces of one photo or frame never get the same
name, and unknown faces of one photo are never grouped as one person (siblings,
look-alikes, a poster beside its subject). Real LFW photos through the real detector,
embedder, gallery file and CLI (LFW: research data, read in place from ../shared/data)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceapp.core.clustering import FaceClusters, pairwise_scores
from faceapp.core.identify import ALREADY_IN_PHOTO, BELOW, MATCH, Identifier, explain
from faceapp.core.imageio import load_image
from faceapp.core.models import ModelPack
from faceapp.core.operating import Calibration, DecisionRule
from .helpers.cli import faceapp, json_lines

SAME, OTHER = "George_W_Bush", "Colin_Powell"
TILE, GAP = 170, 30


def person_of(path) -> str:
    return Path(path).stem.rsplit("_", 1)[0]


@pytest.fixture(scope="module")
def lfw(shared_data) -> Path:
    return shared_data / "lfw" / "images"


def photos_of(lfw: Path, name: str) -> list[Path]:
    return sorted((lfw / name).iterdir())


def paste(photos, out: Path) -> Path:
    """One canvas holding each photo's central face (LFW centres its subject), side
    by side: a photo of several people, some of them one person twice."""
    gap = np.full((TILE, GAP, 3), 128, np.uint8)
    parts = []
    for photo in photos:
        parts += [load_image(photo)[40:40 + TILE, 40:40 + TILE], gap]
    canvas = np.ascontiguousarray(np.concatenate(parts[:-1], axis=1)[:, :, ::-1])
    assert cv2.imwrite(str(out), canvas)
    return out


def tile_of(box) -> int:
    return int(((box[0] + box[2]) / 2) // (TILE + GAP))


def subjects(rows) -> dict[int, dict]:
    """The face nearest the centre of each tile (a pasted photo may hold a background
    face, cut by the tile's edge)."""
    def off(box):
        tile = tile_of(box)
        return abs((box[0] + box[2]) / 2 - tile * (TILE + GAP) - TILE / 2) \
            + abs((box[1] + box[3]) / 2 - TILE / 2)

    out = {}
    for row in rows:
        tile = tile_of(row["box"])
        if tile not in out or off(row["box"]) < off(out[tile]["box"]):
            out[tile] = row
    return out


# --------------------------------------------------------------- the rule, on its own

def _vector(scores, dim=8):
    """A unit vector whose cosine with person k's template (axis k) is scores[k]."""
    v = np.zeros(dim, np.float32)
    v[:len(scores)] = scores
    v[-1] = np.sqrt(1 - float(np.sum(np.square(scores))))
    return v


@pytest.fixture
def five_people():
    """Five people with orthogonal templates and a hand-set rule (threshold 0.3,
    runner-up weight 0.5): each decision below is worked out by hand."""
    identifier = Identifier(8, Calibration.from_pack(ModelPack.load("dlib-resnet-v1"),
                                                     "int8+flip"))
    identifier.replace(np.arange(5) + 100, np.arange(5) + 1, np.eye(8, dtype=np.float32)[:5])
    identifier.rule = DecisionRule(threshold=0.3, runner_up_weight=0.5, plain_threshold=0.4,
                                   fpir=0.01, miss=0.1, people=5, samples_per_person=1.0)
    return identifier


def test_the_better_match_keeps_the_name_and_the_other_takes_its_next_candidate(five_people):
    identifier = five_people
    faces = np.array([_vector([0.95, 0.10]),             # person 1: 0.95 - 0.05
                      _vector([0.70, 0.10, 0.55]),  # 1: 0.70 - 0.275; then 3: 0.55 - 0.05
                      _vector([0.0, 0.0, 0.0, 0.90])])   # person 4, nobody else near
    alone = identifier.identify(faces)
    assert [d.person_id for d in alone] == [1, 1, 4]  # each on its own: 1 twice
    found = identifier.search(faces)  # two candidates each, as the Recognizer searches
    together = identifier.decide_together(found, vectors=faces)
    assert [d.person_id for d in together] == [1, 3, 4]
    # the next candidate was judged with the one after it (looked up beyond the two
    # searched), as any decision is: person 3, then person 2
    assert together[1].reason == MATCH and together[1].runner_up_id == 2
    assert together[1].score == pytest.approx(0.55, abs=1e-5)
    assert together[0] == alone[0] and together[2] == alone[2]
    # without the face's embedding there is no candidate after person 3 to judge it by
    cautious = identifier.decide_together(found)
    assert cautious[1].person_id is None and cautious[1].reason == ALREADY_IN_PHOTO


def test_a_face_whose_next_candidate_fails_stays_unknown_and_says_why(five_people):
    identifier = five_people
    faces = np.array([_vector([0.95, 0.10]),
                      _vector([0.85, 0.20]),   # 1: 0.85 - 0.10; then 2: 0.20, below
                      _vector([0.0, 0.0, 0.96, 0.10]),
                      _vector([0.0, 0.0, 0.92, 0.0, 0.0])])  # 3, but a better face has 3
    found = identifier.search(faces)
    decisions = identifier.decide_together(found, vectors=faces)
    assert [d.person_id for d in decisions] == [1, None, 3, None]
    lost = decisions[1]
    assert lost.reason == ALREADY_IN_PHOTO and lost.nearest_id == 1
    assert lost.score == pytest.approx(0.85, abs=1e-5) and lost.runner_up_id == 2
    assert explain(lost.reason, "Ann", lost.score) == "already in this photo: nearest Ann 0.85"
    # a chain: the face's next candidate is a better face's too, so it stays unknown
    chain = np.array([_vector([0.95]), _vector([0.70, 0.0, 0.55]), _vector([0.0, 0.0, 0.96])])
    decisions = identifier.decide_together(identifier.search(chain), vectors=chain)
    assert [d.person_id for d in decisions] == [1, None, 3]
    assert decisions[1].nearest_id == 1  # who it looked like first, not its fallback
    # faces nobody is named as are left alone; one named face has nothing to share
    unknown = [_vector([0.20]), _vector([0.25])]
    assert [d.reason for d in identifier.decide_together(identifier.search(
        np.array(unknown)))] == [BELOW, BELOW]


# ------------------------------------------------------------ a real photo, real people

@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, lfw):
    """SAME and OTHER enrolled from photos other than the pasted ones."""
    root = tmp_path_factory.mktemp("one_per_photo")
    for name in (SAME, OTHER):
        (root / "enroll" / name).mkdir(parents=True)
        for photo in photos_of(lfw, name)[:3]:
            os.symlink(photo, root / "enroll" / name / photo.name)
    db = root / "gallery.db"
    faceapp(db, "import", root / "enroll")
    return db, root


def test_one_photo_of_a_person_twice_names_them_once(enrolled, lfw):
    """Two photos of SAME pasted beside one of OTHER: each face of SAME alone is
    named SAME; together only the better one is, the other says why."""
    db, root = enrolled
    same, other = photos_of(lfw, SAME), photos_of(lfw, OTHER)
    photo = paste([same[10], other[5], same[20]], root / "twice.jpg")
    (root / "alone").mkdir()
    for i, single in enumerate((same[10], same[20])):
        paste([single], root / "alone" / f"{i}.jpg")
    alone = json_lines(faceapp(db, "identify", root / "alone", "--no-events").stdout)
    for i in range(2):
        rows = [r for r in alone if r["path"] == str(root / "alone" / f"{i}.jpg")]
        assert subjects(rows)[0]["person"] == SAME.replace("_", " "), alone
    rows = json_lines(faceapp(db, "identify", photo, "--no-events").stdout)
    faces = subjects(rows)
    assert sorted(faces) == [0, 1, 2], rows
    named = [r["person"] for r in rows if r["person"]]
    assert len(named) == len(set(named)), rows  # nobody twice
    assert faces[1]["person"] == OTHER.replace("_", " ")
    kept, lost = sorted((faces[0], faces[2]), key=lambda r: -r["score"])
    assert kept["person"] == SAME.replace("_", " ")
    assert lost["person"] is None and lost["reason"] == ALREADY_IN_PHOTO
    assert lost["nearest"] == SAME.replace("_", " ") and lost["runner_up"] is not None


def test_in_video_a_track_gives_way_to_a_better_track_of_the_same_person(enrolled, lfw):
    """The same face pasted twice (a tie) beside OTHER, as video frames through the
    Recognizer with tracks: in every frame, looked at anew or carried over, one track
    has the name."""
    from faceapp.core.gallery import connect
    from faceapp.core.recognize import FacePipeline, Recognizer

    db, _root = enrolled
    same, other = photos_of(lfw, SAME), photos_of(lfw, OTHER)
    tiles = [load_image(p)[40:40 + TILE, 40:40 + TILE] for p in (same[20], other[5], same[20])]
    gap = np.full((TILE, GAP, 3), 128, np.uint8)
    frame = np.ascontiguousarray(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], 1))
    with connect(db) as gallery:
        recognizer = Recognizer(FacePipeline.create(min_face=40), gallery, log_events=False,
                                keep_unknowns=False)
        names = {v: k for k, v in recognizer.names.items()}
        same_id, other_id = names[SAME.replace("_", " ")], names[OTHER.replace("_", " ")]
        carried = 0
        for _ in range(14):  # the first looks, then names carried between looks
            result = recognizer.process(frame, source="clip.mp4", track=True)
            faces = subjects([{"box": list(f.face.box), "face": f} for f in result.faces])
            decisions = {tile: row["face"].decision for tile, row in faces.items()}
            assert sorted(decisions) == [0, 1, 2]
            assert [d.person_id for d in decisions.values()].count(same_id) == 1
            assert decisions[1].person_id == other_id
            lost = next(d for t, d in decisions.items() if t != 1 and d.person_id != same_id)
            assert lost.reason == ALREADY_IN_PHOTO and lost.nearest_id == same_id
            carried += sum(not f.fresh for f in result.faces)
        assert carried  # some frames carried names over without looking again
        # stills: the same, every photo on its own
        still = recognizer.process(frame, track=False)
        assert [f.decision.person_id for f in still.faces].count(same_id) == 1


# ------------------------------------------------------------ grouping unknown faces

def test_a_cameras_frame_keeps_its_faces_of_one_person_apart(tmp_path, lfw):
    """One person's face and its mirror image in one camera frame (no file to tell
    frames apart), into an empty gallery: both faces are kept with the frame's time
    and grouped apart; without the rule they are one group (their cosine is above the
    grouping threshold)."""
    from faceapp.core.gallery import connect
    from faceapp.core.recognize import FacePipeline, Recognizer

    tile = load_image(photos_of(lfw, SAME)[20])[40:40 + TILE, 40:40 + TILE]
    gap = np.full((TILE, GAP, 3), 128, np.uint8)
    frame = np.ascontiguousarray(np.concatenate([tile, gap, tile[:, ::-1]], axis=1))
    with connect(tmp_path / "gallery.db") as gallery:
        recognizer = Recognizer(FacePipeline.create(min_face=40), gallery)
        for _ in range(3):  # a track's unknown face is kept once a second look confirms it
            recognizer.process(frame, source="Camera 1", track=True)
        recognizer.events.flush(force=True)
        rows = gallery._conn.execute("SELECT cluster_id, seen, source, vector, box "
                                     "FROM unknown_faces").fetchall()
    faces = subjects([{"box": json.loads(r[4]), "row": r} for r in rows])
    assert sorted(faces) == [0, 1], rows
    a, b = (faces[t]["row"] for t in (0, 1))
    assert a[2] == b[2] == "Camera 1" and a[1] == b[1]  # one frame: one time
    cosine = float(np.frombuffer(a[3], np.float32) @ np.frombuffer(b[3], np.float32))
    assert cosine > recognizer.unknowns.threshold
    assert a[0] != b[0]

def test_faces_of_one_photo_never_join_one_cluster_nor_merge_two():
    def unit(v):
        return np.asarray(v, np.float64) / np.linalg.norm(v)

    a, a2, b = unit([1, 0, 0]), unit([1, 0.05, 0]), unit([0, 1, 0])
    clusters = FaceClusters(3, threshold=0.9)
    first = clusters.add([a, a2, b], photos=["p", "p", "q"])
    assert first.assigned[0] != first.assigned[1]  # alike, but in one photo
    # a face of another photo close to both would bridge them: it joins one, and
    # the two never merge
    bridge = clusters.add([unit([1, 0.025, 0])], photos=["r"])
    assert not bridge.merged and len(clusters) == 3
    # faces of photos not known (None) group as before
    free = FaceClusters(3, threshold=0.9)
    assert len(set(free.add([a, a2], photos=[None, None]).assigned.values())) == 1
    # a cluster split off takes its photos with it: the rest may meet photo p again
    loaded = FaceClusters(3, threshold=0.9)
    loaded.load([7, 7], [a, a2], ["p", "s"])
    loaded.remove(7, [a], ["p"])
    moved = loaded.place([a], ["p"])
    again = loaded.add([unit([1, 0.01, 0])], photos=["p"])
    assert again.assigned[0] == 7 and moved != 7 and not again.merged


def _unknowns_by_path(db) -> dict[str, list[tuple[int, list[float]]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT path, cluster_id, box FROM unknown_faces").fetchall()
    out: dict[str, list] = {}
    for path, cluster, box in rows:
        out.setdefault(path, []).append((cluster, json.loads(box)))
    return out


def test_one_person_twice_in_a_photo_is_kept_as_two_groups(tmp_path, lfw):
    """Twelve people, each in a canvas of two of their photos side by side and in
    three photos of their own, identified into an empty gallery: the canvas's two
    faces are alike but never grouped together (without the rule 9 of 11 were); the
    person's other photos still group with one of them."""
    people = sorted(d.name for d in lfw.iterdir() if len(os.listdir(lfw / d.name)) >= 8)
    people = [people[i] for i in np.random.default_rng(8).choice(len(people), 12, replace=False)]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in people:
        photos = photos_of(lfw, name)
        paste(photos[:2], folder / f"{name}_pair.jpg")
        for photo in photos[2:5]:
            os.symlink(photo, folder / photo.name)
    db = tmp_path / "gallery.db"
    faceapp(db, "identify", folder)
    kept = _unknowns_by_path(db)
    pairs = grouped = 0
    for name in people:
        faces = kept.get(str(folder / f"{name}_pair.jpg"), [])
        clusters = [c for c, _ in faces]
        assert len(clusters) == len(set(clusters)), (name, faces)
        pairs += len(faces) >= 2
        # the person's photos still end up together: one of the two and the others
        mine = [c for p, fs in kept.items() if person_of(p) == name for c, _ in fs]
        grouped += max(mine.count(c) for c in set(mine)) >= 3
    assert pairs >= 10  # the canvases hold the person twice: the rule was tested
    assert grouped >= 10  # LFW's Jennifer Capriati is in two groups with or without it


@pytest.mark.slow
def test_unknown_faces_of_lfw_photos_with_several_people_are_never_one_group(tmp_path, lfw):
    """LFW people with 15+ photos, 12 photos each (1,152), identified into an empty
    gallery: every face is kept and grouped. 109 of these photos hold two or more kept
    faces; no group holds two faces of one photo (without the rule one did:
    Michael_Bloomberg_0009's), and the subjects' groups score as they do without the
    rule (pairwise precision 0.993, BCubed precision 0.994, recall 0.850)."""
    people = sorted(d.name for d in lfw.iterdir() if len(os.listdir(lfw / d.name)) >= 15)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in people:
        for photo in photos_of(lfw, name)[:12]:
            os.symlink(photo, folder / photo.name)
    db = tmp_path / "gallery.db"
    faceapp(db, "identify", folder, timeout=1800)
    kept = _unknowns_by_path(db)
    several = {p: faces for p, faces in kept.items() if len(faces) >= 2}
    print(f"\n{len(kept)} photos with kept faces, {len(several)} with two or more")
    assert len(several) >= 100
    for path, faces in several.items():
        clusters = [c for c, _ in faces]
        assert len(clusters) == len(set(clusters)), (path, faces)
    # each photo's subject: the face nearest the centre of the 250 x 250 photo
    subject = {p: min(faces, key=lambda f: abs((f[1][0] + f[1][2]) / 2 - 125)
                      + abs((f[1][1] + f[1][3]) / 2 - 125))[0] for p, faces in kept.items()}
    scores = pairwise_scores([person_of(p) for p in subject], list(subject.values()))
    print(json.dumps(scores))
    assert scores["pairwise_precision"] >= 0.99 and scores["bcubed_precision"] >= 0.99
    assert scores["bcubed_recall"] >= 0.82
