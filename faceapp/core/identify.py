"""1:N decisions: who is this face, or why nobody.

`Identifier` is the one place where a search result becomes a name: the Recognizer
(CLI, Live, folder scans) and the trainer's LFW 1:N benchmark both call it, so the
figures the benchmark prints are the app's own decisions. The operating point is
resolved for the gallery as it is (its number of people and samples per person) by
the pack's calibration (operating.py) every time the index changes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

import numpy as np

from .index import FaceIndex, Match
from .operating import Calibration, DecisionRule, OperatingPoint
from .population import adapt, own_scores

# Why a face got the answer it got.
MATCH, NO_GALLERY, BELOW, AMBIGUOUS, POOR_QUALITY, TRACK_VOTE = (
    "match", "no gallery", "below threshold", "ambiguous", "poor quality", "track vote")
# Its nearest person is a better-matching face of the same photo or frame, and nobody
# else passes the rule for it (a sibling, a look-alike, a poster of the same person).
ALREADY_IN_PHOTO = "already in this photo"


@dataclass
class Decision:
    person_id: int | None  # None: unknown
    score: float  # the nearest person's score (even when unknown)
    runner_up: float | None  # the second nearest person's score
    reason: str  # MATCH, NO_GALLERY, BELOW, AMBIGUOUS, POOR_QUALITY, TRACK_VOTE,
    # ALREADY_IN_PHOTO
    nearest_id: int | None = None  # the nearest person, named or not
    runner_up_id: int | None = None
    face_id: int | None = None  # the nearest person's sample nearest the face

    @property
    def known(self) -> bool:
        return self.person_id is not None


def explain(reason: str, nearest: str | None, score: float | None,
            runner_up: str | None = None, runner_up_score: float | None = None) -> str:
    """Why a face got no name (or was named by its track), in a few words a user reads
    next to the face or in the log: "ambiguous: Ann 0.95, then Bea 0.94"."""
    if reason in (MATCH, "") or nearest is None:
        return reason if reason not in (MATCH, "") else ""
    text = f"{reason}: nearest {nearest} {score:.2f}" if score is not None else reason
    if runner_up is not None and runner_up_score is not None and reason in (AMBIGUOUS, BELOW):
        text += f", then {runner_up} {runner_up_score:.2f}"
    return text


def decide(matches: list[Match], rule: DecisionRule) -> Decision:
    if not matches:
        return Decision(None, 0.0, None, NO_GALLERY)
    best = matches[0]
    second = matches[1] if len(matches) > 1 else None
    runner_up = second.score if second else None
    found = dict(score=best.score, runner_up=runner_up, nearest_id=best.person_id,
                 runner_up_id=second.person_id if second else None, face_id=best.face_id)
    if rule.decision_score(best.score, runner_up) >= rule.threshold:
        return Decision(best.person_id, reason=MATCH, **found)
    # Strong enough alone, but a runner-up this close is what a stranger looks like here.
    reason = AMBIGUOUS if best.score >= rule.plain_threshold else BELOW
    return Decision(None, reason=reason, **found)


class Identifier:
    """A gallery's templates, the operating point, and the decisions they give."""

    def __init__(self, dim: int, calibration: Calibration,
                 point: OperatingPoint | str | float | None = None, adaptive: bool = True,
                 own_calibration: Calibration | None = None):
        """adaptive: check the point against the gallery's own impostor scores and
        raise its thresholds where this population needs it (population.py).
        own_calibration: where templates are made unlike searched faces (fused with
        their mirror, searches in one pass), the calibration of a search by a template,
        which is what the gallery's own photos are; by default `calibration`."""
        self.adaptive = adaptive
        self._own = None
        self.index = FaceIndex(dim)
        self.calibration = calibration
        self.own_calibration = own_calibration or calibration
        self.point = OperatingPoint.parse(point)
        self.rule = self._resolve()

    def _resolve(self) -> DecisionRule:
        people, samples = self.index.person_count, self.index.samples_per_person
        rule = self.calibration.rule(self.point, people, samples)
        # The gallery's own photos are searches by templates: checked with the
        # templates' calibration (its thresholds and runner-up weight), and what the
        # check found (the shift, the FPIR a cosine gives) carried over to searches.
        own_rule = rule if self.own_calibration is self.calibration else \
            self.own_calibration.rule(self.point, people, samples)
        self.own_rule = adapt(own_rule, self._own, self.own_calibration, self.point) \
            if self.adaptive else own_rule
        if self.own_rule is own_rule:
            return rule
        return replace(rule, threshold=rule.threshold + self.own_rule.population_shift,
                       plain_threshold=rule.plain_threshold + self.own_rule.plain_threshold
                       - own_rule.plain_threshold,
                       fpir=self.own_rule.fpir, miss=self.own_rule.miss,
                       population_shift=self.own_rule.population_shift)

    def set_point(self, point: OperatingPoint | str | float) -> None:
        self.point = OperatingPoint.parse(point)
        self.rule = self._resolve()

    def replace(self, face_ids: np.ndarray, person_ids: np.ndarray, matrix: np.ndarray,
                owned: bool = False) -> None:
        self.index.replace(face_ids, person_ids, matrix, owned=owned)
        self._own = own_scores(self.index) if self.adaptive else None
        self.rule = self._resolve()

    def search(self, vectors: np.ndarray) -> list[list[Match]]:
        """The nearest two people of each face (all a decision looks at)."""
        return self.index.search(vectors, k=2)

    def decide(self, matches: list[Match]) -> Decision:
        return decide(matches, self.rule)

    def identify(self, vectors: np.ndarray) -> list[Decision]:
        """Each face on its own (faces of different photos: a benchmark's probes)."""
        return [self.decide(found) for found in self.search(vectors)]

    def decide_together(self, found: list[list[Match]],
                        claims: list[Decision | None] | None = None,
                        vectors: list[np.ndarray | None] | np.ndarray | None = None
                        ) -> list[Decision | None]:
        """Decisions for the faces of one photo or frame, where nobody is two faces.

        found: each face's candidates, best first (search(); [] where the face was not
        searched now). claims: each face's own decision (default: decide(found); in
        video a track's vote). Greedy by score: the face nearest a person keeps the
        name; a face that loses it takes its next candidate not taken yet if that
        passes the rule (its runner-up then being the next one after it), else it stays
        unknown with ALREADY_IN_PHOTO, keeping who was nearest. vectors (the faces'
        embeddings, None where not searched now) let a loser look further than the
        candidates in `found` (a crowd of look-alikes)."""
        claims = [self.decide(f) for f in found] if claims is None else list(claims)
        out = list(claims)
        heap = [(-d.score, i) for i, d in enumerate(claims) if d is not None and d.known]
        if len(heap) < 2:
            return out  # nothing to share out: the common case costs nothing
        heapq.heapify(heap)
        taken: set[int] = set()
        while heap:
            _, i = heapq.heappop(heap)
            if out[i].person_id not in taken:
                taken.add(out[i].person_id)
                continue
            vector = None if vectors is None else vectors[i]
            out[i] = self._next_choice(claims[i], found[i], vector, taken)
            if out[i].known:  # its next candidate, if no better face claims them
                heapq.heappush(heap, (-out[i].score, i))
        return out

    def _next_choice(self, claim: Decision, found: list[Match], vector, taken: set[int]
                     ) -> Decision:
        rest = [m for m in found if m.person_id not in taken]
        # the rule weighs the runner-up: a candidate is judged with the one after it
        if len(rest) < 2 and len(found) < self.index.person_count:
            if vector is None:
                rest = []  # not searched now: too few candidates to judge one
            else:
                deeper = min(len(taken) + 2, self.index.person_count)
                found = self.index.search(np.asarray(vector, np.float32)[None], k=deeper)[0]
                rest = [m for m in found if m.person_id not in taken]
        if rest:
            other = self.decide(rest)
            if other.known:
                return other
        return replace(claim, person_id=None, reason=ALREADY_IN_PHOTO,
                       nearest_id=claim.person_id)

    def self_check(self, look_alikes: int = 5) -> "SelfCheck":
        """Every enrolled photo searched, as a stranger's would be, against the other
        people at the point in effect (population.py): the share named estimates the
        FPIR for this population; the most similar pairs are worth a look (someone
        enrolled twice, relatives)."""
        index = self.index
        if index.person_count < 3:
            return SelfCheck(index.person_count, 0.0, self.rule.fpir, [])
        _, owners, ids, scores = index.samples_against_others()
        rule = self.own_rule  # as in effect (raised for this population if it had to be)
        named = scores[:, 0] - rule.runner_up_weight * scores[:, 1] >= rule.threshold
        pairs: dict[tuple[int, int], float] = {}
        for row in np.argsort(-scores[:, 0]):
            pair = tuple(sorted((int(owners[row]), int(ids[row, 0]))))
            pairs.setdefault(pair, float(scores[row, 0]))
            if len(pairs) == look_alikes:
                break
        return SelfCheck(index.person_count, float(named.mean()), rule.fpir,
                         [(a, b, s) for (a, b), s in pairs.items()])


@dataclass
class SelfCheck:
    people: int
    named_as_someone_else: float  # share of enrolled people a search would name wrongly
    promised_fpir: float | None  # what the operating point promises for strangers
    look_alikes: list[tuple[int, int, float]]  # the most similar pairs of people
