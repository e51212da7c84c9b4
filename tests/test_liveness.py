"""The presentation-attack check (faceapp/core/liveness.py, pack minifasnet-v1).

Data: the vendor's three sample photos (../shared/models/minifasnet/sample: a real
face, a print, a screen) and LFW, read in place. NUAA, on which the threshold was
chosen and the error rates measured (`python -m trainer evaluate-liveness`), is not
needed here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceapp.core.detect import MTCNNDetector
from faceapp.core.imageio import load_image
from faceapp.core.liveness import LivenessChecker
from faceapp.core.models import ModelPack

REPO = Path(__file__).resolve().parents[1]
VENDOR = Path(os.environ.get("FACEAPP_MINIFASNET_DIR",
                             REPO.parent / "shared" / "models" / "minifasnet"))
SAMPLES = {"image_T1": True, "image_F1": False, "image_F2": False}


@pytest.fixture(scope="module")
def vendor() -> Path:
    assert (VENDOR / "sample").is_dir(), f"the vendor's weights and samples are missing at {VENDOR}"
    return VENDOR


@pytest.fixture(scope="module")
def detector():
    detector = MTCNNDetector.from_pack(threads=2)
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def checker():
    return LivenessChecker.from_pack(threads=1)


def largest(detector, image):
    faces = detector.detect(image)
    assert faces
    return max(faces, key=lambda f: f.width * f.height)


def test_pack_says_what_it_is():
    pack = ModelPack.load("minifasnet-v1")
    assert pack.task == "liveness"
    assert pack.manifest["licence"] == "Apache-2.0"
    assert "Silent-Face-Anti-Spoofing" in pack.manifest["source"]["url"]
    cfg = pack.manifest["liveness"]
    assert [m["crop_scale"] for m in cfg["models"]] == [2.7, 4.0]
    assert 0.0 < cfg["threshold"] < 1.0 and "NUAA" in cfg["threshold_note"]
    nuaa = pack.manifest["evaluation"]["nuaa"]
    assert nuaa["test"]["acer"] <= 0.01 or "ACER" in pack.manifest.get("evaluation_note", "")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_vendor_samples(vendor, detector, checker, name):
    image = load_image(vendor / "sample" / f"{name}.jpg")
    score = checker.score(image, largest(detector, image))
    assert 0.0 <= score <= 1.0
    assert checker.is_live(score) is SAMPLES[name], f"{name}: score {score:.4f}"


def test_detect_cli_prints_liveness(vendor, tmp_path):
    photos = [vendor / "sample" / f"{name}.jpg" for name in sorted(SAMPLES)]
    result = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(tmp_path / "g.db"),
                             "detect", "--liveness", *map(str, photos)],
                            capture_output=True, text=True, timeout=300, check=True)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    by_image: dict[str, list[dict]] = {}
    for record in records:
        by_image.setdefault(Path(record["image"]).stem, []).append(record)
    for name, live in SAMPLES.items():
        best = max(by_image[name], key=lambda r: (r["box"][2] - r["box"][0]) * (r["box"][3] - r["box"][1]))
        assert isinstance(best["liveness"], float) and best["live"] is live, best
    plain = subprocess.run([sys.executable, "-m", "faceapp", "--db", str(tmp_path / "g.db"),
                            "detect", str(photos[0])],
                           capture_output=True, text=True, timeout=300, check=True)
    assert "liveness" not in plain.stdout


def test_onnx_pack_matches_torch_networks(vendor, detector, checker, shared_data):
    torch = pytest.importorskip("torch")
    from trainer.teachers import minifasnet

    images = [load_image(vendor / "sample" / "image_T1.jpg"),
              load_image(vendor / "sample" / "image_F1.jpg"),
              load_image(next(iter(sorted((shared_data / "lfw" / "images").glob("*/*.jpg")))))]
    nets = {"minifasnet-v2": minifasnet.load_net("V2", vendor / "2.7_80x80_MiniFASNetV2.pth"),
            "minifasnet-v1se": minifasnet.load_net(
                "V1SE", vendor / "4_0_0_80x80_MiniFASNetV1SE.pth")}
    minifasnet.PReLU.reference = True  # the plain maths, not the exported form
    try:
        for image in images:
            face = largest(detector, image)
            for model, crop in zip(checker.models, checker.crops(image, face)):
                got = checker.sessions[model.key].run(None, {checker.input_names[model.key]: crop})[0]
                with torch.no_grad():
                    expected = torch.softmax(nets[model.key](torch.from_numpy(crop)), 1).numpy()
                np.testing.assert_allclose(got, expected, atol=1e-4)
    finally:
        minifasnet.PReLU.reference = False


@pytest.mark.slow
def test_real_lfw_faces_are_rarely_flagged(shared_data, detector, checker):
    measured = ModelPack.load("minifasnet-v1").manifest["evaluation"]["lfw"]["flagged"]
    paths = sorted((shared_data / "lfw" / "images").glob("*/*.jpg"))[::66][:200]
    scores = []
    for path in paths:
        image = load_image(path)
        faces = detector.detect(image)
        if faces:
            scores.append(checker.score(image, max(faces, key=lambda f: f.width * f.height)))
    assert len(scores) >= 190
    flagged = float(np.mean([not checker.is_live(s) for s in scores]))
    # the rate measured on all of LFW, plus three standard deviations of a 200-face draw
    bound = measured + 3 * math.sqrt(max(measured, 0.01) * (1 - measured) / len(scores))
    assert flagged <= bound, f"{flagged:.3f} of {len(scores)} LFW faces flagged (bound {bound:.3f})"
