"""Enrollment: photos -> checked, aligned, embedded samples in the gallery.

A sample is kept on the gallery's wide canvas with its landmarks (align.storage_crop),
and embedded from that canvas, so re-embedding later with any model gives the same
vectors as enrolling afresh would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .align import align_faces, storage_crop
from .detect import Face
from .embed import Embedder
from .gallery import normalize_name
from .filenames import display_name, special_file
from .imageio import IMAGE_SUFFIXES, ImageError, as_rgb8, load_image
from .models import InferenceError
from .quality import ENROLLMENT, Quality, QualityPolicy, assess

Progress = Callable[[int, int, str], None]  # (done, total, current item)
Cancelled = Callable[[], bool]


class EnrollError(ValueError):
    """This photo cannot give a sample; the message says why."""


@dataclass
class PreparedSample:
    crop: np.ndarray  # storage canvas, 256 x 256 x 3 uint8 RGB
    landmarks: np.ndarray  # 5 x 2 inside the canvas
    quality: Quality
    source: str
    face: Face


@dataclass
class EnrollAdvice:
    """What a person should hear before photos are saved."""
    # the new person's photos match someone already enrolled: (id, name, score)
    looks_like: tuple[int, str, float] | None = None
    # adding to someone enrolled: their photos would not be named as them (best score)
    unlike_person: float | None = None
    # photos that do not look like the others given with them: (source, mean cosine)
    outliers: list[tuple[str, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.looks_like is not None or self.unlike_person is not None \
            or bool(self.outliers)

    def messages(self, name: str) -> list[str]:
        out = []
        if self.looks_like is not None:
            _, other, score = self.looks_like
            out.append(f"These photos look like {other} ({score:.2f}), already enrolled: "
                       f"add them to {other} instead?")
        if self.unlike_person is not None:
            out.append(f"These photos do not look like the {name} already enrolled (best "
                       f"score {self.unlike_person:.2f}): are they of someone else?")
        for source, score in self.outliers:
            out.append(f"{Path(source).name} does not look like the other photos given for "
                       f"{name} ({score:.2f})")
        return out


@dataclass
class ImportReport:
    people: dict[str, int] = field(default_factory=dict)  # name -> samples added
    folders: dict[str, str] = field(default_factory=dict)  # name -> the folder it came from
    # a new person whose name looks like people already there ("Аlice" and "Alice")
    confusable: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    cancelled: bool = False

    @property
    def added(self) -> int:
        return sum(self.people.values())


def name_from_folder(folder: str) -> str:
    """A person's name as people write it, from a folder named after them:
    "George_W_Bush" -> "George W Bush" (datasets and scripts avoid spaces in names)."""
    name = " ".join(folder.replace("_", " ").split())
    return name or folder


def pick_subject(faces: list[Face]) -> Face:
    """The face a portrait is of: the largest, if it clearly dominates."""
    if not faces:
        raise EnrollError("no face found")
    ordered = sorted(faces, key=lambda f: f.width * f.height, reverse=True)
    if len(ordered) > 1 and ordered[1].width > 0.8 * ordered[0].width:
        raise EnrollError(f"{len(faces)} faces of similar size: use a photo of one person")
    return ordered[0]


def embed_samples(embedder: Embedder, samples) -> np.ndarray:
    """Embeddings of stored samples, cut from their canvas with the model's template."""
    if not samples:
        return np.zeros((0, embedder.dim), np.float32)
    crops = np.concatenate([align_faces(s.crop, [s.landmarks], embedder.template)
                            for s in samples])
    return embedder.embed_templates(crops)


def resemblance(gallery, embedder, vectors: np.ndarray, existing: int | None,
                point: str = "balanced") -> tuple[tuple[int, str, float] | None, float | None]:
    """How one person's new photos (their template vectors) compare with the gallery,
    by its identification rule at `point`: for a new person, whom they look like
    ((id, name, score), or None); for an enrolled one, their score against that
    person when the photos do not look like them (else None). What enrolment and
    an archive import both say before photos join someone."""
    from .identify import Identifier

    face_ids, person_ids, matrix = gallery.embeddings(embedder.model_id)
    if not len(face_ids) or not len(vectors):
        return None, None
    # the new photos are templates: searched as the gallery's own are
    identifier = Identifier(embedder.dim, embedder.template_calibration(), point)
    identifier.replace(face_ids, person_ids, matrix)
    probe = np.asarray(vectors, np.float32).mean(axis=0)
    probe /= max(float(np.linalg.norm(probe)), 1e-12)
    decision = identifier.identify(probe[None])[0]
    if existing is None:
        if decision.known:
            name = gallery.person(decision.person_id).name
            return (decision.person_id, name, float(decision.score)), None
        return None, None
    if decision.person_id == existing:
        return None, None
    ranked = identifier.index.search(probe[None], k=identifier.index.person_count)[0]
    own = [m.score for m in ranked if m.person_id == existing]
    return None, float(own[0]) if own else float("nan")


class Enroller:
    def __init__(self, pipeline, gallery, policy: QualityPolicy = ENROLLMENT):
        self.pipeline = pipeline
        self.gallery = gallery
        self.policy = policy

    @property
    def embedder(self) -> Embedder:
        return self.pipeline.embedder

    def prepare(self, image: np.ndarray, source: str, face: Face | None = None) -> PreparedSample:
        """Check one face (the photo's subject unless given) and put it on the canvas."""
        image = as_rgb8(image)
        if face is None:
            face = pick_subject(self.pipeline.detector.detect(image))
        crop, landmarks = storage_crop(image, face.landmarks)
        model_crop = align_faces(crop, [landmarks], self.embedder.template)[0]
        quality = assess(face, model_crop, self.policy)
        if not quality.ok:
            raise EnrollError("; ".join(quality.reasons))
        return PreparedSample(crop, landmarks, quality, source, face)

    def prepare_file(self, path: str | os.PathLike) -> PreparedSample:
        try:
            image = load_image(path)
        except ImageError as exc:
            raise EnrollError(exc.reason) from None
        try:
            # the name as text SQLite can hold, whatever bytes the file system gave
            return self.prepare(image, display_name(path))
        except (MemoryError, InferenceError) as exc:  # this photo only: the batch goes on
            raise EnrollError(f"could not be processed ({exc or 'out of memory'})") from None

    def review(self, person: str | int, samples: list[PreparedSample],
               point: str = "balanced") -> EnrollAdvice:
        """Before saving: do a new person's photos match someone enrolled, do photos
        for an enrolled person match them, and do the photos match each other? The
        answers use the gallery's identification rule at `point` (a decision a
        person would see in Live) and the pairwise threshold at FAR 1e-3."""

        advice = EnrollAdvice()
        if not samples:
            return advice
        vectors = embed_samples(self.embedder, samples)
        if len(samples) >= 3:
            same = vectors @ vectors.T
            mean_to_others = (same.sum(axis=1) - 1.0) / (len(samples) - 1)
            cutoff = self.embedder.threshold(1e-3, templates=True)
            advice.outliers = [(s.source, float(score)) for s, score
                               in zip(samples, mean_to_others) if score < cutoff]
        elif len(samples) == 2 and float(vectors[0] @ vectors[1]) < self.embedder.threshold(
                1e-3, templates=True):
            score = float(vectors[0] @ vectors[1])
            advice.outliers = [(samples[1].source, score)]
        existing = person if isinstance(person, int) else (
            p.id if (p := self.gallery.find_person(person)) else None)
        odd = {source for source, _ in advice.outliers}
        keep = [i for i, s in enumerate(samples) if s.source not in odd] \
            or list(range(len(samples)))
        advice.looks_like, advice.unlike_person = resemblance(
            self.gallery, self.embedder, vectors[keep], existing, point)
        return advice

    def prepare_photos(self, paths, progress: Progress | None = None,
                       cancelled: Cancelled | None = None
                       ) -> tuple[list[PreparedSample], ImportReport]:
        """Check and align photos of one person, without saving them."""
        report = ImportReport()
        samples = []
        paths = [Path(p) for p in paths]
        for done, path in enumerate(paths):
            if cancelled and cancelled():
                report.cancelled = True
                return samples, report
            if progress:
                progress(done, len(paths), display_name(path))
            try:
                samples.append(self.prepare_file(path))
            except EnrollError as exc:
                report.skipped.append((display_name(path), str(exc)))
        return samples, report

    def save_reporting(self, person: str | int, samples: list[PreparedSample],
                       report: ImportReport) -> ImportReport:
        """Save prepared samples, adding what was saved to the report."""
        if samples:
            try:
                self._save_reporting(person, samples, report)
            except (MemoryError, InferenceError) as exc:
                raise EnrollError(f"the photos could not be saved ({exc})") from None
        return report

    def save(self, person: str | int, samples: list[PreparedSample]) -> tuple[int, list[int]]:
        """Store samples for a person (created if new) in one transaction."""
        from .gallery import FaceSample

        vectors = embed_samples(self.embedder, samples)
        records = [FaceSample(crop=s.crop, landmarks=s.landmarks, quality=s.quality.score,
                              source=s.source) for s in samples]
        return self.gallery.enroll(person, records, {self.embedder.model_id: vectors})

    def enroll_photos(self, person: str | int, paths, progress: Progress | None = None,
                      cancelled: Cancelled | None = None) -> ImportReport:
        samples, report = self.prepare_photos(paths, progress, cancelled)
        if report.cancelled:
            return report
        self.save_reporting(person, samples, report)
        if progress:
            progress(len(paths), len(paths), "")
        return report

    def _name(self, person, person_id: int) -> str:
        return person if isinstance(person, str) else self.gallery.person(person_id).name

    def import_folder(self, root: str | os.PathLike, progress: Progress | None = None,
                      cancelled: Cancelled | None = None) -> ImportReport:
        """One sub-folder per person; each person is stored in one transaction."""
        root = Path(root)
        if not root.is_dir():
            raise EnrollError(f"{display_name(root)} is not a folder")
        try:
            entries = sorted(root.iterdir())
        except OSError as exc:
            raise EnrollError(f"{display_name(root)} cannot be read "
                              f"({exc.strerror or exc})") from None
        report = ImportReport()
        # keyed by the folder's name as text: a name that is not UTF-8 becomes the
        # escaped one people see ('Jos\\xe9'), which the gallery can store
        people: dict[str, list[Path]] = {}
        for d in entries:
            if d.is_dir():  # stats only: nothing here opens a FIFO or a device
                try:
                    people[display_name(d.name)] = sorted(
                        p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                except OSError as exc:  # one unreadable folder never stops the others
                    report.skipped.append((display_name(d),
                                           f"cannot be read ({exc.strerror or exc})"))
            else:
                report.skipped.append((display_name(d),
                                       special_file(d) or "not in a person's sub-folder"))
        total = sum(len(p) for p in people.values())
        if not total:
            kinds = ", ".join(sorted(IMAGE_SUFFIXES))
            report.skipped.append((display_name(root), "no photos found: looked for one "
                                   f"sub-folder per person holding photos ({kinds})"))
        done = 0
        for folder, paths in people.items():
            where = display_name(paths[0].parent) if paths else f"{display_name(root)}/{folder}"
            if not paths:
                report.skipped.append((where, "no photos in this folder"))
                continue
            name = name_from_folder(folder)
            try:
                normalize_name(name)
            except ValueError as exc:  # one bad folder never stops the others
                report.skipped.append((where, f"not a usable name: {exc}"))
                done += len(paths)
                continue
            # an earlier import may have stored the folder's own spelling
            existing = self.gallery.find_person(name) or self.gallery.find_person(folder)
            if existing:
                name = existing.name
            elif self.gallery.confusable_names(name):
                report.confusable[name] = self.gallery.confusable_names(name)
            # a re-run (after a crash or cancel) adds only what is not there yet
            known = {f.source for f in self.gallery.faces(existing.id)} if existing else set()
            samples = []
            for path in paths:
                if display_name(path) in known:
                    done += 1
                    report.skipped.append((display_name(path), "already in the gallery"))
                    continue
                if cancelled and cancelled():
                    report.cancelled = True
                    return report
                if progress:
                    progress(done, total, display_name(path))
                done += 1
                try:
                    samples.append(self.prepare_file(path))
                except EnrollError as exc:
                    report.skipped.append((display_name(path), str(exc)))
            if samples:
                try:
                    self._save_reporting(name, samples, report)
                except (MemoryError, InferenceError) as exc:  # this person only
                    report.skipped.append((where, f"could not be saved ({exc})"))
                    continue
                report.folders[name] = folder
        if progress:
            progress(total, total, "")
        return report

    def _save_reporting(self, person, samples: list[PreparedSample],
                        report: ImportReport) -> None:
        """Save, counting what the database actually added: a crop the person already
        holds (the same photo by another path, or from an import running at the same
        time) is refused by its unique index and reported."""
        person_id, face_ids = self.save(person, samples)
        name = self._name(person, person_id)
        duplicates = len(samples) - len(face_ids)
        if duplicates:
            report.skipped.append((f"{duplicates} photo(s) of {name}",
                                   "already in the gallery (the same photo)"))
        if face_ids:
            report.people[name] = report.people.get(name, 0) + len(face_ids)

    def reembed(self, progress: Progress | None = None, cancelled: Cancelled | None = None,
                batch: int = 64) -> int:
        """Embed every stored face the active model has no vector for yet."""
        missing = self.gallery.faces_missing_embeddings(self.embedder.model_id)
        for start in range(0, len(missing), batch):
            if cancelled and cancelled():
                break
            ids = missing[start:start + batch]
            samples = [self.gallery.face_sample(face_id) for face_id in ids]
            vectors = embed_samples(self.embedder, samples)
            self.gallery.set_embeddings(self.embedder.model_id, dict(zip(ids, vectors)))
            if progress:
                progress(min(start + batch, len(missing)), len(missing), "")
        return len(missing)
