"""Writing model packs: the folder layout that faceapp.core.models reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from faceapp.core.models import MANIFEST, SCHEMA_VERSION, ModelPack, file_sha256


def repo_packs_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "models"


def register_file(manifest: dict[str, Any], pack_dir: Path, key: str, filename: str,
                  shipped: bool = True, missing_hint: str | None = None) -> None:
    """Record a file already written into pack_dir, with its checksum."""
    path = pack_dir / filename
    entry: dict[str, Any] = {"path": filename, "sha256": file_sha256(path),
                             "bytes": path.stat().st_size, "shipped": shipped}
    if missing_hint:
        entry["missing_hint"] = missing_hint
    manifest.setdefault("files", {})[key] = entry


def write_manifest(pack_dir: Path, manifest: dict[str, Any]) -> ModelPack:
    """Write manifest.json atomically and return the pack as the app will see it."""
    manifest = {"schema": SCHEMA_VERSION, **{k: v for k, v in manifest.items() if k != "schema"}}
    tmp = pack_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, pack_dir / MANIFEST)
    return ModelPack.load(pack_dir)


def keep_measured_figures(pack_dir: Path, manifest: dict[str, Any]) -> None:
    """A pack rebuilt with byte-identical files keeps the figures measured on them."""
    previous = pack_dir / MANIFEST
    if previous.exists():
        old = json.loads(previous.read_text())
        if old.get("files") == manifest["files"]:
            # measured on these files (1:1, 1:N, grouping) or decided on them
            for key in ("evaluation", "operating_points", "identification", "clustering",
                        "listed"):
                if key in old:
                    manifest[key] = old[key]


def update_manifest(pack_dir: Path, **fields: Any) -> ModelPack:
    pack = ModelPack.load(pack_dir)
    manifest = dict(pack.manifest)
    manifest.update(fields)
    return write_manifest(pack_dir, manifest)
