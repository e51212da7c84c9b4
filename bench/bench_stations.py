"""Several stations on one gallery server, measured (the bars of the shared-gallery
issue). Starts its own PostgreSQL server (tests/helpers/pgserver.py) and prints
figures; every step goes through the app's own code (Gallery, Recognizer, the
station and writer processes of tests/helpers).

    python bench/bench_stations.py latency [--repeat 5]
        enrolled at station A, named at station B (two processes): seconds
    python bench/bench_stations.py writers [--writers 20] [--seconds 60]
        N writer processes enroll, rename, merge and import at once; then the count
    python bench/bench_stations.py crash [--seconds 40]
        imports and a station running while the server is killed (pg_ctl stop -m
        immediate) and restarted: what arrived, what was lost or doubled
    python bench/bench_stations.py million [--templates 1000000]
        a station's index from a server holding that many templates, against the same
        gallery in a file: seconds until ready, and search time
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceapp.core.gallery import Gallery  # noqa: E402
from tests.helpers.pgserver import PgServer  # noqa: E402
from tests.helpers.writers import check_writers  # noqa: E402

PHOTOS = Path(os.environ.get("FACEAPP_SHARED_DATA", REPO.parent / "shared" / "data")) \
    / "samples" / "photos"
STATION = REPO / "tests" / "helpers" / "station.py"


def cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text()
    return "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2"


def _station(env, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(STATION), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"the station did not start: {proc.stderr.read()[-2000:]}")
    return proc


def _writer(location: str, worker: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.helpers.writers", location,
                             str(worker), str(seconds)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def latency(server: PgServer, repeat: int) -> None:
    from faceapp.core.enroll import Enroller
    from faceapp.core.recognize import FacePipeline

    pipeline = FacePipeline.create(min_face=40, threads=1)
    env = dict(os.environ, PYTHONPATH=str(REPO), FACEAPP_DATA_DIR=tempfile.mkdtemp())
    seconds = []
    for run in range(repeat):
        name = server.create_database(f"latency_{run}")
        url = server.url(name)
        Gallery(url).close()
        watcher = _station(env, "watch", url, "desk-B", PHOTOS / "img2.jpg", "Alice", 60)
        time.sleep(1.0 + 0.13 * run)  # at a different moment of B's polling each time
        with Gallery(url, station="desk-A") as gallery:
            enroller = Enroller(pipeline, gallery)
            enroller.save("Alice", [enroller.prepare_file(PHOTOS / "img1.jpg")])
            committed = time.time()
        out, err = watcher.communicate(timeout=60)
        if watcher.returncode:
            raise SystemExit(err[-2000:])
        seconds.append(float(out.split()[-1]) - committed)
        server.drop_database(name)
    print(json.dumps({"bench": "enrolled at A, named at B", "runs": repeat,
                      "median_s": round(statistics.median(seconds), 3),
                      "max_s": round(max(seconds), 3), "cpu": cpu()}))


def writers(server: PgServer, count: int, seconds: float) -> None:
    name = server.create_database("writers")
    url = server.url(name)
    Gallery(url).close()
    started = time.monotonic()
    procs = [_writer(url, i, seconds) for i in range(count)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 300)
        if proc.returncode:
            raise SystemExit(err[-2000:])
        reports.append(json.loads(out.splitlines()[-1]))
    problems, totals = check_writers(url, reports)
    print(json.dumps({"bench": f"{count} writers for {seconds:g} s", "problems": problems,
                      "wall_s": round(time.monotonic() - started, 1), **totals,
                      "conflict_message": next((m for r in reports for m in r["messages"]), None),
                      "cpu": cpu()}))


def crash(server: PgServer, seconds: float) -> None:
    from faceapp.core.enroll import Enroller
    from faceapp.core.recognize import FacePipeline

    name = server.create_database("crash")
    url = server.url(name)
    with Gallery(url) as gallery:
        enroller = Enroller(FacePipeline.create(min_face=40, threads=1), gallery)
        enroller.save("Alice", [enroller.prepare_file(PHOTOS / "img1.jpg")])
    env = dict(os.environ, PYTHONPATH=str(REPO), FACEAPP_DATA_DIR=tempfile.mkdtemp())
    stations = [_station(env | {"FACEAPP_DATA_DIR": tempfile.mkdtemp()}, "log", url,
                         f"desk-{k}", PHOTOS / "img2.jpg", seconds) for k in range(2)]
    procs = [_writer(url, i, seconds) for i in range(4)]
    time.sleep(seconds / 3)
    server.stop(mode="immediate")
    down = time.monotonic()
    time.sleep(5)
    server.start()
    back = time.monotonic()
    reports = [json.loads(p.communicate(timeout=seconds + 300)[0].splitlines()[-1])
               for p in stations]
    written = [json.loads(p.communicate(timeout=seconds + 300)[0].splitlines()[-1])
               for p in procs]
    problems, totals = check_writers(url, written, before={"Alice": 1})
    with Gallery(url) as gallery:
        arrived = [len(gallery.events(station=f"desk-{k}", limit=None)) for k in range(2)]
    print(json.dumps({"bench": "server killed mid-import and restarted",
                      "down_s": round(back - down, 1),
                      "events_named": [r["named"] for r in reports], "events_stored": arrived,
                      "stations_saw_it_away": [r["offline_seen"] for r in reports],
                      "still_queued": [r["pending"] + r["spooled"] for r in reports],
                      "writer_problems": problems, **totals, "cpu": cpu()}))


def million(server: PgServer, templates: int) -> None:
    """A gallery of `templates` samples (10 per person) with 128-d templates, written
    straight into both backends' tables with their bulk paths (COPY; executemany),
    then opened by the app as a station does."""
    import psycopg

    from faceapp.core.gallery import encode_crop
    from faceapp.core.recognize import FacePipeline, Recognizer

    per_person, dim = 10, 128
    people = templates // per_person
    rng = np.random.default_rng(0)
    crop = encode_crop(np.full((8, 8, 3), 128, np.uint8))  # the samples' pictures don't matter
    landmarks = "[[1,1],[6,1],[4,4],[2,6],[6,6]]"
    now = "2026-12-01T00:00:00.000000Z"
    name = server.create_database("million")
    url = server.url(name)
    pipeline = FacePipeline.create(min_face=40, threads=2)
    model = pipeline.embedder.model_id
    Gallery(url).close()
    file_path = Path(tempfile.mkdtemp()) / "million.db"
    Gallery(file_path).close()

    def rows():
        for start in range(0, templates, 50_000):
            n = min(50_000, templates - start)
            block = rng.standard_normal((n, dim)).astype("<f4")
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            for k in range(n):
                fid = start + k + 1
                yield fid, (fid - 1) // per_person + 1, block[k].tobytes()

    started = time.monotonic()
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY people (id, name, name_key, created, updated) FROM STDIN") as cp:
                for pid in range(1, people + 1):
                    cp.write_row((pid, f"Person {pid}", f"person {pid}", now, now))
        with conn.cursor() as cur, cur.copy("COPY faces (id, person_id, crop, landmarks, "
                                            "quality, created, content_hash) FROM STDIN") as cp:
            for fid, pid, _ in rows():
                cp.write_row((fid, pid, crop, landmarks, 0.9, now,
                              hashlib.sha256(fid.to_bytes(8, "little")).digest()))
        rng = np.random.default_rng(0)
        with conn.cursor() as cur, cur.copy("COPY embeddings (face_id, model_id, dim, vector) "
                                            "FROM STDIN") as cp:
            for fid, _, vector in rows():
                cp.write_row((fid, model, dim, vector))
        for table in ("people", "faces"):  # COPY with ids leaves the sequences behind
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT max(id) FROM {table}))")
        conn.execute("UPDATE gallery_state SET value = '1' WHERE key = 'data_version'")
    with psycopg.connect(url, autocommit=True) as conn:
        # done now, not by autovacuum on the other core while the station is measured
        conn.execute("VACUUM ANALYZE")
    loaded_server = time.monotonic() - started
    import sqlite3

    started = time.monotonic()
    rng = np.random.default_rng(0)
    with sqlite3.connect(file_path) as conn:
        conn.executemany("INSERT INTO people (id, name, name_key, created, updated) "
                         "VALUES (?, ?, ?, ?, ?)",
                         ((pid, f"Person {pid}", f"person {pid}", now, now)
                          for pid in range(1, people + 1)))
        conn.executemany("INSERT INTO faces (id, person_id, crop, landmarks, quality, created, "
                         "content_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         ((fid, pid, crop, landmarks, 0.9, now,
                           hashlib.sha256(fid.to_bytes(8, "little")).digest())
                          for fid, pid, _ in rows()))
        rng = np.random.default_rng(0)
        conn.executemany("INSERT INTO embeddings (face_id, model_id, dim, vector) "
                         "VALUES (?, ?, ?, ?)", ((fid, model, dim, v) for fid, _, v in rows()))
        conn.execute("UPDATE gallery_state SET value = '1' WHERE key = 'data_version'")
    loaded_file = time.monotonic() - started
    conn.close()

    figures = {"bench": f"{templates:,} templates, {people:,} people", "cpu": cpu(),
               "bulk_load_s": {"server": round(loaded_server, 1), "file": round(loaded_file, 1)}}
    query = np.random.default_rng(1).standard_normal((200, dim)).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    galleries, indexes = [], {}
    for label, location in (("server", url), ("file", file_path)):
        gallery = Gallery(location, station="bench")
        galleries.append(gallery)
        started = time.monotonic()
        recognizer = Recognizer(pipeline, gallery, keep_unknowns=False, log_events=False)
        figures[label] = {"index_ready_s": round(time.monotonic() - started, 2),
                          "templates": len(recognizer.index)}
        indexes[label] = recognizer.identifier
    took = {label: [] for label in indexes}
    for q in query:  # alternating, so that the shared machine's load falls on both alike
        for label, index in indexes.items():
            started = time.perf_counter()
            index.identify(q)
            took[label].append(time.perf_counter() - started)
    for label in indexes:
        figures[label]["search_ms_median"] = round(1000 * statistics.median(took[label][4:]), 2)
    for gallery in galleries:
        gallery.close()
    print(json.dumps(figures))
    server.drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["latency", "writers", "crash", "million"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--templates", type=int, default=1_000_000)
    args = parser.parse_args()
    with PgServer() as server:
        if args.what == "latency":
            latency(server, args.repeat)
        elif args.what == "writers":
            writers(server, args.writers, args.seconds)
        elif args.what == "crash":
            crash(server, args.seconds)
        else:
            million(server, args.templates)


if __name__ == "__main__":
    main()
