"""Live recognition speed: a 640x480 video with three moving faces, end to end.

    python bench/bench_live.py [--frames 300] [--threads 2]

Three LFW people are enrolled from one photo each into a temporary gallery; the
video shows other photos of them side by side, drifting a few pixels per frame.
Prints frames per second and the median milliseconds of each stage, with tracking
(the app's live view) and without (every face embedded every frame).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceapp.core.enroll import Enroller  # noqa: E402
from faceapp.core.gallery import Gallery  # noqa: E402
from faceapp.core.imageio import load_image  # noqa: E402
from faceapp.core.recognize import FacePipeline, Recognizer  # noqa: E402
from trainer.data import shared_data_root  # noqa: E402

PEOPLE = ["Colin_Powell", "Serena_Williams", "Hugo_Chavez"]


def make_frames(count: int) -> list[np.ndarray]:
    lfw = shared_data_root() / "lfw" / "images"
    tiles = [cv2.resize(load_image(lfw / name / f"{name}_0002.jpg"), (200, 200))
             for name in PEOPLE]
    frames = []
    for i in range(count):
        frame = np.full((480, 640, 3), 90, np.uint8)
        dx = int(6 * np.sin(i / 15))
        dy = int(5 * np.cos(i / 20))
        for k, tile in enumerate(tiles):
            x, y = 10 + k * 212 + dx, 140 + dy
            frame[y:y + 200, x:x + 200] = tile
        frames.append(frame)
    return frames


def run(recognizer: Recognizer, frames, track: bool) -> tuple[float, dict, int]:
    stages: dict[str, list[float]] = {}
    faces = 0
    recognizer.process(frames[0], track=track)  # warm-up
    started = time.perf_counter()
    for frame in frames:
        result = recognizer.process(frame, source="bench", track=track)
        faces += sum(f.decision is not None and f.decision.known for f in result.faces)
        for stage, ms in result.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    fps = len(frames) / (time.perf_counter() - started)
    return fps, {k: statistics.median(v) for k, v in stages.items()}, faces


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    pipeline = FacePipeline.create(threads=args.threads)
    frames = make_frames(args.frames)
    lfw = shared_data_root() / "lfw" / "images"
    with tempfile.TemporaryDirectory() as tmp, Gallery(Path(tmp) / "g.db") as gallery:
        enroller = Enroller(pipeline, gallery)
        for name in PEOPLE:
            report = enroller.enroll_photos(name, [lfw / name / f"{name}_0001.jpg"])
            assert report.added == 1, report.skipped
        for track in (True, False):
            recognizer = Recognizer(pipeline, gallery, "balanced", log_events=False)
            fps, stages, known = run(recognizer, frames, track)
            label = "tracking" if track else "no tracking"
            print(f"{label:12} {fps:6.1f} frames/s, {known / len(frames):.2f} of 3 faces "
                  f"identified per frame; median ms: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
