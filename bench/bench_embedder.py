"""Embedder speed: milliseconds per face, each variant of a pack, in one run.

    python bench/bench_embedder.py [--model dlib-resnet-v1] [--runs 100]

Real aligned faces from ../shared/data/samples are fed; timings are medians (p90 in
brackets) after warm-up, for batch 1 on 1 and 2 threads and batch 8 on 2 threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceapp.core.embed import Embedder  # noqa: E402
from faceapp.core.models import ModelPack  # noqa: E402
from trainer.data import list_images, shared_data_root  # noqa: E402


def sample_crops(template, count: int = 8) -> np.ndarray:
    from faceapp.core.align import align_face
    from faceapp.core.detect import MTCNNDetector
    from faceapp.core.imageio import load_image

    detector = MTCNNDetector.from_pack("mtcnn-v1")
    crops = []
    for path in list_images(shared_data_root() / "samples" / "photos"):
        faces = detector.detect(load_image(path))
        if faces:
            crops.append(align_face(load_image(path), faces[0].landmarks, template))
        if len(crops) == count:
            break
    return np.stack(crops)


def time_per_face(embedder: Embedder, crops: np.ndarray, batch: int, runs: int):
    chunk = np.concatenate([crops] * (batch // len(crops) + 1))[:batch]
    for _ in range(5):
        embedder.raw(chunk)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        embedder.raw(chunk)
        samples.append((time.perf_counter() - started) * 1000 / batch)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dlib-resnet-v1")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)

    pack = ModelPack.load(args.model)
    variants = [key for key in pack.manifest["files"] if pack.has_file(key)]
    crops = None
    print(f"{pack.name}: ms per face, median [p90] of {args.runs} runs")
    print(f"{'variant':8} {'b1 1 thread':>16} {'b1 2 threads':>16} {'b8 2 threads':>16}")
    for variant in variants:
        row = []
        for threads, batch in ((1, 1), (2, 1), (2, 8)):
            embedder = Embedder(pack, variant=variant, threads=threads)
            if crops is None:
                crops = sample_crops(embedder.template)
            median, p90 = time_per_face(embedder, crops, batch, args.runs)
            row.append(f"{median:7.2f} [{p90:5.2f}]")
        print(f"{variant:8} " + " ".join(f"{cell:>16}" for cell in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
