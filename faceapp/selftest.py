"""`faceapp --self-test`: does this installation work, end to end, without a camera?

Loads the bundled model packs (each file checked against its sha256 by ModelPack),
enrolls the face in a bundled sample photo into a throw-away gallery in a temporary
folder, identifies a mirrored and rescaled copy of the photo as the same person, and
checks that a synthetic image without a face yields no face. Prints a short report
and returns 0, or prints the reason and returns 1. Works in a source checkout and in
the frozen (PyInstaller) app; touches nothing in the user's data folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_NAME = "astronaut.png"
PERSON = "astronaut"


class SelfTestError(RuntimeError):
    """The installation does not work; the message says what failed."""


def sample_image_path() -> Path:
    """The bundled sample portrait: next to the frozen app, or under packaging/assets."""
    override = os.environ.get("FACEAPP_SELFTEST_IMAGE")
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "samples" / SAMPLE_NAME
    return Path(__file__).resolve().parents[1] / "packaging" / "assets" / SAMPLE_NAME


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _no_face_image():
    """Smooth gradients and a few geometric shapes: nothing a detector should call a face."""
    import cv2
    import numpy as np

    h, w = 480, 640
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([xs / w * 255, ys / h * 255, (xs + ys) / (w + h) * 255], axis=-1)
    image = image.astype(np.uint8)
    cv2.rectangle(image, (60, 60), (220, 200), (200, 40, 40), -1)
    cv2.line(image, (300, 50), (600, 430), (20, 20, 20), 6)
    cv2.putText(image, "faceapp", (300, 300), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return image


def run_self_test(out=None) -> int:
    """Run the checks, print the report to `out` (stdout), return the exit status."""
    out = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    started = time.perf_counter()
    say("faceapp self-test")
    try:
        _checks(say)
    except SelfTestError as exc:
        say(f"FAILED: {exc}")
        return 1
    except Exception as exc:  # anything unexpected is a failure too, with its reason
        say(f"FAILED: unexpected {type(exc).__name__}: {exc}")
        return 1
    say(f"total: {_ms(time.perf_counter() - started)}")
    say("result: OK")
    return 0


def _checks(say) -> None:
    import cv2
    import numpy as np

    from . import __version__ if False else None  # noqa: F401  (placeholder never runs)
