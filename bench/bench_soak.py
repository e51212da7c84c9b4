"""Live for an hour: frames processed, frames/s, memory at start and end, longest GUI
stall, from source or from the installed build.

    QT_QPA_PLATFORM=offscreen python bench/bench_soak.py [--minutes 60]
    QT_QPA_PLATFORM=offscreen python bench/bench_soak.py --app /opt/faceapp/faceapp

Plays a 640x480 video of three enrolled LFW people (research data) in a loop on the
Live page of the real main window, in its own process, and samples its resident memory
from outside every 10 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.soak import app_command, enroll_people, make_video, soak  # noqa: E402
from trainer.data import shared_data_root  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--app", help="the installed executable (default: this source tree)")
    args = parser.parse_args(argv)
    command = [args.app] if args.app else app_command()
    lfw = shared_data_root() / "lfw" / "images"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(tmp / "three.mp4", lfw)
        enroll_people(tmp / "gallery.db", lfw, command)
        result = soak(command, video, tmp / "gallery.db", tmp / "settings.ini",
                      args.minutes * 60, sample_every=10)
    if result.returncode != 0:
        print(result.log[-3000:])
        print(f"the app exited with {result.returncode}")
        return 1
    first, last = result.rss_at(60), result.rss_mb[-1]
    print(f"{' '.join(command)}: {result.frames} frames in {args.minutes:g} min, "
          f"{result.fps:.1f} frames/s, {result.events} events, longest GUI stall "
          f"{result.longest_stall_ms} ms; RSS {first:.0f} MB after 1 min, {last[1]:.0f} MB "
          f"at {last[0] / 60:.0f} min (max {max(mb for _, mb in result.rss_mb):.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
