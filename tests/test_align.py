"""Alignment: the similarity transform and the warps."""

import cv2
import numpy as np
import pytest

from faceapp.core.align import (TEMPLATES, align_face, alignment_matrix, get_template,
                                similarity_transform, warp_face)


def _similarity(angle_deg, scale, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty]])


@pytest.mark.parametrize("angle, scale, tx, ty", [(0, 1, 0, 0), (30, 0.5, 10, -4),
                                                  (-75, 2.3, -50, 80), (179, 0.1, 3, 3)])
def test_similarity_transform_recovers_a_known_transform(angle, scale, tx, ty):
    src = np.random.default_rng(0).uniform(0, 500, (5, 2))
    matrix = _similarity(angle, scale, tx, ty)
    dst = src @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), matrix, atol=1e-9)


def test_zero_weight_points_do_not_move_the_fit():
    src = np.random.default_rng(2).uniform(0, 200, (5, 2))
    matrix = _similarity(12, 0.7, 5, 9)
    dst = src @ matrix[:, :2].T + matrix[:, 2]
    dst[3:] += 40.0  # the last two points disagree wildly
    np.testing.assert_allclose(similarity_transform(src, dst, (1, 1, 1, 0, 0)), matrix, atol=1e-9)
    assert not np.allclose(similarity_transform(src, dst), matrix, atol=1e-3)


def test_mirrored_points_do_not_produce_a_reflection():
    src = get_template("arcface112").points.astype(np.float64)
    mirrored = src.copy()
    mirrored[:, 0] = -mirrored[:, 0]
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_are_upright_faces(name):
    tpl = TEMPLATES[name]
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = tpl.points
    w, h = tpl.size
    assert lx < nx < rx and mlx < mrx
    assert max(ly, ry) < ny < min(mly, mry)
    assert abs((lx + rx) / 2 - w / 2) < 0.05 * w  # horizontally centred
    assert (tpl.points >= 0).all() and (tpl.points[:, 0] < w).all() and (tpl.points[:, 1] < h).all()


def test_align_face_moves_landmarks_onto_the_template():
    tpl = get_template("arcface112")
    image = np.zeros((400, 300, 3), np.uint8)
    # landmarks of a rotated, larger face in the image, with a marker at each
    matrix = _similarity(20, 2.0, 60, 40)
    points = tpl.points @ matrix[:, :2].T + matrix[:, 2]
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    crop = align_face(image, points, tpl)
    assert crop.shape == (112, 112, 3)
    for x, y in tpl.points:
        assert crop[int(round(y)), int(round(x))].max() > 100


def test_large_faces_are_shrunk_before_warping_without_shifting():
    tpl = get_template("dlib150")
    rng = np.random.default_rng(1)
    smooth = cv2.GaussianBlur(rng.integers(0, 255, (1600, 1600, 3), dtype=np.uint8), (0, 0), 12)
    points = tpl.points * 8.0 + 100  # a face eight times the chip size
    matrix = alignment_matrix(points, tpl)
    direct = cv2.warpAffine(smooth, matrix, tpl.size, flags=cv2.INTER_LINEAR)
    shrunk = warp_face(smooth, matrix, tpl.size)
    # same geometry (no offset) on a smooth image; only the aliasing differs
    assert np.abs(direct.astype(int) - shrunk.astype(int)).mean() < 2.0


def test_aliasing_is_reduced_on_fine_detail():
    tpl = get_template("arcface112")
    stripes = np.zeros((1200, 1200, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes average to mid grey when shrunk properly
    points = tpl.points * 10 + 20
    crop = align_face(stripes, points, tpl)
    assert abs(float(crop[20:90, 20:90].mean()) - 127.5) < 10
    assert float(crop[20:90, 20:90].std()) < 20


def test_unknown_template():
    with pytest.raises(ValueError, match="unknown alignment template"):
        get_template("nope")
