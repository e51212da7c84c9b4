"""What distillation reads again and again, computed once and kept in the trainer cache.

- `distill_targets()`: for every training image, the landmarks of its face (by the
  app's own detector), an identity label where the dataset has one, and the teacher's
  embeddings of the clean face and of its mirror (fp32 teacher on its dlib150 chip).
  Built in shards so an interrupted run resumes where it stopped.
- `train_crops(template)`: the aligned crops for a student's template, uint8, memory
  mapped (26k faces at 112x112 are ~1 GB).
- `lfw_crops(template, degraded)`: LFW's pair images aligned for a student, clean or
  through the degraded-quality protocol (trainer/degrade.py).

Nothing here is committed: the data is research-only and lives in ../shared/data.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from faceapp.core.align import align_face, get_template
from faceapp.core.imageio import ImageError, load_image

from .data import TRAIN_SUBSETS, pick_face, shared_data_root, train_images
from .upstream import cache_dir

TEACHER_PACK = "dlib-resnet-v1"
TEACHER_VARIANT = "fp32"
DETECTOR_MIN_FACE = 20
SHARD = 2048


def _progress(iterable, total: int, desc: str):
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, mininterval=5.0)


def celeba_identities() -> dict[str, int]:
    """celeba10k file name -> identity number."""
    path = shared_data_root() / "train" / "celeba10k" / "identity.txt"
    ids = {}
    for line in path.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 2:
            ids[parts[0]] = int(parts[1])
    return ids


def _targets_key(images: list[Path], teacher_sha: str, detector_sha: str) -> str:
    digest = hashlib.sha256()
    root = shared_data_root()
    for path in images:
        digest.update(str(path.relative_to(root)).encode() + b"\n")
    digest.update(f"{teacher_sha}:{detector_sha}:{DETECTOR_MIN_FACE}".encode())
    return digest.hexdigest()[:16]


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class DistillTargets:
    """The cached per-image facts; rows are images whose face the detector found."""

    def __init__(self, folder: Path, data: dict[str, np.ndarray], paths: list[str]):
        self.folder = folder
        self.paths = paths  # relative to ../shared/data, one per row
        self.landmarks = data["landmarks"]  # N x 5 x 2 float32
        self.labels = data["labels"]  # N int (-1: no identity label)
        self.teacher = data["teacher"]  # N x 128 unit vectors, clean face
        self.teacher_mirror = data["teacher_mirror"]  # N x 128, its mirror
        self.dropped = int(data["dropped"])  # images without a usable face

    def __len__(self) -> int:
        return len(self.paths)


def distill_targets(subsets=TRAIN_SUBSETS, limit: int | None = None,
                    teacher_variant: str = TEACHER_VARIANT) -> DistillTargets:
    """Build (or load) the distillation targets for the training subsets (the first
    `limit` images only, when given: quick trials and tests)."""
    from faceapp.core.detect import MTCNNDetector
    from faceapp.core.embed import Embedder
    from faceapp.core.models import ModelPack

    images = train_images(subsets)
    if limit:
        images = images[:limit]
    teacher_pack = ModelPack.load(TEACHER_PACK)
    detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=DETECTOR_MIN_FACE)
    key = _targets_key(images, teacher_pack.manifest["files"][teacher_variant]["sha256"],
                       detector.pack.manifest["files"]["onet"]["sha256"])
    folder = cache_dir() / f"distill-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / "targets.npz"
    root = shared_data_root()
    if final.exists():
        data = np.load(final)
        paths = json.loads((folder / "paths.json").read_text())
        return DistillTargets(folder, dict(data), paths)

    teacher = Embedder(teacher_pack, teacher_variant, flip=False)
    identities = celeba_identities()
    n_shards = (len(images) + SHARD - 1) // SHARD
    for shard in range(n_shards):
        shard_path = folder / f"shard-{shard:03d}.npz"
        if shard_path.exists():
            continue
        chunk = images[shard * SHARD:(shard + 1) * SHARD]
        found = np.zeros(len(chunk), bool)
        landmarks = np.zeros((len(chunk), 5, 2), np.float32)
        chips = np.zeros((len(chunk), 150, 150, 3), np.uint8)
        for i, path in enumerate(_progress(chunk, len(chunk),
                                           f"detecting {shard + 1}/{n_shards}")):
            try:
                image = load_image(path)
            except ImageError:
                continue
            face = pick_face(detector.detect(image), image.shape)
            if face is None:
                continue
            found[i], landmarks[i] = True, face.landmarks
            chips[i] = align_face(image, face.landmarks, teacher.template)
        embedded = np.zeros((len(chunk), 128), np.float32)
        mirrored = np.zeros((len(chunk), 128), np.float32)
        if found.any():
            embedded[found] = teacher.embed(chips[found])
            mirrored[found] = teacher.embed(chips[found][:, :, ::-1])
        _atomic_savez(shard_path, found=found, landmarks=landmarks, teacher=embedded,
                      teacher_mirror=mirrored)

    shards = [np.load(folder / f"shard-{s:03d}.npz") for s in range(n_shards)]
    found = np.concatenate([s["found"] for s in shards])
    keep = np.flatnonzero(found)
    paths = [str(images[i].relative_to(root)) for i in keep]
    labels = np.array([identities.get(Path(p).name, -1) if "celeba10k" in p else -1
                       for p in paths], np.int64)
    data = {
        "landmarks": np.concatenate([s["landmarks"] for s in shards])[keep],
        "teacher": np.concatenate([s["teacher"] for s in shards])[keep],
        "teacher_mirror": np.concatenate([s["teacher_mirror"] for s in shards])[keep],
        "labels": labels,
        "dropped": np.array(len(images) - len(keep)),
    }
    (folder / "paths.json").write_text(json.dumps(paths))
    _atomic_savez(final, **data)
    for s in range(n_shards):
        (folder / f"shard-{s:03d}.npz").unlink()
    print(f"distillation targets: {len(keep)} faces, {len(images) - len(keep)} images "
          "dropped (no face found)", file=sys.stderr)
    return DistillTargets(folder, data, paths)


def _crop_cache(path: Path, count: int, template: str, source) -> np.ndarray:
    """A memory-mapped N x H x W x 3 uint8 array filled by source(i) -> crop."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    tpl = get_template(template)
    w, h = tpl.size
    # one temp file per process: two runs started together both build it, one wins
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, h, w, 3))
    for i in _progress(range(count), count, f"aligning {template}"):
        out[i] = source(i, tpl)
    out.flush()
    del out
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def train_crops(targets: DistillTargets, template: str) -> np.ndarray:
    root = shared_data_root()

    def crop(i, tpl):
        return align_face(load_image(root / targets.paths[i]), targets.landmarks[i], tpl)

    return _crop_cache(targets.folder / f"crops-{template}.npy", len(targets), template, crop)


def lfw_crops(template: str, degraded: bool = False) -> tuple[np.ndarray, "object"]:
    """LFW pair images aligned for `template` (clean or degraded) and the pairs."""
    from faceapp.core.detect import MTCNNDetector

    from .degrade import degraded_lfw
    from .lfw import LFW_MIN_FACE, detect_landmarks, read_pairs

    lfw = shared_data_root() / "lfw"
    pairs = read_pairs(lfw / "pairs.txt")
    root = degraded_lfw(pairs.images) if degraded else lfw / "images"
    detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=LFW_MIN_FACE)
    landmarks, _found = detect_landmarks(detector, root, pairs.images)
    tag = hashlib.sha256(str(root).encode() + landmarks.tobytes()).hexdigest()[:12]
    path = cache_dir() / f"lfw-crops-{template}-{'low' if degraded else 'high'}-{tag}.npy"

    def crop(i, tpl):
        return align_face(load_image(root / pairs.images[i]), landmarks[i], tpl)

    return _crop_cache(path, len(pairs.images), template, crop), pairs
