"""The real window on a real X server (Xvfb): one screenshot per page.

The other UI tests run on Qt's offscreen platform; this one starts Xvfb and runs the
screenshot test of test_ui.py on the xcb platform in a child process, as a desktop
would. Set FACEAPP_SCREENSHOTS=DIR to keep the pictures. CI installs Xvfb (.ci/run).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def xvfb_display():
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb; .ci/run installs it)")
    number = next(n for n in range(90, 140) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen([binary, f":{number}", "-screen", "0", "1400x900x24",
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        assert server.poll() is None and time.time() < deadline, "Xvfb did not start"
        time.sleep(0.1)
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def test_every_page_renders_in_a_real_window(xvfb_display, tmp_path):
    out = Path(os.environ.get("FACEAPP_SCREENSHOTS") or tmp_path / "screenshots")
    env = {**os.environ, "DISPLAY": xvfb_display, "QT_QPA_PLATFORM": "xcb",
           "FACEAPP_SCREENSHOTS": str(out)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_ui.py", "-k", "screenshots"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shots = sorted(out.glob("*.png"))
    names = [p.stem.split("-", 1)[1] for p in shots]
    assert {"live", "enroll", "people", "events", "settings"} <= set(names)
    pictures = [cv2.imread(str(p)) for p in shots]
    for path, picture in zip(shots, pictures):
        assert picture is not None and picture.shape[0] >= 700 and picture.shape[1] >= 1200, path
        assert picture.std() > 20, f"{path.name} is blank"
    # each page looks different from the others
    small = [cv2.resize(p, (160, 100)).astype(np.int16) for p in pictures]
    for i in range(len(small)):
        for j in range(i + 1, len(small)):
            assert np.abs(small[i] - small[j]).mean() > 3, (shots[i].name, shots[j].name)
