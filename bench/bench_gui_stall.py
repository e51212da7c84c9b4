"""The longest GUI-thread stall while the app imports a folder of photos.

    QT_QPA_PLATFORM=offscreen python bench/bench_gui_stall.py [--photos 1000]

Opens the real main window on a temporary gallery and settings file, imports a
folder of LFW photos (one sub-folder per person) through the Enroll page, and
records the gaps between ticks of a 10 ms timer on the GUI thread. The longest gap
is the longest moment a person would see the window frozen.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000)
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from faceapp.ui.main_window import MainWindow
    from faceapp.ui.settings import AppSettings
    from faceapp.ui.stall import StallMeter
    from trainer.data import shared_data_root

    tmp = Path(tempfile.mkdtemp())
    os.environ["FACEAPP_DATA_DIR"] = str(tmp / "data")
    root = tmp / "people"
    count = 0
    for folder in sorted((shared_data_root() / "lfw" / "images").iterdir()):
        if count >= args.photos:
            break
        (root / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[:min(4, args.photos - count)]:
            (root / folder.name / photo.name).symlink_to(photo)
            count += 1

    app = QApplication.instance() or QApplication([])
    settings = AppSettings(tmp / "settings.ini")
    settings.gallery_path = tmp / "gallery.db"
    window = MainWindow(settings)
    window.show()

    def wait(condition, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the app did not get there in time")
            app.processEvents()
            time.sleep(0.005)

    wait(lambda: window.state.is_ready, 120)
    meter = StallMeter()
    window.show_page(1)
    started = time.perf_counter()
    meter.start()
    window.enroll.import_folder(str(root))
    wait(lambda: window.enroll.importing, 10)
    wait(lambda: not window.enroll.importing, 3600)
    meter.stop()
    gaps = meter.gaps
    seconds = time.perf_counter() - started
    report = window.enroll.last_report
    print(f"{count} photos imported in {seconds:.1f} s ({count / seconds:.1f}/s; "
          f"{report.added} added, {len(report.skipped)} skipped); GUI timer ticks: "
          f"{len(gaps)}, median gap {statistics.median(gaps):.0f} ms, "
          f"longest {max(gaps)} ms, 99th percentile "
          f"{sorted(gaps)[int(0.99 * (len(gaps) - 1))]} ms")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
