"""Live for a long time, as a kiosk runs it: `faceapp --live VIDEO --loop --quit-after S`
in its own process, its memory sampled from outside. Used by tests/test_soak.py (two
minutes) and bench/bench_soak.py (an hour, also against the installed build)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SUMMARY = re.compile(r"faceapp live: (\d+) frames in (\d+) s \(([\d.]+) frames/s\), "
                     r"(\d+) events, longest GUI stall (\d+) ms")
PEOPLE = ["Colin_Powell", "Serena_Williams", "Hugo_Chavez"]


@dataclass
class SoakResult:
    returncode: int
    frames: int
    fps: float
    events: int
    longest_stall_ms: int
    rss_mb: list[tuple[float, float]]  # (seconds since start, resident MB)
    log: str

    def rss_at(self, seconds: float) -> float:
        return min(self.rss_mb, key=lambda s: abs(s[0] - seconds))[1]


def make_video(path: Path, lfw: Path, frames: int = 250) -> Path:
    """A 640x480, 25 frames/s video of three LFW people side by side, drifting."""
    tiles = [cv2.resize(cv2.imread(str(lfw / n / f"{n}_0002.jpg")), (200, 200)) for n in PEOPLE]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    for i in range(frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        dx, dy = int(6 * math.sin(i / 15)), int(5 * math.cos(i / 20))
        for k, tile in enumerate(tiles):
            x, y = 10 + k * 212 + dx, 140 + dy
            frame[y:y + 200, x:x + 200] = tile
        writer.write(frame)
    writer.release()
    return path


def enroll_people(db: Path, lfw: Path, command: list[str]) -> None:
    for name in PEOPLE:
        subprocess.run([*command, "enroll", name, str(lfw / name / f"{name}_0001.jpg"),
                        "--db", str(db)], check=True, capture_output=True, timeout=300)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def soak(command: list[str], video: Path, db: Path, settings: Path, seconds: float,
         sample_every: float = 5.0) -> SoakResult:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    child = subprocess.Popen([*command, "--gallery", str(db), "--settings", str(settings),
                              "--live", str(video), "--loop", "--quit-after", str(seconds)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
    started, samples = time.monotonic(), []
    while child.poll() is None and time.monotonic() - started < seconds + 120:
        mb = rss_mb(child.pid)
        if mb is not None:
            samples.append((time.monotonic() - started, mb))
        try:
            child.wait(timeout=sample_every)
        except subprocess.TimeoutExpired:
            pass
    if child.poll() is None:
        child.kill()
    log = child.communicate()[0]
    found = SUMMARY.search(log)
    frames, _, fps, events, stall = found.groups() if found else (0, 0, 0, 0, 0)
    return SoakResult(child.returncode, int(frames), float(fps), int(events), int(stall),
                      samples, log)


def app_command() -> list[str]:
    return [sys.executable, "-m", "faceapp"]
