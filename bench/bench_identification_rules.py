"""Which 1:N rule names the most people at equal FPIR: LFW 1:N, one embedder pack.

Compares, on seeded LFW galleries (research data):
- sample fusion: best sample, mean of the sample scores, top-2 mean, one mean template
  per person (what the app's index does);
- the decision score: the best score alone, best - w x runner-up (w from a grid), and a
  top-K cohort Z-norm of the best score.
Each rule's threshold is set on the strangers' scores of the same galleries at the
target FPIR (the best any threshold on that score can do), so the columns compare
rules, not calibrations.

    .venv/bin/python bench/bench_identification_rules.py [--model dlib-resnet-v1] [--no-flip]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceapp.core.models import ModelPack  # noqa: E402
from trainer.evaluate import lfw_all_embeddings  # noqa: E402
from trainer.identification import Lfw1N, repeats, threshold_at  # noqa: E402

FUSIONS = ("best sample", "mean score", "top-2 mean", "mean template")


def person_scores(probes, samples, people, per_person, fusion):
    if fusion == "mean template":
        templates = samples.reshape(people, per_person, -1).mean(1)
        templates /= np.linalg.norm(templates, axis=1, keepdims=True)
        return probes @ templates.T
    scores = (probes @ samples.T).reshape(len(probes), people, per_person)
    if fusion == "best sample":
        return scores.max(2)
    if fusion == "mean score":
        return scores.mean(2)
    return np.sort(scores, 2)[:, :, -2:].mean(2)


def decision_scores(scores, rule, cohort=100):
    ranked = -np.sort(-scores, axis=1)
    if rule == "z-norm":
        k = min(cohort, scores.shape[1] - 1)
        rest = ranked[:, 1:k + 1]
        return (ranked[:, 0] - rest.mean(1)) / (rest.std(1) + 1e-6)
    second = ranked[:, 1] if scores.shape[1] > 1 else 0.0
    return ranked[:, 0] - rule * second


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dlib-resnet-v1")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--fpir", type=float, default=0.01)
    args = parser.parse_args(argv)
    pack = ModelPack.load(args.model)
    images, embeddings, _ = lfw_all_embeddings(pack, args.variant, not args.no_flip)
    lfw = Lfw1N(embeddings, images)
    rules = [0.0, 0.25, 0.5, 0.75, "z-norm"]
    print(f"{pack.name} {args.variant}{'' if args.no_flip else '+flip'}: DIR at FPIR "
          f"{args.fpir:g} on LFW 1:N (research data), thresholds set on the same strangers")
    print(f"{'samples':>7} {'people':>6} {'fusion':>14} " + " ".join(
        f"{('w=' + str(r)) if r != 'z-norm' else r:>8}" for r in rules))
    for per_person in (1, 3):
        most = len(lfw.eligible(per_person))
        for people in sorted({30, 100, 300, 1000, most} - {n for n in (1000,) if n > most}):
            people = min(people, most)
            for fusion in (FUSIONS if per_person > 1 else FUSIONS[-1:]):
                row = []
                for rule in rules:
                    if rule == "z-norm" and people < 30:
                        row.append(float("nan"))
                        continue
                    mated, strangers, correct = [], [], []
                    for r in range(repeats(people)):
                        chosen, rows, probes, others = lfw.gallery(per_person, people, 100 + r)
                        sm = person_scores(embeddings[probes], embeddings[rows], len(chosen),
                                           per_person, fusion)
                        sn = person_scores(embeddings[others], embeddings[rows], len(chosen),
                                           per_person, fusion)
                        mated.append(decision_scores(sm, rule))
                        strangers.append(decision_scores(sn, rule))
                        correct.append(chosen[sm.argmax(1)] == lfw.ids[probes])
                    mated, strangers = np.concatenate(mated), np.concatenate(strangers)
                    correct = np.concatenate(correct)
                    threshold = threshold_at(strangers, args.fpir)
                    row.append(float(np.mean(correct & (mated >= threshold))))
                print(f"{per_person:>7} {people:>6} {fusion:>14} "
                      + " ".join(f"{v:8.3f}" for v in row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
