"""Face embedders: aligned crops -> unit-length vectors.

Preprocessing (crop size, colour order, mean and std, alignment template) comes from
the model pack's manifest, so a new model needs a new pack, not new code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import Template, get_template
from .models import ModelPack, ModelPackError, run_session


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int]  # (width, height)
    color: str  # channel order the network expects: "RGB" or "BGR"
    mean: np.ndarray  # per channel, in the network's channel order
    std: np.ndarray

    @classmethod
    def from_manifest(cls, spec: dict) -> "Preprocessing":
        try:
            width, height = spec["size"]
            color = spec["color"].upper()
            mean = np.asarray(spec["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
            std = np.asarray(spec["std"], dtype=np.float32).reshape(1, 3, 1, 1)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelPackError(f"embedder manifest: bad 'input' section ({exc})") from exc
        if color not in ("RGB", "BGR"):
            raise ModelPackError(f"embedder manifest: unknown colour order {color}")
        return cls(size=(int(width), int(height)), color=color, mean=mean, std=std)

    def to_tensor(self, crops_rgb: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 RGB -> N x 3 x H x W float32 network input."""
        batch = crops_rgb if self.color == "RGB" else crops_rgb[..., ::-1]
        batch = batch.transpose(0, 3, 1, 2).astype(np.float32)
        return np.ascontiguousarray((batch - self.mean) / self.std)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Embedder:
    """Runs one variant (e.g. int8) of an embedder pack."""

    def __init__(self, pack: ModelPack, variant: str | None = None, threads: int = 2,
                 flip: bool | None = None, max_batch: int = 32,
                 template_flip: bool | None = None):
        if pack.task != "embedder":
            raise ModelPackError(f"model pack '{pack.name}' is a {pack.task}, not an embedder")
        manifest = pack.manifest
        self.pack = pack
        self.variant = variant or manifest.get("default_variant", "int8")
        self.preprocessing = Preprocessing.from_manifest(manifest["input"])
        self.template: Template = get_template(manifest["alignment"])
        if self.template.size != self.preprocessing.size:
            raise ModelPackError(
                f"model pack '{pack.name}': template {self.template.name} makes "
                f"{self.template.size} crops but the network takes {self.preprocessing.size}")
        self.dim = int(manifest["embedding_size"])
        # Flip fusion (face + mirror) costs a second pass; the pack says where it pays:
        # on every face, or only on the gallery's templates, made once at enrolment
        # (a search then costs one pass and still meets a fused template).
        self.flip = bool(manifest.get("flip_fusion", False)) if flip is None else flip
        self.template_flip = self.flip or (
            bool(manifest.get("template_flip_fusion", False)) if template_flip is None
            else template_flip)
        self.max_batch = max_batch
        self._session = pack.session(self.variant, threads=threads)
        self._input = self._session.get_inputs()[0].name

    @property
    def model_id(self) -> str:
        """Identifies the vector space: embeddings with different ids never compare."""
        return f"{self.pack.name}:{self.variant}"

    @classmethod
    def from_pack(cls, pack_or_name: ModelPack | str, **kwargs) -> "Embedder":
        pack = pack_or_name if isinstance(pack_or_name, ModelPack) else ModelPack.load(pack_or_name)
        return cls(pack, **kwargs)

    @property
    def setting(self) -> str:
        """The manifest key of this variant and flip setting (calibrations)."""
        return setting_key(self.variant, self.flip, self.template_flip)

    def threshold(self, far: float = 1e-3, templates: bool = False) -> float:
        """The cosine for a pairwise false accept rate between two searched faces, or
        between two templates (1:1 comparisons only; 1:N decisions use calibration())."""
        flip = self.template_flip if templates else self.flip
        return operating_threshold(self.pack, self.variant, far, flip)

    def clustering_threshold(self) -> float:
        """The average-linkage cosine at which unknown faces group into one person
        (core/clustering.py), measured for this variant by `python -m trainer
        clustering`; packs without it use the pairwise threshold at FAR 1e-4."""
        entry = self.pack.manifest.get("clustering", {}).get(setting_key(self.variant,
                                                                         self.flip))
        return float(entry["threshold"]) if entry else self.threshold(1e-4)

    def calibration(self):
        """This variant's 1:N operating points (faceapp/core/operating.py)."""
        from .operating import Calibration
        return Calibration.from_pack(self.pack, self.setting)

    def template_calibration(self):
        """The 1:N operating points of a search by a template: a new person's samples
        against the gallery, or the gallery's own samples against the other people."""
        if self.template_flip == self.flip:
            return self.calibration()
        from .operating import Calibration
        return Calibration.from_pack(self.pack, setting_key(self.variant, self.template_flip))

    def raw(self, crops_rgb: np.ndarray) -> np.ndarray:
        """The network's output for N aligned crops, unnormalised."""
        crops_rgb = np.asarray(crops_rgb)
        if crops_rgb.ndim == 3:
            crops_rgb = crops_rgb[None]
        expected = (self.preprocessing.size[1], self.preprocessing.size[0], 3)
        if crops_rgb.shape[1:] != expected:
            raise ValueError(f"crops must be N x {expected}, got {crops_rgb.shape}")
        out = np.empty((len(crops_rgb), self.dim), dtype=np.float32)
        for start in range(0, len(crops_rgb), self.max_batch):
            chunk = self.preprocessing.to_tensor(crops_rgb[start:start + self.max_batch])
            out[start:start + len(chunk)] = run_session(self._session, {self._input: chunk},
                                                        f"embedding ({self.model_id})")[0]
        return out

    def embed(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Unit-length embeddings of faces to search; with flip fusion, of the face
        plus its mirror."""
        return self._embed(crops_rgb, self.flip)

    def embed_templates(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Unit-length embeddings of gallery samples (the templates searches meet)."""
        return self._embed(crops_rgb, self.template_flip)

    def _embed(self, crops_rgb: np.ndarray, flip: bool) -> np.ndarray:
        crops_rgb = np.asarray(crops_rgb)
        if crops_rgb.ndim == 3:
            crops_rgb = crops_rgb[None]
        if len(crops_rgb) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if flip:  # face and mirror in one batch: one call is cheaper than two
            both = self.raw(np.concatenate([crops_rgb, crops_rgb[:, :, ::-1]]))
            vectors = both[:len(crops_rgb)] + both[len(crops_rgb):]
        else:
            vectors = self.raw(crops_rgb)
        return l2_normalize(vectors).astype(np.float32)


def setting_key(variant: str, flip: bool, template_flip: bool = False) -> str:
    """How a pack's manifest names a variant run with a flip setting: "int8",
    "int8+flip" (every face fused with its mirror) or "int8+flip-templates" (only
    the gallery's templates fused)."""
    if flip:
        return variant + "+flip"
    return variant + ("+flip-templates" if template_flip else "")


def operating_threshold(pack: ModelPack, variant: str, far: float, flip: bool = False) -> float:
    """The cosine threshold measured for a false accept rate, from the manifest."""
    key = setting_key(variant, flip)
    measured = pack.manifest.get("operating_points", {}).get(key)
    if not measured:
        raise ModelPackError(f"model pack '{pack.name}' has no measured thresholds for {key}; "
                             "run `python -m trainer evaluate --update-manifest`")
    points = sorted(measured["points"], key=lambda p: abs(np.log10(p["far"]) - np.log10(far)))
    return float(points[0]["cosine"])
