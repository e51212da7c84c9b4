"""Guided enrollment from a camera: a few poses, each shot taken only when the face
passes the enrollment quality checks and the pose is right for a few frames in a row.

CaptureAnalyzer plugs into the live worker in place of the recognizer; it keeps the
accepted samples and reports its progress in every frame's `extra`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..core.enroll import EnrollError, Enroller, PreparedSample, pick_subject
from .live import ACCEPTED, UNCLEAR, WAITING, FaceOverlay


@dataclass(frozen=True)
class Step:
    title: str  # what the person is asked to do
    pose: str  # "straight" or "side" (the second side is the opposite of the first)


STEPS = (
    Step("Look straight at the camera", "straight"),
    Step("Turn your head slightly to one side", "side"),
    Step("Now turn slightly to the other side", "side"),
)


@dataclass
class CaptureProgress:
    step: int  # index of the current step; == total when done
    total: int
    hint: str  # what to do now, or why the shot is not taken
    accepted: list[PreparedSample] = field(default_factory=list)  # one per finished step

    @property
    def done(self) -> bool:
        return self.step >= self.total


class CaptureAnalyzer:
    def __init__(self, enroller: Enroller, steps=STEPS, hold_frames: int = 3,
                 straight_max: float = 0.1, side_min: float = 0.1):
        self.enroller = enroller
        self.steps = tuple(steps)
        self.hold_frames = hold_frames  # frames in a row that must pass
        self.straight_max = straight_max  # |yaw| for "straight" (see quality.head_pose)
        self.side_min = side_min  # |yaw| for a turned head (the quality check caps it)
        self.step = 0
        self.streak = 0
        self.first_side = 0.0  # sign of the yaw of the first side shot
        self.accepted: list[PreparedSample] = []

    def _progress(self, hint: str) -> CaptureProgress:
        return CaptureProgress(self.step, len(self.steps), hint, list(self.accepted))

    def _pose_problem(self, yaw: float) -> str | None:
        step = self.steps[self.step]
        if step.pose == "straight":
            return None if abs(yaw) <= self.straight_max else "Face the camera directly"
        if abs(yaw) < self.side_min:
            return "Turn a little more"
        if self.first_side and (yaw > 0) == (self.first_side > 0):
            return "Turn to the other side"
        return None

    def analyze(self, frame, track: bool):
        started = time.perf_counter()
        if self.step >= len(self.steps):
            return [], {}, self._progress("All shots taken")
        faces = self.enroller.pipeline.detector.detect(frame.image)
        timings = {"detect": (time.perf_counter() - started) * 1000}
        if not faces:
            self.streak = 0
            return [], timings, self._progress("No face in view")
        try:
            subject = pick_subject(faces)
        except EnrollError as exc:
            self.streak = 0
            overlays = [FaceOverlay(tuple(map(float, f.box)), "?", UNCLEAR) for f in faces]
            return overlays, timings, self._progress(str(exc).capitalize())
        t0 = time.perf_counter()
        try:
            sample = self.enroller.prepare(frame.image, frame.source, face=subject)
            problem = self._pose_problem(sample.quality.measures["yaw"])
        except EnrollError as exc:
            sample, problem = None, str(exc).split(";")[0].capitalize()
        timings["quality"] = (time.perf_counter() - t0) * 1000
        box = tuple(map(float, subject.box))
        if problem:
            self.streak = 0
            return [FaceOverlay(box, "Not yet", WAITING, hint=problem, face=subject)], \
                timings, self._progress(problem)
        self.streak += 1
        if self.streak < self.hold_frames:
            return [FaceOverlay(box, "Hold still", ACCEPTED, face=subject)], timings, \
                self._progress("Good, hold still…")
        # this step is done
        if self.steps[self.step].pose == "side" and not self.first_side:
            self.first_side = sample.quality.measures["yaw"]
        self.accepted.append(sample)
        self.step += 1
        self.streak = 0
        hint = self.steps[self.step].title if self.step < len(self.steps) else "All shots taken"
        return [FaceOverlay(box, "Taken", ACCEPTED, face=subject)], timings, self._progress(hint)
