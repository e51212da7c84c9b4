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
        assert pack.manifest["licence"] in ("MIT", "CC0-1.0")
        for key, entry in pack.manifest["files"].items():
            if entry.get("shipped", True):
                assert pack.file(key).stat().st_size == entry["bytes"]


def test_shipped_files_are_small():
    total = sum(entry["bytes"] for pack in available_packs(include_unlisted=True)
                for entry in pack.manifest["files"].values() if entry.get("shipped", True))
    assert total < 12_000_000


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
