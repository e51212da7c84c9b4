"""AppState: what the pages share (settings, gallery, face models, background jobs)
and the signals through which they hear about each other's changes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QThreadPool, Signal

from ..core.enroll import Enroller
from ..core.gallery import Gallery
from ..core.embed import Embedder
from ..core.operating import DecisionRule, OperatingPoint
from ..core.gallery import open_gallery
from ..core.models import DEFAULT_EMBEDDER, embedder_for_gallery
from ..core.recognize import FacePipeline
from ..core.unknowns import UnknownFaces
from .jobs import Job
from .settings import AppSettings


@dataclass(frozen=True)
class RecognitionOptions:
    """Read by the live worker on every frame; replaced (never changed) by the GUI."""

    point: OperatingPoint | None  # resolved for the gallery's size by the Recognizer
    keep_thumbnails: bool


class AppState(QObject):
    ready_changed = Signal()  # the gallery or the models became available (or went away)
    gallery_changed = Signal()  # people or samples changed through this app
    events_changed = Signal()  # new events were logged
    options_changed = Signal()  # threshold, minimum face size, thumbnails, camera
    video_claimed = Signal(object)  # a page started a video worker; others stop theirs
    error = Signal(str)  # something failed: the window shows it in its banner
    message = Signal(str)  # a passing note for the status bar

    def __init__(self, settings: AppSettings, pipeline: FacePipeline | None = None,
                 gallery: Gallery | None = None, gallery_path: Path | None = None):
        super().__init__()
        self.settings = settings
        self.pipeline = pipeline
        self.gallery = gallery
        self.gallery_path = _location(gallery_path) if gallery_path else settings.gallery_path
        self._owns_pipeline = pipeline is None
        self._owns_gallery = gallery is None
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self.loading = False
        self._unknowns = None  # (gallery and model it is for, UnknownFaces)
        self.options = RecognitionOptions(None, settings.keep_thumbnails)
        if pipeline is not None:
            pipeline.detector.min_face = settings.min_face
            self._update_options()

    # -- what is available ----------------------------------------------------------------
    @property
    def has_gallery(self) -> bool:
        return self.gallery is not None and not self.gallery.closed

    @property
    def is_ready(self) -> bool:
        """Gallery and models are loaded: every page can work."""
        return self.has_gallery and self.pipeline is not None

    @property
    def enroller(self) -> Enroller:
        return Enroller(self.pipeline, self.gallery)

    def unknowns(self) -> UnknownFaces | None:
        """The gallery's unknown faces for the active model (None until both load)."""
        if not self.is_ready:
            return None
        embedder = self.pipeline.embedder
        key = (id(self.gallery), embedder.model_id)
        if self._unknowns is None or self._unknowns[0] != key:
            self._unknowns = (key, UnknownFaces(self.gallery, embedder.model_id, embedder.dim,
                                                embedder.clustering_threshold()))
        return self._unknowns[1]

    def load(self) -> None:
        """Open the gallery and load the models in the background, whichever is missing."""
        want_gallery, want_models = self.gallery is None, self.pipeline is None
        if not (want_gallery or want_models):
            self.ready_changed.emit()
            return
        path, min_face = self.gallery_path, self.settings.min_face
        station = self.settings.station
        pack, variant = self.settings.embedder_pack, self.settings.embedder_variant
        chosen, loaded_gallery = self.settings.embedder_chosen, self.gallery
        self.loading = True

        def work(job):
            nonlocal pack, variant
            errors, gallery, pipeline = [], None, None
            if want_gallery:
                try:
                    gallery = open_gallery(path, station=station)
                except Exception as exc:  # shown to the person, the rest still loads
                    errors.append(f"The gallery cannot be opened: {exc}. "
                                  "Choose another file in Settings.")
            if want_models and not chosen:
                try:
                    pack, variant = embedder_for_gallery(gallery or loaded_gallery)
                except Exception:  # an unreadable gallery: its error is shown above
                    pass
            if want_models:
                try:
                    pipeline = FacePipeline.create(embedder_pack=pack, variant=variant,
                                                   min_face=min_face, threads=2)
                except Exception as exc:
                    errors.append(f"The face models cannot be loaded: {exc}")
                    if pack != DEFAULT_EMBEDDER or variant:  # the chosen pack went away
                        try:
                            pipeline = FacePipeline.create(min_face=min_face, threads=2)
                            errors[-1] += f" Using {DEFAULT_EMBEDDER} instead."
                        except Exception:
                            pass
            return gallery, pipeline, errors

        def loaded(result):
            gallery, pipeline, errors = result
            self.loading = False
            if gallery is not None:
                self.gallery = gallery
            if pipeline is not None:
                self.pipeline = pipeline
                self._update_options()
            for text in errors:
                self.error.emit(text)
            self.ready_changed.emit()
            self.gallery_changed.emit()

        job = Job(work, "loading")
        job.succeeded.connect(loaded)
        job.start(self.pool)

    # -- recognition options ----------------------------------------------------------------
    def _update_options(self) -> None:
        point = None
        if self.pipeline is not None:
            try:
                point = OperatingPoint.parse(self.settings.threshold())
                self.pipeline.embedder.calibration()  # a pack without one says so now
            except Exception as exc:
                point = None
                self.error.emit(f"The threshold cannot be used: {exc}")
        self.options = RecognitionOptions(point, self.settings.keep_thumbnails)
        self.options_changed.emit()

    def set_threshold(self, level: str, custom_one_in: int | None = None) -> None:
        """level: strict, balanced, lenient, or custom (about 1 stranger in
        custom_one_in named)."""
        if custom_one_in is not None:
            self.settings.custom_one_in = custom_one_in
        self.settings.threshold_level = level
        self._update_options()

    def set_keep_thumbnails(self, keep: bool) -> None:
        self.settings.keep_thumbnails = keep
        self._update_options()

    def set_min_face(self, pixels: int) -> None:
        self.settings.min_face = pixels
        if self.pipeline is not None:
            # read by the detector at the start of each detect(): safe while it runs
            self.pipeline.detector.min_face = max(self.pipeline.detector.cell, int(pixels))
        self.options_changed.emit()

    def set_camera(self, index: int, resolution: str) -> None:
        self.settings.camera_index = index
        self.settings.camera_resolution = resolution
        self.options_changed.emit()

    # -- face model -------------------------------------------------------------------------
    def with_embedder(self, pack: str, variant: str | None) -> FacePipeline:
        """A pipeline with another embedder and the current detector (any thread)."""
        return FacePipeline(self.pipeline.detector,
                            Embedder.from_pack(pack, variant=variant, threads=2))

    def use_pipeline(self, pipeline: FacePipeline) -> None:
        """Recognise with this pipeline from now on (its samples are already embedded);
        running videos stop, as they use the old model."""
        self.video_claimed.emit(self)
        self.pipeline = pipeline
        embedder = pipeline.embedder
        self.settings.set_embedder(embedder.pack.name, embedder.variant)
        self._update_options()
        self.ready_changed.emit()
        from .words import model_title

        self.message.emit(f"Recognising with the {model_title(embedder.pack.name)} model")

    def rule(self) -> DecisionRule | None:
        """The chosen operating point resolved for the gallery as it is now: its
        threshold, and the expected shares of strangers named and of people missed."""
        if self.pipeline is None or self.gallery is None or self.options.point is None:
            return None
        embedder = self.pipeline.embedder
        people, samples = self.gallery.template_counts(embedder.model_id)
        return embedder.calibration().rule(self.options.point, people,
                                           samples / max(people, 1))

    # -- background work ---------------------------------------------------------------------
    def run(self, fn: Callable[[Job], Any], on_done: Callable[[Any], None] | None = None,
            what: str = "", on_error: Callable[[str], None] | None = None) -> Job:
        """Run fn(job) in the pool; a failure goes to on_error, else to the banner."""
        job = Job(fn, what)
        if on_done is not None:
            job.succeeded.connect(on_done)
        if on_error is not None:
            job.failed.connect(on_error)
        else:
            job.failed.connect(lambda text: self.error.emit(f"{what}: {text}" if what else text))
        return job.start(self.pool)

    def busy(self) -> bool:
        return self.pool.activeThreadCount() > 0

    def switch_gallery(self, path: Path | str,
                       on_done: Callable[[], None] | None = None) -> None:
        """Open another gallery file, or a gallery server (a postgresql:// URL); the
        current one stays in use if that fails."""
        path = _location(path)
        station = self.settings.station
        if self.busy():  # an import or export is using the current gallery
            self.error.emit("Wait for the running task to finish, then change the gallery.")
            return

        def opened(gallery: Gallery):
            old, self.gallery = self.gallery, gallery
            self.gallery_path = path
            self.settings.gallery_path = path
            if old is not None and self._owns_gallery:
                old.close()
            self._owns_gallery = True
            self.message.emit(f"Using the gallery {path}")
            self.ready_changed.emit()
            self.gallery_changed.emit()
            self.events_changed.emit()
            if on_done:
                on_done()

        self.run(lambda job: open_gallery(path, station=station), opened,
                 what=f"Opening {path}")

    def shutdown(self, timeout_ms: int = 5000) -> None:
        for job in Job.running():
            job.cancel()
        self.pool.waitForDone(timeout_ms)
        if self.gallery is not None and self._owns_gallery:
            self.gallery.close()
        if self.pipeline is not None and self._owns_pipeline:
            self.pipeline.detector.close()


def _location(path) -> Path | str:
    """A gallery file's path, or a server's URL as given."""
    from ..core.gallery import is_server_location

    return path if is_server_location(path) else Path(path)
