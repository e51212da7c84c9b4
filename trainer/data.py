"""The face data in ../shared/data, read in place (never copied into the repository)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from faceapp.core.align import align_face, get_template
from faceapp.core.imageio import IMAGE_SUFFIXES, ImageError, load_image

TRAIN_SUBSETS = ("utkface", "celeba10k/images", "mebeauty", "scut_fbp5500_asian")


def shared_data_root() -> Path:
    override = os.environ.get("FACEAPP_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def train_images(subsets=TRAIN_SUBSETS) -> list[Path]:
    root = shared_data_root() / "train"
    images: list[Path] = []
    for subset in subsets:
        images += list_images(root / subset)
    if not images:
        raise FileNotFoundError(f"no training images under {root}")
    return images


def pick_face(faces, image_shape):
    """The detection nearest the image centre among the confident ones (datasets of
    cropped portraits put their subject in the middle)."""
    if not faces:
        return None
    h, w = image_shape[:2]
    centre = np.array([w / 2, h / 2])

    def distance(face):
        box = face.box
        return float(np.linalg.norm((box[:2] + box[2:]) / 2 - centre))

    return min(faces, key=distance)


def sample_train_faces(detector, count: int, seed: int = 0) -> list[tuple[Path, np.ndarray]]:
    """`count` faces (image path, 5 x 2 float32 landmarks) from a seeded sample of the
    training subsets, drawn evenly from each. Images without a detection are skipped."""
    rng = random.Random(seed)
    per_subset = {s: train_images((s,)) for s in TRAIN_SUBSETS}
    for paths in per_subset.values():
        rng.shuffle(paths)
    faces: list[tuple[Path, np.ndarray]] = []
    cursors = {s: 0 for s in TRAIN_SUBSETS}
    while len(faces) < count and any(cursors[s] < len(p) for s, p in per_subset.items()):
        for subset, paths in per_subset.items():
            if len(faces) >= count or cursors[subset] >= len(paths):
                continue
            path = paths[cursors[subset]]
            cursors[subset] += 1
            try:
                image = load_image(path)
            except ImageError:
                continue
            face = pick_face(detector.detect(image), image.shape)
            if face is not None:
                faces.append((path, np.asarray(face.landmarks, np.float32)))
    return faces


def align_faces(faces, template: str) -> np.ndarray:
    """N x H x W x 3 uint8 RGB crops of (image path, landmarks) pairs."""
    tpl = get_template(template)
    if not faces:
        return np.zeros((0, tpl.size[1], tpl.size[0], 3), np.uint8)
    return np.stack([align_face(load_image(path), landmarks, tpl) for path, landmarks in faces])


def aligned_train_faces(detector, template: str, count: int, seed: int = 0) -> np.ndarray:
    """`count` aligned crops (N x H x W x 3 uint8 RGB) from a seeded sample of the
    training subsets, drawn evenly from each. Images without a detection are skipped."""
    return align_faces(sample_train_faces(detector, count, seed), template)
