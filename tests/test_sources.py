"""Frame sources on real data: a video built from the sample photos, image folders,
a missing camera, and an MJPEG stream served over loopback HTTP by a thread here."""

from __future__ import annotations

import http.server
import shutil
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceapp.core import sources
from faceapp.core.imageio import load_image
from faceapp.core.sources import (CameraSource, Frame, ImageFileSource, ImageFolderSource,
                                  SourceError, StreamSource, VideoFileSource, list_cameras,
                                  open_source)

VIDEO_FPS = 10.0
N_FRAMES = 8


def _thumb(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)


def _nearest(image: np.ndarray, refs: list[np.ndarray]) -> tuple[int, float]:
    """Index of the reference the image looks like, and the mean abs difference."""
    thumb = _thumb(image)
    diffs = [float(np.abs(thumb - _thumb(ref)).mean()) for ref in refs]
    best = int(np.argmin(diffs))
    return best, diffs[best]


@pytest.fixture(scope="module")
def frames(photos) -> list[np.ndarray]:
    """The first N_FRAMES sample photos as 640x480 RGB, checked to look different."""
    paths = sorted(p for p in photos.iterdir() if p.suffix.lower() == ".jpg")[:N_FRAMES]
    assert len(paths) == N_FRAMES
    images = [cv2.resize(load_image(p), (640, 480), interpolation=cv2.INTER_AREA)
              for p in paths]
    for i, image in enumerate(images):
        others = images[:i] + images[i + 1:]
        _, diff = _nearest(image, others)
        assert diff > 5, "sample photos too alike to tell frames apart"
    return images


@pytest.fixture(scope="module")
def video(tmp_path_factory, frames) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS,
                             (640, 480))
    assert writer.isOpened(), "this OpenCV cannot write MJPG .avi files"
    for image in frames:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    assert path.stat().st_size > 10_000
    return path


# -- video files ---------------------------------------------------------------------------

def test_video_frames_in_order_then_none(video, frames):
    source = VideoFileSource(video)
    assert not source.is_open and not source.is_live
    with source:
        assert source.is_open
        assert source.fps == pytest.approx(VIDEO_FPS)
        assert source.frame_count == N_FRAMES
        got = []
        for _ in range(N_FRAMES + 5):  # bounded
            frame = source.read()
            if frame is None:
                break
            got.append(frame)
        assert source.read() is None  # stays at the end
        assert source.read() is None
        assert not source.ended_early
    assert not source.is_open
    assert len(got) == N_FRAMES
    for i, frame in enumerate(got):
        assert isinstance(frame, Frame)
        assert frame.image.shape == (480, 640, 3) and frame.image.dtype == np.uint8
        assert frame.image.flags["C_CONTIGUOUS"]
        assert frame.index == i
        assert frame.timestamp == pytest.approx(i / VIDEO_FPS)
        assert frame.source == "clip.avi" and frame.path is None
        best, diff = _nearest(frame.image, frames)
        assert best == i and diff < 6, (i, best, diff)
        # RGB, not BGR: each channel's mean matches the source image's
        ch_means = frame.image.reshape(-1, 3).mean(axis=0)
        ref_means = frames[i].reshape(-1, 3).mean(axis=0)
        assert np.abs(ch_means - ref_means).max() < 4


def test_video_iteration_and_reopen_restart(video):
    source = VideoFileSource(video)
    with source:
        assert [f.index for f in source] == list(range(N_FRAMES))
        source.reopen()
        assert source.read().index == 0


def test_video_loops(video, frames):
    with VideoFileSource(video, loop=True) as source:
        got = [source.read() for _ in range(2 * N_FRAMES + 4)]
    assert all(f is not None for f in got)
    assert [f.index for f in got] == [i % N_FRAMES for i in range(len(got))]
    assert [_nearest(f.image, frames)[0] for f in got] == [f.index for f in got]
    assert got[N_FRAMES].timestamp == pytest.approx(0.0)
    assert source.loops == 2


def test_video_realtime_paces_to_file_fps(video):
    with VideoFileSource(video, realtime=True) as source:
        started = time.monotonic()
        got = [source.read() for _ in range(5)]  # media times 0.0 .. 0.4 s
        elapsed = time.monotonic() - started
        assert [f.index for f in got] == [0, 1, 2, 3, 4]
        assert 0.35 <= elapsed < 2.0, elapsed
        # A caller that falls behind gets the frame that is due now, not a backlog.
        time.sleep(0.25)
        assert source.read().index >= 6


def test_missing_and_corrupt_video_files(tmp_path, video):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n" * 100)
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(video.read_bytes()[:4096])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = {tmp_path / "missing.mp4": "does not exist", junk: "", text: "",
             truncated: "", empty: "", tmp_path: "is a folder"}
    for path, expected in cases.items():
        started = time.monotonic()
        with pytest.raises(SourceError) as info:
            VideoFileSource(path).open()
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert message.startswith(f"Video file {path.name} cannot be opened: "), message
        assert expected in message


def test_truncated_video_plays_what_it_has(tmp_path, video, frames):
    half = tmp_path / "half.avi"
    data = video.read_bytes()
    half.write_bytes(data[:len(data) // 2])
    with VideoFileSource(half) as source:
        got = [source.read() for _ in range(N_FRAMES + 2)]
        assert source.ended_early
    delivered = [f for f in got if f is not None]
    assert 1 <= len(delivered) < N_FRAMES
    assert got[len(delivered)] is None
    assert [_nearest(f.image, frames)[0] for f in delivered] == list(range(len(delivered)))


# -- image folders -----------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path, photos) -> Path:
    root = tmp_path / "faces"
    root.mkdir()
    samples = sorted(p for p in photos.iterdir() if p.suffix.lower() == ".jpg")
    shutil.copy(samples[0], root / "f1.jpg")
    cv2.imwrite(str(root / "f2.png"), cv2.imread(str(samples[1])))
    shutil.copy(samples[2], root / "f10.jpg")
    (root / "f3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(500))
    (root / "notes.txt").write_text("who is who\n")
    shutil.copy(samples[3], root / ".hidden.jpg")
    (root / "sub").mkdir()
    shutil.copy(samples[4], root / "sub" / "f4.jpg")
    return root


def test_image_folder_skips_and_reports_bad_files(folder):
    with ImageFolderSource(folder) as source:
        assert not source.is_live
        got = list(source)
        assert source.read() is None
    assert [Path(f.path).name for f in got] == ["f1.jpg", "f2.png", "f10.jpg"]
    assert [f.index for f in got] == [0, 1, 2]
    for frame in got:
        expected = load_image(frame.path)
        assert frame.image.dtype == np.uint8 and frame.image.shape == expected.shape
        assert np.array_equal(frame.image, expected)
        assert frame.source == "faces/"
        assert isinstance(frame.path, str)
    skipped = {path.name: reason for path, reason in source.skipped}
    assert set(skipped) == {"f3.jpg", "notes.txt"}
    assert "not a readable image" in skipped["f3.jpg"]
    assert "not an image file" in skipped["notes.txt"]


def test_image_folder_recursive_and_fps(folder):
    with ImageFolderSource(folder, recursive=True, fps=20) as source:
        started = time.monotonic()
        got = list(source)
        elapsed = time.monotonic() - started
    names = [Path(f.path).relative_to(folder).as_posix() for f in got]
    assert names == ["f1.jpg", "f2.png", "f10.jpg", "sub/f4.jpg"]
    assert [f.timestamp for f in got] == pytest.approx([0.0, 0.05, 0.10, 0.15])
    assert elapsed >= 0.14


def test_image_folder_errors(tmp_path, folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "readme.txt").write_text("no pictures here")
    for path, expected in [(tmp_path / "nowhere", "does not exist"),
                           (empty, "contains no images"),
                           (only_text, "contains no images"),
                           (folder / "f1.jpg", "is not a folder")]:
        with pytest.raises(SourceError, match=expected):
            ImageFolderSource(path).open()


def test_single_image_source(photos, tmp_path):
    photo = sorted(photos.glob("*.jpg"))[0]
    source = open_source(str(photo))
    assert isinstance(source, ImageFileSource)
    with source:
        frames = list(source)
    assert len(frames) == 1 and frames[0].path == str(photo)
    assert np.array_equal(frames[0].image, load_image(photo))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(SourceError, match="bad.png"):
        open_source(str(bad)).open()


# -- cameras -----------------------------------------------------------------------------------

def test_missing_camera_fails_fast_with_clear_message():
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        with open_source("57"):
            pass
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert message.startswith("Camera 57 is not available: it may be unplugged or used by "
                              "another application"), message


def test_missing_camera_through_opencv_fails_fast(monkeypatch):
    # Skip the /dev/video shortcut so the OpenCV backends are really asked.
    monkeypatch.setattr(sources, "_no_device_node", lambda index: False)
    source = CameraSource(57, width=640, height=480, fps=30)
    started = time.monotonic()
    with pytest.raises(SourceError, match="Camera 57 is not available"):
        source.open()
    assert time.monotonic() - started < 5
    assert not source.is_open
    with pytest.raises(SourceError, match="Camera 57 is not available"):
        source.reopen()


def test_list_cameras_is_quick():
    started = time.monotonic()
    found = list_cameras()
    assert time.monotonic() - started < 5
    assert isinstance(found, list) and all(isinstance(i, int) for i in found)
    if sys.platform.startswith("linux") and not any(Path("/dev").glob("video*")):
        assert found == []


# -- dispatch ----------------------------------------------------------------------------------

def test_open_source_dispatch(tmp_path, folder, video):
    camera = open_source("0")
    assert isinstance(camera, CameraSource) and camera.index == 0 and camera.is_live
    assert not camera.is_open  # nothing is opened by open_source itself
    assert isinstance(open_source(" 1 "), CameraSource)
    assert isinstance(open_source(2), CameraSource)
    assert isinstance(open_source(str(folder)), ImageFolderSource)
    assert isinstance(open_source(folder, recursive=True), ImageFolderSource)
    stream = open_source("rtsp://admin:secret@127.0.0.1:8554/live")
    assert isinstance(stream, StreamSource) and stream.is_live
    assert "secret" not in stream.label and "admin" in stream.label
    assert isinstance(open_source("http://127.0.0.1:8080/video.mjpg"), StreamSource)
    assert isinstance(open_source("HTTPS://127.0.0.1/live.m3u8"), StreamSource)
    clip = open_source(str(video), loop=True)
    assert isinstance(clip, VideoFileSource) and clip.loop
    assert isinstance(open_source(video.as_uri()), VideoFileSource)
    assert isinstance(open_source(tmp_path / "not-yet.mp4"), VideoFileSource)
    assert isinstance(open_source(str(tmp_path / "photo.JPG")), ImageFileSource)
    with pytest.raises(SourceError, match="Unsupported address"):
        open_source("ftp://127.0.0.1/clip.mp4")
    with pytest.raises(SourceError, match="No source"):
        open_source("  ")
    with pytest.raises(SourceError, match="does not exist"):
        with open_source(tmp_path / "not-yet.mp4"):
            pass


# -- MJPEG over HTTP ---------------------------------------------------------------------------

class MjpegServer:
    """multipart/x-mixed-replace JPEG stream on 127.0.0.1, cycling through `jpegs`.

    stop() closes the connections and the port; stall() keeps connections open but
    sends nothing more. Every loop here is bounded in frames or time.
    """

    def __init__(self, jpegs: list[bytes], port: int = 0, interval: float = 0.04):
        self.jpegs = jpegs
        self.interval = interval
        self.stopping = threading.Event()
        self.stalled = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type",
                                 "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    for i in range(5000):
                        if outer.stopping.is_set():
                            return
                        if outer.stalled.is_set():
                            outer.stopping.wait(30)
                            return
                        jpeg = outer.jpegs[i % len(outer.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(jpeg)
                                         + jpeg + b"\r\n")
                        self.wfile.flush()
                        time.sleep(outer.interval)
                except (BrokenPipeError, ConnectionResetError):
                    return

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self.server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.thread = threading.Thread(target=server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stall(self) -> None:
        self.stalled.set()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def jpegs(frames) -> list[tuple[bytes, np.ndarray]]:
    """Four sample photos as 320x240 JPEGs, with how they decode (RGB)."""
    out = []
    for image in frames[:4]:
        small = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        decoded = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out.append((data.tobytes(), decoded))
    return out


def _read_until_error(source, limit_s: float) -> tuple[float, SourceError | None, int]:
    """Read until SourceError (or limit_s); returns elapsed time, the error, frames read."""
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < limit_s:
        try:
            source.read()
        except SourceError as exc:
            return time.monotonic() - started, exc, count
        count += 1
    return time.monotonic() - started, None, count


def _check_cycle(got: list[Frame], refs: list[np.ndarray]) -> None:
    ids = []
    for frame in got:
        best, diff = _nearest(frame.image, refs)
        assert diff < 3, diff
        ids.append(best)
    assert all(b == (a + 1) % len(refs) for a, b in zip(ids, ids[1:])), ids


def test_mjpeg_stream_read_disconnect_and_reopen(jpegs):
    refs = [decoded for _, decoded in jpegs]
    server = MjpegServer([data for data, _ in jpegs])
    port = server.port
    source = StreamSource(server.url, open_timeout=3, read_timeout=2)
    try:
        started = time.monotonic()
        source.open()
        got = [source.read() for _ in range(12)]
        assert time.monotonic() - started < 5
        assert source.is_live and source.resolution == (320, 240)
        for frame in got:
            assert frame.image.shape == (240, 320, 3) and frame.image.dtype == np.uint8
            assert frame.source == server.url and frame.path is None
        assert [f.index for f in got] == list(range(12))
        assert all(b.timestamp >= a.timestamp for a, b in zip(got, got[1:]))
        assert abs(got[-1].timestamp - time.time()) < 5  # wall clock
        _check_cycle(got, refs)
        assert _nearest(got[0].image, refs)[0] == 0  # the stream starts at its first frame

        server.stop()
        elapsed, error, buffered = _read_until_error(source, limit_s=15)
        assert error is not None, "read() kept going after the server stopped"
        assert elapsed < 5, elapsed
        assert "stopped sending frames" in str(error) and server.url in str(error)
        with pytest.raises(SourceError):  # stays failed until reopened
            source.read()

        started = time.monotonic()
        with pytest.raises(SourceError, match="cannot be opened"):
            source.reopen()  # nothing listening: refused at once
        assert time.monotonic() - started < 5

        server = MjpegServer([data for data, _ in jpegs], port=port)  # back on the same port
        source.reopen()
        again = [source.read() for _ in range(6)]
        first = 12 + buffered  # counting goes on (frames still buffered were read above)
        assert [f.index for f in again] == list(range(first, first + 6))
        _check_cycle(again, refs)
    finally:
        source.close()
        server.stop()


def test_mjpeg_stream_that_stalls_times_out(jpegs):
    server = MjpegServer([data for data, _ in jpegs])
    source = StreamSource(server.url, open_timeout=3, read_timeout=1.5)
    try:
        with source:
            assert source.read() is not None
            server.stall()  # connection stays open, no more data
            elapsed, error, _ = _read_until_error(source, limit_s=20)
            assert error is not None, "read() kept going on a stalled stream"
            assert elapsed < 1.5 + 3, elapsed
            assert "stopped sending frames" in str(error)
    finally:
        server.stop()


def test_stream_with_nothing_listening_fails_fast():
    server = MjpegServer([b""])
    url = server.url
    server.stop()  # the port is now closed
    started = time.monotonic()
    with pytest.raises(SourceError, match="cannot be opened"):
        StreamSource(url, open_timeout=3, read_timeout=2).open()
    assert time.monotonic() - started < 5


class _PatientStream(StreamSource):
    """Asks FFmpeg to wait 60 s for data, so only the watchdog can end a stalled read."""

    watchdog_grace = 0.5

    def _create_capture(self):
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 60_000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 60_000]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)


def test_watchdog_ends_a_read_blocked_in_opencv(jpegs):
    server = MjpegServer([data for data, _ in jpegs])
    source = _PatientStream(server.url, open_timeout=3, read_timeout=1.0)
    try:
        with source:
            assert source.read() is not None
            server.stall()
            elapsed, error, _ = _read_until_error(source, limit_s=20)
            assert error is not None
            assert elapsed < 1.0 + 0.5 + 2, elapsed
            assert "no frame for 1 s" in str(error)
            # The stuck capture was abandoned, not released under the blocked call.
            with pytest.raises(SourceError, match="reopen"):
                source.read()
    finally:
        server.stop()  # unblocks the abandoned read; its thread then releases the capture
