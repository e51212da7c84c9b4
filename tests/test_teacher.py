"""The dlib ResNet teacher: serialization parser and parity with dlib's own descriptors.

tests/data/dlib_golden.json was made by bench/make_dlib_golden.py with the real dlib
(never a dependency of the project): for each face it holds the image->chip affine
matrix M of dlib's 150x150 / padding 0.25 face chip and dlib's descriptor of the chip
cv2.warpAffine makes with M. Rebuilding the same chip here isolates the network.
"""

from __future__ import annotations

import hashlib
import json
import math
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from trainer.teachers.dlib_resnet import (DlibFormatError, DlibReader, DlibResNet,
                                          load_dlib_resnet)

GOLDEN = Path(__file__).parent / "data" / "dlib_golden.json"
DLIB_THRESHOLD = 0.6


# ---------------------------------------------------------------- parser on hand-made bytes

@pytest.mark.parametrize("raw, value", [
    ("01 00", 0),
    ("01 01", 1),
    ("81 01", -1),
    ("01 96", 150),
    ("02 2c 01", 300),
    ("82 2c 01", -300),
    ("04 ff ff ff 7f", 2**31 - 1),
    ("88 00 00 00 00 00 00 00 80", -(2**63)),
])
def test_integer_encoding(raw, value):
    r = DlibReader(bytes.fromhex(raw))
    assert r.int() == value
    assert r.at_end()


@pytest.mark.parametrize("raw, value", [
    ("01 00 01 00", 0.0),                    # zero: mantissa 0
    ("01 10 81 04", 1.0),                    # 16 * 2**-4
    ("81 05 81 01", -2.5),                   # -5 * 2**-1
    ("01 03 01 02", 12.0),                   # positive exponent: 3 * 2**2
    ("03 0a d7 a3 81 1c", 10737418 / 2**28),  # float32(0.04), as the loss margin is stored
])
def test_float_encoding(raw, value):
    r = DlibReader(bytes.fromhex(raw))
    assert r.float() == value
    assert r.at_end()


def test_float_special_values():
    r = DlibReader(bytes.fromhex("01 00 02 00 7d" "01 00 02 01 7d" "01 00 02 02 7d"))
    assert r.float() == math.inf
    assert r.float() == -math.inf
    assert math.isnan(r.float())


def test_bool_string_tensor():
    data = bytes.fromhex("31 30" "01 04") + b"con_" + bytes.fromhex(
        "01 02 01 02 01 01 01 01 01 01") + np.array([1.5, -2.0], "<f4").tobytes()
    r = DlibReader(data)
    assert r.bool() is True and r.bool() is False
    assert r.string() == "con_"
    t = r.tensor()
    assert t.shape == (2, 1, 1, 1) and t.ravel().tolist() == [1.5, -2.0]
    assert r.at_end()


def test_bad_bytes_raise():
    with pytest.raises(DlibFormatError):
        DlibReader(bytes.fromhex("00")).int()      # zero-length integer
    with pytest.raises(DlibFormatError):
        DlibReader(bytes.fromhex("02 01")).int()   # truncated
    with pytest.raises(DlibFormatError):
        DlibReader(b"x").bool()


# ---------------------------------------------------------------- the network

@pytest.fixture(scope="module")
def teacher() -> DlibResNet:
    return load_dlib_resnet()


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_module_reads_input_means_from_file(teacher):
    assert teacher.input_mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert teacher.input_scale == 1 / 256
    assert sum(p.numel() for p in teacher.parameters()) == 5_607_488
    assert not teacher.training


def _chip(shared_data: Path, face: dict) -> np.ndarray:
    bgr = cv2.imread(str(shared_data / face["photo"]), cv2.IMREAD_COLOR)
    assert bgr is not None, face["photo"]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cv2.warpAffine(rgb, np.asarray(face["M"], np.float64), (150, 150),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@pytest.fixture(scope="module")
def parity(teacher, golden, shared_data):
    chips = [_chip(shared_data, f) for f in golden["faces"]]
    with torch.no_grad():
        ours = teacher(teacher.normalise(np.stack(chips))).numpy().astype(np.float64)
    ref = np.array([f["descriptor"] for f in golden["faces"]], np.float64)
    same_chips = [hashlib.sha256(c.tobytes()).hexdigest() == f.get("chip_sha256")
                  for c, f in zip(chips, golden["faces"])]
    return ours, ref, same_chips


def test_golden_file_header(golden):
    assert golden["generator"] == "bench/make_dlib_golden.py"
    assert len(golden["faces"]) >= 6
    for face in golden["faces"]:
        assert np.asarray(face["M"]).shape == (2, 3)
        assert len(face["descriptor"]) == 128


def test_descriptors_match_dlib(parity):
    ours, ref, same_chips = parity
    diff = np.abs(ours - ref).max(axis=1)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert diff.max() < 1e-4, (
        f"max abs diff per face {diff}, cosine {cos}; chips identical to the "
        f"generator's: {same_chips}")
    assert cos.min() > 0.99999


def test_distance_decisions_match_dlib(parity):
    ours, ref, _ = parity
    n = len(ref)
    assert n >= 6
    for i, j in combinations(range(n), 2):
        d_ours = np.linalg.norm(ours[i] - ours[j])
        d_ref = np.linalg.norm(ref[i] - ref[j])
        assert abs(d_ours - d_ref) < 1e-4
        assert (d_ours < DLIB_THRESHOLD) == (d_ref < DLIB_THRESHOLD), (i, j, d_ours, d_ref)


def test_batch_and_single_agree(teacher):
    x = torch.randn(3, 3, 150, 150, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        batch = teacher(x)
        single = torch.cat([teacher(x[i:i + 1]) for i in range(3)])
    assert batch.shape == (3, 128)
    assert torch.allclose(batch, single, atol=1e-5)


@pytest.mark.slow
def test_onnx_export_matches_torch(teacher, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "dlib_resnet.onnx"
    with torch.no_grad():
        torch.onnx.export(teacher, (torch.zeros(1, 3, 150, 150),), str(path),
                          input_names=["input"], output_names=["embedding"],
                          opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}})
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert ops <= {"Conv", "Relu", "MaxPool", "AveragePool", "Add", "Pad", "Constant",
                   "GlobalAveragePool", "Flatten", "Gemm", "MatMul"}, ops
    x = (torch.randn(5, 3, 150, 150, generator=torch.Generator().manual_seed(1)) * 0.3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = teacher(x).numpy()
    assert got.shape == (5, 128)
    assert np.abs(got - want).max() < 1e-4


def test_shipped_int8_pack_agrees_with_dlib(shared_data):
    """The int8 file the app ships, on the golden chips: same decisions as dlib."""
    from faceapp.core.embed import Embedder
    from faceapp.core.models import ModelPack
    from trainer.export import quantized_graph_report

    golden = json.loads(GOLDEN.read_text())
    pack = ModelPack.load("dlib-resnet-v1")
    embedder = Embedder(pack, variant="int8")
    chips = np.stack([_chip(shared_data, face) for face in golden["faces"]])
    ours = embedder.embed(chips)
    theirs = np.array([face["descriptor"] for face in golden["faces"]], np.float32)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert (np.sum(ours * theirs, axis=1) > 0.995).all()
    report = quantized_graph_report(pack.file("int8"), pack.manifest["quantization"]["fp32_by_design"])
    assert report["fp32_islands"] == [] and report["quantized_compute_nodes"] >= 28
