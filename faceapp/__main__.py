"""`python -m faceapp`: the desktop app with no arguments, `--self-test`, or a command."""

from __future__ import annotations

import os
import sys
import time


def _exit_after_show() -> None:
    """FACEAPP_EXIT_AFTER_SHOW=1 (start-up benchmark): print a line when the main window
    is first shown, then quit."""
    from PySide6.QtCore import QEvent, QObject, Qt, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication, QMainWindow

    class Watch(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Show and isinstance(obj, QMainWindow):
                print(f"FACEAPP_WINDOW_SHOWN {time.perf_counter() - started:.3f}", flush=True)
                QTimer.singleShot(0, QApplication.quit)
            return False

    started = time.perf_counter()
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(  # as ui.app.run sets it
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication(sys.argv[:1])
    app._exit_after_show = Watch(app)
    app.installEventFilter(app._exit_after_show)


# Options of the desktop app (faceapp/ui/app.py); anything else is a CLI command.
GUI_OPTIONS = ("--gallery", "--settings", "--live", "--loop", "--on-alert", "--quit-after")


def main(argv=None) -> int:
    """The desktop app with no arguments (or only its GUI_OPTIONS), `--self-test`
    the installation check, else the CLI."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--self-test"]:
        from .selftest import run_self_test

        return run_self_test()
    if not args or args[0].split("=")[0] in GUI_OPTIONS:
        from .ui.app import run

        if os.environ.get("FACEAPP_EXIT_AFTER_SHOW"):
            _exit_after_show()
        return run(args)
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
