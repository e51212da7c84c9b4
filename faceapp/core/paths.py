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
    """Create a folder readable by its owner only (face templates are biometric data)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
