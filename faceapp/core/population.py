"""The gallery's own impostor scores, and what they say about its population.

Every enrolled photo, searched against the other people's templates, is a stranger's
search for exactly this model, population and capture conditions: its best score is a
stranger's best score. On LFW the share of them that the named points would name
tracks the promised FPIR (1 sample per person, balanced: 0.4-0.8% against 1%; 3
samples: 0.8-0.9%). On other populations the LFW calibration does not hold: for a
gallery of 600 East Asian adults (SCUT-FBP5500) the teacher's `balanced` named 47% of
600 other such strangers, and the gallery's own photos predicted 44%; for UTKFace
(many children) 21% against a predicted 19%.

So the operating point is checked against the gallery itself: when its photos are
named as somebody else clearly more often than promised (beyond three binomial
standard deviations), the thresholds are raised by the gap between the gallery's own
threshold for that FPIR and the calibrated one. They are never lowered: a gallery
that looks easier than LFW keeps LFW's thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .index import FaceIndex
from .operating import Calibration, DecisionRule, OperatingPoint

MIN_PEOPLE = 10  # below this the gallery says too little about its population
MIN_SAMPLES = 50
# Photos searched per check: bounded so that refreshing the index of a very large
# gallery stays cheap (samples x people products).
MAX_SAMPLES, MAX_PRODUCTS = 2000, 20_000_000
# The shift is measured at an FPIR with at least this many expected false names among
# the gallery's photos, then applied to the stricter points too.
EXPECTED_AT_REFERENCE = 5


@dataclass(frozen=True)
class OwnScores:
    """Best and second-best scores of enrolled photos against the other people."""
    best: np.ndarray
    second: np.ndarray
    people: int

    def __len__(self) -> int:
        return len(self.best)


def own_scores(index: FaceIndex) -> OwnScores | None:
    if index.person_count < MIN_PEOPLE or len(index) < MIN_SAMPLES:
        return None
    limit = min(MAX_SAMPLES, max(200, MAX_PRODUCTS // index.person_count))
    _, _, _, scores = index.samples_against_others(limit=limit)
    return OwnScores(scores[:, 0].astype(np.float64), scores[:, 1].astype(np.float64),
                     index.person_count)


def _quantile_threshold(scores: np.ndarray, fpir: float) -> float:
    ranked = np.sort(scores)[::-1]
    allowed = int(math.floor(fpir * len(ranked)))
    return float(np.nextafter(ranked[min(allowed, len(ranked) - 1)], np.inf))


def _clearly_above(count: int, total: int, rate: float) -> bool:
    expected = total * rate
    return count > expected + 3 * math.sqrt(max(expected * (1 - rate), 1e-12)) + 1


def adapt(rule: DecisionRule, own: OwnScores | None, calibration: Calibration,
          point: OperatingPoint) -> DecisionRule:
    """The rule checked against the gallery's own impostor scores (see above)."""
    if own is None:
        return rule
    others = own.people - 1
    if point.cosine is not None:
        share = float(np.mean(own.best >= point.cosine))
        if rule.fpir is not None and _clearly_above(int(share * len(own)), len(own), rule.fpir):
            return replace(rule, fpir=share, miss=None)
        return rule
    reference = max(float(point.fpir), EXPECTED_AT_REFERENCE / len(own))
    calibrated = calibration.rule(OperatingPoint(name=None, fpir=reference), others,
                                  rule.samples_per_person)
    decision = own.best - rule.runner_up_weight * own.second
    named = int(np.sum(decision >= calibrated.threshold))
    if not _clearly_above(named, len(own), reference):
        return rule
    shift = max(0.0, _quantile_threshold(decision, reference) - calibrated.threshold)
    plain_shift = max(0.0, _quantile_threshold(own.best, reference)
                      - calibrated.plain_threshold)
    return replace(rule, threshold=rule.threshold + shift,
                   plain_threshold=rule.plain_threshold + plain_shift, miss=None,
                   population_shift=shift)
