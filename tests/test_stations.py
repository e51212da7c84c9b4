"""Several stations on one gallery server: a real PostgreSQL server (started by the
tests, tests/helpers/pgserver.py), station processes running the app's own
Recognizer (tests/helpers/station.py), the real CLI, real photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from faceapp.core.enroll import Enroller
from faceapp.core.gallery import SCHEMA_VERSION, GalleryError, GalleryUnavailable, NotFound, connect
from faceapp.core.gallery.server import ServerGallery, display_location, grant_station
from faceapp.core.models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from faceapp.core.recognize import FacePipeline
from tests.helpers.writers import check_writers

REPO = Path(__file__).resolve().parents[1]
STATION = REPO / "tests" / "helpers" / "station.py"


@pytest.fixture
def server_db(pg_server):
    name = pg_server.create_database(f"st_{os.urandom(5).hex()}")
    yield pg_server, name
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def pipeline():
    return FacePipeline.create(DEFAULT_DETECTOR, DEFAULT_EMBEDDER, min_face=40, threads=2)


@pytest.fixture
def station_env(tmp_path):
    env = dict(os.environ, FACEAPP_DATA_DIR=str(tmp_path / "station-data"),
               PYTHONPATH=str(REPO))
    return env


def start_writer(location: str, worker: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.helpers.writers", location,
                             str(worker), str(seconds)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_station(env, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(STATION), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"the station did not start: {line}{proc.stderr.read()[-3000:]}")
    return proc


def test_a_person_enrolled_at_one_station_is_named_at_another_within_2_s(
        server_db, pipeline, photos, station_env):
    server, name = server_db
    url = server.url(name)
    connect(url).close()  # the gallery is created once, by its owner
    watcher = start_station(station_env, "watch", url, "desk-B", photos / "img2.jpg", "Alice", 60)
    try:
        time.sleep(1.0)  # the watcher is identifying; nobody is enrolled yet
        with connect(url, station="desk-A") as gallery:
            enroller = Enroller(pipeline, gallery)
            sample = enroller.prepare_file(photos / "img1.jpg")
            enroller.save("Alice", [sample])
            committed = time.time()
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err[-3000:]
    seen = float(out.split()[-1])
    latency = seen - committed
    print(f"enrolled at A, named at B after {latency:.2f} s")
    assert 0 <= latency < 2.0


def test_renames_merges_and_deletions_reach_a_running_station(server_db, pipeline, photos):
    from faceapp.core.recognize import Recognizer

    server, name = server_db
    url = server.url(name)
    with connect(url, station="desk-A") as a, connect(url, station="desk-B") as b:
        enroller = Enroller(pipeline, a)
        alice = enroller.save("Alice", [enroller.prepare_file(photos / "img1.jpg")])[0]
        twin = enroller.save("Alice 2", [enroller.prepare_file(photos / "img2.jpg")])[0]
        station = Recognizer(pipeline, b, keep_unknowns=False)
        assert sorted(station.names.values()) == ["Alice", "Alice 2"]
        a.rename_person(alice, "Alice Liddell")
        a.merge_people(alice, twin)
        station.refresh_index(force=True)
        assert list(station.names.values()) == ["Alice Liddell"]
        assert len(station.index) == 2  # both samples, now one person's
        a.delete_person(alice)
        station.refresh_index(force=True)
        assert station.names == {} and len(station.index) == 0


def test_the_event_log_names_each_station_and_filters_by_it(server_db, tmp_path):
    server, name = server_db
    url = server.url(name)
    with connect(url, station="door-1") as one, connect(url, station="door-2") as two:
        one.add_event(None, 0.2, "cam")
        two.add_event(None, 0.3, "cam")
        two.add_event(None, 0.4, "cam")
        assert one.stations() == ["door-1", "door-2"]
        assert [e.score for e in one.events(station="door-2")] == [0.4, 0.3]
        assert {e.station for e in two.events()} == {"door-1", "door-2"}
        # an event sent twice (its answer was lost) is stored once
        assert one.add_event(None, 0.5, "cam", uid="same-event") is not None
        assert one.add_event(None, 0.5, "cam", uid="same-event") is None
        assert len(one.events(station="door-1")) == 2
        assert one.export_events_csv(tmp_path / "door2.csv", station="door-2") == 2
        assert (tmp_path / "door2.csv").read_text().splitlines()[1].endswith(",door-2")


def test_foreign_and_newer_databases_on_the_server_are_refused(pg_server):
    foreign = pg_server.create_database(f"foreign_{os.urandom(4).hex()}")
    newer = pg_server.create_database(f"newer_{os.urandom(4).hex()}")
    try:
        pg_server.psql("CREATE TABLE invoices (id int)", dbname=foreign)
        with pytest.raises(GalleryError, match="another program's tables.*invoices"):
            connect(pg_server.url(foreign))
        assert pg_server.psql("SELECT count(*) FROM information_schema.tables WHERE "
                              "table_schema = 'public'", dbname=foreign)[0][0] == 1
        connect(pg_server.url(newer)).close()
        pg_server.psql("UPDATE meta SET value = '99' WHERE key = 'schema_version'", dbname=newer)
        with pytest.raises(GalleryError, match="newer faceapp .*version 99"):
            connect(pg_server.url(newer))
    finally:
        pg_server.drop_database(foreign)
        pg_server.drop_database(newer)


def test_a_station_role_changes_rows_but_never_tables(server_db, tmp_path, monkeypatch,
                                                     pipeline, photos):
    server, name = server_db
    role = f"station_{os.urandom(3).hex()}"
    server.create_role(role, password="door-pass:1")
    server.psql(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
    with connect(server.url(name)) as owner:  # created by its owner
        grant_station(owner, role)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{server.port}:{name}:{role}:door-pass\\:1\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    url = server.url(name, user=role)  # no password in it: libpq reads the .pgpass file
    assert "door-pass" not in url and "door-pass" not in display_location(url)
    with connect(url, station="desk") as station:
        enroller = Enroller(pipeline, station)
        pid, _ = enroller.save("Ada", [enroller.prepare_file(photos / "img1.jpg")])
        station.rename_person(pid, "Ada L.")
        station.add_event(pid, 0.9, "cam")
        assert [p.name for p in station.people()] == ["Ada L."]
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DROP TABLE events")
    # nor the gallery's identity: a station that set the schema version to 999 made
    # every station and the owner refuse the gallery
    for statement in ("UPDATE meta SET value = '999' WHERE key = 'schema_version'",
                      "DELETE FROM meta", "INSERT INTO meta VALUES ('x', 'y')"):
        with psycopg.connect(url) as conn, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    with connect(url, station="desk") as station:  # the counters it changes live elsewhere
        before = station.data_version()
        station.add_person("Grace")
        assert station.data_version() == before + 1
        assert station.schema_version() == SCHEMA_VERSION


def test_the_cli_on_a_server_and_a_password_kept_out_of_the_command_line(
        server_db, photos, tmp_path):
    server, name = server_db
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{server.port}:*:{server.admin_user}:{server.admin_password}\n")
    pgpass.chmod(0o600)
    env = dict(os.environ, PGPASSFILE=str(pgpass), FACEAPP_DATA_DIR=str(tmp_path / "data"))
    url = f"postgresql://{server.admin_user}@127.0.0.1:{server.port}/{name}?sslmode=require"

    def cli(*args, station="desk-1"):
        return subprocess.run([sys.executable, "-m", "faceapp", "--db", url, "--station", station,
                               *map(str, args)], capture_output=True, text=True, timeout=300,
                              env=env)

    enrolled = cli("enroll", "Alice", photos / "img1.jpg")
    assert enrolled.returncode == 0, enrolled.stderr
    identified = cli("identify", photos / "img2.jpg", station="desk-2")
    assert identified.returncode == 0, identified.stderr
    assert json.loads(identified.stdout.splitlines()[0])["person"] == "Alice"
    events = [json.loads(line) for line in cli("events", "--from-station", "desk-2").stdout
              .splitlines()]
    assert [(e["person"], e["station"]) for e in events] == [("Alice", "desk-2")]
    refused = subprocess.run(  # the admin's URL with its password
        [sys.executable, "-m", "faceapp", "--db", server.url(name), "people"],
        capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 1 and "~/.pgpass" in refused.stderr
    assert server.admin_password not in refused.stderr


def test_a_server_that_cannot_be_reached_is_named(server_db):
    server, name = server_db
    with pytest.raises(GalleryUnavailable, match="cannot be reached"):
        connect(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")
    # a server that answers "no" is not a server away: the station must be set up again
    with pytest.raises(GalleryError, match="refused this station: .*password authentication "
                       "failed") as info:
        connect(server.url(name, password="wrong"))
    assert not isinstance(info.value, GalleryUnavailable) and "wrong" not in str(info.value)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_concurrent_writers_lose_nothing_and_duplicate_nothing(server_db, tmp_path):
    server, name = server_db
    url = server.url(name)
    connect(url).close()
    workers = [start_writer(url, i, 8) for i in range(6)]
    reports = []
    for proc in workers:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out.splitlines()[-1]))
    problems, counts = check_writers(url, reports)
    assert problems == [], problems
    assert counts["people"] > 0 and counts["merged"] > 0 and counts["conflicts"] > 0


@pytest.mark.slow
def test_the_server_crashing_mid_import_loses_and_duplicates_nothing(
        server_db, photos, station_env, pipeline, tmp_path):
    server, name = server_db
    url = server.url(name)
    with connect(url) as gallery:
        enroller = Enroller(pipeline, gallery)
        enroller.save("Alice", [enroller.prepare_file(photos / "img1.jpg")])
    station = start_station(station_env, "log", url, "desk-C", photos / "img2.jpg", 14)
    writer = start_writer(url, 0, 14)
    try:
        time.sleep(3)
        server.stop(mode="immediate")
        time.sleep(4)
        server.start()
        out, err = station.communicate(timeout=180)
        wout, werr = writer.communicate(timeout=180)
    finally:
        station.kill()
        writer.kill()
    assert station.returncode == 0, err[-3000:]
    report = json.loads(out.splitlines()[-1])
    assert report["offline_seen"], "the station never noticed the server was away"
    assert report["pending"] == report["spooled"] == 0
    with connect(url) as gallery:
        stored = gallery.events(station="desk-C", limit=None)
    assert len(stored) == report["named"] > 0, "each named frame's event arrives exactly once"
    assert len({e.id for e in stored}) == len(stored)
    assert writer.returncode == 0, werr[-3000:]
    problems, _ = check_writers(url, [json.loads(wout.splitlines()[-1])], before={"Alice": 1})
    assert problems == [], problems


def test_a_station_keeps_recognising_while_the_server_is_away(server_db, pipeline, photos,
                                                              tmp_path, monkeypatch):
    from faceapp.core.imageio import load_image
    from faceapp.core.recognize import Recognizer

    monkeypatch.setenv("FACEAPP_DATA_DIR", str(tmp_path / "data"))
    server, name = server_db
    url = server.url(name)
    gallery = ServerGallery(url, station="desk-D")
    try:
        enroller = Enroller(pipeline, gallery)
        enroller.save("Alice", [enroller.prepare_file(photos / "img1.jpg")])
        recognizer = Recognizer(pipeline, gallery, keep_unknowns=False)
        image = load_image(photos / "img2.jpg")
        server.stop(mode="immediate")
        try:
            for _ in range(3):
                result = recognizer.process(image, source="door", track=False)
                assert [recognizer.names[f.decision.person_id] for f in result.faces
                        if f.decision.known] == ["Alice"]
            assert recognizer.events.offline and recognizer.events.spooled == 3
            with pytest.raises(GalleryUnavailable, match="cannot be reached"):
                gallery.people()
            with pytest.raises(GalleryUnavailable):
                gallery.add_person("Bob")  # a change is refused, never half made
        finally:
            server.start()
        deadline = time.monotonic() + 30
        while recognizer.events.spooled and time.monotonic() < deadline:
            time.sleep(0.5)
            recognizer.process(image, source="door", track=False)
        assert recognizer.events.spooled == 0 and not recognizer.events.offline
        assert len(gallery.events(station="desk-D", limit=None)) >= 4
        with pytest.raises(NotFound):
            gallery.person(999)
    finally:
        gallery.close()
