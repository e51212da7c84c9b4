"""Our pipeline next to the `face_recognition` library (dlib), on the same LFW pairs.

Not run in CI: it needs dlib, which builds from source (~9 minutes). Set up once:

    python3 -m venv /tmp/dlibenv
    /tmp/dlibenv/bin/pip install dlib numpy opencv-python-headless onnxruntime tqdm
    /tmp/dlibenv/bin/pip install --no-deps face_recognition Pillow click "setuptools<81" \\
        ~/.cache/faceapp-trainer/face_recognition_models-0.3.0.tar.gz
    /tmp/dlibenv/bin/python bench/compare_dlib.py [--limit N] [--model dlib-resnet-v1]

For every image of the 6,000 pairs, both pipelines run one after the other in this
process, single image at a time: face_recognition's defaults (HOG detector,
upsample 1, 5-point landmarks, one jitter) and ours (MTCNN, alignment, the int8 dlib
ResNet by default, whatever the app's default embedder is; `--model` picks another
pack, 2 threads). Prints accuracy over the 10 folds and the median time per face
of each. LFW: research use only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceapp.core.imageio import load_image  # noqa: E402
from faceapp.core.recognize import FacePipeline  # noqa: E402
from trainer.data import pick_face, shared_data_root  # noqa: E402
from trainer.evaluate import read_pairs, verification_report  # noqa: E402


def main(argv=None) -> int:
    import face_recognition  # the library under comparison

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0,
                        help="only the pairs of the first N folds (at least 2)")
    parser.add_argument("--model", default="dlib-resnet-v1",
                        help="our embedder pack (default: the teacher, dlib's own network)")
    args = parser.parse_args(argv)
    if args.limit == 1:
        parser.error("--limit needs at least 2 folds (thresholds come from the other folds)")
    root = shared_data_root() / "lfw"
    pairs = read_pairs(root / "pairs.txt")
    if args.limit:
        keep = pairs.fold < args.limit
        used = sorted(set(pairs.left[keep]) | set(pairs.right[keep]))
    else:
        keep = np.ones(len(pairs.left), bool)
        used = list(range(len(pairs.images)))

    ours = FacePipeline.create(embedder_pack=args.model, min_face=20)
    ours_vec = np.zeros((len(pairs.images), 128), np.float32)
    theirs_vec = np.zeros((len(pairs.images), 128), np.float32)
    ours_ms, theirs_ms, theirs_missed, ours_missed = [], [], 0, 0
    try:
        from tqdm import tqdm
        progress = tqdm(used, file=sys.stderr, mininterval=5)
    except ImportError:
        progress = used
    for i in progress:
        image = load_image(root / "images" / pairs.images[i])

        started = time.perf_counter()
        boxes = face_recognition.face_locations(image)  # (top, right, bottom, left)
        if boxes:
            centre = np.array(image.shape[1::-1]) / 2
            box = min(boxes, key=lambda b: np.hypot((b[1] + b[3]) / 2 - centre[0],
                                                    (b[0] + b[2]) / 2 - centre[1]))
        else:
            theirs_missed += 1
            h, w = image.shape[:2]  # LFW faces are centred: take the middle
            box = (h // 4, 3 * w // 4, 3 * h // 4, w // 4)
        theirs_vec[i] = face_recognition.face_encodings(image, [box])[0]
        theirs_ms.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        faces = ours.analyze(image)
        ours_ms.append((time.perf_counter() - started) * 1000)
        face = pick_face([f.face for f in faces], image.shape)
        if face is None:
            ours_missed += 1
        else:
            ours_vec[i] = next(f.embedding for f in faces if f.face is face)

    sub = type(pairs)(pairs.left[keep], pairs.right[keep], pairs.same[keep], pairs.fold[keep],
                      pairs.images)
    for name, vectors, ms, missed, metric in (
            ("face_recognition (dlib)", theirs_vec, theirs_ms, theirs_missed, "euclidean"),
            (f"faceapp ({args.model})", ours_vec, ours_ms, ours_missed, "cosine")):
        if metric == "euclidean":
            scores = -np.linalg.norm(vectors[sub.left] - vectors[sub.right], axis=1)
        else:
            scores = np.sum(vectors[sub.left] * vectors[sub.right], axis=1)
        report = verification_report(scores, sub)
        print(f"{name:26} LFW {100 * report['accuracy_mean']:.2f}% +- "
              f"{100 * report['accuracy_std']:.2f} ({metric}), "
              f"no face found {missed}/{len(used)}, "
              f"median {statistics.median(ms):.1f} ms per image (detect + embed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
