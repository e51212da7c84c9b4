"""1:N search speed and memory: FaceIndex over N templates of the shipped size.

    python bench/bench_search.py [--sizes 10000 100000 1000000] [--dim 128]

Templates are random unit vectors (speed and memory do not depend on their values);
people have 5 samples each. Prints per-query latency (median, p90) for top-2 people
and the process's peak resident memory.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'templates':>10} {'median ms':>10} {'p90 ms':>8} {'peak RSS MB':>12}")
    for size in args.sizes:
        index = FaceIndex(args.dim)
        matrix = rng.standard_normal((size, args.dim), dtype=np.float32)
        index.replace(np.arange(size), np.arange(size) // 5, matrix, owned=True)
        del matrix
        queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        index.search(queries[:1])
        samples = []
        for query in queries:
            started = time.perf_counter()
            index.search(query, k=2)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        print(f"{size:>10} {statistics.median(samples):>10.2f} "
              f"{samples[int(0.9 * (len(samples) - 1))]:>8.2f} {peak_rss_mb():>12.0f}", flush=True)
        del index
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
