"""A recognition station as a separate process, through the app's own Recognizer (for
tests/test_stations.py and bench/bench_stations.py).

    station.py watch LOCATION STATION PHOTO NAME [TIMEOUT]
        identify the photo over and over, as Live does with a camera; print
        "ready" after the first frame, then "named <unix time>" the first time the
        face gets NAME, and exit (exit 1 after TIMEOUT seconds without it).
    station.py log LOCATION STATION PHOTO SECONDS
        identify the photo over and over for SECONDS (each frame records one event
        of an enrolled person), whatever happens to the server meanwhile; then send
        what waits and print one JSON line: frames, named frames, events still
        queued, and whether the station ever saw the server away.
"""

from __future__ import annotations

import json
import sys
import time

from faceapp.core.imageio import load_image
from faceapp.core.gallery import open_gallery
from faceapp.core.models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from faceapp.core.recognize import FacePipeline, Recognizer


def _recognizer(location: str, station: str) -> Recognizer:
    pipeline = FacePipeline.create(DEFAULT_DETECTOR, DEFAULT_EMBEDDER, min_face=40, threads=1)
    gallery = open_gallery(location, station=station)
    return Recognizer(pipeline, gallery, keep_unknowns=False)


def watch(location: str, station: str, photo: str, name: str, timeout: float) -> int:
    recognizer = _recognizer(location, station)
    image = load_image(photo)
    deadline = time.monotonic() + timeout
    first = True
    while time.monotonic() < deadline:
        result = recognizer.process(image, source=f"{station} door", track=False)
        if first:
            print("ready", flush=True)
            first = False
        if any(recognizer.names.get(f.decision.person_id) == name for f in result.faces
               if f.decision.known):
            print(f"named {time.time():.3f}", flush=True)
            return 0
    return 1


def log(location: str, station: str, photo: str, seconds: float) -> int:
    recognizer = _recognizer(location, station)
    image = load_image(photo)
    frames = named = 0
    offline_seen = False
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = recognizer.process(image, source=f"{station} door", track=False)
        frames += 1
        named += sum(1 for f in result.faces if f.decision.known)
        offline_seen |= recognizer.offline or recognizer.events.offline
    # the server may still be coming back: keep trying to send for a while
    events = recognizer.events
    until = time.monotonic() + 60
    while (events.pending or events.spooled) and time.monotonic() < until:
        events.flush(force=True, wait=5)
        if events.pending or events.spooled:
            time.sleep(0.5)
    print(json.dumps({"frames": frames, "named": named, "pending": len(events.pending),
                      "spooled": events.spooled, "offline_seen": offline_seen}), flush=True)
    recognizer.gallery.close()
    return 0


def main(argv: list[str]) -> int:
    command = argv[0]
    if command == "watch":
        return watch(argv[1], argv[2], argv[3], argv[4], float(argv[5]) if len(argv) > 5 else 60)
    if command == "log":
        return log(argv[1], argv[2], argv[3], float(argv[4]))
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
