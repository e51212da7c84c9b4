"""The evaluation arithmetic, checked against hand-computed values."""

import numpy as np
import pytest

from trainer.evaluate import (Pairs, best_threshold, read_pairs, roc_auc, tar_at_far,
                              verification_report)


def test_read_lfw_pairs(shared_data):
    pairs = read_pairs(shared_data / "lfw" / "pairs.txt")
    assert len(pairs.left) == 6000 and pairs.same.sum() == 3000
    assert np.bincount(pairs.fold).tolist() == [600] * 10
    assert all((shared_data / "lfw" / "images" / rel).exists() for rel in pairs.images[:50])
    names = np.array([rel.split("/")[0] for rel in pairs.images])
    assert (names[pairs.left] == names[pairs.right]).tolist() == pairs.same.tolist()


def test_best_threshold_separable():
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    same = np.array([True, True, False, False])
    assert best_threshold(scores, same) == pytest.approx(0.55)


def test_best_threshold_with_an_overlap():
    # a cut between 0.6 and 0.5 gets 5/6 right: the genuine 0.2 is lost either way
    scores = np.array([0.9, 0.7, 0.6, 0.5, 0.4, 0.2])
    same = np.array([True, True, True, False, False, True])
    threshold = best_threshold(scores, same)
    accuracy = ((scores >= threshold) == same).mean()
    assert accuracy == pytest.approx(5 / 6) and 0.5 < threshold <= 0.6
    assert accuracy == max(((scores >= t) == same).mean() for t in np.append(scores, 1.0))


def test_roc_auc_hand_values():
    same = np.array([True, True, False, False])
    assert roc_auc(np.array([0.9, 0.8, 0.3, 0.1]), same) == 1.0
    assert roc_auc(np.array([0.1, 0.3, 0.8, 0.9]), same) == 0.0
    # one of four genuine/impostor orderings wrong -> 0.75; a tie counts half
    assert roc_auc(np.array([0.9, 0.2, 0.3, 0.1]), same) == 0.75
    assert roc_auc(np.array([0.9, 0.3, 0.3, 0.1]), same) == 0.875


def test_tar_at_far():
    impostor = np.linspace(0, 0.999, 1000)  # 1000 impostor scores
    genuine = np.array([0.5, 0.9985, 0.9995, 1.0])
    threshold, tar = tar_at_far(genuine, impostor, 1e-3)
    assert (impostor >= threshold).sum() == 1  # one impostor in a thousand accepted
    assert tar == 0.75
    threshold, tar = tar_at_far(genuine, impostor, 1e-4)
    assert (impostor >= threshold).sum() == 0
    assert tar == 0.5


def test_ten_fold_report_on_separable_scores():
    rng = np.random.default_rng(0)
    same = np.tile(np.repeat([True, False], 30), 10)
    scores = np.where(same, rng.uniform(0.6, 1, same.size), rng.uniform(-0.2, 0.4, same.size))
    pairs = Pairs(np.zeros(600, int), np.zeros(600, int), same, np.repeat(np.arange(10), 60), [])
    report = verification_report(scores, pairs)
    assert report["accuracy_mean"] == 1.0 and report["accuracy_std"] == 0.0
    assert report["roc_auc"] == 1.0 and report["tar_at_far_0.001"] == 1.0
    flipped = verification_report(np.where(np.arange(600) == 0, -1.0, scores), pairs)
    assert flipped["fold_accuracies"][0] == pytest.approx(59 / 60)


def test_lfw_1n_gallery_samples_can_be_embedded_apart_from_the_probes():
    """With `templates` (samples fused with their mirror, probes in one pass), the
    gallery is built from the templates and the probes search with their own vectors."""
    from trainer.identification import Lfw1N

    rng = np.random.default_rng(0)
    people = [f"P{i:02d}" for i in range(6) for _ in range(3)]
    images = [f"{name}/{name}_{k:04d}.jpg" for k, name in enumerate(people)]

    def unit(n):
        v = rng.standard_normal((n, 16)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    probes, templates = unit(len(images)), unit(len(images))
    lfw = Lfw1N(probes, images, templates=templates)
    _, sample_rows, mated, _ = lfw.gallery(samples=1, people=4, seed=0)
    found = lfw.searches(samples=1, people=4, seed=0)
    expected = (probes[mated] @ templates[sample_rows].T).max(axis=1)
    np.testing.assert_allclose(found.mated_top[:, 0], expected, rtol=1e-5)
    plain = (probes[mated] @ probes[sample_rows].T).max(axis=1)
    assert not np.allclose(found.mated_top[:, 0], plain)
    with pytest.raises(ValueError, match="same images"):
        Lfw1N(probes, images, templates=templates[:-1])
