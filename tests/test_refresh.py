"""`python -m trainer refresh`: a shipped pack rebuilt from its sources is the same bytes.

The detector's and the teacher's files are rebuilt from the upstream archives (fetched
once into the trainer cache), the two shipped students' from their kept runs, and
compared byte for byte with assets/models/; the manifest comes back byte-identical,
every measured section kept. The full run with
the measurements (LFW, 1:N, clustering: tens of minutes on 2 cores) is not run here:
its pieces are (which sections are measured again, the order of the keys, the
calibration record).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from trainer import refresh as refresh_module  # noqa: E402
from trainer.calibration import (RANGE_TOLERANCE, CalibrationMismatch,  # noqa: E402
                                 CalibrationRecord, load_record, range_gap, record_path,
                                 settle_ranges)
from trainer.packs import MEASURED_SECTIONS, in_order_of, manifest_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PACKS = REPO / "assets" / "models"


def _copy_pack(name: str, root: Path) -> Path:
    """The shipped pack (manifest and shipped files) in a folder of the test's own."""
    target = root / name
    target.mkdir(parents=True)
    manifest = json.loads((PACKS / name / "manifest.json").read_text())
    shutil.copy(PACKS / name / "manifest.json", target / "manifest.json")
    for entry in manifest["files"].values():
        if entry.get("shipped", True):
            shutil.copy(PACKS / name / entry["path"], target / entry["path"])
    return target


def _same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


# the students whose calibration is recorded (trainer/calibration/) are exported from
# their kept runs in trainer/generations/
@pytest.mark.parametrize("pack", ["mtcnn-v1", "dlib-resnet-v1", "dlib-taper-150-v1",
                                  "dlib-taper-104-v1"])
def test_refresh_rebuilds_the_shipped_pack_byte_for_byte(pack, tmp_path, shared_data):
    root = tmp_path / "models"
    target = _copy_pack(pack, root)
    result = refresh_module.refresh(pack, out_root=root, staging=tmp_path / "staging",
                                    measure_sections=False)
    shipped = json.loads((PACKS / pack / "manifest.json").read_text())
    for key, entry in shipped["files"].items():
        assert result.files[key] == "unchanged", (key, result.files)
        if entry.get("shipped", True):
            assert _same_bytes(target / entry["path"], PACKS / pack / entry["path"]), key
    # every measured section kept, keys in their order: the same manifest bytes
    assert _same_bytes(target / "manifest.json", PACKS / pack / "manifest.json")
    for section in MEASURED_SECTIONS:
        if section in shipped:
            assert section in result.kept


def test_remeasuring_covers_every_measured_key_of_each_pack():
    for folder in sorted(PACKS.iterdir()):
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest["task"] != "embedder":
            continue
        todo = refresh_module.measurements(manifest, manifest)
        kinds = {(kind, key) for kind, key in todo}
        evaluation = manifest.get("evaluation", {})
        for key in list(evaluation.get("lfw", {})) + list(manifest.get("operating_points", {})):
            assert ("lfw", key) in kinds, (folder.name, key)
        for key in evaluation.get("lfw_low", {}):
            assert ("lfw_low", key) in kinds, (folder.name, key)
        for section in ("identification", "clustering"):
            for key in manifest.get(section, {}):
                assert (section, key) in kinds, (folder.name, section, key)
        # 1:N with fused templates is checked against the fused searches' calibration
        order = [key for kind, key in todo if kind == "identification"]
        for i, key in enumerate(order):
            if key.endswith("+flip-templates"):
                assert key.replace("+flip-templates", "+flip") in order[:i]
    # a new pack measures what the app runs it with
    new = {"task": "embedder", "default_variant": "int8", "flip_fusion": False,
           "template_flip_fusion": True}
    assert refresh_module.measurements(new, None) == [
        ("lfw", "int8"), ("lfw", "int8+flip"), ("lfw_low", "int8"),
        ("identification", "int8+flip"), ("identification", "int8+flip-templates"),
        ("clustering", "int8")]


def test_manifest_keys_keep_their_order():
    previous = {"schema": 1, "name": "x", "files": {"b": 1, "a": 2}, "flip_fusion": True,
                "measured": {"k": 1}}
    rebuilt = {"name": "x", "flip_fusion": True, "files": {"a": 2, "b": 3}, "new": 1,
               "measured": {"k": 1}}
    ordered = in_order_of(previous, rebuilt)
    assert list(ordered) == ["name", "files", "flip_fusion", "measured", "new"]
    assert list(ordered["files"]) == ["b", "a"] and ordered["files"]["b"] == 3
    assert manifest_text(ordered) == manifest_text(json.loads(manifest_text(ordered)))


def _tiny_net(path: Path) -> Path:
    import torch

    from trainer.export import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 4))
    return export_onnx(net, path, (24, 24))


def test_recorded_ranges_give_the_same_int8_bytes_without_calibrating(tmp_path):
    from trainer.export import measure_ranges, quantize_int8

    fp32 = _tiny_net(tmp_path / "tiny.fp32.onnx")
    batch = np.random.default_rng(0).normal(size=(20, 3, 24, 24)).astype(np.float32)
    measured: dict = {}
    quantize_int8(fp32, tmp_path / "measured.onnx", batch, measured=measured)
    assert measured == measure_ranges(fp32, batch)
    # through JSON, as the record keeps them
    ranges = {k: tuple(v) for k, v in json.loads(json.dumps(measured)).items()}
    quantize_int8(fp32, tmp_path / "recorded.onnx", None, ranges=ranges)
    assert _same_bytes(tmp_path / "measured.onnx", tmp_path / "recorded.onnx")
    # a range that moved changes the file: the ranges are all the calibration there is
    name = sorted(k for k in ranges if "Relu" in k)[0]
    low, high = ranges[name]
    quantize_int8(fp32, tmp_path / "moved.onnx", None,
                  ranges={**ranges, name: (low, high * 1.01)})
    assert not _same_bytes(tmp_path / "measured.onnx", tmp_path / "moved.onnx")


def test_a_calibration_that_no_longer_fits_the_network_is_refused(tmp_path):
    fp32 = _tiny_net(tmp_path / "tiny.fp32.onnx")
    batch = np.random.default_rng(0).normal(size=(20, 3, 24, 24)).astype(np.float32)
    record = CalibrationRecord("tiny", "dlib150", "minmax", 0, [("a.jpg", [0.0] * 10)],
                               file=tmp_path / "tiny.json")
    first = settle_ranges(record, fp32, batch, [])  # records: no ranges yet
    assert record.ranges == first
    assert load_record("tiny", tmp_path / "tiny.json") == record
    # the same faces give the same ranges (within last-bit noise on another CPU)
    assert settle_ranges(record, fp32, batch, []) == first
    record.ranges = {k: (lo, hi * (1 + 10 * RANGE_TOLERANCE)) for k, (lo, hi) in first.items()}
    with pytest.raises(CalibrationMismatch, match="--recalibrate"):
        settle_ranges(record, fp32, batch, [])
    assert range_gap({"t": (0.0, 1.0)}, {"t": (0.0, 1.000001)})[0] == pytest.approx(1e-6)
    assert range_gap({"t": (0.0, 1.0)}, {"u": (0.0, 1.0)})[0] == float("inf")


def test_the_teachers_calibration_is_recorded_in_the_repository():
    record = load_record("dlib-resnet-v1")
    assert record is not None, f"{record_path('dlib-resnet-v1')} is missing"
    assert len(record.faces) == 512 and record.method == "minmax"
    assert record.template == "dlib150" and record.ranges
    # the text is a function of the record: rewriting it changes nothing
    assert record.to_json() == record_path("dlib-resnet-v1").read_text()


def test_a_section_that_was_not_measured_again_is_never_dropped():
    previous = {"evaluation": {"lfw": {"int8": {}}, "celeba": {"int8": {}}},
                "identification": {"int8": {}}}
    complete = {"evaluation": {"lfw": {"int8": {}}, "celeba": {"int8": {}}},
                "identification": {"int8": {}}}
    refresh_module._check_nothing_dropped("p", previous, complete)
    for dropped in ({"evaluation": {"lfw": {"int8": {}}}, "identification": {"int8": {}}},
                    {"evaluation": complete["evaluation"], "identification": {}}):
        with pytest.raises(refresh_module.RefreshError, match="never drops"):
            refresh_module._check_nothing_dropped("p", previous, dropped)
