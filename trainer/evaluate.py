"""LFW evaluation through the project's own detection and alignment.

Two measurements on the same embeddings:
- the standard verification protocol (pairs.txt: 10 folds of 300 matched and 300
  mismatched pairs; each fold's threshold chosen on the other nine), plus ROC AUC and
  TAR at FAR on those 6,000 pairs (FAR resolution 1/3000 there);
- operating thresholds for the app: every same-person and every different-person
  pair among all the evaluated images (millions of impostor pairs), so thresholds at
  FAR 1e-3 .. 1e-5 are actually resolved.
LFW is a research dataset (non-commercial); figures computed on it say so.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from faceapp.core.align import align_face
from faceapp.core.detect import MTCNNDetector
from faceapp.core.embed import Embedder
from faceapp.core.imageio import load_image
from faceapp.core.models import ModelPack

from .data import shared_data_root
# Pairs, read_pairs and detect_landmarks live in trainer/lfw.py; imported here too
# because callers of the evaluation use them with it
from .lfw import (LFW_MIN_FACE, LFW_NOTE, Pairs, detect_landmarks,  # noqa: F401
                  lfw_all_images, progress, read_pairs)
from .upstream import cache_dir

OPERATING_FARS = (1e-2, 1e-3, 1e-4, 1e-5)


def embed_images(embedder: Embedder, root: Path, images: list[str],
                 landmarks: np.ndarray, batch: int = 64) -> np.ndarray:
    out = np.zeros((len(images), embedder.dim), np.float32)
    starts = range(0, len(images), batch)
    for start in progress(starts, len(starts), f"embedding ({embedder.model_id})"):
        crops = np.stack([align_face(load_image(root / rel), landmarks[start + j],
                                     embedder.template)
                          for j, rel in enumerate(images[start:start + batch])])
        out[start:start + len(crops)] = embedder.embed(crops)
    return out


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold maximising accuracy (score >= t means same person)."""
    order = np.argsort(-scores)
    sorted_scores, sorted_same = scores[order], same[order]
    # accepting the top k: correct = genuine among top k + impostors below
    true_accepts = np.cumsum(sorted_same)
    false_rejects_avoided = (~same).sum() - np.cumsum(~sorted_same)
    correct = true_accepts + false_rejects_avoided
    k = int(np.argmax(correct))
    if k + 1 < len(sorted_scores):
        return float((sorted_scores[k] + sorted_scores[k + 1]) / 2)
    return float(sorted_scores[k] - 1e-6)


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Probability that a genuine pair outscores an impostor pair (ties count half)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    unique, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = same.sum(), (~same).sum()
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(threshold, TAR) where at most `far` of the impostor scores are >= threshold."""
    impostor = np.sort(impostor)[::-1]
    allowed = int(np.floor(far * len(impostor)))
    threshold = float(np.nextafter(impostor[allowed], np.inf)) if allowed < len(impostor) \
        else float(impostor[-1])
    return threshold, float((genuine >= threshold).mean())


def verification_report(scores: np.ndarray, pairs: Pairs) -> dict:
    accuracies, thresholds = [], []
    for k in range(int(pairs.fold.max()) + 1):
        test = pairs.fold == k
        threshold = best_threshold(scores[~test], pairs.same[~test])
        accuracies.append(float(((scores[test] >= threshold) == pairs.same[test]).mean()))
        thresholds.append(threshold)
    genuine, impostor = scores[pairs.same], scores[~pairs.same]
    report = {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "fold_accuracies": accuracies,
        "fold_thresholds": thresholds,
        "roc_auc": roc_auc(scores, pairs.same),
        "far_resolution": 1.0 / len(impostor),
    }
    for far in (1e-3, 1e-4):
        threshold, tar = tar_at_far(genuine, impostor, far)
        report[f"tar_at_far_{far:g}"] = tar
        report[f"threshold_at_far_{far:g}"] = threshold
    return report


def all_pairs_operating_points(embeddings: np.ndarray, images: list[str]) -> dict:
    identities = np.array([rel.split("/")[0] for rel in images])
    _, ids = np.unique(identities, return_inverse=True)
    sims = embeddings @ embeddings.T
    upper = np.triu(np.ones(len(images), bool), k=1)
    same = ids[:, None] == ids[None, :]
    genuine = sims[upper & same]
    impostor = sims[upper & ~same]
    points = []
    for far in OPERATING_FARS:
        threshold, tar = tar_at_far(genuine, impostor, far)
        points.append({"far": far, "cosine": round(threshold, 5), "tar": round(tar, 5)})
    return {"genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size),
            "points": points}


def plot_roc(scores: np.ndarray, same: np.ndarray, title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-scores)
    tpr = np.cumsum(same[order]) / same.sum()
    fpr = np.cumsum(~same[order]) / (~same).sum()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    ax.plot(np.maximum(fpr, 1e-4), tpr)
    ax.set_xscale("log")
    ax.set_xlim(1 / (~same).sum(), 1)
    ax.set_ylim(0.8, 1.0)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate_lfw(pack: ModelPack, variant: str, out_dir: Path, flip: bool = False,
                 threads: int = 2) -> dict:
    root = shared_data_root() / "lfw"
    pairs = read_pairs(root / "pairs.txt")
    detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=LFW_MIN_FACE, threads=threads)
    landmarks, found = detect_landmarks(detector, root / "images", pairs.images)
    embedder = Embedder(pack, variant=variant, threads=threads, flip=flip)
    started = time.perf_counter()
    embeddings = embed_images(embedder, root / "images", pairs.images, landmarks)
    elapsed = time.perf_counter() - started
    scores = np.sum(embeddings[pairs.left] * embeddings[pairs.right], axis=1)
    report = {
        "model": pack.name,
        "variant": variant,
        "flip_fusion": flip,
        "benchmark": "lfw",
        "dataset_note": LFW_NOTE,
        "images": len(pairs.images),
        "images_without_detection": int((~found).sum()),
        "no_detection_policy": "aligned with the mean landmarks of the detected images",
        "detector": {"pack": detector.pack.name, "min_face": LFW_MIN_FACE},
        **verification_report(scores, pairs),
        "operating_points": all_pairs_operating_points(embeddings, pairs.images),
        "seconds_align_and_embed": round(elapsed, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{pack.name}-{variant}{'-flip' if flip else ''}-lfw"
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_roc(scores, pairs.same, f"{pack.name} {variant}{' +flip' if flip else ''}: "
             f"LFW {100 * report['accuracy_mean']:.2f}%", out_dir / f"{stem}-roc.png")
    return report


def lfw_all_embeddings(pack: ModelPack, variant: str, flip: bool = False,
                       threads: int = 2) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(images, embeddings, found) for all 13,233 LFW images through the app's own
    detector, alignment and embedder; cached per model file, variant and flip."""
    root, images = lfw_all_images()
    detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=LFW_MIN_FACE, threads=threads)
    landmarks, found = detect_landmarks(detector, root, images)
    digest = hashlib.sha256(f"{pack.manifest['files'][variant]['sha256']}:{flip}".encode())
    digest.update(landmarks.tobytes())
    cache = cache_dir() / f"lfw-all-{pack.name}-{variant}{'-flip' if flip else ''}-{digest.hexdigest()[:12]}.npy"
    if cache.exists():
        return images, np.load(cache), found
    embedder = Embedder(pack, variant=variant, threads=threads, flip=flip)
    embeddings = embed_images(embedder, root, images, landmarks)
    np.save(cache, embeddings)
    return images, embeddings, found


def lfw_manifest_entries(report: dict) -> tuple[dict, dict]:
    """What a pack's manifest keeps of an LFW report: (evaluation.lfw[key],
    operating_points[key])."""
    evaluation = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in report.items()
                  if k in ("accuracy_mean", "accuracy_std", "roc_auc", "tar_at_far_0.001",
                           "tar_at_far_0.0001", "images", "images_without_detection",
                           "no_detection_policy", "dataset_note")}
    points = report["operating_points"]
    operating = {
        "measured_on": (f"LFW, all pairs among the {report['images']} images of pairs.txt: "
                        f"{points['genuine_pairs']} genuine, "
                        f"{points['impostor_pairs']} impostor"),
        "points": points["points"],
    }
    return evaluation, operating


LFW_LOW_KEPT = ("high_high", "low_high", "low_low", "low_images_without_detection")


def summary_line(report: dict) -> str:
    return (f"{report['model']} {report['variant']}{' +flip' if report['flip_fusion'] else ''}: "
            f"LFW {100 * report['accuracy_mean']:.2f}% +- {100 * report['accuracy_std']:.2f}, "
            f"AUC {report['roc_auc']:.5f}, TAR@FAR1e-3 {report['tar_at_far_0.001']:.4f}, "
            f"TAR@FAR1e-4 {report['tar_at_far_0.0001']:.4f}, "
            f"no detection {report['images_without_detection']}/{report['images']}")


def evaluate_degraded(pack: ModelPack, variant: str, out_dir: Path, flip: bool = False,
                      threads: int = 2) -> dict:
    """LFW's 6,000 pairs as High-High, Low-High (the left image of each pair degraded)
    and Low-Low (both), with the Low images of trainer/degrade.py."""
    from .degrade import degraded_lfw

    lfw = shared_data_root() / "lfw"
    pairs = read_pairs(lfw / "pairs.txt")
    detector = MTCNNDetector.from_pack("mtcnn-v1", min_face=LFW_MIN_FACE, threads=threads)
    high_root = lfw / "images"
    high_landmarks, high_found = detect_landmarks(detector, high_root, pairs.images)
    low_root = degraded_lfw(pairs.images, high_landmarks)
    low_landmarks, low_found = detect_landmarks(detector, low_root, pairs.images)
    embedder = Embedder(pack, variant=variant, threads=threads, flip=flip)
    high = embed_images(embedder, high_root, pairs.images, high_landmarks)
    low = embed_images(embedder, low_root, pairs.images, low_landmarks)
    report = {"model": pack.name, "variant": variant, "flip_fusion": flip,
              "benchmark": "lfw-low", "dataset_note": LFW_NOTE,
              "low_images_without_detection": int((~low_found).sum()),
              "high_images_without_detection": int((~high_found).sum())}
    for protocol, (a, b) in {"high_high": (high, high), "low_high": (low, high),
                             "low_low": (low, low)}.items():
        scores = np.sum(a[pairs.left] * b[pairs.right], axis=1)
        result = verification_report(scores, pairs)
        report[protocol] = {k: result[k] for k in ("accuracy_mean", "accuracy_std",
                                                   "tar_at_far_0.001", "roc_auc")}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{pack.name}-{variant}{'-flip' if flip else ''}-lfw-low"
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def degraded_summary(report: dict) -> str:
    parts = [f"{name.replace('_', '-')}: {100 * r['accuracy_mean']:.2f}% "
             f"TAR@1e-3 {r['tar_at_far_0.001']:.3f}"
             for name, r in ((k, report[k]) for k in ("high_high", "low_high", "low_low"))]
    return (f"{report['model']} {report['variant']}{' +flip' if report['flip_fusion'] else ''}"
            f" | " + " | ".join(parts))
