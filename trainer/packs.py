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


# What a manifest holds that was measured on its files (or decided on them): a
# rebuild with byte-identical files may keep these rather than measure them again.
MEASURED_SECTIONS = ("evaluation", "operating_points", "identification", "clustering")
DECIDED_SECTIONS = ("listed", "listed_note")
# measured fields inside sections that are otherwise rebuilt; their last digits depend
# on the CPU that measured them (onnxruntime's kernels), not on the files
MEASURED_FIELDS = (("quantization", "int8_vs_fp32_cosine"),
                   ("provenance", "max_abs_diff_vs_torch"))


def manifest_text(manifest: dict[str, Any]) -> str:
    """The bytes of manifest.json: the same manifest always gives the same text."""
    manifest = {"schema": SCHEMA_VERSION, **{k: v for k, v in manifest.items() if k != "schema"}}
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


def in_order_of(previous: Any, manifest: Any) -> Any:
    """`manifest` with its keys in the order `previous` has them (new keys after), at
    every depth: a rebuild changes the lines whose values changed, nothing else."""
    if not isinstance(previous, dict) or not isinstance(manifest, dict):
        return manifest
    ordered = {k: in_order_of(previous[k], manifest[k]) for k in previous if k in manifest}
    ordered.update({k: v for k, v in manifest.items() if k not in ordered})
    return ordered


def write_manifest(pack_dir: Path, manifest: dict[str, Any]) -> ModelPack:
    """Write manifest.json atomically and return the pack as the app will see it.
    Keys keep the order of the manifest it replaces."""
    previous = pack_dir / MANIFEST
    if previous.exists():
        try:
            manifest = in_order_of(json.loads(previous.read_text(encoding="utf-8")), manifest)
        except (OSError, ValueError):
            pass
    tmp = pack_dir / (MANIFEST + ".tmp")
    tmp.write_text(manifest_text(manifest), encoding="utf-8")
    os.replace(tmp, pack_dir / MANIFEST)
    return ModelPack.load(pack_dir)


def keep_measured_figures(pack_dir: Path, manifest: dict[str, Any]) -> None:
    """A pack rebuilt with byte-identical files keeps the figures measured on them."""
    previous = pack_dir / MANIFEST
    if previous.exists():
        old = json.loads(previous.read_text())
        if old.get("files") == manifest["files"]:
            keep_sections(old, manifest)


def keep_sections(old: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """Copy what `old` measured or decided on the same files into `manifest`; returns
    what was kept."""
    kept = []
    # measured on these files (1:1, 1:N, grouping) or decided on them
    for key in MEASURED_SECTIONS + DECIDED_SECTIONS:
        if key in old:
            manifest[key] = old[key]
            kept.append(key)
    for section, key in MEASURED_FIELDS:
        if key in old.get(section, {}) and section in manifest:
            manifest[section] = {**manifest[section], key: old[section][key]}
            kept.append(f"{section}.{key}")
    return kept


def update_manifest(pack_dir: Path, **fields: Any) -> ModelPack:
    pack = ModelPack.load(pack_dir)
    manifest = dict(pack.manifest)
    manifest.update(fields)
    return write_manifest(pack_dir, manifest)
