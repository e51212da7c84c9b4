"""The active model's templates in memory, and 1:N search over them.

The index is always rebuilt from the gallery (the database is the truth). Each person
is searched through one template: the normalised mean of their samples' embeddings.
On LFW 1:N (trainer/identification.py) that template beats the best sample and the
mean or top-2 mean of the sample scores at every gallery size and operating point,
and it makes one search cost the same however many samples a person has. Each match
also names the person's sample nearest the query (for "This was not X").

Small galleries are searched by brute force: one matrix-vector product. Past
COARSE_FROM people that product is bound by memory bandwidth (a million 128-d
float32 templates are 512 MB to read per query, 30-40 ms on two cores), so a second
copy of the templates is kept in int8 (a quarter of the bytes) and scored with
onnxruntime's integer matrix product; the best candidates are then re-scored exactly
against the float templates, so the scores returned are always exact cosines.
bench/bench_search.py measures both paths and the candidates' recall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# bench/bench_search.py on two cores: float takes 2.8 ms at 100k templates, int8 2.9 ms
# at 200k (float roughly doubles there); at 1M int8 takes 17 ms against 37 ms. The
# crossover sits between 100k and 200k; a power of two in between.
COARSE_FROM = 131_072
# Rows re-scored in float per query: int8 cosines are off by ~0.002, far less than the
# gap between the best match and the 256th best.
RESCORE_ROWS = 256
_INT8_SCALE = 127.0


@dataclass(frozen=True)
class Match:
    person_id: int
    score: float  # cosine with the person's template
    face_id: int  # the person's sample nearest the query


def _to_int8(rows: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rows * _INT8_SCALE), -127, 127).astype(np.int8)


def _protobuf_field(number: int, payload: bytes | int) -> bytes:
    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _int8_scores_model() -> bytes:
    """ONNX graph Y = MatMulInteger(templates, queries), written as protobuf by hand.

    The app ships onnxruntime but not the onnx package; this four-field graph is all
    the protobuf it needs (tests check it against onnx's own checker).
    """
    f = _protobuf_field
    INT8, INT32 = 3, 6

    def tensor(name: str, elem_type: int, dims: tuple[str, str]) -> bytes:
        shape = b"".join(f(1, f(2, dim.encode())) for dim in dims)  # symbolic dims
        return f(1, name.encode()) + f(2, f(1, f(1, elem_type) + f(2, shape)))

    node = (f(1, b"templates") + f(1, b"queries") + f(2, b"scores")
            + f(4, b"MatMulInteger"))
    graph = (f(1, node) + f(2, b"int8_scores")
             + f(11, tensor("templates", INT8, ("rows", "dim")))
             + f(11, tensor("queries", INT8, ("dim", "count")))
             + f(12, tensor("scores", INT32, ("rows", "count"))))
    return f(1, 8) + f(7, graph) + f(8, f(2, 13))  # IR version 8, opset 13


class _Int8Scorer:
    _session = None  # one tiny session for all indexes

    @classmethod
    def scores(cls, templates: np.ndarray, queries: np.ndarray) -> np.ndarray:
        if cls._session is None:
            import onnxruntime as ort
            options = ort.SessionOptions()
            options.log_severity_level = 3
            cls._session = ort.InferenceSession(_int8_scores_model(), options,
                                                providers=["CPUExecutionProvider"])
        queries = np.ascontiguousarray(_to_int8(queries).T)
        return cls._session.run(None, {"templates": templates, "queries": queries})[0]


def person_templates(person_ids: np.ndarray, unit_rows: np.ndarray):
    """(people int64[P], templates float32[P, D], row order, row starts): one unit-length
    mean per person; `order[starts[i]:starts[i + 1]]` are person i's rows."""
    order = np.argsort(person_ids, kind="stable")
    people, starts = np.unique(person_ids[order], return_index=True)
    bounds = np.append(starts, len(order))
    templates = segment_sums(unit_rows[order], bounds)
    templates /= np.maximum(np.linalg.norm(templates, axis=1, keepdims=True), 1e-12)
    return people, templates.astype(np.float32), order, bounds


def segment_sums(rows: np.ndarray, bounds: np.ndarray, block: int = 256) -> np.ndarray:
    """float32[len(bounds) - 1, D]: the sum of rows[bounds[i]:bounds[i + 1]] for each i
    (bounds ascending from 0 to len(rows)). Each block of rows is summed per segment by
    one matrix product with a 0/1 indicator: numpy's add.reduceat takes 2.5 s for
    100,000 people of 10 samples on these machines, this 0.7 s."""
    out = np.zeros((len(bounds) - 1, rows.shape[1]), np.float32)
    if not len(rows):
        return out
    segment = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))  # of each row
    for lo in range(0, len(rows), block):
        hi = min(lo + block, len(rows))
        local = segment[lo:hi] - segment[lo]
        indicator = np.zeros((local[-1] + 1, hi - lo), np.float32)
        indicator[local, np.arange(hi - lo)] = 1.0
        out[segment[lo]:segment[lo] + len(indicator)] += indicator @ rows[lo:hi]
    return out


class FaceIndex:
    def __init__(self, dim: int, coarse_from: int = COARSE_FROM):
        self.dim = dim
        self.coarse_from = coarse_from
        self._matrix = np.zeros((0, dim), np.float32)  # one unit row per sample
        self._person_ids = np.zeros(0, np.int64)
        self._face_ids = np.zeros(0, np.int64)
        self._people = np.zeros(0, np.int64)
        self._templates = np.zeros((0, dim), np.float32)  # one unit row per person
        self._coarse = None  # int8 copy of _templates, only for large galleries
        self._order = np.zeros(0, np.int64)
        self._starts = np.zeros(1, np.int64)

    def __len__(self) -> int:
        """Samples (templates of faces) in the index."""
        return len(self._face_ids)

    @property
    def person_count(self) -> int:
        return len(self._people)

    @property
    def samples_per_person(self) -> float:
        return len(self) / max(self.person_count, 1)

    def replace(self, face_ids: np.ndarray, person_ids: np.ndarray, matrix: np.ndarray,
                owned: bool = False) -> None:
        """Swap in a new set of samples (rows are re-normalised to unit length).

        owned: the caller hands the matrix over (a float32 array nobody else uses), so
        it is normalised in place instead of copied: a million samples then need
        512 MB, not twice that, while the index is rebuilt.
        """
        matrix = np.asarray(matrix, np.float32).reshape(-1, self.dim)
        if not (owned and matrix.flags.c_contiguous and matrix.flags.writeable):
            matrix = np.array(matrix, np.float32, order="C")
        for start in range(0, len(matrix), 65536):
            rows = matrix[start:start + 65536]
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        person_ids = np.asarray(person_ids, np.int64).copy()
        people, templates, order, starts = person_templates(person_ids, matrix)
        coarse = None
        if len(templates) >= self.coarse_from:
            coarse = np.empty(templates.shape, np.int8)
            for start in range(0, len(templates), 65536):
                coarse[start:start + 65536] = _to_int8(templates[start:start + 65536])
        self._matrix = matrix
        self._face_ids = np.asarray(face_ids, np.int64).copy()
        self._person_ids = person_ids
        self._people, self._templates, self._coarse = people, templates, coarse
        self._order, self._starts = order, starts

    @classmethod
    def from_gallery(cls, gallery, model_id: str, dim: int) -> "FaceIndex":
        index = cls(dim)
        face_ids, person_ids, matrix = gallery.embeddings(model_id)
        index.replace(face_ids, person_ids, matrix, owned=True)
        return index

    def similar_people(self, person_id: int) -> list[tuple[int, float]]:
        """The other people, most similar template first (who a person may be a
        duplicate of: the Merge dialog's order)."""
        rows = np.flatnonzero(self._people == person_id)
        if not len(rows):
            return []
        scores = self._templates @ self._templates[rows[0]]
        order = [i for i in np.argsort(-scores, kind="stable") if i != rows[0]]
        return [(int(self._people[i]), float(scores[i])) for i in order]

    def samples_against_others(self, limit: int = 5000, chunk: int = 1024, seed: int = 0):
        """Enrolled samples searched, as strangers would be, against everybody else's
        templates (their own person left out): (sample rows, the sample's person, its
        two nearest other people int64[S, 2], their scores float32[S, 2]). At most
        `limit` samples, drawn with a fixed seed."""
        rows = np.arange(len(self))
        if len(rows) > limit:
            rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
        owners = self._person_ids[rows]
        owner_rows = np.searchsorted(self._people, owners)
        ids = np.full((len(rows), 2), -1, np.int64)
        scores = np.full((len(rows), 2), -np.inf, np.float32)
        take = min(2, self.person_count - 1)
        for start in range(0, len(rows) if take > 0 else 0, chunk):
            part = slice(start, start + chunk)
            block = self._matrix[rows[part]] @ self._templates.T
            block[np.arange(block.shape[0]), owner_rows[part]] = -np.inf
            top = np.argpartition(-block, take - 1, axis=1)[:, :take]
            top_scores = np.take_along_axis(block, top, 1)
            order = np.argsort(-top_scores, axis=1)
            top, top_scores = (np.take_along_axis(x, order, 1) for x in (top, top_scores))
            ids[part, :take] = self._people[top]
            scores[part, :take] = top_scores
        return rows, owners, ids, scores

    def search(self, queries: np.ndarray, k: int = 2) -> list[list[Match]]:
        """For each unit-length query, the k best people, best first."""
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        if self.person_count == 0:
            return [[] for _ in queries]
        if self._coarse is None or not len(queries):
            # one matrix-vector product per query: the BLAS's fastest path for this shape
            return [self._best_people(self._templates @ query, k, query) for query in queries]
        # all queries in one pass over the int8 templates
        coarse = _Int8Scorer.scores(self._coarse, queries)
        return [self._best_people(coarse[:, i], k, query, coarse=True)
                for i, query in enumerate(queries)]

    def _best_people(self, scores: np.ndarray, k: int, query: np.ndarray,
                     coarse: bool = False) -> list[Match]:
        """The k best people from per-person scores. With `coarse`, the scores are the
        int8 ones: the best RESCORE_ROWS are re-scored against the float templates."""
        take = min(len(scores), max(RESCORE_ROWS, k) if coarse else k)
        rows = np.argpartition(scores, len(scores) - take)[-take:] if take < len(scores) \
            else np.arange(len(scores))
        row_scores = self._templates[rows] @ query if coarse else scores[rows]
        order = np.argsort(-row_scores, kind="stable")[:k]
        return [Match(int(self._people[row]), float(score), self._nearest_sample(row, query))
                for row, score in zip(rows[order], row_scores[order])]

    def _nearest_sample(self, person_row: int, query: np.ndarray) -> int:
        rows = self._order[self._starts[person_row]:self._starts[person_row + 1]]
        return int(self._face_ids[rows[int(np.argmax(self._matrix[rows] @ query))]])
