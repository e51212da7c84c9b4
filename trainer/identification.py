"""LFW 1:N: calibrating the app's operating points and measuring its decisions.

Protocol (as NIST's 1:N reports, on LFW): a gallery of N people enrolled from their
first k images; their other images are mated probes (should get their name); every
image of everybody else is a non-mated probe (a stranger: should get no name).
Galleries are drawn from the people with at least k + 1 images with fixed seeds.

`calibrate` measures, for k = 1, 2, 3, 5 and N from 1 to all, the threshold on the
app's decision score at each FPIR of a grid, pooled over several seeded galleries,
and fits the runner-up weight's growth with N. The result goes into the pack's
manifest (`identification`), which faceapp/core/operating.py reads.

`evaluate` then runs the app's own `Identifier` (the decisions the Recognizer makes)
on galleries of 10, 100, 1,000 and 1,680 people drawn with other seeds, and reports
DIR and the FPIR actually measured at each named point.
LFW is a research dataset (non-commercial); figures computed on it say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceapp.core.identify import Identifier
from faceapp.core.operating import NAMED_POINTS, Calibration

FPIR_GRID = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
SAMPLE_COUNTS = (1, 2, 3, 5)
SIZES = (1, 3, 10, 30, 100, 300, 1000, 1680)
EVALUATION_SIZES = (10, 100, 1000, 1680)
WEIGHT_GRID = np.round(np.arange(0.0, 1.01, 0.0625), 4)
CALIBRATION_SEED, EVALUATION_SEED = 0, 2026
NOTE = "Labeled Faces in the Wild, research use only"


def repeats(people: int) -> int:
    """Seeded galleries per size: enough strangers' searches for the smallest FPIR."""
    return max(1, min(40, int(round(200 / math.sqrt(people)))))


@dataclass
class Searches:
    """Top-2 template scores of every probe against one gallery."""
    mated_top: np.ndarray  # (M, 2)
    mated_correct: np.ndarray  # (M,) top-1 is the probe's own person
    stranger_top: np.ndarray  # (S, 2)


class Lfw1N:
    """LFW's images as probes and gallery samples. `templates`, when given, holds the
    samples' embeddings made another way than the probes' (enrolled with flip fusion,
    searched without): rows match `embeddings`."""

    def __init__(self, embeddings: np.ndarray, images: list[str],
                 templates: np.ndarray | None = None):
        self.embeddings = np.asarray(embeddings, np.float32)
        self.templates = self.embeddings if templates is None else np.asarray(templates,
                                                                              np.float32)
        if self.templates.shape != self.embeddings.shape:
            raise ValueError("templates and probe embeddings must cover the same images")
        owners = np.array([rel.split("/")[0] for rel in images])
        self.names, self.ids = np.unique(owners, return_inverse=True)
        self.counts = np.bincount(self.ids)
        order = np.argsort(self.ids, kind="stable")
        starts = np.searchsorted(self.ids[order], np.arange(len(self.names)))
        self.rows_of = np.split(order, starts[1:])

    def eligible(self, samples: int) -> np.ndarray:
        return np.flatnonzero(self.counts >= samples + 1)

    def gallery(self, samples: int, people: int, seed: int):
        """(person ids, sample rows per person, mated rows, stranger rows)."""
        pool = self.eligible(samples)
        chosen = np.sort(np.random.default_rng(seed).choice(pool, min(people, len(pool)),
                                                            replace=False))
        sample_rows = np.concatenate([self.rows_of[p][:samples] for p in chosen])
        enrolled = np.zeros(len(self.names), bool)
        enrolled[chosen] = True
        is_sample = np.zeros(len(self.ids), bool)
        is_sample[sample_rows] = True
        mated = np.flatnonzero(enrolled[self.ids] & ~is_sample)
        strangers = np.flatnonzero(~enrolled[self.ids])
        return chosen, sample_rows, mated, strangers

    def searches(self, samples: int, people: int, seed: int) -> Searches:
        """Scores as the app's index computes them: one mean template per person."""
        chosen, sample_rows, mated, strangers = self.gallery(samples, people, seed)
        templates = self.templates[sample_rows].reshape(len(chosen), samples, -1).mean(1)
        templates /= np.linalg.norm(templates, axis=1, keepdims=True)

        def top2(rows):
            scores = self.embeddings[rows] @ templates.T
            if scores.shape[1] == 1:
                return np.concatenate([scores, np.zeros_like(scores)], 1), scores.argmax(1)
            part = np.argpartition(-scores, 1, axis=1)[:, :2]
            pair = np.take_along_axis(scores, part, 1)
            swap = pair[:, 1] > pair[:, 0]
            pair[swap] = pair[swap][:, ::-1]
            best = np.where(swap, part[:, 1], part[:, 0])
            return pair, best

        mated_top, best = top2(mated)
        stranger_top, _ = top2(strangers)
        return Searches(mated_top, chosen[best] == self.ids[mated], stranger_top)


def threshold_at(stranger_scores: np.ndarray, fpir: float) -> float:
    """The lowest threshold that names at most `fpir` of the strangers."""
    ranked = np.sort(stranger_scores)[::-1]
    allowed = int(math.floor(fpir * len(ranked)))
    if allowed >= len(ranked):
        return float(ranked[-1])
    return float(np.nextafter(ranked[allowed], np.inf))


def _pooled(lfw: Lfw1N, samples: int, people: int, seed: int) -> list[Searches]:
    return [lfw.searches(samples, people, seed + r) for r in range(repeats(people))]


def _dir_at(runs: list[Searches], weight: float, fpirs) -> tuple[list[float], list[float]]:
    strangers = np.concatenate([r.stranger_top[:, 0] - weight * r.stranger_top[:, 1]
                                for r in runs])
    mated = np.concatenate([r.mated_top[:, 0] - weight * r.mated_top[:, 1] for r in runs])
    correct = np.concatenate([r.mated_correct for r in runs])
    thresholds = [threshold_at(strangers, f) for f in fpirs]
    return thresholds, [float(np.mean(correct & (mated >= t))) for t in thresholds]


def fit_runner_up_weight(best: dict[int, float]) -> dict:
    """weight(N) = clip(per_decade * log10(N / from_people), 0, max), fitted to the
    best weight measured at each size (least squares over the sizes where it is > 0)."""
    sizes = np.array(sorted(best), float)
    weights = np.array([best[int(n)] for n in sizes])
    candidates = []
    for start in (3, 5, 10, 20, 30, 50, 100):
        for slope in np.arange(0.05, 0.61, 0.025):
            model = np.clip(slope * np.log10(np.maximum(sizes / start, 1.0)), 0, weights.max())
            candidates.append((float(np.sum((model - weights) ** 2)), start, float(slope)))
    _, start, slope = min(candidates)
    return {"per_decade": round(slope, 4), "from_people": start,
            "max": round(float(weights.max()), 4)}


def calibrate(lfw: Lfw1N, log=print) -> dict:
    """The manifest's `identification` entry for one variant."""
    # 1. The runner-up weight that names most people at equal FPIR, per size.
    best_weight = {}
    for people in SIZES[1:]:
        runs = [r for k in (1, 3) for r in _pooled(lfw, k, people, CALIBRATION_SEED)]
        scored = {w: np.mean(_dir_at(runs, w, (0.001, 0.01, 0.05))[1]) for w in WEIGHT_GRID}
        best_weight[people] = max(scored, key=scored.get)
        log(f"  {people:5d} people: best runner-up weight {best_weight[people]:.3f} "
            f"(mean DIR {scored[best_weight[people]]:.3f} against "
            f"{scored[0.0]:.3f} without)")
    weight = fit_runner_up_weight(best_weight)
    spec = {"measured_on": "", "template": "mean of the person's samples",
            "fpir": list(FPIR_GRID), "runner_up_weight": weight, "tables": []}
    probe = Calibration({**spec, "tables": [{"samples_per_person": 1, "people": [1],
                                             **{k: [[0.0] * len(FPIR_GRID)] for k in (
                                                 "decision", "plain", "decision_dir",
                                                 "plain_dir")}}]})
    # 2. Thresholds and DIR on the grid for each sample count and size.
    searches = 0
    for samples in SAMPLE_COUNTS:
        most = len(lfw.eligible(samples))
        sizes = sorted({n for n in SIZES if n < most} | {min(most, SIZES[-1])})
        table = {"samples_per_person": samples, "people": sizes, "decision": [],
                 "plain": [], "decision_dir": [], "plain_dir": []}
        for people in sizes:
            runs = _pooled(lfw, samples, people, CALIBRATION_SEED)
            searches += sum(len(r.stranger_top) for r in runs)
            for key, w in (("decision", probe.runner_up_weight(people)), ("plain", 0.0)):
                thresholds, dirs = _dir_at(runs, w, FPIR_GRID)
                table[key].append([round(t, 5) for t in thresholds])
                table[key + "_dir"].append([round(d, 4) for d in dirs])
        spec["tables"].append(table)
        log(f"  {samples} sample(s) per person: sizes {sizes}")
    spec["measured_on"] = (
        f"{NOTE}: 1:N galleries of 1-{SIZES[-1]} people enrolled from their first 1, 2, 3 "
        f"or 5 images, other images of everybody else as strangers, {searches} strangers' "
        f"searches in all (seeds from {CALIBRATION_SEED})")
    return spec


def evaluation_galleries(people: int) -> int:
    """Seeded galleries per size in the evaluation, as many as the calibration used:
    the FPIR a user can expect from a gallery of N people is an average over
    galleries, and one small gallery may hold a face many strangers resemble (ten
    galleries of 100 put the student's strict point at 2.2x its promise, twenty at
    1.2x); the spread over galleries is reported too."""
    return repeats(people)


def evaluate(lfw: Lfw1N, calibration: Calibration, sizes=EVALUATION_SIZES,
             samples: int = 1, seed: int = EVALUATION_SEED,
             own_calibration: Calibration | None = None) -> list[dict]:
    """The app's decisions (Identifier) on seeded LFW galleries (seeds apart from the
    calibration's): DIR and the FPIR measured at each named point and at FPIR 1%,
    next to the best single threshold on the same top-1 scores. `own_calibration`:
    the templates' own setting, as the app's Recognizer checks the gallery with it."""
    points = [*((n, n) for n in NAMED_POINTS), ("fpir 1%", "fpir=0.01")]
    rows = []
    for people in sizes:
        tally = {name: {"named": [], "false": []} for name, _ in points}
        top1 = {"mated": [], "strangers": [], "correct": []}
        decision_scores = {"mated": [], "strangers": []}
        rules = {}
        galleries = evaluation_galleries(people) if people < len(lfw.eligible(samples)) else 1
        for g in range(galleries):
            chosen, sample_rows, mated, strangers = lfw.gallery(samples, people, seed + g)
            identifier = Identifier(lfw.embeddings.shape[1], calibration,
                                    own_calibration=own_calibration)
            identifier.replace(np.arange(len(sample_rows)), lfw.ids[sample_rows],
                               lfw.templates[sample_rows])
            mated_found = identifier.search(lfw.embeddings[mated])
            stranger_found = identifier.search(lfw.embeddings[strangers])
            truth = lfw.ids[mated]
            for name, point in points:
                identifier.set_point(point)
                rules[name] = identifier.rule
                tally[name]["named"].append(np.array(
                    [identifier.decide(f).person_id == t for f, t in zip(mated_found, truth)]))
                tally[name]["false"].append(np.array(
                    [identifier.decide(f).known for f in stranger_found]))
            top1["mated"].append(np.array([f[0].score for f in mated_found]))
            top1["strangers"].append(np.array([f[0].score for f in stranger_found]))
            top1["correct"].append(np.array([f[0].person_id == t
                                             for f, t in zip(mated_found, truth)]))
            for key, found in (("mated", mated_found), ("strangers", stranger_found)):
                decision_scores[key].append(np.array(
                    [rules["balanced"].decision_score(f[0].score,
                                                      f[1].score if len(f) > 1 else None)
                     for f in found]))
        joined = {k: np.concatenate(v) for k, v in top1.items()}
        row = {"people": int(people if people < len(lfw.eligible(samples))
                             else len(lfw.eligible(samples))),
               "samples_per_person": samples, "galleries": galleries,
               "mated_probes": int(len(joined["mated"])),
               "stranger_probes": int(len(joined["strangers"])),
               "rank1": float(joined["correct"].mean())}
        for name, _ in points:
            per_gallery = [float(f.mean()) for f in tally[name]["false"]]
            row[name] = {"stated_fpir": rules[name].fpir,
                         "measured_fpir": float(np.concatenate(tally[name]["false"]).mean()),
                         "fpir_range_over_galleries": [min(per_gallery), max(per_gallery)],
                         "dir": float(np.concatenate(tally[name]["named"]).mean()),
                         "threshold": round(rules[name].threshold, 5),
                         "runner_up_weight": round(rules[name].runner_up_weight, 4)}
        best = threshold_at(joined["strangers"], 0.01)
        row["best_single_threshold_dir_at_fpir_1%"] = float(
            np.mean(joined["correct"] & (joined["mated"] >= best)))
        row["curve"] = _curve(np.concatenate(decision_scores["mated"]),
                              np.concatenate(decision_scores["strangers"]), joined["correct"])
        rows.append(row)
    return rows


def _curve(mated: np.ndarray, strangers: np.ndarray, correct: np.ndarray) -> dict:
    """DIR against FPIR for the app's decision score, its threshold swept."""
    fpirs = np.logspace(-3.3, 0, 40)
    dirs = [float(np.mean(correct & (mated >= threshold_at(strangers, f)))) for f in fpirs]
    return {"fpir": [float(f) for f in fpirs], "dir": dirs}


def plot(results: dict[str, list[dict]], path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    styles = ["-", "--", ":", "-."]
    for (label, rows), style in zip(results.items(), styles):
        for row in rows:
            ax.plot(row["curve"]["fpir"], row["curve"]["dir"], style,
                    label=f"{label}, {row['people']} people")
            point = row["balanced"]
            ax.plot([point["measured_fpir"]], [point["dir"]], "o", color="black", ms=3)
    ax.set_xscale("log")
    ax.set_xlabel("FPIR (share of strangers named)")
    ax.set_ylabel("DIR (share of enrolled people named correctly)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_setting(key: str) -> tuple[str, bool, bool]:
    """"int8+flip-templates" -> ("int8", False, True): the inverse of
    faceapp.core.embed.setting_key (variant, searches fused, templates fused)."""
    if key.endswith("+flip-templates"):
        return key[:-len("+flip-templates")], False, True
    if key.endswith("+flip"):
        return key[:-len("+flip")], True, True
    return key, False, False


def lfw_1n(pack, variant: str, flip: bool, template_flip: bool, threads: int = 2) -> Lfw1N:
    """LFW 1:N for one setting: searches fused with their mirror when `flip`, the
    gallery's templates when `template_flip` (cached embeddings, trainer/evaluate.py)."""
    from .evaluate import lfw_all_embeddings

    images, embeddings, _ = lfw_all_embeddings(pack, variant, flip, threads)
    templates = lfw_all_embeddings(pack, variant, True, threads)[1] \
        if template_flip and not flip else None
    return Lfw1N(embeddings, images, templates)
