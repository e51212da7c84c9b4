"""How usable a detected face is as an enrollment sample (or a recognition probe).

Each check measures one thing a person can fix (come closer, hold still, face the
camera, more light) and says so in words when it fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .detect import Face


@dataclass(frozen=True)
class QualityPolicy:
    min_eye_distance: float = 28.0  # pixels between the eye centres in the frame
    min_sharpness: float = 25.0  # variance of the Laplacian of the inner face at 67x78 px
    max_yaw: float = 0.35  # nose offset from the eye/mouth axis, in eye distances
    max_pitch: float = 0.4  # deviation of the eyes-nose-mouth ratio from frontal
    min_brightness: float = 50.0
    max_brightness: float = 210.0
    max_clipped: float = 0.15  # fraction of face pixels at 0 or 255
    min_detection_score: float = 0.95


ENROLLMENT = QualityPolicy()
# Recognition only skips faces that are hopeless; enrollment asks for good samples.
RECOGNITION = QualityPolicy(min_eye_distance=14.0, min_sharpness=8.0, max_yaw=0.6,
                            max_pitch=0.6, min_brightness=25.0, max_brightness=235.0,
                            max_clipped=0.4, min_detection_score=0.9)


@dataclass
class Quality:
    score: float  # 0 (unusable) .. 1 (ideal)
    reasons: list[str] = field(default_factory=list)  # empty when acceptable
    measures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.reasons


FRONTAL_NOSE = 0.54  # the nose's position from the eyes to the mouth, facing the camera


def head_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """Rough yaw and pitch from the 5 points, 0 when frontal.

    yaw: how far the nose sits from the line between the eye and mouth midpoints,
    in eye distances (sign: + when the nose is towards the image's right).
    pitch: the nose's position between the eyes and the mouth, relative to the
    frontal ratio (0.54 of the way down, the median over LFW): + looking down, - looking up.
    """
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, np.float64)
    eyes = (left_eye + right_eye) / 2
    mouth = (mouth_left + mouth_right) / 2
    eye_distance = max(np.linalg.norm(right_eye - left_eye), 1e-6)
    axis = mouth - eyes
    length = max(np.linalg.norm(axis), 1e-6)
    unit = axis / length
    offset = nose - eyes
    across = unit[0] * offset[1] - unit[1] * offset[0]  # signed distance from the axis
    along = float(offset @ unit) / length
    return float(-across / eye_distance), float(along - FRONTAL_NOSE) / FRONTAL_NOSE


def assess(face: Face, face_crop: np.ndarray, policy: QualityPolicy = ENROLLMENT) -> Quality:
    """face_crop: the aligned face (any template), H x W x 3 uint8 RGB."""
    landmarks = np.asarray(face.landmarks, np.float64)
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    yaw, pitch = head_pose(landmarks)
    grey = cv2.cvtColor(face_crop, cv2.COLOR_RGB2GRAY)
    # judge sharpness and light on the inner face at a fixed scale, so the numbers
    # do not depend on the crop size of the active model's template
    h, w = grey.shape
    inner = grey[int(0.2 * h):int(0.9 * h), int(0.2 * w):int(0.8 * w)]
    inner = cv2.resize(inner, (67, 78), interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(inner, cv2.CV_64F).var())
    brightness = float(inner.mean())
    clipped = float(((inner <= 3) | (inner >= 252)).mean())
    measures = {"eye_distance": eye_distance, "sharpness": sharpness, "yaw": yaw,
                "pitch": pitch, "brightness": brightness, "clipped": clipped,
                "detection_score": float(face.score)}

    reasons = []
    if eye_distance < policy.min_eye_distance:
        reasons.append("face too small: come closer to the camera")
    if sharpness < policy.min_sharpness:
        reasons.append("image blurred: hold still or clean the lens")
    if abs(yaw) > policy.max_yaw:
        reasons.append("head turned: look at the camera")
    if abs(pitch) > policy.max_pitch:
        reasons.append("head tilted up or down: look straight at the camera")
    if brightness < policy.min_brightness:
        reasons.append("face too dark: add light in front of the face")
    elif brightness > policy.max_brightness or clipped > policy.max_clipped:
        reasons.append("face overexposed: avoid strong direct light")
    if face.score < policy.min_detection_score:
        reasons.append("face not clearly visible")

    # each factor in 0..1, 1 when comfortably inside the policy
    factors = [
        min(1.0, eye_distance / (2 * policy.min_eye_distance)),
        min(1.0, sharpness / (3 * policy.min_sharpness)),
        max(0.0, 1 - abs(yaw) / (2 * policy.max_yaw)),
        max(0.0, 1 - abs(pitch) / (2 * policy.max_pitch)),
        max(0.0, 1 - abs(brightness - 128) / 128),
        float(face.score),
    ]
    score = float(np.prod(factors) ** (1 / len(factors)))
    return Quality(score=round(score, 4), reasons=reasons, measures=measures)
