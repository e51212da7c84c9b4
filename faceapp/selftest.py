"""`faceapp --self-test`: does this installation work, end to end, without a camera?

Loads the bundled model packs (each file checked against its sha256 by ModelPack),
enrolls the face in a bundled sample photo into a throw-away gallery in a temporary
folder, identifies a mirrored and rescaled copy of the photo as the same person, and
checks that a synthetic image without a face yields no face. Prints a short report
and returns 0, or prints the reason and returns 1. Works in a source checkout and in
the frozen (PyInstaller) app; touches nothing in the user's data folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_NAME = "astronaut.png"
PERSON = "astronaut"


class SelfTestError(RuntimeError):
    """The installation does not work; the message says what failed."""


def sample_image_path() -> Path:
    """The bundled sample portrait: in the frozen app's samples/, else packaging/assets/."""
    override = os.environ.get("FACEAPP_SELFTEST_IMAGE")
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "samples" / SAMPLE_NAME
    return Path(__file__).resolve().parents[1] / "packaging" / "assets" / SAMPLE_NAME


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def no_face_image():
    """Smooth gradients and a few shapes and letters: nothing a detector should call a face."""
    import cv2
    import numpy as np

    h, w = 480, 640
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([xs / w * 255, ys / h * 255, (xs + ys) / (w + h) * 255], axis=-1)
    image = np.ascontiguousarray(image.astype(np.uint8))
    cv2.rectangle(image, (60, 60), (220, 200), (200, 40, 40), -1)
    cv2.line(image, (300, 50), (600, 430), (20, 20, 20), 6)
    cv2.putText(image, "faceapp", (300, 300), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return image


def transformed_copy(image):
    """The photo mirrored, scaled to 85 %, turned by 5 degrees and darkened: new pixels, one face."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    flipped = np.ascontiguousarray(image[:, ::-1])
    size = (int(w * 0.85), int(h * 0.85))
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 5.0, 0.85)
    turn[:, 2] -= [(w - size[0]) / 2, (h - size[1]) / 2]
    moved = cv2.warpAffine(flipped, turn, size, flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_REFLECT)
    return np.clip(moved.astype(np.float32) * 0.8, 0, 255).astype(np.uint8)


def run_self_test(out=None) -> int:
    """Run the checks, print the report to `out` (stdout), return the exit status."""
    out = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    from . import __version__

    started = time.perf_counter()
    say(f"faceapp {__version__} self-test "
        f"({'frozen' if getattr(sys, 'frozen', False) else 'source'}, Python "
        f"{sys.version.split()[0]}, {sys.platform})")
    try:
        _checks(say)
    except SelfTestError as exc:
        say(f"FAILED: {exc}")
        return 1
    except Exception as exc:  # anything unexpected is a failure too, with its reason
        say(f"FAILED: unexpected {type(exc).__name__}: {exc}")
        return 1
    say(f"total: {_ms(time.perf_counter() - started)}")
    say("result: OK")
    return 0


def _checks(say) -> None:
    import numpy as np
    import onnxruntime

    from .core.enroll import EnrollError, Enroller
    from .core.gallery import Gallery
    from .core.imageio import ImageError, load_image
    from .core.models import ModelPack, ModelPackError, packs_dir
    from .core.models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
    from .core.recognize import FacePipeline, Recognizer

    say(f"models folder: {packs_dir()}")
    say(f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}")

    # 1. the model packs, every file the pipeline uses checked against its sha256
    t0 = time.perf_counter()
    try:
        detector_pack = ModelPack.load(DEFAULT_DETECTOR)
        embedder_pack = ModelPack.load(DEFAULT_EMBEDDER)
        pipeline = FacePipeline.create(detector_pack, embedder_pack)
    except ModelPackError as exc:
        raise SelfTestError(f"the models do not load: {exc}") from None
    for pack in (detector_pack, embedder_pack):
        say(f"model: {pack.name} {pack.manifest.get('version', '?')} ({pack.task}, "
            f"files checked: {', '.join(sorted(pack._verified))})")
    say(f"embedder variant: {pipeline.embedder.model_id}, flip fusion: "
        f"{pipeline.embedder.flip} (templates: {pipeline.embedder.template_flip})")
    say(f"load models: {_ms(time.perf_counter() - t0)}")

    # 2. the sample photo
    sample = sample_image_path()
    try:
        image = load_image(sample)
    except ImageError as exc:
        raise SelfTestError(f"the sample photo cannot be read: {exc}") from None
    say(f"sample: {sample} ({image.shape[1]}x{image.shape[0]})")

    # 3. enroll, then identify a transformed copy, in a gallery that lives in a temp dir
    tmp = Path(tempfile.mkdtemp(prefix="faceapp-selftest-"))
    try:
        gallery = Gallery.open(tmp / "gallery.db")
        try:
            enroller = Enroller(pipeline, gallery)
            t0 = time.perf_counter()
            try:
                prepared = enroller.prepare(image, str(sample))
            except EnrollError as exc:
                raise SelfTestError(f"the sample face cannot be enrolled: {exc}") from None
            person_id, _ = enroller.save(PERSON, [prepared])
            say(f"enroll: {_ms(time.perf_counter() - t0)} "
                f"(face {prepared.face.width:.0f} px, quality {prepared.quality.score:.2f})")

            recognizer = Recognizer(pipeline, gallery, "balanced", log_events=False)
            threshold = recognizer.rule.threshold
            probe = transformed_copy(image)
            t0 = time.perf_counter()
            result = recognizer.process(probe, source="self-test", track=False)
            say(f"identify (mirrored, 85 %, 5 deg, darker): {_ms(time.perf_counter() - t0)}")
            if not result.faces:
                raise SelfTestError("no face found in the mirrored copy of the sample photo")
            decision = result.faces[0].decision
            say(f"  -> {PERSON if decision.person_id == person_id else decision.person_id}, "
                f"cosine {decision.score:.3f} (accept >= {threshold:.3f}), "
                f"{decision.reason}")
            if decision.person_id != person_id:
                raise SelfTestError(
                    f"the mirrored sample was not identified as the enrolled person "
                    f"({decision.reason}, cosine {decision.score:.3f}, "
                    f"threshold {threshold:.3f})")
        finally:
            gallery.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if tmp.exists():
        raise SelfTestError(f"the temporary gallery folder {tmp} could not be removed")

    # 4. no face where there is none
    t0 = time.perf_counter()
    faces = pipeline.detector.detect(no_face_image())
    say(f"no-face image: {len(faces)} faces, {_ms(time.perf_counter() - t0)}")
    if faces:
        raise SelfTestError(f"{len(faces)} face(s) found in a synthetic image without a face")

    # 5. the driver for a gallery on a server loads (libpq and its TLS inside)
    try:
        import psycopg

        say(f"gallery server driver: psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, "
            f"libpq {psycopg.pq.version()})")
    except ImportError as exc:
        raise SelfTestError(f"the gallery server driver cannot be loaded: {exc}") from None


def main() -> int:
    return run_self_test()


if __name__ == "__main__":
    raise SystemExit(main())
