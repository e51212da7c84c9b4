"""LFW as the trainer reads it: pairs.txt, the list of all its images, and the
5-point landmarks of each image's central face by the app's own detector (cached).

Used by the evaluation (trainer/evaluate.py), the degraded-quality protocol
(trainer/degrade.py) and the aligned LFW crops of training (trainer/cache.py).
LFW is a research dataset (non-commercial); figures computed on it say so.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceapp.core.detect import MTCNNDetector
from faceapp.core.imageio import load_image

from .data import pick_face, shared_data_root
from .upstream import cache_dir

LFW_NOTE = ("Labeled Faces in the Wild (deep-funneled), research use only; "
            "standard pairs.txt protocol")
LFW_MIN_FACE = 20  # the detector's smallest face on LFW (its faces are ~100 px)


@dataclass
class Pairs:
    left: np.ndarray  # index into images
    right: np.ndarray
    same: np.ndarray  # bool
    fold: np.ndarray  # 0..9
    images: list[str]  # relative paths "Name/Name_0001.jpg"


def read_pairs(path: Path) -> Pairs:
    lines = path.read_text().split("\n")
    n_folds, n_per = (int(v) for v in lines[0].split())
    images: dict[str, int] = {}

    def image_index(name: str, number: str) -> int:
        rel = f"{name}/{name}_{int(number):04d}.jpg"
        return images.setdefault(rel, len(images))

    left, right, same, fold = [], [], [], []
    rows = [line.split() for line in lines[1:] if line.strip()]
    if len(rows) != n_folds * n_per * 2:
        raise ValueError(f"{path}: expected {n_folds * n_per * 2} pairs, found {len(rows)}")
    for i, row in enumerate(rows):
        if len(row) == 3:
            a, b, is_same = image_index(row[0], row[1]), image_index(row[0], row[2]), True
        else:
            a, b, is_same = image_index(row[0], row[1]), image_index(row[2], row[3]), False
        left.append(a)
        right.append(b)
        same.append(is_same)
        fold.append(i // (2 * n_per))
    return Pairs(np.array(left), np.array(right), np.array(same), np.array(fold),
                 list(images))


def progress(iterable, total: int, desc: str):
    try:
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=desc, file=sys.stderr, mininterval=2.0)
    except ImportError:  # pragma: no cover
        return iterable


def detect_landmarks(detector: MTCNNDetector, root: Path, images: list[str]):
    """5-point landmarks of the central face of each image, cached per detector.

    Returns (landmarks N x 5 x 2, found N bool); images without a detection get the
    mean landmarks of the detected ones (LFW images are roughly centred).
    """
    digest = hashlib.sha256()
    for key in sorted(detector.pack.manifest["files"]):
        digest.update(detector.pack.manifest["files"][key]["sha256"].encode())
    digest.update(f"{detector.min_face}:{detector.thresholds}".encode())
    digest.update("\n".join(images).encode())
    if root.resolve() != (shared_data_root() / "lfw" / "images").resolve():
        digest.update(str(root.resolve()).encode())  # e.g. the degraded copies
    cache = cache_dir() / f"lfw-landmarks-{digest.hexdigest()[:16]}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["landmarks"], data["found"]
    landmarks = np.zeros((len(images), 5, 2), np.float32)
    found = np.zeros(len(images), bool)
    for i, rel in enumerate(progress(images, len(images), "detecting")):
        image = load_image(root / rel)
        face = pick_face(detector.detect(image), image.shape)
        if face is not None:
            landmarks[i], found[i] = face.landmarks, True
    if found.any():
        landmarks[~found] = landmarks[found].mean(axis=0)
    np.savez(cache, landmarks=landmarks, found=found)
    return landmarks, found


def lfw_all_images() -> tuple[Path, list[str]]:
    """Every LFW image, as "Name/Name_0001.jpg", sorted by person then file."""
    root = shared_data_root() / "lfw" / "images"
    images = [f"{d.name}/{f.name}" for d in sorted(root.iterdir()) if d.is_dir()
              for f in sorted(d.iterdir())]
    return root, images
