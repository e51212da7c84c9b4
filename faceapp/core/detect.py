"""Face detection: the MTCNN cascade (P-Net, R-Net, O-Net) on onnxruntime + numpy.

Every model fact (colour order, normalisation, net input sizes, P-Net stride and cell,
thresholds, NMS settings, pyramid factor, landmark order) comes from the pack's
manifest.json, written by `python -m trainer convert-detector`.

Coordinates are continuous pixel coordinates: pixel (i, j) covers [j, j+1) x [i, i+1),
boxes are [x1, y1, x2, y2] with width x2 - x1.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from faceapp.core.imageio import as_rgb8
from faceapp.core.models import ModelPack, ModelPackError, run_session

DEFAULT_PACK = "mtcnn-v1"
# Images whose longest side is above this are searched on a downscaled copy (the
# coordinates are mapped back); faces smaller than min_face * side / MAX_SIDE are then
# not found, which for such images only drops tiny background faces.
MAX_SIDE = 2048
# Caps on candidates per P-Net level and on those that reach R-Net / O-Net (highest
# scores first), so that noise, texture or a crowd cannot make one frame take seconds.
MAX_LEVEL_CANDIDATES = 2000
MAX_RNET_INPUTS = 1500
MAX_ONET_INPUTS = 300


@dataclass
class Face:
    box: np.ndarray        # float32 [x1, y1, x2, y2], pixels
    score: float
    landmarks: np.ndarray  # float32 (5, 2) x, y pixels: left_eye, right_eye, nose, mouth_left, mouth_right

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


def _overlap(x1, y1, x2, y2, area, i, rest, use_min: bool):
    """Overlap (IoU, or intersection over the smaller area) of box i with boxes rest."""
    iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
    ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    denom = np.minimum(area[i], area[rest]) if use_min else area[i] + area[rest] - inter
    return inter / np.maximum(denom, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first.

    mode "union" compares intersection over union, "min" intersection over the
    smaller box (which also removes a box lying inside a better one).
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = np.asarray(boxes, dtype=np.float32)[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    use_min = mode == "min"
    if n <= 256:
        # all pairs at once, then one cheap pass in score order
        iw = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
        ih = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
        inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
        if use_min:
            denom = np.minimum(area[:, None], area[None, :])
        else:
            denom = area[:, None] + area[None, :] - inter
        over = inter / np.maximum(denom, 1e-12) > threshold
        alive = np.ones(n, dtype=bool)
        keep = []
        for i in range(n):
            if alive[i]:
                keep.append(i)
                alive &= ~over[i]
        return order[np.asarray(keep, dtype=np.int64)]
    keep = []
    rest = np.arange(n)
    while rest.size:
        i, rest = rest[0], rest[1:]
        keep.append(i)
        if rest.size:
            rest = rest[_overlap(x1, y1, x2, y2, area, i, rest, use_min) <= threshold]
    return order[np.asarray(keep, dtype=np.int64)]


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (side = longer side)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) * 0.5
    out[:, 1] = boxes[:, 1] + (h - side) * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply (dx1, dy1, dx2, dy2) offsets, given in units of the box size."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    size = np.concatenate([w, h, w, h], axis=1)
    return boxes[:, :4] + reg[:, :4] * size


def _sane(boxes: np.ndarray, shape) -> np.ndarray:
    """Squared boxes worth cropping: at least a pixel, at most a few times the image."""
    side = boxes[:, 2] - boxes[:, 0]
    limit = 3.0 * max(shape[:2])
    centre_x = (boxes[:, 0] + boxes[:, 2]) * 0.5
    centre_y = (boxes[:, 1] + boxes[:, 3]) * 0.5
    return ((side >= 1.0) & (side <= limit) & np.isfinite(side)
            & (centre_x > -side) & (centre_x < shape[1] + side)
            & (centre_y > -side) & (centre_y < shape[0] + side))


@dataclass
class _Level:
    """One image of the pyramid and its scale (level pixels per original pixel)."""
    image: np.ndarray
    sx: float
    sy: float


def _mip_levels(image: np.ndarray, min_scale: float) -> list[_Level]:
    """The image and its successive exact 2x area reductions down to about min_scale.

    Halving by INTER_AREA is cv2's fast path (an odd last row/column is dropped so the
    factor is exactly 2), and every other resize in the detector then shrinks by less
    than 2, where cheap bilinear interpolation does not alias.
    """
    levels = [_Level(image, 1.0, 1.0)]
    while True:
        last = levels[-1]
        h, w = last.image.shape[:2]
        if last.sx * 0.5 < min_scale or h < 4 or w < 4:
            return levels
        even = last.image[: h - h % 2, : w - w % 2]
        half = cv2.resize(even, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        levels.append(_Level(half, last.sx * 0.5, last.sy * 0.5))


class MTCNNDetector:
    """MTCNN face detector; `detect(image)` returns Faces sorted by score.

    `threads` is how many threads one detect() uses: the calling thread and
    threads - 1 workers take P-Net pyramid levels and R-/O-Net batch pieces from one
    queue, each running the nets single-threaded. (Small convolutions hardly scale
    inside one onnxruntime call, and onnxruntime's intra-op pool spins between calls,
    which on a 2-core machine made a frame 4x slower.)
    """

    def __init__(self, pack: ModelPack, sessions: dict[str, Any], min_face: int = 40,
                 thresholds: tuple[float, float, float] | None = None,
                 threads: int = 2, max_side: int = MAX_SIDE) -> None:
        cfg = pack.manifest.get("detector")
        if not isinstance(cfg, dict) or cfg.get("kind") != "mtcnn":
            raise ModelPackError(f"model pack '{pack.name}' is not an MTCNN detector pack")
        try:
            self.color = str(cfg["color"]).upper()
            self.mean = np.float32(cfg["mean"])
            self.scale = np.float32(cfg["scale"])
            self.sizes = {k: int(v) for k, v in cfg["input_sizes"].items()}
            self.stride = int(cfg["pnet_stride"])
            self.cell = int(cfg["pnet_cell"])
            self.factor = float(cfg["pyramid_factor"])
            default_thresholds = [float(t) for t in cfg["thresholds"]]
            self.nms_cfg = {e["stage"]: (float(e["iou"]), str(e["mode"])) for e in cfg["nms"]}
            self.outputs = {k: list(v) for k, v in cfg["outputs"].items()}
            self.landmark_names = list(cfg["landmarks"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelPackError(
                f"model pack '{pack.name}': detector settings incomplete ({exc!r}); "
                "re-create it with `python -m trainer convert-detector`") from exc
        if cfg.get("layout", "NCHW") != "NCHW" or cfg.get("input_transposed", False):
            raise ModelPackError(
                f"model pack '{pack.name}': only untransposed NCHW input is supported")
        if self.color not in ("RGB", "BGR"):
            raise ModelPackError(f"model pack '{pack.name}': unknown colour order {self.color}")
        missing = {"pnet_scale", "pnet_all", "rnet", "onet"} - set(self.nms_cfg)
        if missing:
            raise ModelPackError(f"model pack '{pack.name}': no NMS settings for {sorted(missing)}")
        if not 0.0 < self.factor < 1.0 or self.factor > 0.95:
            raise ModelPackError(f"model pack '{pack.name}': bad pyramid factor {self.factor}")
        self.pack = pack
        self.sessions = sessions
        self.input_names = {k: s.get_inputs()[0].name for k, s in sessions.items()}
        self.min_face = max(self.cell, int(min_face))
        self.thresholds = tuple(float(t) for t in (thresholds or default_thresholds))
        if len(self.thresholds) != 3:
            raise ValueError("thresholds must be three numbers (P-Net, R-Net, O-Net)")
        self.max_side = max(64, int(max_side))
        self.threads = max(1, int(threads))
        self._pool = (ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="mtcnn")
                      if self.threads > 1 else None)

    @classmethod
    def from_pack(cls, pack_or_name: ModelPack | str = DEFAULT_PACK, min_face: int = 40,
                  thresholds: tuple[float, float, float] | None = None,
                  threads: int = 2, max_side: int = MAX_SIDE) -> "MTCNNDetector":
        pack = pack_or_name if isinstance(pack_or_name, ModelPack) else ModelPack.load(pack_or_name)
        if pack.task != "detector":
            raise ModelPackError(f"model pack '{pack.name}' is a {pack.task} pack, not a detector")
        # one intra-op thread per session: parallelism comes from our worker threads
        sessions = {key: pack.session(key, 1) for key in ("pnet", "rnet", "onet")}
        return cls(pack, sessions, min_face=min_face, thresholds=thresholds,
                   threads=threads, max_side=max_side)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # ------------------------------------------------------------------ helpers
    def _map(self, fn, items: list) -> list:
        """[fn(item) for item in items], shared between this thread and the workers.

        The calling thread works too and takes pieces from the same queue, and it never
        waits for a worker that has not started yet: on a busy machine, where a worker
        may not be scheduled for milliseconds, this degrades to the one-thread speed
        instead of adding the wait.
        """
        n = len(items)
        if self._pool is None or n < 2:
            return [fn(item) for item in items]
        results: list = [None] * n
        errors: list = [None] * n
        next_index = itertools.count()   # its next() is atomic
        finished = threading.Semaphore(0)

        def drain() -> None:
            while True:
                i = next(next_index)
                if i >= n:
                    return
                try:
                    results[i] = fn(items[i])
                except BaseException as exc:  # re-raised in the calling thread
                    errors[i] = exc
                finished.release()

        for _ in range(min(self.threads - 1, n - 1)):
            self._pool.submit(drain)
        drain()
        for _ in range(n):
            finished.acquire()
        for exc in errors:
            if exc is not None:
                raise exc
        return results

    def _run(self, key: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        out = run_session(self.sessions[key], {self.input_names[key]: batch},
                          f"face detection ({key})")
        return dict(zip(self.outputs[key], out))

    def _to_blob(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> normalised (N, 3, H, W) float32."""
        # transpose while still uint8 (4x less memory traffic), then normalise in place
        blob = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
        blob -= self.mean
        blob *= self.scale
        return blob

    def _scales(self, h: int, w: int, min_face: float) -> list[float]:
        """Pyramid scales (level side / original side) for faces of min_face and up."""
        # never upsample, and never make the largest level bigger than max_side
        s = min(self.cell / min_face, 1.0, self.max_side / max(h, w))
        scales = []
        while min(h, w) * s >= self.cell:
            scales.append(s)
            s *= self.factor
        return scales

    def _chunks(self, n: int, per_chunk: int) -> list[np.ndarray]:
        """Index ranges splitting n crops into pieces of about per_chunk for the workers."""
        if self.threads == 1:
            return [np.arange(n)] if n else []
        parts = max(1, min(-(-n // per_chunk), 4 * self.threads))
        return [idx for idx in np.array_split(np.arange(n), parts) if idx.size]

    # ------------------------------------------------------------------ stages
    def _pnet_level(self, job: tuple[_Level, float]) -> np.ndarray:
        """P-Net on one pyramid level -> (N, 9) [x1 y1 x2 y2 score dx1 dy1 dx2 dy2]."""
        src, s = job
        sh, sw = src.image.shape[:2]
        lw = max(1, int(round(sw * s / src.sx)))
        lh = max(1, int(round(sh * s / src.sy)))
        if lw < self.cell or lh < self.cell:
            return np.zeros((0, 9), dtype=np.float32)
        if (lw, lh) == (sw, sh):
            level = src.image
        else:
            level = cv2.resize(src.image, (lw, lh), interpolation=cv2.INTER_LINEAR)
        out = self._run("pnet", self._to_blob(level[None]))
        prob = out["prob"][0, 1]
        ys, xs = np.nonzero(prob >= self.thresholds[0])
        if ys.size == 0:
            return np.zeros((0, 9), dtype=np.float32)
        if ys.size > MAX_LEVEL_CANDIDATES:   # texture / noise: keep the NMS bounded
            best = np.argpartition(-prob[ys, xs], MAX_LEVEL_CANDIDATES)[:MAX_LEVEL_CANDIDATES]
            ys, xs = ys[best], xs[best]
        # level pixels per original pixel, from the sizes actually used
        sx, sy = src.sx * lw / sw, src.sy * lh / sh
        x1 = xs.astype(np.float32) * self.stride
        y1 = ys.astype(np.float32) * self.stride
        cand = np.empty((ys.size, 9), dtype=np.float32)
        cand[:, 0] = x1 / sx
        cand[:, 1] = y1 / sy
        cand[:, 2] = (x1 + self.cell) / sx
        cand[:, 3] = (y1 + self.cell) / sy
        cand[:, 4] = prob[ys, xs]
        cand[:, 5:9] = out["reg"][0][:, ys, xs].T
        iou, mode = self.nms_cfg["pnet_scale"]
        return cand[nms(cand[:, :4], cand[:, 4], iou, mode)]

    def _stage1(self, levels: list[_Level], scales: list[float]) -> np.ndarray:
        """P-Net over the pyramid -> (N, 5) regressed, squared boxes with scores."""
        jobs = []
        for s in scales:
            # the smallest mip level still at least as large as the P-Net level
            src = next(lv for lv in reversed(levels) if lv.sx >= s * 0.999 or lv is levels[0])
            jobs.append((src, s))
        found = [c for c in self._map(self._pnet_level, jobs) if len(c)]
        if not found:
            return np.zeros((0, 5), dtype=np.float32)
        cand = np.concatenate(found)
        iou, mode = self.nms_cfg["pnet_all"]
        cand = cand[nms(cand[:, :4], cand[:, 4], iou, mode)][:MAX_RNET_INPUTS]
        boxes = _square(_regress(cand[:, :4], cand[:, 5:9]))
        ok = _sane(boxes, levels[0].image.shape)
        return np.concatenate([boxes[ok], cand[ok, 4:5]], axis=1)

    def _crops(self, levels: list[_Level], boxes: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Square crops of boxes resized to side x side, zero padding outside the image.

        Each box is cut from the smallest mip level on which it is still at least
        `side` pixels wide (so the final resize shrinks by less than 2), at integer
        level coordinates. Returns the (N, side, side, 3) uint8 crops and the boxes
        they really show, in original pixels.
        """
        n = len(boxes)
        scales = np.array([lv.sx for lv in levels], dtype=np.float64)
        extent = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        fits = (extent[:, None] * scales[None, :]) >= side
        pick = np.maximum(fits.sum(axis=1) - 1, 0)
        shown = np.empty((n, 4), dtype=np.float32)
        out = np.empty((n, side, side, 3), dtype=np.uint8)
        for k in range(n):
            lv = levels[pick[k]]
            image = lv.image
            h, w = image.shape[:2]
            x1 = int(round(float(boxes[k, 0]) * lv.sx))
            y1 = int(round(float(boxes[k, 1]) * lv.sy))
            x2 = max(int(round(float(boxes[k, 2]) * lv.sx)), x1 + 1)
            y2 = max(int(round(float(boxes[k, 3]) * lv.sy)), y1 + 1)
            if x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h:
                patch = image[y1:y2, x1:x2]
            else:
                patch = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
                sx1, sy1 = max(x1, 0), max(y1, 0)
                sx2, sy2 = min(x2, w), min(y2, h)
                if sx2 > sx1 and sy2 > sy1:
                    patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
            # the level was picked so that this shrinks by less than 2: bilinear is enough
            # (INTER_AREA costs 3x more here and changed no result on LFW or the samples)
            out[k] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_LINEAR)
            shown[k] = (x1 / lv.sx, y1 / lv.sy, x2 / lv.sx, y2 / lv.sy)
        return out, shown

    def _run_crops(self, key: str, levels: list[_Level], boxes: np.ndarray):
        """Crop, normalise and run one of the square-input nets, split over the workers."""
        side = self.sizes[key]

        def work(idx: np.ndarray):
            crops, shown = self._crops(levels, boxes[idx], side)
            return shown, self._run(key, self._to_blob(crops))

        parts = self._map(work, self._chunks(len(boxes), 16 if key == "rnet" else 4))
        shown = np.concatenate([p[0] for p in parts])
        outs = {name: np.concatenate([p[1][name] for p in parts]) for name in self.outputs[key]}
        return shown, outs

    def _stage2(self, levels: list[_Level], boxes: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, 5), dtype=np.float32)
        shown, out = self._run_crops("rnet", levels, boxes)
        score = out["prob"][:, 1]
        ok = score > self.thresholds[1]
        if not ok.any():
            return np.zeros((0, 5), dtype=np.float32)
        shown, score, reg = shown[ok], score[ok], out["reg"][ok]
        iou, mode = self.nms_cfg["rnet"]
        keep = nms(shown, score, iou, mode)[:MAX_ONET_INPUTS]
        boxes = _square(_regress(shown[keep], reg[keep]))
        ok = _sane(boxes, levels[0].image.shape)
        return np.concatenate([boxes[ok], score[keep][ok, None]], axis=1)

    def _stage3(self, levels: list[_Level], boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(boxes) == 0:
            return np.zeros((0, 5), dtype=np.float32), np.zeros((0, 5, 2), dtype=np.float32)
        shown, out = self._run_crops("onet", levels, boxes)
        score = out["prob"][:, 1]
        ok = score > self.thresholds[2]
        if not ok.any():
            return np.zeros((0, 5), dtype=np.float32), np.zeros((0, 5, 2), dtype=np.float32)
        shown, score, reg, lm = shown[ok], score[ok], out["reg"][ok], out["landmarks"][ok]
        bw = (shown[:, 2] - shown[:, 0])[:, None]
        bh = (shown[:, 3] - shown[:, 1])[:, None]
        n = len(self.landmark_names)
        points = np.stack([shown[:, 0:1] + bw * lm[:, :n],
                           shown[:, 1:2] + bh * lm[:, n:2 * n]], axis=2)
        final = _regress(shown, reg)
        iou, mode = self.nms_cfg["onet"]
        keep = nms(final, score, iou, mode)
        return (np.concatenate([final[keep], score[keep, None]], axis=1).astype(np.float32),
                points[keep].astype(np.float32))

    # ------------------------------------------------------------------ public
    def detect(self, image: np.ndarray, min_face: float | None = None) -> list[Face]:
        """All faces of at least about min_face pixels (default: the detector's),
        best score first."""
        min_face = self.min_face if min_face is None else max(float(self.cell), min_face)
        rgb = as_rgb8(image)
        h, w = rgb.shape[:2]
        if min(h, w) < min_face:
            return []
        if self.color == "BGR":
            rgb = np.ascontiguousarray(rgb[:, :, ::-1])
        # Very large photos: search a copy whose longest side is max_side.
        work, back = rgb, 1.0
        if max(h, w) > self.max_side:
            while max(work.shape[:2]) >= 2 * self.max_side:   # fast exact halvings first
                wh, ww = work.shape[:2]
                work = cv2.resize(work[: wh - wh % 2, : ww - ww % 2], (ww // 2, wh // 2),
                                  interpolation=cv2.INTER_AREA)
            f = self.max_side / max(work.shape[:2])
            size = (max(1, round(work.shape[1] * f)), max(1, round(work.shape[0] * f)))
            work = cv2.resize(work, size, interpolation=cv2.INTER_AREA)
            back = w / work.shape[1]
        wh, ww = work.shape[:2]
        scales = self._scales(wh, ww, max(float(self.cell), min_face / back))
        if not scales:
            return []
        levels = _mip_levels(work, scales[-1])
        boxes = self._stage2(levels, self._stage1(levels, scales))
        boxes, points = self._stage3(levels, boxes)
        if not len(boxes):
            return []
        if back != 1.0:
            boxes[:, [0, 2]] *= w / ww
            boxes[:, [1, 3]] *= h / wh
            points[:, :, 0] *= w / ww
            points[:, :, 1] *= h / wh
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        order = np.argsort(-boxes[:, 4], kind="stable")
        return [Face(box=boxes[i, :4].copy(), score=float(boxes[i, 4]),
                     landmarks=points[i].copy()) for i in order]
