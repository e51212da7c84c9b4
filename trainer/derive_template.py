"""Derive an alignment template for our detector's points from another aligner's chips.

dlib frames its 150x150 chips from its own 5 landmarks (eye corners, base of the
nose). Given, for many faces, the image->chip matrix dlib used (written by
bench/make_dlib_golden.py, which runs dlib), we map our detector's 5 points through
the same matrix: their mean position in the chip is the template that makes our
crops frame faces as dlib's do. The spread says how well a similarity transform from
our points can reproduce dlib's framing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from faceapp.core.detect import MTCNNDetector
from faceapp.core.imageio import ImageError, load_image

from .data import pick_face


def derive(chips_json: Path, min_face: int = 20) -> dict:
    entries = json.loads(chips_json.read_text())
    detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=min_face)
    mapped = []
    for entry in entries:
        try:
            image = load_image(entry["path"])
        except ImageError:
            continue
        face = pick_face(detector.detect(image), image.shape)
        if face is None:
            continue
        matrix = np.asarray(entry["M"], dtype=np.float64)
        points = np.hstack([face.landmarks.astype(np.float64), np.ones((5, 1))])
        mapped.append(points @ matrix.T)
    mapped = np.stack(mapped)
    # a robust mean: drop faces whose points sit far from the median (detector misses)
    median = np.median(mapped, axis=0)
    error = np.linalg.norm(mapped - median, axis=2).max(axis=1)
    keep = error < np.percentile(error, 95)
    template = mapped[keep].mean(axis=0)
    return {"faces": int(len(mapped)), "kept": int(keep.sum()),
            "template": np.round(template, 2).tolist(),
            "std_px": np.round(mapped[keep].std(axis=0), 2).tolist()}


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("chips_json", type=Path)
    args = parser.parse_args(argv)
    result = derive(args.chips_json)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
