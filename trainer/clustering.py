"""The clustering threshold of an embedder pack, chosen on labelled training faces.

    python -m trainer clustering --model dlib-resnet-v1 [--variant int8] [--flip]
                                 [--update-manifest]

The app groups unknown faces by average linkage (faceapp/core/clustering.py); the
threshold is the model's. It is the one with the best BCubed F-score (each face's
share of its cluster that is its person, and of its person that is in its cluster)
on LFW's people with 2 to 4 photos, clustered from an empty start in a shuffled
order. Pairwise precision is no criterion there: with so many small identities one
false merge outweighs hundreds of right pairs. The figures reported are on LFW's
people with 5 photos or more, none of them in the choice. CelebA's identity-labelled
training faces (89 x 109 px, upscaled) make a cross-check: the threshold with their
best F is reported beside it. LFW and CelebA are research data (non-commercial use).
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np

from faceapp.core.clustering import FaceClusters, pairwise_scores
from faceapp.core.embed import Embedder
from faceapp.core.models import ModelPack

GRID = np.round(np.arange(0.80, 0.99, 0.0025), 4)


def cluster_and_score(vectors: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    clusters = FaceClusters(vectors.shape[1], threshold)
    started = time.perf_counter()
    change = clusters.add(vectors)
    seconds = time.perf_counter() - started
    predicted = [change.assigned[i] for i in range(len(vectors))]
    return {**pairwise_scores(labels, predicted), "seconds": round(seconds, 3)}


def celeba_faces(embedder: Embedder, min_photos: int = 3) -> tuple[np.ndarray, np.ndarray]:
    from .cache import distill_targets
    from .distill import aligned_faces

    targets = distill_targets()
    counts = collections.Counter(targets.labels[targets.labels >= 0])
    rows = np.flatnonzero([label >= 0 and counts[label] >= min_photos
                           for label in targets.labels])
    rows = rows[np.random.default_rng(0).permutation(len(rows))]
    crops = aligned_faces(targets, rows, embedder.template.name)
    return embedder.embed(crops), targets.labels[rows]


def lfw_people(pack: ModelPack, variant: str, flip: bool, min_photos: int = 5,
               max_photos: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from .evaluate import lfw_all_embeddings

    images, embeddings, found = lfw_all_embeddings(pack, variant, flip=flip)
    names = np.array([image.split("/")[0] for image in images])
    counts = collections.Counter(names[found])
    most = max_photos or len(images)
    rows = np.flatnonzero([f and min_photos <= counts[n] <= most
                           for n, f in zip(names, found)])
    rows = rows[np.random.default_rng(0).permutation(len(rows))]
    return embeddings[rows], names[rows]


def choose_threshold(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    """The threshold with the best BCubed F-score, and its scores."""
    best = None
    for threshold in GRID:
        scores = {"threshold": float(threshold),
                  **cluster_and_score(vectors, labels, float(threshold))}
        if best is None or scores["bcubed_f"] > best["bcubed_f"]:
            best = scores
    return best["threshold"], best


def _rounded(scores: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def calibrate(pack: ModelPack, variant: str, flip: bool) -> dict:
    embedder = Embedder(pack, variant=variant, flip=flip)
    choice_vectors, choice_labels = lfw_people(pack, variant, flip, 2, 4)
    threshold, chosen = choose_threshold(choice_vectors, choice_labels)
    celeba_vectors, celeba_labels = celeba_faces(embedder)
    celeba_threshold, celeba = choose_threshold(celeba_vectors, celeba_labels)
    lfw_vectors, lfw_labels = lfw_people(pack, variant, flip, 5)
    lfw = cluster_and_score(lfw_vectors, lfw_labels, threshold)
    at_celeba = cluster_and_score(lfw_vectors, lfw_labels, celeba_threshold)
    return {
        "threshold": threshold,
        "rule": "average linkage (faceapp/core/clustering.py)",
        "chosen_on": (f"LFW people with 2-4 photos ({len(choice_labels)} faces, "
                      f"{len(set(choice_labels.tolist()))} people): the best BCubed F"),
        "choice": _rounded(chosen),
        "lfw": {**_rounded(lfw), "faces": int(len(lfw_labels)),
                "note": "LFW people with >= 5 photos (none in the choice); research data"},
        "celeba_cross_check": {
            "threshold": celeba_threshold,
            "faces": int(len(celeba_labels)),
            "best_f_on_celeba": _rounded(celeba),
            "lfw_at_that_threshold": _rounded(at_celeba)},
    }


def main_clustering(args) -> int:
    from .packs import update_manifest

    pack = ModelPack.load(args.model)
    variants = list(pack.manifest["files"]) if args.variant == "all" else [
        args.variant or pack.manifest.get("default_variant", "int8")]
    flips = [False, True] if args.both_flips else [bool(args.flip)]
    clustering = dict(pack.manifest.get("clustering", {}))
    for variant in variants:
        if not pack.has_file(variant):
            print(f"{pack.name} {variant}: file not here, skipped", file=sys.stderr)
            continue
        for flip in flips:
            key = variant + ("+flip" if flip else "")
            result = calibrate(pack, variant, flip)
            clustering[key] = result
            lfw, cross = result["lfw"], result["celeba_cross_check"]
            print(f"{pack.name} {key}: threshold {result['threshold']:.4f} (CelebA's best: "
                  f"{cross['threshold']:.4f}, which gives LFW recall "
                  f"{cross['lfw_at_that_threshold']['pairwise_recall']:.4f}); "
                  f"LFW {lfw['faces']} faces of {lfw['people']} "
                  f"people: pairwise precision {lfw['pairwise_precision']:.4f}, recall "
                  f"{lfw['pairwise_recall']:.4f}, BCubed F {lfw['bcubed_f']:.4f}, "
                  f"{lfw['clusters']} clusters in {lfw['seconds']:.2f} s")
    if args.update_manifest:
        update_manifest(pack.path, clustering=clustering)
        print(f"updated {pack.path / 'manifest.json'}")
    return 0
