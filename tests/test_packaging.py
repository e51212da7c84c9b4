"""The installation check (`faceapp --self-test`) and the Linux package build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceapp.core.models import DEFAULT_EMBEDDER

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "assets" / "models"


def _self_test(env_extra=None, cwd=None):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "faceapp", "--self-test"], cwd=cwd or REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_self_test_passes_and_reports():
    result = _self_test()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "model: mtcnn-v1 1.0" in out
    assert f"model: {DEFAULT_EMBEDDER} 1.0" in out
    assert "-> astronaut" in out
    assert "no-face image: 0 faces" in out
    assert "gallery server driver: psycopg 3." in out and "(binary, libpq " in out
    assert out.rstrip().endswith("result: OK")


def test_self_test_refuses_damaged_models(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS, models, ignore=shutil.ignore_patterns("*.fp32.onnx"))
    int8 = models / DEFAULT_EMBEDDER / f"{DEFAULT_EMBEDDER}.int8.onnx"
    data = bytearray(int8.read_bytes())
    data[len(data) // 2] ^= 0xFF
    int8.write_bytes(bytes(data))
    result = _self_test({"FACEAPP_MODELS_DIR": str(models)})
    assert result.returncode != 0
    assert "FAILED: the models do not load" in result.stdout
    assert f"{DEFAULT_EMBEDDER}.int8.onnx is damaged (checksum mismatch)" in result.stdout


def test_self_test_leaves_no_gallery_behind(tmp_path):
    env = {"TMPDIR": str(tmp_path), "FACEAPP_DATA_DIR": str(tmp_path / "data")}
    result = _self_test(env)
    assert result.returncode == 0, result.stdout + result.stderr
    # (other libraries may leave their own small files in TMPDIR; ours is gone)
    assert not list(tmp_path.glob("faceapp-selftest-*"))
    assert not (tmp_path / "data").exists()


def desktop_file_problems(path: Path) -> str:
    """What desktop-file-validate says about a .desktop file ("" when it is valid).
    Missing: the test fails, as CI installs it (.ci/run: desktop-file-utils)."""
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.fail("desktop-file-validate is not installed (Debian package "
                    "desktop-file-utils; .ci/run installs it)")
    result = subprocess.run([validate, str(path)], capture_output=True, text=True,
                            timeout=60)
    said = result.stdout + result.stderr
    # some errors ("will be fatal in the future") still exit 0: any error counts
    errors = [line for line in said.splitlines() if "error:" in line]
    return said if result.returncode != 0 or errors else ""


def test_the_desktop_file_validates():
    desktop = REPO / "packaging" / "linux" / "faceapp.desktop"
    assert desktop_file_problems(desktop) == ""
    text = desktop.read_text()
    assert "Exec=/usr/bin/faceapp" in text and "Icon=faceapp" in text
    # a broken one is caught (the check can fail)
    broken = text.replace("Categories=AudioVideo;Video;", "Categories=Video;")
    assert broken != text
    copy = Path(os.environ.get("TMPDIR", "/tmp")) / f"faceapp-check-{os.getpid()}.desktop"
    copy.write_text(broken)
    try:
        assert "AudioVideo" in desktop_file_problems(copy)
    finally:
        copy.unlink()


# The package build takes about 3 minutes on a 2-core machine (PyInstaller ~30 s, xz
# compression of the .deb most of the rest).
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian/Ubuntu)")
def test_build_deb(tmp_path):
    pytest.importorskip("PyInstaller")
    dist = Path(os.environ.get("FACEAPP_TEST_DIST_DIR") or tmp_path / "dist")
    env = dict(os.environ, PYTHON=sys.executable, FACEAPP_DIST_DIR=str(dist),
               FACEAPP_BUILD_DIR=str(tmp_path / "build"))
    result = subprocess.run(["bash", str(REPO / "packaging" / "build.sh")], env=env,
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (dist / "selftest.txt").read_text().rstrip().endswith("result: OK")
    assert "(frozen," in (dist / "selftest.txt").read_text()

    (deb,) = dist.glob("faceapp_*.deb")
    assert deb.stat().st_size <= 150_000_000
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    installed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\n.deb {deb.stat().st_size / 1e6:.0f} MB, {installed / 1e6:.0f} MB installed")
    control = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Depends"],
                             capture_output=True, text=True, check=True).stdout
    assert "Package: faceapp" in control and "libxcb-cursor0" in control

    assert os.readlink(root / "usr/bin/faceapp") == "/opt/faceapp/faceapp"
    assert os.access(root / "opt/faceapp/faceapp", os.X_OK)
    desktop = (root / "usr/share/applications/faceapp.desktop").read_text()
    assert "Exec=/usr/bin/faceapp" in desktop and "Icon=faceapp" in desktop
    assert "Categories=" in desktop
    assert desktop_file_problems(root / "usr/share/applications/faceapp.desktop") == ""
    assert (root / "usr/share/icons/hicolor/256x256/apps/faceapp.png").stat().st_size > 0
    models = root / "opt/faceapp/_internal/assets/models"
    for name in ("mtcnn-v1/manifest.json", "mtcnn-v1/pnet.onnx", "mtcnn-v1/rnet.onnx",
                 "mtcnn-v1/onet.onnx", "dlib-resnet-v1/manifest.json",
                 "dlib-resnet-v1/dlib-resnet-v1.int8.onnx"):
        assert (models / name).is_file(), name
    assert not list(models.rglob("*.fp32.onnx"))
    assert (root / "opt/faceapp/_internal/samples/astronaut.png").is_file()
    bundled = [p.relative_to(root) for p in root.rglob("*")
               if p.name.lower() in ("torch", "trainer", "onnx")
               or p.name.lower().startswith(("libtorch", "torch-"))]
    assert bundled == []

    # the installed copy (not the build folder) runs its self-test
    started = time.perf_counter()
    run = subprocess.run([str(root / "opt/faceapp/faceapp"), "--self-test"], cwd=tmp_path,
                         env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.perf_counter() - started < 60
    # the package's postrm leaves the user's data alone
    control_dir = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control_dir)], check=True)
    postrm = (control_dir / "postrm").read_text()
    assert "rm -" not in postrm and ".local/share/faceapp" in postrm
