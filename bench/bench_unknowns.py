"""Unknown faces: how well and how fast they are grouped.

    python bench/bench_unknowns.py [--quality] [--speed] [--model dlib-resnet-v1]

--quality: the app's own path. LFW's people with at least 5 photos (5,985 photos of
  423 people) are identified by `python -m faceapp identify` into an empty gallery,
  which keeps every face as an unknown face and groups it; then each photo's subject
  (the face nearest the centre of the 250 x 250 image) is scored against the photo's
  person: pairwise precision and recall, BCubed precision, recall and F.
--speed: 10,000 real LFW faces grouped in one call, then 100 more added to them,
  in memory (clustering.py) and through the gallery file (unknowns.py: crops,
  vectors and cluster changes written in one transaction); in memory also with the
  faces in photos of three (`*_photos_*`: faces of one photo are never grouped, so
  every join and merge is checked against the photos' index).

LFW is research data (non-commercial use). Say in every figure whether the machine has
AVX-512 VNNI (grep avx512_vnni /proc/cpuinfo).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LFW = Path(os.environ.get("FACEAPP_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lfw"


def cpu_note() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return f"{os.cpu_count()} cores, {'AVX-512 VNNI' if 'avx512_vnni' in flags else 'AVX2 only'}"


def quality(model: str) -> dict:
    from faceapp.core.clustering import pairwise_scores

    images = LFW / "images"
    people = [d for d in sorted(images.iterdir()) if len(os.listdir(d)) >= 5]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for person in people:
            for photo in sorted(person.iterdir()):
                os.symlink(photo, folder / photo.name)
        db = Path(tmp) / "gallery.db"
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(db), "--model", model,
                              "identify", str(folder)], capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(run.stderr[-2000:])
        seconds = time.monotonic() - started
        import sqlite3

        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT path, box, cluster_id FROM unknown_faces").fetchall()
    subject = {}
    for path, box, cluster in rows:
        x1, y1, x2, y2 = json.loads(box)
        off = abs((x1 + x2) / 2 - 125) + abs((y1 + y2) / 2 - 125)
        if path not in subject or off < subject[path][0]:
            subject[path] = (off, cluster)
    labels = [Path(p).stem.rsplit("_", 1)[0] for p in subject]
    clusters = [c for _, c in subject.values()]
    photos = sum(len(os.listdir(p)) for p in people)
    scores = pairwise_scores(labels, clusters)
    return {"photos": photos, "photos_with_a_kept_face": len(subject),
            "faces_kept": len(rows), "identify_seconds": round(seconds, 1), **scores}


def speed(model: str) -> dict:
    from faceapp.core.clustering import FaceClusters
    from faceapp.core.embed import Embedder
    from faceapp.core.gallery import Gallery
    from faceapp.core.models import ModelPack
    from faceapp.core.unknowns import UnknownFace, UnknownFaces
    from trainer.evaluate import lfw_all_embeddings

    pack = ModelPack.load(model)
    embedder = Embedder(pack)
    _, vectors, found = lfw_all_embeddings(pack, embedder.variant, flip=embedder.flip)
    vectors = vectors[found][np.random.default_rng(0).permutation(int(found.sum()))]
    base, more = vectors[:10_000], vectors[10_000:10_100]
    threshold = embedder.clustering_threshold()
    out = {"threshold": threshold}

    clusters = FaceClusters(embedder.dim, threshold)
    t0 = time.perf_counter()
    clusters.add(base)
    out["memory_10000_s"] = round(time.perf_counter() - t0, 3)
    out["clusters_10000"] = len(clusters)
    t0 = time.perf_counter()
    clusters.add(more)
    out["memory_add_100_s"] = round(time.perf_counter() - t0, 4)
    photos = [f"photo {i // 3}" for i in range(len(base) + len(more))]
    clusters = FaceClusters(embedder.dim, threshold)
    t0 = time.perf_counter()
    clusters.add(base, photos=photos[:len(base)])
    out["memory_10000_photos_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    clusters.add(more, photos=photos[len(base):])
    out["memory_add_100_photos_s"] = round(time.perf_counter() - t0, 4)

    import cv2

    from faceapp.core.imageio import load_image

    rng = np.random.default_rng(1)
    # a real photo as every face's canvas (JPEG costs what it costs on faces)
    photo = load_image(LFW.parent / "samples" / "photos" / "img1.jpg")
    canvas = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)

    def faces(rows):
        out_faces = []
        for i, v in enumerate(rows):
            crop = canvas.copy()
            crop[0, :8, 0] = np.frombuffer(int(rng.integers(1 << 62)).to_bytes(8, "little"),
                                        np.uint8)  # each canvas unique
            out_faces.append(UnknownFace(crop=crop, landmarks=np.full((5, 2), 128.0),
                                         vector=v, quality=0.9, enrollable=True,
                                         source=f"bench {i}"))
        return out_faces

    with tempfile.TemporaryDirectory() as tmp, Gallery(Path(tmp) / "g.db") as gallery:
        store = UnknownFaces(gallery, embedder.model_id, embedder.dim, threshold)
        batch = faces(base)
        t0 = time.perf_counter()
        for start in range(0, len(batch), 1000):
            store.add(batch[start:start + 1000])
        out["gallery_10000_s"] = round(time.perf_counter() - t0, 2)
        extra = faces(more)
        t0 = time.perf_counter()
        store.add(extra)
        out["gallery_add_100_s"] = round(time.perf_counter() - t0, 3)
        fresh = UnknownFaces(gallery, embedder.model_id, embedder.dim, threshold)
        t0 = time.perf_counter()
        fresh.refresh()
        out["gallery_load_10100_s"] = round(time.perf_counter() - t0, 3)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--model", default="dlib-resnet-v1")
    args = parser.parse_args(argv)
    if not (args.quality or args.speed):
        args.quality = args.speed = True
    print(f"machine: {cpu_note()}")
    if args.speed:
        print("speed:", json.dumps(speed(args.model)))
    if args.quality:
        print("quality (LFW people with >= 5 photos, through `faceapp identify`):",
              json.dumps(quality(args.model)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
