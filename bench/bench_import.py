"""Folder import speed: photos per second into a new gallery.

    python bench/bench_import.py [--people 100] [--per-person 3]

Builds a temporary folder of LFW photos (250x250, one sub-folder per person), imports
it with the same code as `python -m faceapp import`, and prints photos/s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceapp.core.enroll import Enroller  # noqa: E402
from faceapp.core.gallery import Gallery  # noqa: E402
from faceapp.core.recognize import FacePipeline  # noqa: E402
from trainer.data import shared_data_root  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--per-person", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    lfw = shared_data_root() / "lfw" / "images"
    folders = [d for d in sorted(lfw.iterdir())
               if len(list(d.iterdir())) >= args.per_person][:args.people]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "people"
        photos = 0
        for folder in folders:
            (root / folder.name).mkdir(parents=True)
            for photo in sorted(folder.iterdir())[:args.per_person]:
                shutil.copy(photo, root / folder.name / photo.name)
                photos += 1
        pipeline = FacePipeline.create(threads=args.threads)
        with Gallery(Path(tmp) / "g.db") as gallery:
            started = time.perf_counter()
            report = Enroller(pipeline, gallery).import_folder(root)
            elapsed = time.perf_counter() - started
    print(f"{photos} photos of {len(folders)} people in {elapsed:.1f} s: "
          f"{photos / elapsed:.1f} photos/s ({report.added} added, "
          f"{len(report.skipped)} skipped)")
    for path, reason in report.skipped[:10]:
        print(f"  skipped {Path(path).name}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
