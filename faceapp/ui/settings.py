"""What the user chose, kept between runs with QSettings (organisation and application
"faceapp"). Tests and the screenshot script pass a file path so the real settings are
never touched."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from ..core.gallery import default_station
from ..core.gallery import has_password, is_server_location
from ..core.paths import default_gallery_path
from ..core.operating import NAMED_POINTS, RATE_RANGE, one_in
from ..core.models import DEFAULT_EMBEDDER

THRESHOLD_LEVELS = (*NAMED_POINTS, "custom")  # strict, balanced, lenient, custom
DEFAULT_LEVEL = "balanced"
DEFAULT_CUSTOM = 500  # a custom point: about 1 stranger in this many named
CUSTOM_RANGE = (one_in(RATE_RANGE[1]), one_in(RATE_RANGE[0]))  # 1 in 5 ... 1 in 2,000
DEFAULT_MIN_FACE = 40
MIN_FACE_RANGE = (20, 400)
# What a camera is asked for (the driver may choose another size); None: its own default
CAMERA_SIZES = {"default": None, "640x480": (640, 480), "1280x720": (1280, 720),
                "1920x1080": (1920, 1080)}


def _as_bool(value) -> bool:
    # the INI format gives strings back
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


class AppSettings:
    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            self.qsettings = QSettings("faceapp", "faceapp")
        else:
            self.qsettings = QSettings(str(path), QSettings.Format.IniFormat)

    @property
    def file(self) -> str:
        return self.qsettings.fileName()

    def _get(self, key: str, default):
        return self.qsettings.value(key, default)

    def _set(self, key: str, value) -> None:
        self.qsettings.setValue(key, value)
        self.qsettings.sync()  # written now: a crash later must not lose it

    # -- recognition ----------------------------------------------------------------
    @property
    def threshold_level(self) -> str:
        level = str(self._get("recognition/threshold", DEFAULT_LEVEL))
        return level if level in THRESHOLD_LEVELS else DEFAULT_LEVEL

    @threshold_level.setter
    def threshold_level(self, level: str) -> None:
        if level not in THRESHOLD_LEVELS:
            raise ValueError(f"unknown threshold level {level!r}")
        self._set("recognition/threshold", level)

    @property
    def custom_one_in(self) -> int:
        """The custom point: about 1 stranger in this many gets a name (the same scale
        as the named levels; a raw score is never asked for)."""
        try:
            value = int(float(self._get("recognition/custom_one_in", DEFAULT_CUSTOM)))
        except (TypeError, ValueError):
            return DEFAULT_CUSTOM
        return min(max(value, CUSTOM_RANGE[0]), CUSTOM_RANGE[1])

    @custom_one_in.setter
    def custom_one_in(self, value: int) -> None:
        self._set("recognition/custom_one_in", int(value))

    def threshold(self) -> str:
        """What OperatingPoint.parse takes: a level name or "1in=N"."""
        level = self.threshold_level
        return f"1in={self.custom_one_in}" if level == "custom" else level

    @property
    def min_face(self) -> int:
        try:
            value = int(self._get("recognition/min_face", DEFAULT_MIN_FACE))
        except (TypeError, ValueError):
            return DEFAULT_MIN_FACE
        return min(max(value, MIN_FACE_RANGE[0]), MIN_FACE_RANGE[1])

    @min_face.setter
    def min_face(self, value: int) -> None:
        self._set("recognition/min_face", int(value))

    @property
    def embedder_pack(self) -> str:
        return str(self._get("recognition/embedder", DEFAULT_EMBEDDER)) or DEFAULT_EMBEDDER

    @property
    def embedder_chosen(self) -> bool:
        """Whether the user picked a face model (otherwise the gallery's or the default)."""
        return bool(self._get("recognition/embedder", ""))

    @property
    def embedder_variant(self) -> str | None:
        """None: the pack's default variant."""
        return str(self._get("recognition/embedder_variant", "")) or None

    def set_embedder(self, pack: str, variant: str | None) -> None:
        self._set("recognition/embedder", pack)
        self._set("recognition/embedder_variant", variant or "")

    # -- camera -------------------------------------------------------------------------
    @property
    def camera_index(self) -> int:
        try:
            return max(0, int(self._get("camera/index", 0)))
        except (TypeError, ValueError):
            return 0

    @camera_index.setter
    def camera_index(self, index: int) -> None:
        self._set("camera/index", int(index))

    @property
    def camera_resolution(self) -> str:
        value = str(self._get("camera/resolution", "default"))
        return value if value in CAMERA_SIZES else "default"

    @camera_resolution.setter
    def camera_resolution(self, value: str) -> None:
        if value not in CAMERA_SIZES:
            raise ValueError(f"unknown camera resolution {value!r}")
        self._set("camera/resolution", value)

    def camera_size(self) -> tuple[int, int] | None:
        return CAMERA_SIZES[self.camera_resolution]

    # -- storage ------------------------------------------------------------------
    @property
    def gallery_path(self) -> Path | str:
        """The gallery file, or a gallery server's postgresql:// URL (no password)."""
        value = self._get("gallery/path", "")
        if is_server_location(value):
            return value
        return Path(value) if value else default_gallery_path()

    @gallery_path.setter
    def gallery_path(self, path: str | os.PathLike) -> None:
        if is_server_location(path) and has_password(path):
            # settings are a plain file: a password lives in ~/.pgpass or a service file
            raise ValueError("a server location is kept without its password")
        self._set("gallery/path", str(path))

    @property
    def station(self) -> str:
        """This computer's name on the events it records (a shared gallery)."""
        return str(self._get("gallery/station", "")) or default_station()

    @station.setter
    def station(self, name: str) -> None:
        name = " ".join(str(name).split())[:100]
        self._set("gallery/station", name)

    @property
    def keep_thumbnails(self) -> bool:
        return _as_bool(self._get("events/keep_thumbnails", True))

    @keep_thumbnails.setter
    def keep_thumbnails(self, keep: bool) -> None:
        self._set("events/keep_thumbnails", bool(keep))

    # -- window -----------------------------------------------------------------------
    @property
    def last_source(self) -> str:
        return str(self._get("live/source", ""))

    @last_source.setter
    def last_source(self, spec: str) -> None:
        self._set("live/source", spec)

    @property
    def last_folder(self) -> str:
        return str(self._get("dialogs/last_folder", ""))

    @last_folder.setter
    def last_folder(self, folder: str) -> None:
        self._set("dialogs/last_folder", folder)

    @property
    def geometry(self) -> QByteArray | None:
        value = self._get("window/geometry", None)
        return value if isinstance(value, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._set("window/geometry", value)
