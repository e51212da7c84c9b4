"""The active model's templates as one matrix in memory, and 1:N search over it.

The index is always rebuilt from the gallery (the database is the truth). A person's
score is the best cosine over their samples. Brute force: one matrix-vector product,
which stays under ~30 ms up to a million 128-d templates on two cores
(bench/bench_search.py measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Match:
    person_id: int
    score: float  # best cosine over the person's samples
    face_id: int  # the sample that gave it


class FaceIndex:
    def __init__(self, dim: int):
        self.dim = dim
        self._matrix = np.zeros((0, dim), np.float32)
        self._person_ids = np.zeros(0, np.int64)
        self._face_ids = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._face_ids)

    @property
    def person_count(self) -> int:
        return int(np.unique(self._person_ids).size)

    def replace(self, face_ids: np.ndarray, person_ids: np.ndarray, matrix: np.ndarray,
                owned: bool = False) -> None:
        """Swap in a new set of templates (rows are re-normalised to unit length).

        owned: the caller hands the matrix over (a float32 array nobody else uses), so
        it is normalised in place instead of copied: a million templates then need
        512 MB, not twice that, while the index is rebuilt.
        """
        matrix = np.asarray(matrix, np.float32).reshape(-1, self.dim)
        if not (owned and matrix.flags.c_contiguous and matrix.flags.writeable):
            matrix = np.array(matrix, np.float32, order="C")
        for start in range(0, len(matrix), 65536):
            rows = matrix[start:start + 65536]
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        self._matrix = matrix
        self._face_ids = np.asarray(face_ids, np.int64).copy()
        self._person_ids = np.asarray(person_ids, np.int64).copy()

    @classmethod
    def from_gallery(cls, gallery, model_id: str, dim: int) -> "FaceIndex":
        index = cls(dim)
        face_ids, person_ids, matrix = gallery.embeddings(model_id)
        index.replace(face_ids, person_ids, matrix, owned=True)
        return index

    def search(self, queries: np.ndarray, k: int = 2) -> list[list[Match]]:
        """For each unit-length query, the k best distinct people, best first."""
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        if len(self) == 0:
            return [[] for _ in queries]
        # one matrix-vector product per query: the BLAS's fastest path for this shape
        return [self._best_people(self._matrix @ query, k) for query in queries]

    def _best_people(self, scores: np.ndarray, k: int) -> list[Match]:
        # Look at a few candidates per wanted person; widen only if they are all
        # samples of fewer than k people.
        take = min(len(scores), max(16, 8 * k))
        while True:
            if take >= len(scores):
                candidates = np.argsort(-scores)
            else:
                part = np.argpartition(scores, len(scores) - take)[-take:]
                candidates = part[np.argsort(-scores[part])]
            matches, seen = [], set()
            for row in candidates:
                person = int(self._person_ids[row])
                if person in seen:
                    continue
                seen.add(person)
                matches.append(Match(person, float(scores[row]), int(self._face_ids[row])))
                if len(matches) == k:
                    return matches
            if take >= len(scores):
                return matches
            take = min(len(scores), take * 4)
