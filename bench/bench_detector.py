"""Detector speed on 640x480 frames, and optionally its detection rate on LFW.

    python bench/bench_detector.py [--runs 50] [--min-face 40] [--threads 2]
    python bench/bench_detector.py --lfw [--lfw-min-face 20]

Speed: frames are the sample photos of ../shared/data/samples/photos, letterboxed to
640x480; each frame is detected `--runs` times after warm-up (frames cycle), and the
median and 90th percentile milliseconds per frame are printed.

--lfw: the fraction of the 13,233 LFW images (250x250, faces about 100 px wide) in
which at least one face is found. LFW is a non-commercial research dataset: figures
computed on it are for research evaluation only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceapp.core.detect import MTCNNDetector  # noqa: E402
from faceapp.core.imageio import IMAGE_SUFFIXES, load_image  # noqa: E402
from trainer.data import shared_data_root  # noqa: E402

FRAME_W, FRAME_H = 640, 480


def letterbox(image: np.ndarray, width: int = FRAME_W, height: int = FRAME_H) -> np.ndarray:
    """Scale to fit inside width x height, keeping the aspect ratio, pad with black."""
    h, w = image.shape[:2]
    f = min(width / w, height / h)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    frame[y0:y0 + nh, x0:x0 + nw] = resized
    return frame


def sample_frames(limit: int = 20) -> list[np.ndarray]:
    folder = shared_data_root() / "samples" / "photos"
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no sample photos in {folder}")
    return [letterbox(load_image(p)) for p in paths[:limit]]


def bench_speed(detector: MTCNNDetector, frames: list[np.ndarray], runs: int) -> tuple[float, float, float]:
    for frame in frames[:5]:
        detector.detect(frame)
    samples = []
    faces = 0
    for i in range(runs):
        frame = frames[i % len(frames)]
        started = time.perf_counter()
        faces += len(detector.detect(frame))
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))], faces / runs


def lfw_rate(detector: MTCNNDetector) -> tuple[int, int, list[Path]]:
    root = shared_data_root() / "lfw" / "images"
    paths = sorted(root.rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"no LFW images under {root}")
    found = 0
    missed: list[Path] = []
    started = time.perf_counter()
    for i, path in enumerate(paths, 1):
        if detector.detect(load_image(path)):
            found += 1
        else:
            missed.append(path)
        if i % 500 == 0 or i == len(paths):
            rate = i / (time.perf_counter() - started)
            print(f"  {i}/{len(paths)} images, {found / i:.4%} with a face, {rate:.0f} img/s",
                  file=sys.stderr, flush=True)
    return found, len(paths), missed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", default="mtcnn-v1")
    parser.add_argument("--runs", type=int, default=60, help="timed frames (at least 30)")
    parser.add_argument("--min-face", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lfw", action="store_true", help="also measure the LFW detection rate")
    parser.add_argument("--lfw-min-face", type=int, default=20)
    parser.add_argument("--no-speed", action="store_true", help="skip the speed test")
    args = parser.parse_args(argv)

    if not args.no_speed:
        detector = MTCNNDetector.from_pack(args.pack, min_face=args.min_face, threads=args.threads)
        frames = sample_frames()
        median, p90, per_frame = bench_speed(detector, frames, max(30, args.runs))
        print(f"{args.pack}: {FRAME_W}x{FRAME_H} frames, min_face {args.min_face}, "
              f"{args.threads} threads, {max(30, args.runs)} runs over {len(frames)} frames: "
              f"median {median:.1f} ms, p90 {p90:.1f} ms ({per_frame:.2f} faces/frame)")
    if args.lfw:
        detector = MTCNNDetector.from_pack(args.pack, min_face=args.lfw_min_face,
                                           threads=args.threads)
        found, total, missed = lfw_rate(detector)
        for path in missed[:20]:
            print(f"  no face: {path.relative_to(path.parents[1])}", file=sys.stderr)
        print(f"LFW (research use only): {found}/{total} = {found / total:.4%} of images "
              f"with at least one face (min_face {args.lfw_min_face})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
