"""At the desk: alerts about the watch list. Real models, LFW faces in real videos made
with OpenCV, a real gallery (a file, and a PostgreSQL server for the watch list), the
real CLI in its own process, the real window offscreen."""

from __future__ import annotations

import base64
import json
import math
import os
import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import cv2
import numpy as np
import pytest

from faceapp.core.alerts import AlertWatcher, CommandSink
from faceapp.core.enroll import Enroller
from faceapp.core.gallery import (Gallery, acknowledge_alerts, add_alert,
                                  alert_picture, alerts, is_quiet, open_gallery, parse_quiet,
                                  set_alert_every, watch, watch_list)
from faceapp.core.recognize import FacePipeline, Recognizer

WATCHED, OTHER, STRANGER = "Colin_Powell", "Hugo_Chavez", "Serena_Williams"
NAME = "Colin Powell"
FPS = 5


def run_faceapp(*args, timeout=600, **kwargs):
    return subprocess.run([sys.executable, "-m", "faceapp", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def lfw_tile(lfw: Path, person: str, number: int = 2) -> np.ndarray:
    return cv2.resize(cv2.imread(str(lfw / person / f"{person}_{number:04d}.jpg")), (200, 200))


def make_video(path: Path, lfw: Path, seconds: float, watched: list[tuple[float, float]],
               stranger: tuple[float, float] | None = None) -> Path:
    """640x480 at FPS frames/s: the watched person (an LFW photo not enrolled) in view
    during the `watched` spans, gently drifting; a stranger crossing during `stranger`."""
    person, other = lfw_tile(lfw, WATCHED), lfw_tile(lfw, STRANGER)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 480))
    for i in range(int(seconds * FPS)):
        t = i / FPS
        frame = np.full((480, 640, 3), 90, np.uint8)
        if any(a <= t < b for a, b in watched):
            dx, dy = int(6 * math.sin(i / 7)), int(5 * math.cos(i / 9))
            frame[140 + dy:340 + dy, 20 + dx:220 + dx] = person
        if stranger and stranger[0] <= t < stranger[1]:
            x = int(240 + 180 * (t - stranger[0]) / (stranger[1] - stranger[0]))
            frame[140:340, x:x + 200] = other
        writer.write(frame)
    writer.release()
    return path


def enroll(location, pipeline, lfw: Path) -> None:
    with open_gallery(location) as gallery:
        enroller = Enroller(pipeline, gallery)
        for name, person in ((NAME, WATCHED), ("Hugo Chavez", OTHER)):
            report = enroller.enroll_photos(name, [lfw / person / f"{person}_{n:04d}.jpg"
                                                   for n in (1, 3)])
            assert report.added >= 1, report.skipped


RECEIVER = """\
import os, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
data = sys.stdin.read()
n = len(list(out.glob("*.json")))
(out / f"{n}.json").write_text(data)
if n == 0 and len(sys.argv) > 2:  # the first alert hangs
    (out / "hung.pid").write_text(str(os.getpid()))
    time.sleep(600)
"""


def receiver(tmp_path: Path, hang: bool) -> tuple[str, Path]:
    """A command that keeps each alert it reads in a file (and hangs on the first)."""
    script, out = tmp_path / "receiver.py", tmp_path / "received"
    script.write_text(RECEIVER)
    out.mkdir()
    words = [sys.executable, str(script), str(out)] + (["hang"] if hang else [])
    return " ".join(shlex.quote(w) for w in words), out


def received(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def assert_face_picture(alert: dict) -> None:
    image = cv2.imdecode(np.frombuffer(base64.b64decode(alert["picture"]), np.uint8),
                         cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (112, 112)


@pytest.fixture(scope="module")
def lfw(shared_data) -> Path:
    return shared_data / "lfw" / "images"


@pytest.fixture(scope="module")
def pipeline():
    pipe = FacePipeline.create(threads=2)
    yield pipe
    pipe.detector.close()


# ------------------------------------------------------------------- the watch list

def without_password(location, tmp_path: Path) -> tuple[str, dict]:
    """A server's URL as the CLI takes it: the password in a .pgpass file."""
    parts = urlsplit(str(location))
    if not parts.password:
        return str(location), dict(os.environ)
    pgpass = tmp_path / "pgpass"
    dbname = parts.path.lstrip("/")
    pgpass.write_text(f"{parts.hostname}:{parts.port}:{dbname}:{unquote(parts.username)}:"
                      f"{unquote(parts.password)}\n")
    pgpass.chmod(0o600)
    netloc = f"{parts.username}@{parts.hostname}:{parts.port}"
    return (urlunsplit(parts._replace(netloc=netloc)),
            {**os.environ, "PGPASSFILE": str(pgpass)})


def test_watch_list_cli_round_trip_and_deleting_a_person(new_location, tmp_path):
    location = new_location("watch")
    with open_gallery(location) as gallery:
        alice, bob = gallery.add_person("Alice"), gallery.add_person("Bob")
    url, env = without_password(location, tmp_path)
    db = ["--db", url]

    def cli(*args):
        return run_faceapp(*args, env=env)

    assert cli(*db, "watch", "add", "Alice", "--camera", "door.mp4",
               "--quiet", "22:00-06:00").returncode == 0
    assert cli(*db, "watch", "add", "--unknown").returncode == 0
    assert cli(*db, "watch", "add", "Bob", "--every", "15").returncode == 0
    listed = cli(*db, "watch", "list")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rows == [{"name": None, "unknown": True, "camera": None, "quiet": None},
                    {"name": "Alice", "unknown": False, "camera": "door.mp4",
                     "quiet": "22:00-06:00"},
                    {"name": "Bob", "unknown": False, "camera": None, "quiet": None}]
    assert "every 15 minute" in listed.stderr
    # plain words for what cannot be done
    nobody = cli(*db, "watch", "add", "Carol")
    assert nobody.returncode == 1 and "nobody called 'Carol'" in nobody.stderr
    bad = cli(*db, "watch", "add", "Bob", "--quiet", "late")
    assert bad.returncode == 2 and "22:00-06:00" in bad.stderr
    assert cli(*db, "watch", "remove", "Bob").returncode == 0
    again = cli(*db, "watch", "remove", "Bob")
    assert again.returncode == 1 and "not on the watch list" in again.stderr

    with open_gallery(location) as gallery:
        # an alert about Alice, with the face picture of its event
        picture = cv2.imencode(".jpg", np.full((112, 112, 3), 128, np.uint8))[1].tobytes()
        gallery.add_event(alice, 0.8, "door.mp4", picture, uid="e-alice")
        alert = add_alert(gallery, alice, 0.8, "door.mp4", track=3, event_uid="e-alice")
        assert alert_picture(gallery, alert) == picture
        gallery.delete_person(alice)
        # deleting a person takes them off the watch list, with their alerts' pictures
        assert [(e.name, e.person_id) for e in watch_list(gallery)] == [(None, None)]
        assert alerts(gallery) == []
        with gallery.reading() as db_:
            assert db_.execute("SELECT count(*) FROM events WHERE thumbnail IS NOT NULL"
                               ).fetchone()[0] == 0
        assert [e.person_id for e in watch_list(gallery)] == [None]
        assert gallery.find_person("Bob").id == bob


def test_quiet_hours_are_local_and_may_span_midnight():
    assert parse_quiet("22:00-06:00") == (22 * 60, 6 * 60)
    assert parse_quiet("") is None
    for bad in ("24:00-01:00", "10:00-10:00", "10-12", "22:00"):
        with pytest.raises(ValueError):
            parse_quiet(bad)
    local = datetime(2024, 5, 1, 23, 30).astimezone()
    assert is_quiet("22:00-06:00", local) and is_quiet("22:00-06:00", local + timedelta(hours=6))
    assert not is_quiet("22:00-06:00", local + timedelta(hours=7))
    assert not is_quiet("12:00-13:00", local) and not is_quiet("", local)


# ------------------------------------------------ the decisions, with the clock injected

class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def play(recognizer, watcher, image: np.ndarray, frames: int) -> list:
    raised = []
    for _ in range(frames):
        raised += watcher.observe(recognizer.process(image, source="door"), image)
    return raised


def test_quiet_hours_and_the_rate_limit(pipeline, lfw, tmp_path):
    db = tmp_path / "gallery.db"
    enroll(db, pipeline, lfw)
    person = cv2.cvtColor(cv2.imread(str(lfw / WATCHED / f"{WATCHED}_0002.jpg")),
                          cv2.COLOR_BGR2RGB)
    stranger = cv2.cvtColor(cv2.imread(str(lfw / STRANGER / f"{STRANGER}_0002.jpg")),
                            cv2.COLOR_BGR2RGB)
    empty = np.full_like(person, 90)
    sent = []
    with Gallery(db) as gallery:
        colin = gallery.find_person(NAME).id
        watch(gallery, colin, "door", "22:00-06:00")
        watch(gallery, None, "", "")
        watch(gallery, gallery.find_person("Hugo Chavez").id, "another camera")
        set_alert_every(gallery, 10)
        clock = Clock(datetime(2024, 5, 1, 23, 0).astimezone())

        def make():
            recognizer = Recognizer(pipeline, gallery)
            return recognizer, AlertWatcher(recognizer, "door", [sent.append], clock=clock)

        recognizer, watcher = make()
        # at 23:00 the desk is quiet: no alert, however long he stays
        assert play(recognizer, watcher, person, 5) == []
        clock.now = datetime(2024, 5, 2, 7, 0).astimezone()
        first = play(recognizer, watcher, person, 5)  # the same track, now in office hours
        assert [(a.name, a.camera) for a in first] == [(NAME, "door")]
        assert first[0].picture and first[0].event_uid and sent == first
        # gone and back 5 minutes later (a new track): within the rate limit
        play(recognizer, watcher, empty, 12)
        clock.now += timedelta(minutes=5)
        assert play(recognizer, watcher, person, 5) == []
        # the limit outlives a restart of the app (read from the gallery)
        recognizer, watcher = make()
        assert play(recognizer, watcher, person, 5) == []
        clock.now += timedelta(minutes=6)
        recognizer, watcher = make()
        assert [a.name for a in play(recognizer, watcher, person, 5)] == [NAME]

        # an unknown face: once per track, and the same stranger back soon is no news
        unknown = play(recognizer, watcher, stranger, 5)
        assert [(a.person_id, a.name) for a in unknown] == [(None, None)]
        play(recognizer, watcher, empty, 12)
        clock.now += timedelta(minutes=2)
        assert play(recognizer, watcher, stranger, 5) == []
        play(recognizer, watcher, empty, 12)
        clock.now += timedelta(minutes=11)
        assert len(play(recognizer, watcher, stranger, 5)) == 1

        recorded = alerts(gallery)
        assert [r.name for r in recorded] == [None, None, NAME, NAME]
        assert all(r.has_picture and r.camera == "door" for r in recorded)
        assert acknowledge_alerts(gallery, [recorded[0].id]) == 1
        assert len(alerts(gallery, unacknowledged=True)) == 3


def test_a_failing_sink_or_command_never_stops_recognition(pipeline, lfw, tmp_path):
    db = tmp_path / "gallery.db"
    enroll(db, pipeline, lfw)
    person = cv2.cvtColor(cv2.imread(str(lfw / WATCHED / f"{WATCHED}_0002.jpg")),
                          cv2.COLOR_BGR2RGB)
    told = []

    def broken(alert):
        raise RuntimeError("the notification area went away")

    missing = CommandSink("/nonexistent/notify --loud", report=told.append)
    with Gallery(db) as gallery:
        watch(gallery, gallery.find_person(NAME).id)
        recognizer = Recognizer(pipeline, gallery)
        watcher = AlertWatcher(recognizer, "rtsp://desk:secret@10.0.0.5/live",
                               [broken, missing], report=told.append)
        raised = play(recognizer, watcher, person, 4)
        missing.close()
        assert [a.name for a in raised] == [NAME]
        # recorded all the same, and a stream's password is nowhere in it
        assert [r.camera for r in alerts(gallery)] == ["rtsp://desk:***@10.0.0.5/live"]
        assert "secret" not in json.dumps({**raised[0].as_json(), "picture": None})
    assert any("could not be sent" in t for t in told)
    assert any("cannot be started" in t for t in told)
    with pytest.raises(ValueError):
        CommandSink("notify 'unclosed")


# ---------------------------------------------------------------- a 60 s video, the CLI

def test_identify_on_alert_one_alert_each_and_a_hanging_command_is_killed(
        pipeline, lfw, tmp_path):
    db = tmp_path / "gallery.db"
    enroll(db, pipeline, lfw)
    # 60 s: he stays 30 s, a stranger crosses, he comes back at the end (rate limited)
    video = make_video(tmp_path / "desk.mp4", lfw, 60, [(5, 35), (54, 59)], (40, 47))
    assert run_faceapp("--db", db, "watch", "add", NAME, "--camera", "desk.mp4").returncode == 0
    assert run_faceapp("--db", db, "watch", "add", "--unknown").returncode == 0
    command, out = receiver(tmp_path, hang=True)
    result = run_faceapp("--db", db, "identify", video, "--on-alert", command,
                     "--alert-timeout", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    frames = [json.loads(line)["frame"] for line in result.stdout.splitlines()]
    assert max(frames) >= 54 * FPS  # recognition went on to the end
    got = received(out)
    assert sorted((a["name"] or "") for a in got) == ["", NAME]
    for alert in got:
        assert_face_picture(alert)
        assert alert["camera"] == str(video) and alert["track"] >= 0
        assert datetime.fromisoformat(alert["time"]).tzinfo is not None
    assert "did not finish within 2 s and was stopped" in result.stderr
    hung = int((out / "hung.pid").read_text())
    assert not Path(f"/proc/{hung}").exists()
    listed = [json.loads(line) for line in
              run_faceapp("--db", db, "watch", "alerts").stdout.splitlines()]
    assert sorted((a["name"] or "", a["picture"]) for a in listed) == [("", True), (NAME, True)]


# ------------------------------------------------------------------------- the window

@pytest.fixture
def desk(pipeline, lfw, tmp_path):
    """A gallery with the watched person enrolled and watched, and a 12 s video."""
    db = tmp_path / "gallery.db"
    enroll(db, pipeline, lfw)
    with Gallery(db) as gallery:
        watch(gallery, gallery.find_person(NAME).id)
    return db, make_video(tmp_path / "desk.mp4", lfw, 12, [(1, 9)])


def test_live_window_shows_the_alert_and_marks_it_seen(qtbot, pipeline, desk, tmp_path,
                                                       monkeypatch):
    from faceapp.ui import dialogs
    from faceapp.ui.alerts_page import ANY_UNKNOWN
    from faceapp.ui.main_window import MainWindow
    from faceapp.ui.settings import AppSettings

    db, video = desk
    settings = AppSettings(tmp_path / "settings.ini")
    settings.gallery_path = db
    window = MainWindow(settings, pipeline=pipeline)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.state.is_ready, timeout=60_000)
    window.live.set_source(str(video))
    window.live.start()
    # no system tray offscreen: the alert shows across the window, face and all
    qtbot.waitUntil(lambda: NAME in window.alerts.bar.text(), timeout=60_000)
    assert "desk.mp4" in window.alerts.bar.text()
    assert not window.alerts.bar.picture.pixmap().isNull()
    qtbot.waitUntil(lambda: not window.live.is_running, timeout=60_000)
    window.go_to(window.alerts)
    qtbot.waitUntil(lambda: window.alerts.loaded and window.alerts.table.rowCount() == 1,
                    timeout=20_000)
    table = window.alerts.table
    assert table.item(0, 1).text() == NAME and table.item(0, 4).text() == "new"
    assert not table.item(0, 0).icon().isNull()  # the face picture
    assert window.alerts.watched.item(0).text() == f"{NAME} on every camera"
    window.alerts.all_seen_button.click()
    qtbot.waitUntil(lambda: table.item(0, 4).text() == "seen", timeout=20_000)
    # the watch list from the page: any unknown face at the door, quiet at night
    answers = iter(["door.mp4", "22:00-06:00"])
    monkeypatch.setattr(dialogs, "ask_text", lambda *args, **kwargs: next(answers))
    window.alerts.watch_person(ANY_UNKNOWN)
    watched = window.alerts.watched
    qtbot.waitUntil(lambda: watched.count() == 2, timeout=20_000)
    assert [watched.item(i).text() for i in range(2)] == [
        "Any unknown face on door.mp4, quiet 22:00 to 06:00", f"{NAME} on every camera"]
    watched.setCurrentRow(1)
    window.alerts.remove_selected()
    qtbot.waitUntil(lambda: watched.count() == 1, timeout=20_000)
    assert [(e.person_id, e.camera, e.quiet) for e in watch_list(window.state.gallery)] == [
        (None, "door.mp4", "22:00-06:00")]
    window.live.shutdown()
    window.close()


def test_live_option_on_alert_runs_the_command(desk, tmp_path):
    db, video = desk
    command, out = receiver(tmp_path, hang=False)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = run_faceapp("--gallery", db, "--settings", tmp_path / "settings.ini", "--live", video,
                     "--on-alert", command, "--quit-after", "30", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = received(out)
    assert [a["name"] for a in got] == [NAME], result.stderr[-2000:]
    assert_face_picture(got[0])
