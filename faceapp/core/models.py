"""Model packs: a folder with manifest.json and the ONNX files it names.

Everything the app needs to know about a model (input size, colour order,
normalisation, alignment template, thresholds) is read from the manifest, so no
model fact is written twice in the code. Files are checked against their sha256
before onnxruntime sees them, and a damaged or missing file is refused with a
message that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


class ModelPackError(RuntimeError):
    """A model pack is missing, damaged or not understood."""


class InferenceError(RuntimeError):
    """onnxruntime failed on one input (an allocation on a huge photo, most often)."""


def run_session(session, feeds: dict, what: str):
    """session.run with onnxruntime's own exception types (which are not Python's
    standard ones) turned into InferenceError, so one bad input is a message."""
    try:
        return session.run(None, feeds)
    except MemoryError:
        raise InferenceError(f"{what}: out of memory") from None
    except Exception as exc:  # onnxruntime raises its own pybind11 types
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if "bad_alloc" in detail or "allocate" in detail:
            detail = "out of memory"
        raise InferenceError(f"{what} failed: {detail[-200:]}") from None


_NUMBERS3 = {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}
# What the app reads from a manifest, so that a wrong field is a message, not a
# KeyError deep inside. File paths are plain names: a pack cannot point outside itself.
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["schema", "name", "task", "files"],
    "properties": {
        "schema": {"const": SCHEMA_VERSION},
        "name": {"type": "string", "minLength": 1},
        "task": {"enum": ["detector", "embedder", "liveness"]},
        "default_variant": {"type": "string"},
        "files": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object", "required": ["path", "sha256"],
            "properties": {"path": {"type": "string", "pattern": "^[^/\\\\]+$"},
                           "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "bytes": {"type": "integer", "minimum": 0},
                           "shipped": {"type": "boolean"},
                           "missing_hint": {"type": "string"}}}},
        "input": {"type": "object", "required": ["size", "color", "mean", "std"],
                  "properties": {"size": {"type": "array", "minItems": 2, "maxItems": 2,
                                          "items": {"type": "integer", "minimum": 1}},
                                 "color": {"enum": ["RGB", "BGR", "rgb", "bgr"]},
                                 "mean": _NUMBERS3, "std": _NUMBERS3}},
        "alignment": {"type": "string"},
        "embedding_size": {"type": "integer", "minimum": 1},
        "flip_fusion": {"type": "boolean"},
        "template_flip_fusion": {"type": "boolean"},
        "listed": {"type": "boolean"},
        "operating_points": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["points"],
            "properties": {"points": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["far", "cosine"],
                "properties": {"far": {"type": "number", "exclusiveMinimum": 0},
                               "cosine": {"type": "number"}}}}}}},
        "identification": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["fpir", "runner_up_weight", "tables"]}},
        "clustering": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["threshold"],
            "properties": {"threshold": {"type": "number", "minimum": -1, "maximum": 1}}}},
        "detector": {"type": "object"},
        "liveness": {"type": "object", "required": ["models", "threshold", "box"]},
    },
    "if": {"properties": {"task": {"const": "embedder"}}},
    "then": {"required": ["input", "alignment", "embedding_size"]},
    "else": {"if": {"properties": {"task": {"const": "liveness"}}},
             "then": {"required": ["liveness"]}, "else": {"required": ["detector"]}},
}
_validate_manifest = fastjsonschema.compile(MANIFEST_SCHEMA)


def packs_dir() -> Path:
    """Where the bundled packs live, in a source checkout and in a frozen build."""
    override = os.environ.get("FACEAPP_MODELS_DIR")
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "assets" / "models"
    return Path(__file__).resolve().parents[2] / "assets" / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelPack:
    path: Path
    manifest: dict[str, Any]
    _verified: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> "ModelPack":
        """Open a pack by folder path, or by name among the bundled packs."""
        path = Path(name_or_path)
        if not (path / MANIFEST).exists():
            bundled = packs_dir() / str(name_or_path)
            if (bundled / MANIFEST).exists():
                path = bundled
            else:
                raise ModelPackError(
                    f"model pack '{name_or_path}' not found (looked in {path} and {bundled})")
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelPackError(f"model pack {path}: unreadable manifest ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA_VERSION:
            raise ModelPackError(
                f"model pack {path}: manifest schema {manifest.get('schema') if isinstance(manifest, dict) else '?'} "
                f"is not the supported version {SCHEMA_VERSION}")
        try:
            _validate_manifest(manifest)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise ModelPackError(f"model pack {path}: the manifest is not valid: "
                                 f"{exc.message.replace('data.', '', 1)}") from None
        return cls(path=path, manifest=manifest)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    def has_file(self, key: str) -> bool:
        entry = self.manifest["files"].get(key)
        return entry is not None and (self.path / entry["path"]).exists()

    def file(self, key: str) -> Path:
        """The verified path of one of the pack's files."""
        entry = self.manifest["files"].get(key)
        if entry is None:
            raise ModelPackError(
                f"model pack '{self.name}' has no file '{key}' "
                f"(it has: {', '.join(self.manifest['files'])})")
        path = self.path / entry["path"]
        if key in self._verified:
            return path
        if not path.exists():
            hint = entry.get("missing_hint", "reinstall faceapp to restore it")
            raise ModelPackError(f"model file {path} is missing: {hint}")
        actual = file_sha256(path)
        if actual != entry["sha256"]:
            raise ModelPackError(
                f"model file {path} is damaged (checksum mismatch); "
                "reinstall faceapp or re-create the pack with the trainer")
        self._verified.add(key)
        return path

    def session(self, key: str, threads: int = 2):
        """An onnxruntime session for one of the pack's ONNX files."""
        import onnxruntime as ort

        path = self.file(key)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # errors come back as exceptions and become messages (run_session): not also
        # printed in red by onnxruntime
        options.log_severity_level = 4
        # Spinning worker threads steal the CPU from the other stages on small machines.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(path), sess_options=options,
                                        providers=["CPUExecutionProvider"],
                                        disabled_optimizers=DISABLED_OPTIMIZERS)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelPackError(f"model file {path} could not be loaded: {exc}") from exc


# onnxruntime's QDQ propagation moves the quantization of the int8 embedders' fp32 stem
# above their max-pool, which then runs as a naive uint8 NCHW pool: 35% of the dlib
# ResNet's time on this CPU (0.82 of 2.35 ms per face). Without it the pool stays in
# fp32 on the blocked layout, 1.6x faster overall, with bit-identical outputs
# (tests/test_models.py::test_int8_packs_run_faster_without_qdq_propagation).
DISABLED_OPTIMIZERS = ["QDQPropagationTransformer"]


def available_packs(task: str | None = None, include_unlisted: bool = False) -> list[ModelPack]:
    """The bundled packs that load, optionally only those of one task.

    A pack whose manifest says `"listed": false` is shipped for experiments but not
    offered to users (Settings, the CLI's list): it stays reachable by name or path.
    """
    packs = []
    root = packs_dir()
    if not root.is_dir():
        return packs
    for child in sorted(root.iterdir()):
        if (child / MANIFEST).exists():
            try:
                pack = ModelPack.load(child)
            except ModelPackError:
                continue
            if task is not None and pack.task != task:
                continue
            if include_unlisted or pack.manifest.get("listed", True):
                packs.append(pack)
    return packs


# ------------------------------------------------------------------ the defaults

DEFAULT_DETECTOR = "mtcnn-v1"
# The distilled student: as accurate as the teacher on LFW pairs at under half its
# time per searched face, and within 3 points of it naming 1,680 people (docs/students.md). The teacher (dlib-resnet-v1) is the accurate choice.
DEFAULT_EMBEDDER = "dlib-taper-150-v1"


def embedder_for_gallery(gallery) -> tuple[str, str | None]:
    """The embedder (pack, variant) for a gallery whose user has chosen none.

    The default, unless every template in the gallery belongs to another installed
    pack (enrolled with `--model`, or before the default changed): the gallery keeps
    recognising its people with the model that made their templates, until the user
    switches in Settings (which computes the new model's templates first).
    """
    models = gallery.models() if gallery is not None else {}
    if not models or any(model_id.partition(":")[0] == DEFAULT_EMBEDDER for model_id in models):
        return DEFAULT_EMBEDDER, None
    for model_id, _count in sorted(models.items(), key=lambda item: -item[1]):
        pack, _, variant = model_id.partition(":")
        try:
            ModelPack.load(pack)
        except ModelPackError:  # that model is no longer installed
            continue
        return pack, variant or None
    return DEFAULT_EMBEDDER, None


def choose_embedder(model: str | None, gallery=None) -> tuple[str, str | None]:
    """The embedder (pack, variant) a program uses: the one asked for (a pack name,
    or "pack:variant"), else the gallery's own (embedder_for_gallery)."""
    if model:
        pack, _, variant = str(model).partition(":")
        return pack, variant or None
    return embedder_for_gallery(gallery)
