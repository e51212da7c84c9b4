"""1:N search speed, memory and exactness: FaceIndex over N templates of the shipped size.

    python bench/bench_search.py [--sizes 10000 100000 1000000] [--dim 128] [--float-only]

Samples are random unit vectors (speed and memory do not depend on their values);
people have 5 samples each, and the index searches one template per person (the
normalised mean of their samples, faceapp/core/index.py). Half the queries are noisy
copies of people's templates (cosine ~0.8 to them, like a new photo of an enrolled
person), half are strangers. Prints per-query latency (median, p90) for the top-2
people, whether the index used its int8 coarse pass, how often its best person and
score agree with a brute-force float search over per-person templates computed here
independently ("top-1 exact": 100/100 on a correct index, either path), the time to
build the index, and the process's peak resident memory (before the exactness check).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceapp.core.index import FaceIndex  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def brute_force_templates(samples: np.ndarray, person_ids: np.ndarray,
                          chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(people int64[P], templates float64[P, D]): what the index searches, computed
    here without its code: each sample scaled to unit length, summed per person in
    float64, the sum scaled to unit length (the normalised mean of the unit samples)."""
    order = np.argsort(person_ids, kind="stable")
    people, starts = np.unique(person_ids[order], return_index=True)
    bounds = np.append(starts, len(order))
    sums = np.zeros((len(people), samples.shape[1]), np.float64)
    for lo in range(0, len(people), chunk):  # blocks of people: bounded memory
        hi = min(lo + chunk, len(people))
        rows = samples[order[bounds[lo]:bounds[hi]]].astype(np.float64)
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        sums[lo:hi] = np.add.reduceat(rows, bounds[lo:hi] - bounds[lo], axis=0)
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return people, sums


def exact_best(people: np.ndarray, templates: np.ndarray,
               query: np.ndarray) -> tuple[int, float]:
    scores = templates @ query.astype(np.float64)
    row = int(np.argmax(scores))
    return int(people[row]), float(scores[row])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--float-only", action="store_true",
                        help="never use the int8 coarse pass (the old brute force)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'templates':>10} {'path':>6} {'median ms':>10} {'p90 ms':>8} "
          f"{'top-1 exact':>12} {'build s':>8} {'peak RSS MB':>12}")
    for size in args.sizes:
        index = FaceIndex(args.dim, coarse_from=10**12) if args.float_only else FaceIndex(args.dim)
        matrix = rng.standard_normal((size, args.dim), dtype=np.float32)
        started = time.perf_counter()
        index.replace(np.arange(size), np.arange(size) // 5, matrix, owned=True)
        build_s = time.perf_counter() - started
        del matrix
        half = args.queries // 2
        mated = index._templates[rng.integers(0, index.person_count, half)]
        mated = mated + 0.06 * rng.standard_normal(mated.shape, dtype=np.float32)
        strangers = rng.standard_normal((args.queries - half, args.dim), dtype=np.float32)
        queries = np.concatenate([mated, strangers])
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        index.search(queries[:1])
        samples, answers = [], []
        for query in queries:
            started = time.perf_counter()
            answers.append(index.search(query, k=2)[0][0])
            samples.append((time.perf_counter() - started) * 1000)
        peak_mb = peak_rss_mb()  # the brute force below holds its own copy of the templates
        # checked after timing: the exact search's BLAS threads would slow the next query
        people, templates = brute_force_templates(index._matrix, index._person_ids)
        agree = 0
        for query, found in zip(queries, answers):
            person, score = exact_best(people, templates, query)
            agree += found.person_id == person and abs(found.score - score) < 1e-5
        del templates
        samples.sort()
        path = "float" if index._coarse is None else "int8"
        print(f"{size:>10} {path:>6} {statistics.median(samples):>10.2f} "
              f"{samples[int(0.9 * (len(samples) - 1))]:>8.2f} "
              f"{agree:>6}/{len(queries):<5} {build_s:>8.2f} {peak_mb:>12.0f}", flush=True)
        del index
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
