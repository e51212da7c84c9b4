"""A small demo gallery built through the app's own pages, from the shared face data
(LFW people and the sample photos, linked into a temporary folder, never copied):
a folder import with a person per sub-folder (and one folder that gives nobody),
a door "camera" (a photo folder) played on Live with enrolled people and strangers,
so the Events and Unknown people pages have something to show.

Used by the screenshot script (`python -m faceapp.ui.screenshots`) and the layout
tests. Everything runs as a person would drive the window; the helpers only wait.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

# LFW people with enough photos: enrolled from their first photos, seen later in others
ENROLLED = ["Colin_Powell", "Tony_Blair", "Gerhard_Schroeder", "Ariel_Sharon",
            "Hugo_Chavez", "Jean_Chretien"]
STRANGERS = ["Jacques_Chirac", "John_Ashcroft", "Serena_Williams", "Junichiro_Koizumi"]
ENROLL_PHOTOS = 3


def shared_data() -> Path:
    """The shared data folder: $FACEAPP_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("FACEAPP_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def wait_until(condition, timeout: float = 60.0) -> None:
    """Process Qt events until condition() holds (raises TimeoutError)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s: {condition}")
        QApplication.processEvents()
        time.sleep(0.01)


def wait_idle(timeout: float = 120.0) -> None:
    from .jobs import Job

    wait_until(lambda: not Job.running(), timeout)
    QApplication.processEvents()


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(target)


def people_folder(root: Path, data: Path | None = None) -> Path:
    """root/people: ENROLLED people (a few photos each, linked), and a folder
    "Broken_Person" whose only file is not a photo."""
    data = data or shared_data()
    lfw = data / "lfw" / "images"
    folder = root / "people"
    for name in ENROLLED:
        for photo in sorted((lfw / name).iterdir())[:ENROLL_PHOTOS]:
            _link(photo, folder / name / photo.name)
    broken = folder / "Broken_Person"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "notes.jpg").write_text("not a photo\n")
    return folder


def door_folder(root: Path, data: Path | None = None, strangers: int = 3) -> Path:
    """root/door: later photos of the enrolled people and photos of strangers, in turn."""
    data = data or shared_data()
    lfw = data / "lfw" / "images"
    folder = root / "door"
    photos = []
    for name in ENROLLED[:4]:
        photos += sorted((lfw / name).iterdir())[ENROLL_PHOTOS:ENROLL_PHOTOS + 1]
    for name in STRANGERS:
        photos += sorted((lfw / name).iterdir())[:strangers]
    for i, photo in enumerate(photos):
        _link(photo, folder / f"{i:03d}_{photo.name}")
    return folder


def build(window, root: Path, data: Path | None = None, live: bool = True) -> None:
    """Import the people folder and play the door folder on Live (waits for both)."""
    wait_until(lambda: window.state.is_ready, 120)
    wait_idle()
    enroll = window.enroll
    window.go_to(enroll)
    enroll.import_folder(str(people_folder(root, data)))
    wait_until(lambda: not enroll.importing, 300)
    wait_idle()
    if not live:
        return
    page = window.live
    window.go_to(page)
    page.folder_fps = None
    page.set_source(str(door_folder(root, data)))
    page.start()
    wait_until(lambda: page.is_running, 60)
    wait_until(lambda: not page.is_running, 300)
    wait_idle()
    window.state.events_changed.emit()
    wait_idle()
