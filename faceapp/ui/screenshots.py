"""Screenshots of every page, made by one command:

    python -m faceapp.ui.screenshots [--out docs/screenshots] [--size 1280x800]

A demo gallery is built in a temporary folder through the pages themselves
(faceapp/ui/demo.py: LFW people imported from a folder, a door "camera" with
strangers played on Live), then each page is grabbed at the size asked for:
live.png, enroll.png, people.png, unknowns.png, events.png, settings.png. Nothing
touches the user's settings or gallery; the shared photos are linked, not copied.
Runs offscreen unless QT_QPA_PLATFORM says otherwise (e.g. xcb under Xvfb).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

PAGES = ["live", "enroll", "people", "unknowns", "events", "settings"]


def scene(folder: Path, data: Path) -> Path:
    """One picture with an enrolled person and a stranger side by side."""
    import cv2
    import numpy as np

    from ..core.imageio import load_image
    from . import demo

    lfw = data / "lfw" / "images"
    known = sorted((lfw / demo.ENROLLED[1]).iterdir())[demo.ENROLL_PHOTOS + 2]
    stranger = sorted((lfw / demo.STRANGERS[0]).iterdir())[5]
    images = [load_image(known), load_image(stranger)]
    height = max(i.shape[0] for i in images)
    pad = [np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0))) for i in images]
    picture = np.hstack(pad)
    picture = cv2.resize(picture, (picture.shape[1] * 2, picture.shape[0] * 2),
                         interpolation=cv2.INTER_CUBIC)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "entrance.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return folder


def take(out: Path, size: tuple[int, int], data: Path | None = None) -> list[Path]:
    """Build the demo and save one PNG per page into `out`; the paths written."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from . import demo

    data = data or demo.shared_data()
    if not (data / "lfw" / "images").is_dir():
        raise SystemExit(f"the shared photos are not at {data} (set FACEAPP_SHARED_DATA)")
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="faceapp-screens-") as tmp:
        root = Path(tmp)
        for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
            for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
                QSettings.setPath(fmt, scope, str(root / "qsettings"))
        os.environ["FACEAPP_DATA_DIR"] = str(root / "data")
        from .main_window import MainWindow
        from .settings import AppSettings

        settings = AppSettings(root / "settings.ini")
        settings.gallery_path = root / "gallery.db"
        window = MainWindow(settings)
        window.resize(*size)
        window.show()
        try:
            demo.build(window, root, data)
            enroll_report = window.enroll.last_report
            # the Live page on a picture with someone enrolled and a stranger
            live = window.live
            window.go_to(live)
            live.set_source(str(scene(root / "entrance", data)))
            live.start()
            demo.wait_until(lambda: not live.is_running, 120)
            demo.wait_idle()
            live.set_source(str(root / "entrance"))
            window.perf_label.setText("")
            assert enroll_report is window.enroll.last_report
            for name, page in zip(PAGES, [window.live, window.enroll, window.people,
                                          window.unknowns, window.events,
                                          window.settings_page]):
                window.go_to(page)
                demo.wait_idle()
                if page is window.events:
                    demo.wait_until(lambda: window.events.loaded, 60)
                    named = [r for r, row in enumerate(window.events.rows) if row.who]
                    if named:
                        window.events.table.selectRow(named[0])
                if page is window.unknowns and window.unknowns.clusters.count():
                    demo.wait_until(lambda: window.unknowns.faces.count() > 0, 60)
                demo.wait_idle()
                window.banner.hide()
                window.statusBar().clearMessage()
                app.processEvents()
                path = out / f"{name}.png"
                if not window.grab().save(str(path)):
                    raise SystemExit(f"could not write {path}")
                written.append(path)
        finally:
            window.close()
            demo.wait_idle()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--size", default="1280x800", help="window size, WxH")
    parser.add_argument("--data", type=Path, help="the shared data folder "
                        "(default: $FACEAPP_SHARED_DATA or ../shared/data)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    for path in take(args.out, (width, height), args.data):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
