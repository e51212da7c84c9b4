"""Grouping unknown faces into clusters of one person, incrementally.

The rule is average linkage with a threshold: a face joins the cluster whose members
it resembles most *on average* (mean cosine to all of them), if that mean reaches
the threshold; two clusters merge when the mean cosine over all their cross pairs
does. Each cluster keeps only the sum of its unit vectors and its size, so both
means are one dot product: mean cos(x, A) = x . S_A / n_A and
mean cos(A, B) = S_A . S_B / (n_A n_B). Adding faces never re-clusters what was
grouped before: new faces are assigned one by one, then only the clusters they
touched are checked for merges.

Faces of one photo or video frame are different people ("cannot-link"): a face never
joins a cluster that holds a face of its photo, and two clusters that hold faces of one
photo never merge (a face then joins its next-best cluster, if that one is close
enough). Each cluster keeps the photos of its faces; a photo's index says which
clusters hold it, so the check costs a lookup per face and per merge.

Average linkage rather than single linkage (any one close pair joins two groups)
because single linkage chains strangers through look-alikes; rather than centroid
cosine because a centroid's noise shrinks as a cluster grows, which makes big
clusters look alike. The threshold is a property of the embedding model and lives in
its pack's manifest (`clustering`), chosen on labelled training faces.

No clustering library is needed for this (numpy only): scikit-learn's
AgglomerativeClustering would add ~40 MB to the installer and re-cluster everything
for each new face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClusterChange:
    """What `add` did: the cluster of each new face, and the merges it caused (the
    absorbed cluster first, then the one it went into)."""
    assigned: dict[int, int]
    merged: list[tuple[int, int]]
    created: list[int]


class FaceClusters:
    """Clusters of face vectors (unit length), each with a stable integer id."""

    def __init__(self, dim: int, threshold: float):
        self.dim = int(dim)
        self.threshold = float(threshold)
        self._sums = np.zeros((0, self.dim), np.float64)
        self._counts = np.zeros(0, np.int64)
        self._ids = np.zeros(0, np.int64)  # cluster id of each row
        self._row: dict[int, int] = {}
        self._next_id = 1
        self._photos: list[dict] = []  # per row: photo -> its faces in the cluster
        self._holders: dict[object, set[int]] = {}  # photo -> rows holding a face of it

    def __len__(self) -> int:
        return int(np.count_nonzero(self._counts))

    @property
    def ids(self) -> list[int]:
        return [int(c) for c, n in zip(self._ids, self._counts) if n > 0]

    def size(self, cluster_id: int) -> int:
        row = self._row.get(int(cluster_id))
        return 0 if row is None else int(self._counts[row])

    def centroid(self, cluster_id: int) -> np.ndarray:
        """The cluster's unit mean direction."""
        s = self._sums[self._row[int(cluster_id)]]
        return (s / max(np.linalg.norm(s), 1e-12)).astype(np.float32)

    # ----------------------------------------------------------------- loading

    def load(self, cluster_ids, vectors, photos=None) -> None:
        """Rebuild from stored assignments (faces with their cluster ids, and the photo
        each is in: any hashable key, None where unknown)."""
        cluster_ids = np.asarray(cluster_ids, np.int64)
        vectors = np.asarray(vectors, np.float64).reshape(-1, self.dim)
        unique, rows = np.unique(cluster_ids, return_inverse=True)
        self._ids = unique.copy()
        self._sums = np.zeros((len(unique), self.dim), np.float64)
        np.add.at(self._sums, rows, vectors)
        self._counts = np.bincount(rows, minlength=len(unique)).astype(np.int64)
        self._row = {int(c): i for i, c in enumerate(unique)}
        self._next_id = int(unique.max()) + 1 if len(unique) else 1
        self._photos = [{} for _ in unique]
        self._holders = {}
        for row, photo in zip(rows.tolist(), photos if photos is not None else ()):
            self._note(row, photo)

    @property
    def next_id(self) -> int:
        """The id the next new cluster gets (kept in the gallery across programs)."""
        return self._next_id

    def reserve_ids(self, at_least: int) -> None:
        """New clusters get ids from `at_least` on (ids used before stay unused)."""
        self._next_id = max(self._next_id, int(at_least))

    # ----------------------------------------------------------------- changes

    def _new_cluster(self, vector: np.ndarray) -> int:
        cluster_id = self._next_id
        self._next_id += 1
        self._grow()
        row = len(self._ids)
        self._ids = np.append(self._ids, cluster_id)
        self._sums[row] = vector
        self._counts = np.append(self._counts, 1)
        self._row[cluster_id] = row
        self._photos.append({})
        return cluster_id

    # faces of one photo are different people: who holds which photo

    def _note(self, row: int, photo, faces: int = 1) -> None:
        if photo is None:
            return
        held = self._photos[row]
        held[photo] = held.get(photo, 0) + faces
        self._holders.setdefault(photo, set()).add(row)

    def _unnote(self, row: int, photo) -> None:
        held = self._photos[row]
        if photo is None or photo not in held:
            return
        held[photo] -= 1
        if held[photo] <= 0:
            del held[photo]
            rows = self._holders[photo]
            rows.discard(row)
            if not rows:
                del self._holders[photo]

    def _conflicts(self, row: int) -> list[int]:
        """The other clusters (rows) holding a face of one of this cluster's photos."""
        rows: set[int] = set()
        for photo in self._photos[row]:
            rows |= self._holders[photo]
        rows.discard(row)
        return list(rows)

    def _grow(self) -> None:
        # rows are appended often: grow the sums' storage geometrically
        rows = len(self._ids)
        if self._sums.shape[0] <= rows:
            bigger = np.zeros((max(16, 2 * rows), self.dim), np.float64)
            bigger[:rows] = self._sums[:rows]
            self._sums = bigger

    def _active_sums(self) -> np.ndarray:
        return self._sums[:len(self._ids)]

    BLOCK = 256  # faces scored against all clusters at once

    def _mean_links(self, vectors: np.ndarray) -> np.ndarray:
        """Mean cosine of each vector to each cluster's members (-inf: empty rows)."""
        sums = self._active_sums()
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (vectors @ sums.T) / self._counts
        mean[:, self._counts == 0] = -np.inf
        return mean

    def add(self, vectors, face_keys=None, photos=None) -> ClusterChange:
        """Assign new faces (N x dim unit vectors); face_keys name them in the result
        (default 0..N-1); photos: the photo or frame each is in (hashable, None where
        unknown), see the module's note. Returns where each went and the merges that
        followed.

        Faces are taken one by one, in order; each block of faces is scored against
        every cluster in one product, and only the columns of the clusters that
        change within the block are scored again."""
        vectors = np.asarray(vectors, np.float64).reshape(-1, self.dim)
        keys = list(range(len(vectors))) if face_keys is None else [int(k) for k in face_keys]
        photos = [None] * len(vectors) if photos is None else list(photos)
        assigned, created = {}, []
        touched: set[int] = set()
        for start in range(0, len(vectors), self.BLOCK):
            block = vectors[start:start + self.BLOCK]
            before = len(self._ids)
            links = self._mean_links(block) if before else np.zeros((len(block), 0))
            # room for a column per cluster this block may create
            links = np.concatenate([links, np.full((len(block), len(block)), -np.inf)], axis=1)
            for i, vector in enumerate(block):
                photo = photos[start + i]
                scores = links[i]
                if photo is not None and photo in self._holders:
                    scores = scores.copy()  # not with a face of its own photo
                    scores[list(self._holders[photo])] = -np.inf
                row = int(np.argmax(scores)) if links.shape[1] else -1
                if row < 0 or scores[row] < self.threshold:
                    cluster_id = self._new_cluster(vector)
                    created.append(cluster_id)
                    row = self._row[cluster_id]
                else:
                    self._sums[row] += vector
                    self._counts[row] += 1
                    cluster_id = int(self._ids[row])
                # this cluster changed: the faces still to come see it anew
                rest = block[i + 1:]
                if len(rest):
                    links[i + 1:, row] = rest @ self._sums[row] / self._counts[row]
                self._note(row, photo)
                assigned[keys[start + i]] = cluster_id
                touched.add(cluster_id)
        merged = self._merge_from(touched)
        final = dict(merged)  # absorbed -> the cluster it went into
        for key, cluster_id in assigned.items():
            while cluster_id in final:
                cluster_id = final[cluster_id]
            assigned[key] = cluster_id
        return ClusterChange(assigned, merged,
                             [c for c in created if self.size(c) > 0])

    def _merge_from(self, touched: set[int]) -> list[tuple[int, int]]:
        """Merge the touched clusters with any cluster (touched or not) whose average
        linkage reaches the threshold, best pair first, until none does. Two clusters
        that did not change cannot have come closer, so only rows of changed ones
        are scored; after a merge only the merged cluster's row and column are."""
        merged = []
        rows = [self._row[c] for c in touched if self.size(c) > 0]
        if not rows or len(self._ids) < 2:
            return merged
        sums = self._active_sums()
        counts = self._counts.astype(np.float64)

        def link_rows(which: list[int]) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = (sums[which] @ sums.T) / (counts[which, None] * counts[None, :])
            out[:, counts == 0] = -np.inf
            out[np.arange(len(which)), which] = -np.inf  # not with itself
            for i, row in enumerate(which):  # nor with a cluster sharing a photo
                if self._photos[row]:
                    out[i, self._conflicts(row)] = -np.inf
            return out

        order = list(rows)  # link row i belongs to cluster row order[i]
        link = link_rows(order)
        best = link.argmax(axis=1)  # each row's best partner and its link, kept up to date
        top = link[np.arange(len(order)), best]
        while len(top):
            i = int(np.argmax(top))
            if top[i] < self.threshold:
                break
            a, b = order[i], int(best[i])
            keep, absorb = (a, b) if counts[a] >= counts[b] else (b, a)
            self._absorb(int(self._ids[keep]), int(self._ids[absorb]))
            counts[keep], counts[absorb] = self._counts[keep], 0
            merged.append((int(self._ids[absorb]), int(self._ids[keep])))
            # the kept cluster changed: its column and its row are scored again
            link[:, absorb] = -np.inf
            with np.errstate(divide="ignore", invalid="ignore"):
                column = (sums[order] @ sums[keep]) / (counts[order] * counts[keep])
            column[counts[order] == 0] = -np.inf
            barred = set(self._conflicts(keep))  # it holds the absorbed one's photos now
            if barred:
                column[[r for r, c in enumerate(order) if c in barred]] = -np.inf
            link[:, keep] = column
            if absorb in order:
                link[order.index(absorb)] = -np.inf
            fresh = link_rows([keep])[0]
            if keep in order:
                link[order.index(keep)] = fresh
            else:
                order.append(keep)
                link = np.vstack([link, fresh])
                best, top = np.append(best, 0), np.append(top, -np.inf)
            for r, cluster_row in enumerate(order):
                if cluster_row == keep:
                    link[r, keep] = -np.inf
            # rows whose best partner was one of the two are rescored in full; the
            # others only compare with the kept cluster's new column
            stale = np.flatnonzero((best == keep) | (best == absorb))
            stale = np.union1d(stale, [r for r, c in enumerate(order) if c in (keep, absorb)])
            better = link[:, keep] > top
            best[better], top[better] = keep, link[better, keep]
            if len(stale):
                best[stale] = link[stale].argmax(axis=1)
                top[stale] = link[stale, best[stale]]
        return merged

    def _absorb(self, keep: int, absorb: int) -> None:
        k, a = self._row[keep], self._row[absorb]
        self._sums[k] += self._sums[a]
        self._counts[k] += self._counts[a]
        self._sums[a] = 0
        self._counts[a] = 0
        for photo, faces in self._photos[a].items():
            self._note(k, photo, faces)
            self._holders[photo].discard(a)
        self._photos[a] = {}

    def remove(self, cluster_id: int, vectors, photos=None) -> None:
        """Take faces (their vectors, and their photos) out of a cluster (removed, moved
        or expired)."""
        row = self._row.get(int(cluster_id))
        if row is None:
            return
        vectors = np.asarray(vectors, np.float64).reshape(-1, self.dim)
        for photo in photos if photos is not None else ():
            self._unnote(row, photo)
        self._sums[row] -= vectors.sum(axis=0)
        self._counts[row] = max(0, self._counts[row] - len(vectors))
        if self._counts[row] == 0:
            self._sums[row] = 0

    def place(self, vectors, photos=None) -> int:
        """A new cluster holding exactly these faces (a split), merged with nothing."""
        vectors = np.asarray(vectors, np.float64).reshape(-1, self.dim)
        cluster_id = self._new_cluster(vectors[0])
        row = self._row[cluster_id]
        self._sums[row] = vectors.sum(axis=0)
        self._counts[row] = len(vectors)
        for photo in photos if photos is not None else ():
            self._note(row, photo)
        return cluster_id


def pairwise_scores(truth, predicted) -> dict:
    """Pairwise precision and recall and BCubed precision, recall and F of a clustering
    against the true labels (both: one label per face)."""
    truth = np.asarray(truth)
    predicted = np.asarray(predicted)
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(predicted, return_inverse=True)
    joint = np.zeros((t.max() + 1, p.max() + 1), np.int64)
    np.add.at(joint, (t, p), 1)
    true_sizes, cluster_sizes = joint.sum(axis=1), joint.sum(axis=0)

    def pairs(n):
        return (n * (n - 1) // 2).sum()

    together = pairs(joint)
    precision = together / max(pairs(cluster_sizes), 1)
    recall = together / max(pairs(true_sizes), 1)
    # BCubed: for each face, the share of its cluster that is its person (precision)
    # and the share of its person that is in its cluster (recall)
    per_face = joint[t, p]
    b_precision = float(np.mean(per_face / cluster_sizes[p]))
    b_recall = float(np.mean(per_face / true_sizes[t]))
    return {"pairwise_precision": float(precision), "pairwise_recall": float(recall),
            "bcubed_precision": b_precision, "bcubed_recall": b_recall,
            "bcubed_f": 2 * b_precision * b_recall / max(b_precision + b_recall, 1e-12),
            "clusters": int(len(np.unique(predicted))), "people": int(len(true_sizes))}
