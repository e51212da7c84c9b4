"""Draw faceapp's icon (a stylised face in a rounded square) as a PNG: make_icon.py OUT [SIZE]."""

import sys

import cv2
import numpy as np


def draw(size: int = 256) -> np.ndarray:
    s = size / 256
    img = np.zeros((size, size, 4), np.uint8)  # BGRA, transparent
    cv2.rectangle(img, (int(24 * s), int(24 * s)), (int(232 * s), int(232 * s)),
                  (160, 110, 30, 255), -1, cv2.LINE_AA)
    for cx, cy in ((24, 24), (232, 24), (24, 232), (232, 232)):  # rounded corners
        cv2.circle(img, (int(cx * s), int(cy * s)), int(24 * s), (160, 110, 30, 255), -1,
                   cv2.LINE_AA)
    cv2.rectangle(img, (0, int(24 * s)), (size, int(232 * s)), (160, 110, 30, 255), -1)
    cv2.rectangle(img, (int(24 * s), 0), (int(232 * s), size), (160, 110, 30, 255), -1)
    c = (128 * s, 132 * s)
    cv2.ellipse(img, (int(c[0]), int(c[1])), (int(62 * s), int(80 * s)), 0, 0, 360,
                (235, 235, 235, 255), -1, cv2.LINE_AA)
    for ex in (104, 152):
        cv2.circle(img, (int(ex * s), int(118 * s)), int(9 * s), (60, 40, 20, 255), -1, cv2.LINE_AA)
    cv2.ellipse(img, (int(128 * s), int(160 * s)), (int(26 * s), int(14 * s)), 0, 10, 170,
                (60, 40, 20, 255), max(1, int(5 * s)), cv2.LINE_AA)
    # the corner marks of a detection box
    for (x, y, dx, dy) in ((40, 40, 1, 1), (216, 40, -1, 1), (40, 216, 1, -1), (216, 216, -1, -1)):
        cv2.line(img, (int(x * s), int(y * s)), (int((x + 30 * dx) * s), int(y * s)),
                 (80, 220, 120, 255), max(1, int(7 * s)), cv2.LINE_AA)
        cv2.line(img, (int(x * s), int(y * s)), (int(x * s), int((y + 30 * dy) * s)),
                 (80, 220, 120, 255), max(1, int(7 * s)), cv2.LINE_AA)
    return img


if __name__ == "__main__":
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    if not cv2.imwrite(sys.argv[1], draw(size)):
        raise SystemExit(f"cannot write {sys.argv[1]}")
