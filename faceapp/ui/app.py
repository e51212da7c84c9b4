"""`python -m faceapp` with no arguments: the desktop app."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import datetime
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="faceapp", description="The faceapp desktop app "
                                     "(run `python -m faceapp --help` for the commands).")
    parser.add_argument("--gallery", type=Path, help="gallery file for this run "
                        "(default: the one chosen in Settings)")
    parser.add_argument("--settings", type=Path, help="settings file (INI) instead of the "
                        "user's settings")
    parser.add_argument("--live", metavar="SOURCE", help="open on the Live page playing "
                        "SOURCE: a camera index (0), a video file, a photo folder or a "
                        "stream URL (a kiosk starts `faceapp --live 0` at login)")
    parser.add_argument("--loop", action="store_true", help="with --live: play a video "
                        "file again from the start when it ends")
    parser.add_argument("--on-alert", metavar="CMD", help="run CMD for each alert about "
                        "someone on the watch list (`faceapp watch`), with the alert as JSON "
                        "on its standard input (name, camera, time, score, picture)")
    parser.add_argument("--quit-after", type=float, metavar="SECONDS",
                        help="close the window after this long (and print what Live did)")
    args = parser.parse_args(argv)
    if args.quit_after is not None and args.quit_after <= 0:
        parser.error("--quit-after takes a positive number of seconds")
    if args.on_alert is not None:
        import shlex

        try:
            if not shlex.split(args.on_alert):
                parser.error("--on-alert: the command is empty")
        except ValueError as exc:
            parser.error(f"--on-alert: the command cannot be read: {exc}")
    return args


def start_live(window, spec: str, loop: bool) -> None:
    """Show the Live page and play `spec` as soon as the gallery and models are loaded."""
    page = window.live
    window.welcomed = True  # a kiosk plays its source, even before anyone is enrolled
    window.show_page(0)
    page.set_source(spec)
    page.loop_videos = loop

    def go() -> None:
        if window.state.is_ready and not page.is_running:
            window.state.ready_changed.disconnect(go)
            page.start()

    window.state.ready_changed.connect(go)
    go()


def run_events(window, since) -> int:
    """The events this station logged since `since` (a datetime): this run's, not the
    whole gallery's (a shared gallery holds other stations' too)."""
    gallery = window.state.gallery
    if gallery is None or gallery.closed:
        return 0
    try:
        return len(gallery.events(since=since, limit=None, station=gallery.station))
    except Exception:  # a gallery server gone: the summary still prints
        return 0


def live_summary(window, started: float, stalls, started_at=None) -> str:
    """One line for the log of a kiosk or a soak run (tests/helpers/soak.py reads it)."""
    import resource

    now = time.monotonic()
    seconds = now - started
    frames = window.live.frames_shown
    playing = now - (window.live.first_frame_at or now)  # after the models loaded
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    events = run_events(window, started_at)
    return (f"faceapp live: {frames} frames in {seconds:.0f} s "
            f"({max(frames - 1, 0) / max(playing, 1e-9):.1f} frames/s), {events} events, "
            f"longest GUI stall {stalls.longest} ms, peak RSS {peak:.0f} MB")


def run(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .settings import AppSettings

    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("faceapp")
    app.setApplicationName("faceapp")
    app.setApplicationDisplayName("faceapp")
    window = MainWindow(AppSettings(args.settings), gallery_path=args.gallery)
    if args.on_alert:
        window.alert_center.set_command(args.on_alert)
    window.show()
    started = time.monotonic()
    started_at = datetime.now().replace(microsecond=0)  # local time, as events() takes
    if args.live is not None:
        from .stall import StallMeter

        stalls = StallMeter(parent=window, keep_gaps=False)
        stalls.start()
        start_live(window, args.live, args.loop)
    if args.quit_after is not None:
        def quit_now() -> None:
            if args.live is not None:
                print(live_summary(window, started, stalls, started_at), file=sys.stderr,
                      flush=True)
            window.close()
        QTimer.singleShot(int(args.quit_after * 1000), quit_now)
    # Ctrl+C in the terminal closes the window properly (Python only sees the signal
    # when it runs, hence the idle timer)
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    return app.exec()
