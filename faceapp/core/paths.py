"""Where the app keeps the user's data (the same folder Qt's AppDataLocation names)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "faceapp"


def default_data_dir() -> Path:
    override = os.environ.get("FACEAPP_DATA_DIR")
    if override:
        return Path(override)
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_NAME


def default_gallery_path() -> Path:
    return default_data_dir() / "gallery.db"


def ensure_private_dir(path: Path) -> Path:
    """Create a folder readable by its owner only (face templates are biometric data).
    Every folder created on the way is 0700 too: mkdir(parents=True) makes the parents
    0777 less the umask (all 0777 under umask 000), and the mode given is also masked.
    Folders that already exist are left as they are."""
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():  # also through a link to a folder
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process: not ours to change
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, 0o700)  # exact, whatever the umask took away
    return path
