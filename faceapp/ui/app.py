"""`python -m faceapp` with no arguments: the desktop app."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="faceapp", description="The faceapp desktop app "
                                     "(run `python -m faceapp --help` for the commands).")
    parser.add_argument("--gallery", type=Path, help="gallery file for this run "
                        "(default: the one chosen in Settings)")
    parser.add_argument("--settings", type=Path, help="settings file (INI) instead of the "
                        "user's settings")
    return parser.parse_args(argv)


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
    window.show()
    # Ctrl+C in the terminal closes the window properly (Python only sees the signal
    # when it runs, hence the idle timer)
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    return app.exec()
