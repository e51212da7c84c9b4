"""Model packs: checksums, clear errors, the bundled packs' manifests."""

import json
import shutil

import pytest

from faceapp.core.models import ModelPack, ModelPackError, available_packs, packs_dir


@pytest.fixture
def detector_copy(tmp_path):
    target = tmp_path / "mtcnn-v1"
    shutil.copytree(packs_dir() / "mtcnn-v1", target)
    return target


def test_bundled_packs_load_and_verify():
    packs = {pack.name: pack for pack in available_packs(include_unlisted=True)}
    assert {"mtcnn-v1", "dlib-resnet-v1"} <= set(packs)
    for pack in packs.values():
        # weights whose licence lets us ship them: MTCNN's (MIT), dlib's and ours (CC0),
        # Minivision's MiniFASNet (Apache-2.0)
        assert pack.manifest["licence"] in ("MIT", "CC0-1.0", "Apache-2.0")
        for key, entry in pack.manifest["files"].items():
            if entry.get("shipped", True):
                assert pack.file(key).stat().st_size == entry["bytes"]


def test_shipped_files_are_small():
    total = sum(entry["bytes"] for pack in available_packs(include_unlisted=True)
                for entry in pack.manifest["files"].values() if entry.get("shipped", True))
    # the teacher, the detector, the default student, two kept for experiments
    # (unlisted) and the presentation-attack check (fp32: int8 moved its decisions); the
    # students they superseded are rebuilt from their kept generations. The installer's
    # Qt and onnxruntime weigh about ten times this.
    assert total < 19_000_000


def test_damaged_file_is_refused(detector_copy):
    path = detector_copy / "rnet.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    pack = ModelPack.load(detector_copy)
    pack.file("pnet")  # the intact files still verify
    with pytest.raises(ModelPackError, match="damaged"):
        pack.session("rnet")


def test_missing_file_says_what_to_do(detector_copy):
    (detector_copy / "onet.onnx").unlink()
    with pytest.raises(ModelPackError, match="missing.*reinstall"):
        ModelPack.load(detector_copy).file("onet")


def test_unknown_file_key(detector_copy):
    with pytest.raises(ModelPackError, match="has no file 'nope'"):
        ModelPack.load(detector_copy).file("nope")


@pytest.mark.parametrize("manifest", ["{not json", json.dumps({"schema": 99, "name": "x"}),
                                      json.dumps({"schema": 1, "name": "x"}), "[]"])
def test_bad_manifest(detector_copy, manifest):
    (detector_copy / "manifest.json").write_text(manifest)
    with pytest.raises(ModelPackError):
        ModelPack.load(detector_copy)


def test_unknown_pack_name():
    with pytest.raises(ModelPackError, match="not found"):
        ModelPack.load("no-such-pack")


def test_valid_checksum_but_not_onnx(detector_copy):
    """A file that matches its manifest but is not a model still fails cleanly."""
    from faceapp.core.models import file_sha256

    path = detector_copy / "pnet.onnx"
    path.write_bytes(b"not an onnx model")
    manifest = json.loads((detector_copy / "manifest.json").read_text())
    manifest["files"]["pnet"]["sha256"] = file_sha256(path)
    (detector_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelPackError, match="could not be loaded"):
        ModelPack.load(detector_copy).session("pnet")


@pytest.mark.parametrize("damage, says", [
    (lambda m: m["files"]["pnet"].pop("sha256"), "must contain"),
    (lambda m: m["files"]["pnet"].update(path="../../etc/passwd"), "files.pnet.path"),
    (lambda m: m["files"]["pnet"].update(sha256="abc"), "files.pnet.sha256"),
    (lambda m: m.update(task="classifier"), "task"),
    (lambda m: m.pop("detector"), "detector"),
    (lambda m: m.update(files=[]), "files must be object"),
])
def test_a_manifest_with_wrong_fields_says_what_is_wrong(detector_copy, damage, says):
    """Valid JSON, wrong fields: a message naming the field, not a KeyError."""
    manifest = json.loads((detector_copy / "manifest.json").read_text())
    damage(manifest)
    (detector_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelPackError, match="the manifest is not valid") as info:
        ModelPack.load(detector_copy)
    assert says in str(info.value)


def test_an_embedder_manifest_needs_its_preprocessing(tmp_path):
    bundled = ModelPack.load("dlib-resnet-v1").manifest
    (tmp_path / "manifest.json").write_text(json.dumps(
        {k: v for k, v in bundled.items() if k != "input"}))
    with pytest.raises(ModelPackError, match="must contain .*input"):
        ModelPack.load(tmp_path)


def test_int8_embedders_keep_their_stem_pool_in_fp32_and_their_outputs(tmp_path):
    """The session option that keeps the stem max-pool off onnxruntime's slow uint8
    path (models.DISABLED_OPTIMIZERS) must still name a real transformer (a renamed one
    would be ignored silently) and must not change a single output."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from faceapp.core.models import DISABLED_OPTIMIZERS

    packs = [p for p in available_packs("embedder", include_unlisted=True)
             if p.has_file("int8")]
    assert any(p.name == "dlib-resnet-v1" for p in packs)
    for pack in packs:
        width, height = pack.manifest["input"]["size"]
        faces = np.random.default_rng(0).normal(size=(4, 3, height, width)).astype(np.float32)
        outputs, pools = [], []
        for disabled in ([], DISABLED_OPTIMIZERS):
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.log_severity_level = 3
            options.optimized_model_filepath = str(tmp_path / f"{pack.name}.onnx")
            session = ort.InferenceSession(str(pack.file("int8")), options,
                                           providers=["CPUExecutionProvider"],
                                           disabled_optimizers=disabled)
            outputs.append(session.run(None, {session.get_inputs()[0].name: faces})[0])
            graph = onnx.load(options.optimized_model_filepath).graph
            pools.append({n.domain for n in graph.node if n.op_type == "MaxPool"})
        np.testing.assert_array_equal(outputs[0], outputs[1], err_msg=pack.name)
        if pack.name == "dlib-resnet-v1":
            assert pools[0] == {""}  # onnxruntime's default: the uint8 pool
            assert pools[1] == {"com.microsoft.nchwc"}, pools[1]  # fp32, blocked layout
