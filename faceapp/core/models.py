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

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


class ModelPackError(RuntimeError):
    """A model pack is missing, damaged or not understood."""


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
        for key in ("name", "task", "files"):
            if key not in manifest:
                raise ModelPackError(f"model pack {path}: manifest has no '{key}'")
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
        options.log_severity_level = 3
        # Spinning worker threads steal the CPU from the other stages on small machines.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(path), sess_options=options,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelPackError(f"model file {path} could not be loaded: {exc}") from exc


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
