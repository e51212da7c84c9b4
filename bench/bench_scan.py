"""`faceapp scan` of an archive of 12-megapixel photos: photos per second, the scanning
process's peak memory, and whether every face of 80 px or more is still found.

Synthetic photos (4000x3000 JPEG, quality 90): LFW faces pasted at known sizes (80 px
and up, 1-4 per photo, box width as our detector measures it) onto a blurred,
upscaled LFW background with sensor-like noise. Half of the pasted people are enrolled
(from another photo of theirs) so identities can be checked; the rest become unknown
faces. Each run is the real `python -m faceapp scan` in a child process on a fresh
copy of the enrolled gallery; it notes each photo's faces as the recognizer decided
them, and every stored sighting is matched to the pasted faces. "before" is the same
working tree with faceapp/core/scan.py as it was before the reduced-decode scan
(--before-rev), which decodes every photo at full size.

    python bench/bench_scan.py [--photos 60] [--runs 3] [--variants before,after]
                               [--folder DIR]   # keeps the photos for another run

LFW is research data (non-commercial): figures from it are for development only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
WIDTH, HEIGHT = 4000, 3000
SMALLEST = 80  # the smallest face the scan must still find (box width, original pixels)
LARGEST = 480
BEFORE_FILES = ("faceapp/core/scan.py",)  # what "before" takes from --before-rev
# the last commit whose scan decoded every photo at full size
BEFORE_REV = "cc92c30"


# ------------------------------------------------------------------ the photos

def lfw_face(detector, person: Path) -> dict | None:
    """The single clear face of a person's second LFW photo (box and landmarks in its
    250x250 pixels) to paste, and the first photo to enroll; None if there is none."""
    photos = sorted(person.glob("*.jpg"))
    if len(photos) < 2:
        return None
    image = cv2.imread(str(photos[1]))[:, :, ::-1]
    faces = detector.detect(np.ascontiguousarray(image))
    # one clear, roughly frontal face in the middle (LFW photos have bystanders)
    big = [f for f in faces if f.width >= 60]
    if len(big) != 1 or big[0].score < 0.99:
        return None
    face = big[0]
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    if abs(cx - 125) > 20 or abs(cy - 125) > 25:
        return None
    return {"name": person.name, "paste": str(photos[1]), "enroll": str(photos[0]),
            "box": face.box.tolist(), "landmarks": face.landmarks.tolist()}


def lfw_faces(detector, count: int, rng: np.random.Generator) -> list[dict]:
    """`count` LFW people with two photos or more, in a random order (lfw_face)."""
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    out = []
    for i in rng.permutation(len(people)):
        face = lfw_face(detector, people[i])
        if face is not None:
            out.append(face)
            if len(out) == count:
                return out
    raise RuntimeError(f"only {len(out)} usable LFW faces")


def background(rng: np.random.Generator) -> np.ndarray:
    """A blurred, upscaled LFW photo's lower part (clothes, no face), BGR 4000x3000."""
    people = sorted(p for p in LFW.iterdir() if p.is_dir())
    photo = sorted(people[int(rng.integers(len(people)))].glob("*.jpg"))[0]
    strip = cv2.imread(str(photo))[170:250]
    if rng.random() < 0.5:
        strip = strip[:, ::-1]
    big = cv2.resize(strip, (WIDTH // 8, HEIGHT // 8), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 6)
    return cv2.resize(big, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)


def paste(canvas: np.ndarray, face: dict, size: float, x0: int, y0: int) -> dict:
    """Paste the face's surroundings scaled so its box is `size` px wide at (x0, y0);
    returns where its box and landmarks are in the canvas."""
    src = cv2.imread(face["paste"])
    box = np.array(face["box"], np.float64)
    side = (box[2] - box[0]) * 1.7
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx1, ry1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    rx2, ry2 = int(min(250, cx + side / 2)), int(min(250, cy + side / 2))
    region = src[ry1:ry2, rx1:rx2]
    k = size / (box[2] - box[0])
    w, h = round(region.shape[1] * k), round(region.shape[0] * k)
    scaled = cv2.resize(region, (w, h), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    kx, ky = w / region.shape[1], h / region.shape[0]  # the scale resize really used
    # feathered edges: no hard seam around the pasted square
    mask = np.zeros((h, w), np.float32)
    edge = max(2, int(0.1 * min(w, h)))
    mask[edge:-edge, edge:-edge] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), edge / 2)[:, :, None]
    dst = canvas[y0:y0 + h, x0:x0 + w].astype(np.float32)
    canvas[y0:y0 + h, x0:x0 + w] = (scaled * mask + dst * (1 - mask)).astype(np.uint8)
    # continuous pixel coordinates scale exactly: x' = (x - rx1) * kx + x0
    at = np.array([x0, y0], np.float64)
    origin = np.array([rx1, ry1], np.float64)
    scale = np.array([kx, ky])
    b = box.reshape(2, 2)
    return {"name": face["name"], "size": float(size),
            "box": ((b - origin) * scale + at).reshape(4).round(1).tolist(),
            "landmarks": ((np.array(face["landmarks"]) - origin) * scale + at).round(1).tolist(),
            "extent": [x0, y0, x0 + w, y0 + h]}


def make_photos(root: Path, count: int, seed: int = 0, faces_per_photo=(1, 4),
                quality: int = 90) -> list[dict]:
    """`count` synthetic 12-MP JPEGs in root/photos, and what was pasted where (also
    written to root/truth.json). The same seed makes the same photos."""
    sys.path.insert(0, str(REPO))
    from faceapp.core.detect import MTCNNDetector

    rng = np.random.default_rng(seed)
    lo, hi = faces_per_photo
    per_photo = [int(rng.integers(lo, hi + 1)) for _ in range(count)]
    detector = MTCNNDetector.from_pack(min_face=40, threads=2)
    pool = lfw_faces(detector, sum(per_photo), rng)
    detector.close()
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    truth, used = [], 0
    for n, faces in enumerate(per_photo):
        canvas = background(rng)
        placed = []
        for j in range(faces):
            # every other photo's first face sits right at the limit
            if j == 0 and n % 2 == 0:
                size = float(rng.uniform(SMALLEST, SMALLEST + 10))
            else:
                size = float(np.exp(rng.uniform(np.log(SMALLEST), np.log(LARGEST))))
            extent = int(1.7 * size) + 4  # the pasted square's side, at most
            for _ in range(200):
                x0 = int(rng.integers(0, WIDTH - extent))
                y0 = int(rng.integers(0, HEIGHT - extent))
                if all(x0 > p["extent"][2] + 20 or x0 + extent + 20 < p["extent"][0]
                       or y0 > p["extent"][3] + 20 or y0 + extent + 20 < p["extent"][1]
                       for p in placed):
                    break
            else:
                continue
            placed.append(paste(canvas, pool[used], size, x0, y0))
            used += 1
        # sensor noise: files of 2-3 MB, as cameras write them (decoding costs by the byte)
        noise = rng.normal(0, 5.0, canvas.shape).astype(np.float32)
        canvas = np.clip(canvas + noise, 0, 255).astype(np.uint8)
        name = f"photo-{n:03d}.jpg"
        ok, data = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        (folder / name).write_bytes(data.tobytes())
        for p in placed:
            p["photo"] = name
        truth.append({"photo": name, "faces": placed})
    people = [{"name": p["name"], "enroll": p["enroll"]} for p in pool[:used]]
    (root / "truth.json").write_text(json.dumps({"photos": truth, "people": people}))
    return truth


# ------------------------------------------------------------------ the scans

def faceapp_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "faceapp", *map(str, args)]


def source_tree(variant: str, work: Path, rev: str = BEFORE_REV) -> Path:
    """The working tree ("after"), or a copy of its faceapp package with BEFORE_FILES
    as they were at rev ("before")."""
    if variant == "after":
        return REPO
    tree = work / variant
    if not tree.exists():
        shutil.copytree(REPO / "faceapp", tree / "faceapp",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for rel in BEFORE_FILES:
            text = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=REPO, check=True,
                                  capture_output=True).stdout
            (tree / rel).write_bytes(text)
    return tree


def child_env(tree: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), FACEAPP_MODELS_DIR=str(REPO / "assets" / "models"))
    env.setdefault("FACEAPP_DATA_DIR", str(Path(tempfile.gettempdir()) / "bench-scan-data"))
    return env


def enrolled_gallery(work: Path, tree: Path, people: list[dict]) -> Path:
    """A gallery with every other pasted person enrolled from another photo of theirs."""
    db = work / "enrolled" / "gallery.db"
    if db.exists():
        return db
    enroll = work / "enroll"
    for person in people[::2]:
        (enroll / person["name"]).mkdir(parents=True, exist_ok=True)
        link = enroll / person["name"] / Path(person["enroll"]).name
        if not link.exists():
            link.symlink_to(person["enroll"])
    db.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(faceapp_cmd("--db", db, "import", enroll), env=child_env(tree),
                   check=True, capture_output=True, cwd=work)
    return db


def record(out: str, argv: list[str]) -> int:
    """In the scanning child: `faceapp` with argv, noting each photo's faces as the
    recognizer decided them, and the wall and CPU time (all threads) at the scan's
    first and last progress report."""
    from faceapp import __main__ as app
    from faceapp import cli
    from faceapp.core.recognize import Recognizer

    notes = {"faces": {}, "marks": {}}
    process, progress = Recognizer.process, cli.ProgressBar.__call__

    def noting_process(self, image, source="", track=True, path=None):
        result = process(self, image, source=source, track=track, path=path)
        notes["faces"][Path(path or source).name] = [
            {"box": [float(v) for v in f.face.box], "reason": f.decision.reason,
             "person": f.decision.person_id, "score": f.decision.score,
             "vector": None if f.embedding is None else [float(v) for v in f.embedding]}
            for f in result.faces]
        notes["shape"] = list(image.shape)
        return result

    def noting_progress(bar, done, total, item=""):
        mark = "first" if "first" not in notes["marks"] else "last"
        if mark == "first" or done == total:
            notes["marks"][mark] = (time.perf_counter(), time.process_time())
        return progress(bar, done, total, item)

    Recognizer.process, cli.ProgressBar.__call__ = noting_process, noting_progress
    try:
        return app.main(argv)
    finally:
        Path(out).write_text(json.dumps(notes))


def peak_rss_mb(argv: list[str], env: dict, cwd: Path) -> tuple[float, bytes, bytes]:
    """Run a child to its end; its own peak RSS (wait4), stdout, stderr."""
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=cwd)
    chunks = {"out": [], "err": []}

    def drain(stream, key):
        for block in iter(lambda: stream.read(65536), b""):
            chunks[key].append(block)

    readers = [threading.Thread(target=drain, args=(child.stdout, "out")),
               threading.Thread(target=drain, args=(child.stderr, "err"))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    out, err = b"".join(chunks["out"]), b"".join(chunks["err"])
    if child.returncode != 0:
        raise RuntimeError(f"child failed: {err.decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024, out, err


def sightings(db: Path) -> dict[str, list[dict]]:
    """photo name -> faces the scan stored: box, and the person's name or None."""
    out: dict[str, list[dict]] = {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT s.path, s.box, p.name FROM sightings s "
                           "LEFT JOIN people p ON p.id = s.person_id").fetchall()
    finally:
        con.close()
    for path, box, name in rows:
        out.setdefault(Path(path).name, []).append({"box": json.loads(box), "name": name})
    return out


def iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[dict], found: dict[str, list[dict]]) -> dict[tuple[str, int], dict | None]:
    """(photo, pasted face) -> the face over it (IoU >= 0.5), or None."""
    out = {}
    for photo in truth:
        stored = found.get(photo["photo"], [])
        for j, face in enumerate(photo["faces"]):
            best = max(stored, key=lambda s: iou(s["box"], face["box"]), default=None)
            ok = best is not None and iou(best["box"], face["box"]) >= 0.5
            out[(photo["photo"], j)] = best if ok else None
    return out


def corner_error(a, b) -> float:
    return max(abs(x - y) for x, y in zip(a, b))


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--record":
        return record(sys.argv[2], sys.argv[4:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--folder", type=Path, help="photos made by an earlier run (kept)")
    ap.add_argument("--threads", type=int, help="faceapp --threads (default: the app's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before-rev", default=BEFORE_REV,
                    help=f"the commit whose {', '.join(BEFORE_FILES)} is \"before\"")
    args = ap.parse_args()

    cpu = Path("/proc/cpuinfo").read_text()
    print(f"CPU: {os.cpu_count()} cores, avx512_vnni: {'avx512_vnni' in cpu}, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        work = Path(tmp)
        root = args.folder or work / "made"
        folder = root / "photos"
        if not (root / "truth.json").exists():
            t0 = time.perf_counter()
            make_photos(root, args.photos, args.seed)
            print(f"made {args.photos} photos in {time.perf_counter() - t0:.0f} s", flush=True)
        meta = json.loads((root / "truth.json").read_text())
        truth, people = meta["photos"], meta["people"]
        photos = sorted(folder.glob("*.jpg"))
        sizes = [os.path.getsize(p) for p in photos]
        faces = [f for p in truth for f in p["faces"]]
        print(f"{len(photos)} photos {WIDTH}x{HEIGHT}, {np.mean(sizes) / 1e6:.1f} MB each; "
              f"{len(faces)} faces of {min(f['size'] for f in faces):.0f}-"
              f"{max(f['size'] for f in faces):.0f} px, {len(people[::2])} people enrolled",
              flush=True)
        variants = args.variants.split(",")
        results: dict[str, list[dict]] = {}
        base = enrolled_gallery(work, REPO, people)
        for run in range(args.runs):  # interleaved: the machine's load hits both alike
            for variant in variants:
                tree = source_tree(variant, work, args.before_rev)
                db = work / f"{variant}-{run}" / "gallery.db"
                db.parent.mkdir()
                for f in base.parent.iterdir():
                    if f.name.startswith("gallery.db"):
                        shutil.copy(f, db.parent / f.name)
                notes = db.parent / "notes.json"
                extra = ["--threads", str(args.threads)] if args.threads else []
                rss, out, _ = peak_rss_mb(
                    [sys.executable, __file__, "--record", str(notes), "--", "--db", str(db),
                     *extra, "scan", str(folder)], child_env(tree), db.parent)
                got = json.loads(notes.read_text())
                (w0, c0), (w1, c1) = got["marks"]["first"], got["marks"]["last"]
                r = {"rate": len(photos) / (w1 - w0), "cpu_ms": (c1 - c0) * 1000 / len(photos),
                     "rss": rss, "report": json.loads(out.decode().strip().splitlines()[-1]),
                     "decided": got["faces"], "stored": sightings(db),
                     "load": os.getloadavg()[0]}
                results.setdefault(variant, []).append(r)
                print(f"  {variant} run {run + 1}: {r['rate']:.2f} photos/s, "
                      f"{r['cpu_ms']:.0f} ms CPU per photo, peak RSS {rss:.0f} MB, "
                      f"load {r['load']:.1f}, report {r['report']}", flush=True)
        summary(truth, people, results, variants)
    return 0


def summary(truth: list[dict], people: list[dict], results: dict[str, list[dict]],
            variants: list[str]) -> None:
    print("summary (found: a face decided over the pasted one, IoU >= 0.5; stored: kept "
          "as a sighting, of a person or an unknown face):")
    pasted = {(p["photo"], j): f for p in truth for j, f in enumerate(p["faces"])}
    enrolled = {name_of(p["name"]) for p in people[::2]}
    should = sum(1 for f in pasted.values() if name_of(f["name"]) in enrolled)
    last = {}
    for variant, rs in results.items():
        rates = [r["rate"] for r in rs]
        cpus = [r["cpu_ms"] for r in rs]
        rss = [r["rss"] for r in rs]
        found, stored = match(truth, rs[-1]["decided"]), match(truth, rs[-1]["stored"])
        last[variant] = (found, stored)
        named = sum(1 for k, v in stored.items()
                    if v is not None and v["name"] == name_of(pasted[k]["name"]))
        errors = [corner_error(v["box"], pasted[k]["box"]) for k, v in found.items() if v]
        print(f"  {variant}: {min(rates):.2f}-{max(rates):.2f} photos/s (median "
              f"{np.median(rates):.2f}); CPU {min(cpus):.0f}-{max(cpus):.0f} ms per photo "
              f"(two whole cores: {2000 / np.median(cpus):.1f} photos/s); peak RSS "
              f"{min(rss):.0f}-{max(rss):.0f} MB")
        print(f"     pasted faces >= {SMALLEST} px: found "
              f"{sum(v is not None for v in found.values())}/{len(found)}, stored "
              f"{sum(v is not None for v in stored.values())}/{len(stored)}, enrolled ones "
              f"named {named}/{should}; box corners vs pasted: median "
              f"{np.median(errors):.1f} px, max {max(errors):.1f} px")
    if len(last) != 2:
        return
    (fa, sa), (fb, sb) = (last[v] for v in variants)
    a, b = variants
    both = [k for k in fa if fa[k] is not None and fb[k] is not None]
    differ = [(k, fa[k]["reason"], fb[k]["reason"]) for k in both
              if fa[k]["person"] != fb[k]["person"]]
    shift = [corner_error(fa[k]["box"], fb[k]["box"]) for k in both]
    print(f"  {a} vs {b}: found by both {len(both)}, only by {a} "
          f"{[k for k in fa if fa[k] and not fb[k]]}, only by {b} "
          f"{[k for k in fa if fb[k] and not fa[k]]}; same decision (person or unknown) "
          f"{len(both) - len(differ)}/{len(both)}, differing {differ}; box corners moved "
          f"median {np.median(shift):.1f} px, max {max(shift):.1f} px")
    cos = sorted((round(float(np.dot(fa[k]["vector"], fb[k]["vector"])), 4), k)
                 for k in both if fa[k]["vector"] and fb[k]["vector"])
    print(f"  one face's embeddings, {a} . {b}: median {np.median([c[0] for c in cos]):.4f}, "
          f"lowest {cos[:3]}")
    why = {k: (fa[k] and fa[k]["reason"], fb[k] and fb[k]["reason"]) for k in fa}
    print(f"  stored by {a} only: {[(k, why[k]) for k in sa if sa[k] and not sb[k]]}, by {b} "
          f"only: {[(k, why[k]) for k in sa if sb[k] and not sa[k]]}")


def name_of(folder: str) -> str:
    return " ".join(folder.replace("_", " ").split())  # as `faceapp import` names people


if __name__ == "__main__":
    sys.exit(main())
