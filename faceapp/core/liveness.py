"""Presentation-attack check: does a detected face look like a print or a screen?

Two small nets (MiniFASNetV2 and MiniFASNetV1SE, Minivision, Apache-2.0) look at the
face with more and more of its surroundings (the face box scaled by 2.7 and by 4.0
around its centre: the edge of a photo or of a phone, moire, glare). Each gives 3
class probabilities, class 1 being a real face; as the vendor does, the two are
averaged and the live-class probability is the score. `is_live(score)` compares it
with the pack's threshold (chosen and measured by `python -m trainer
evaluate-liveness`, figures in the manifest).

The crop. The nets were trained on the vendor's own detector's boxes (a RetinaFace),
which are wider, shorter and lower than MTCNN's: the pack's `liveness.box` says how
an MTCNN box becomes one of them. It was measured, not guessed: on 1,809 real faces
(1,500 LFW photos, the sample photos, 300 NUAA client photos) found by both detectors,
the vendor box's centre lies 0.0094 MTCNN-box widths right of and 0.072 heights below
the MTCNN box's centre, and is 1.139 widths wide and 0.882 heights tall (medians; the
interquartile spread of each ratio is 0.03-0.07). The mapped box overlaps the vendor's
with IoU 0.90 on average (5th percentile 0.81), and the nets' decision on its crops is
the one they make on the vendor box's crops for 95.4% of those faces (mean |score
change| 0.05; the unmapped MTCNN box: 87.5%, 0.12). Sizing from the landmarks spread the
ratios three times as much (eye-to-mouth, eye-to-eye distances); centring on them did
no better (IoU 0.85, 96.3% agreement). The crop itself follows the vendor's conventions: box
(x, y, w, h), the scale shrunk when the scaled box would not fit the image, the box
slid back inside the image, its corners truncated to whole pixels (inclusive), the
piece resized to 80x80 bilinearly, BGR, values 0..255.

The engine side only (numpy, OpenCV, onnxruntime): nothing here imports Qt or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from faceapp.core.imageio import as_rgb8
from faceapp.core.models import ModelPack, ModelPackError, run_session

DEFAULT_PACK = "minifasnet-v1"


@dataclass(frozen=True)
class BoxMapping:
    """An MTCNN box [x1, y1, x2, y2] -> the vendor's detector box (x, y, w, h)."""

    centre_dx: float  # vendor centre - MTCNN centre, in MTCNN box widths
    centre_dy: float  # ... in MTCNN box heights
    width: float      # vendor width / MTCNN width
    height: float     # vendor height / MTCNN height

    def __call__(self, box) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        cx = (x1 + x2) / 2 + self.centre_dx * w
        cy = (y1 + y2) / 2 + self.centre_dy * h
        vw, vh = self.width * w, self.height * h
        return cx - vw / 2, cy - vh / 2, vw, vh


def vendor_crop(image: np.ndarray, box: tuple[float, float, float, float], scale: float,
                size: tuple[int, int]) -> np.ndarray:
    """The piece of `image` the vendor's nets see for a box (x, y, w, h): the box scaled
    around its centre (less when it would not fit), slid inside the image, resized."""
    height, width = image.shape[:2]
    x, y, w, h = (max(float(v), 1.0) if i >= 2 else float(v) for i, v in enumerate(box))
    scale = min((height - 1) / h, (width - 1) / w, float(scale))
    cw, ch = w * scale, h * scale
    cx, cy = x + w / 2, y + h / 2
    left, top, right, bottom = cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > width - 1:
        left, right = left - (right - width + 1), float(width - 1)
    if bottom > height - 1:
        top, bottom = top - (bottom - height + 1), float(height - 1)
    left, top, right, bottom = (max(int(v), 0) for v in (left, top, right, bottom))
    piece = image[top:bottom + 1, left:right + 1]
    if piece.size == 0:
        piece = image
    return cv2.resize(piece, (int(size[0]), int(size[1])), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class _Model:
    key: str
    scale: float
    size: tuple[int, int]  # width, height


class LivenessChecker:
    """score(image_rgb, face) -> probability that the face is real (0..1);
    is_live(score) -> the pack's decision. One instance per thread."""

    def __init__(self, pack: ModelPack, sessions: dict[str, Any],
                 threshold: float | None = None) -> None:
        cfg = pack.manifest.get("liveness")
        try:
            self.models = [_Model(str(m["file"]), float(m["crop_scale"]),
                                  (int(m["input_size"][0]), int(m["input_size"][1])))
                           for m in cfg["models"]]
            self.color = str(cfg["color"]).upper()
            self.mean = np.asarray(cfg["mean"], np.float32).reshape(1, 1, 3)
            self.std = np.asarray(cfg["std"], np.float32).reshape(1, 1, 3)
            self.live_class = int(cfg["live_class"])
            self.mapping = BoxMapping(**{k: float(cfg["box"][k]) for k in
                                         ("centre_dx", "centre_dy", "width", "height")})
            self.threshold = float(cfg["threshold"] if threshold is None else threshold)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelPackError(
                f"model pack '{pack.name}': liveness settings incomplete ({exc!r}); "
                "re-create it with `python -m trainer convert-liveness`") from exc
        if not self.models or self.color not in ("RGB", "BGR"):
            raise ModelPackError(f"model pack '{pack.name}': bad liveness settings")
        self.pack = pack
        self.sessions = sessions
        self.input_names = {k: s.get_inputs()[0].name for k, s in sessions.items()}

    @classmethod
    def from_pack(cls, pack_or_name: ModelPack | str = DEFAULT_PACK, threads: int = 1,
                  threshold: float | None = None) -> "LivenessChecker":
        pack = pack_or_name if isinstance(pack_or_name, ModelPack) else ModelPack.load(pack_or_name)
        if pack.task != "liveness":
            raise ModelPackError(f"model pack '{pack.name}' is a {pack.task} pack, "
                                 "not a liveness pack")
        keys = [str(m.get("file")) for m in pack.manifest.get("liveness", {}).get("models", [])]
        sessions = {key: pack.session(key, threads) for key in keys}
        return cls(pack, sessions, threshold=threshold)

    def box(self, face) -> tuple[float, float, float, float]:
        """The vendor-style box (x, y, w, h) for a Face (or an [x1, y1, x2, y2] box)."""
        return self.mapping(getattr(face, "box", face))

    def crops(self, image_rgb: np.ndarray, face) -> list[np.ndarray]:
        """Each model's input (1, 3, H, W) float32 for one face."""
        image = as_rgb8(image_rgb)
        if self.color == "BGR":
            image = image[:, :, ::-1]
        box = self.box(face)
        out = []
        for model in self.models:
            crop = vendor_crop(image, box, model.scale, model.size).astype(np.float32)
            crop = (crop - self.mean) / self.std
            out.append(np.ascontiguousarray(crop.transpose(2, 0, 1)[None]))
        return out

    def probabilities(self, image_rgb: np.ndarray, face) -> np.ndarray:
        """The fused class probabilities (the mean of the models' softmax outputs)."""
        total = None
        for model, crop in zip(self.models, self.crops(image_rgb, face)):
            probs = run_session(self.sessions[model.key], {self.input_names[model.key]: crop},
                                "liveness check")[0][0].astype(np.float64)
            total = probs if total is None else total + probs
        return total / len(self.models)

    def score(self, image_rgb: np.ndarray, face) -> float:
        """Probability (0..1) that the face is a real one, not a print or a screen."""
        return float(self.probabilities(image_rgb, face)[self.live_class])

    def is_live(self, score: float) -> bool:
        return float(score) >= self.threshold
