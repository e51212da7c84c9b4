"""Live for minutes, as a user runs it: the real main window (offscreen) plays a real
640x480 video with three enrolled people for a few thousand frames in its own process.
The process must survive (PySide6 6.12 on Python 3.11 killed it after about a minute),
keep its memory flat and write events. bench/bench_soak.py runs the same for an hour."""

from __future__ import annotations

import pytest

from .helpers.soak import app_command, enroll_people, make_video, soak

SECONDS = 120  # 25 frames/s in real time: about 3,000 frames


@pytest.mark.slow
def test_live_plays_a_video_for_thousands_of_frames(shared_data, tmp_path):
    lfw = shared_data / "lfw" / "images"
    video = make_video(tmp_path / "three.mp4", lfw)
    db = tmp_path / "gallery.db"
    enroll_people(db, lfw, app_command())
    result = soak(app_command(), video, db, tmp_path / "settings.ini", SECONDS)
    assert result.returncode == 0, result.log[-3000:]
    assert "Fatal Python error" not in result.log
    print(f"\n{result.frames} frames, {result.fps} frames/s, {result.events} events, "
          f"longest stall {result.longest_stall_ms} ms, RSS {result.rss_at(30):.0f} MB at "
          f"30 s, {result.rss_mb[-1][1]:.0f} MB at {result.rss_mb[-1][0]:.0f} s")
    assert result.frames >= 2500, result.log[-2000:]
    assert result.events >= 3  # one per person's track at least (the video loops)
    # after the first half minute (models, caches, Qt) memory stays where it is
    assert result.rss_mb[-1][1] - result.rss_at(30) <= 40, result.rss_mb
    assert result.longest_stall_ms < 1000
