"""The distilled students: architectures, losses, augmentation, a tiny real distillation
run with resume, and export to a model pack the app can load."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from faceapp.core.embed import Embedder
from faceapp.core.imageio import load_image
from faceapp.core.models import ModelPack
from trainer.augment import Augmentation, augment, chip_to_crop, paired_views
from trainer.degrade import degrade_image
from trainer.export import quantized_graph_report, run_onnx
from trainer.losses import (ArcFace, angular_distillation, neighbour_distillation,
                            normalized_l2_distillation)
from trainer.nets import (ARCHITECTURES, StudentConfig, build, count_multiply_adds,
                          count_parameters)

# ---------------------------------------------------------------- architectures


SEED_ARCHITECTURES = sorted(set(ARCHITECTURES) - {"dlib-derived"})  # the papers' students


@pytest.mark.parametrize("arch", SEED_ARCHITECTURES)
def test_each_architecture_trains_and_exports_with_matching_outputs(arch, tmp_path):
    from trainer.export import export_onnx

    torch.manual_seed(0)
    model = build(StudentConfig(arch, width=0.5, input_size=64))
    x = torch.randn(4, 3, 64, 64)
    model.train()
    out = model(x)
    assert out.shape == (4, 128)
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    path = export_onnx(model, tmp_path / f"{arch}.onnx", (64, 64))
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnx(path, x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_mobilefacenet_matches_the_paper_size():
    # Chen et al. 2018: 0.99 M parameters, 221 M multiply-adds at 112x112
    model = build(StudentConfig("mobilefacenet", 1.0, 112))
    assert abs(count_parameters(model) / 0.99e6 - 1) < 0.03
    assert abs(count_multiply_adds(model, 112) / 221e6 - 1) < 0.03


def test_width_and_input_size_shrink_the_work():
    big = count_multiply_adds(build(StudentConfig("vargfacenet", 1.0, 112)), 112)
    narrow = count_multiply_adds(build(StudentConfig("vargfacenet", 0.5, 112)), 112)
    small = count_multiply_adds(build(StudentConfig("vargfacenet", 1.0, 80)), 80)
    assert narrow < 0.4 * big and small < 0.6 * big


def test_vargfacenet_uses_eight_channels_per_group():
    model = build(StudentConfig("vargfacenet", 1.0, 112))
    grouped = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert grouped and all(m.in_channels // m.groups == 8 for m in grouped)


def test_split_prelu_is_prelu():
    from trainer.nets.layers import SplitPReLU

    split, plain = SplitPReLU(6), torch.nn.PReLU(6)
    with torch.no_grad():
        split.weight.copy_(torch.linspace(0.1, 0.6, 6))
        plain.weight.copy_(split.weight)
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(split(x), plain(x))


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        StudentConfig("resnet1000")
    with pytest.raises(ValueError, match="input size"):
        StudentConfig(input_size=100)


# ---------------------------------------------------------------- cut from the teacher

@pytest.fixture(scope="module")
def teacher_and_chips(photos):
    """The dlib ResNet and real faces in its 150 px framing and the 112 px one."""
    from faceapp.core.align import align_face
    from faceapp.core.detect import MTCNNDetector
    from trainer.teachers.dlib_resnet import load_dlib_resnet

    detector = MTCNNDetector.from_pack("mtcnn-v1")
    chips, small = [], []
    for name in ("img1.jpg", "img13.jpg", "img20.jpg", "img22.jpg", "img6.jpg", "img15.jpg"):
        image = load_image(photos / name)
        face = detector.detect(image)[0]
        chips.append(align_face(image, face.landmarks, "dlib150"))
        small.append(align_face(image, face.landmarks, "dlib112"))
    return load_dlib_resnet(), np.stack(chips), np.stack(small)


def _derived(teacher, chips, **options):
    from trainer.distill import student_model
    from trainer.nets.dlib_derived import derive_from_teacher

    config = StudentConfig("dlib-derived", act="relu", **options)
    model = student_model(config)
    info = derive_from_teacher(model.net, teacher, chips)
    return model.eval(), info


def test_the_uncut_student_is_the_teacher_with_its_own_preprocessing(teacher_and_chips):
    from trainer.distill import to_input

    teacher, chips, _ = teacher_and_chips
    model, info = _derived(teacher, chips, width=1.0, input_size=150)
    assert info["dropped_blocks"] == []
    with torch.no_grad():
        ours = model(to_input(chips)).numpy()  # (x - 127.5) / 128, folded into the stem
        theirs = torch.nn.functional.normalize(teacher(teacher.normalise(chips)), dim=1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def test_a_cut_keeps_the_teachers_most_important_channels_and_exports(teacher_and_chips,
                                                                     tmp_path):
    from trainer.distill import to_input
    from trainer.export import export_onnx
    from trainer.nets.dlib_derived import measure_teacher

    teacher, chips, small = teacher_and_chips
    model, info = _derived(teacher, chips, width=0.5, input_size=112, depth="2-2-1-1")
    assert len(info["dropped_blocks"]) == 4 and len(model.net.blocks) == 10
    assert count_multiply_adds(model, 112) < 0.25 * count_multiply_adds(teacher, 150)
    # each kept block holds the teacher's weights of its most important inner channels
    importance, strength = measure_teacher(teacher, teacher.normalise(chips))
    for student_block, source in zip(model.net.blocks, info["teacher_blocks"]):
        keep = torch.argsort(importance[source], descending=True)[:student_block.conv1.out_channels]
        torch.testing.assert_close(student_block.conv1.weight,
                                   teacher.blocks[source].conv1.weight[torch.sort(keep).values])
    # and in each stage the residual blocks dropped add least to their input
    from trainer.nets.dlib_derived import _teacher_stages

    index_of = {id(b): i for i, b in enumerate(teacher.blocks)}
    for group in _teacher_stages(teacher):
        residual = [index_of[id(b)] for b in group[1:]]
        dropped = [i for i in residual if i in info["dropped_blocks"]]
        kept = [i for i in residual if i not in dropped]
        assert all(strength[d] <= strength[k] for d in dropped for k in kept)
    path = export_onnx(model, tmp_path / "cut.onnx", (112, 112))
    with torch.no_grad():
        expected = model(to_input(small)).numpy()
    np.testing.assert_allclose(run_onnx(path, to_input(small).numpy()), expected,
                               rtol=1e-3, atol=1e-4)


def test_cut_options_are_checked():
    with pytest.raises(ValueError, match="depth"):
        StudentConfig("dlib-derived", act="relu", depth="3-3-3-3")
    with pytest.raises(ValueError, match="options of the dlib-derived"):
        StudentConfig("mobilefacenet", depth="2-2-1-1")
    with pytest.raises(ValueError, match="options of the dlib-derived"):
        StudentConfig("mobilefacenet", stage_widths="1-1-1-0.5")
    for bad in ("1-1-0.5", "1-1-0-0.5", "1-1-1.5-0.5"):
        with pytest.raises(ValueError, match="stage widths"):
            StudentConfig("dlib-derived", act="relu", stage_widths=bad)
    with pytest.raises(ValueError, match="input size"):
        StudentConfig("dlib-derived", act="relu", input_size=96)
    with pytest.raises(ValueError, match="ReLU"):
        build(StudentConfig("dlib-derived", act="leaky"))
    assert StudentConfig("dlib-derived", 0.5, 112, "relu", depth="2-2-1-1").template == "dlib112"


def test_stage_widths_cut_each_stage_by_its_own_share(teacher_and_chips):
    from trainer.nets.dlib_derived import measure_teacher

    teacher, chips, _ = teacher_and_chips
    config = StudentConfig("dlib-derived", act="relu", input_size=150,
                           stage_widths="1-1-0.75-0.4")
    assert config.slug == "dlib-derived-w1-1-075-04-150"
    model, info = _derived(teacher, chips, input_size=150, stage_widths="1-1-0.75-0.4")
    inner = {}
    for block in model.net.blocks:
        inner.setdefault(block.conv2.out_channels, set()).add(block.conv1.out_channels)
    # the last down block (256 channels, alone in its stage) takes the 256 share too
    assert inner == {32: {32}, 64: {64}, 128: {96}, 256: {104}}
    importance, _ = measure_teacher(teacher, teacher.normalise(chips))
    for student_block, source in zip(model.net.blocks, info["teacher_blocks"]):
        keep = torch.argsort(importance[source], descending=True)[:student_block.conv1.out_channels]
        torch.testing.assert_close(student_block.conv1.weight,
                                   teacher.blocks[source].conv1.weight[torch.sort(keep).values])
    # the full early stages hold few of the weights: the file shrinks with the 256 stage
    assert count_parameters(model) < 0.5 * count_parameters(teacher)


# ---------------------------------------------------------------- losses, by hand


def test_angular_distillation_losses_match_hand_computed_values():
    student = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    teacher = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    # cosines: 24/25 = 0.96 and 0
    eq4 = ((1 - 0.96) ** 2 + (1 - 0.0) ** 2) / 2
    eq5 = ((2 - 2 * 0.96) + (2 - 0.0)) / 2
    assert float(angular_distillation(student, teacher)) == pytest.approx(eq4, rel=1e-5)
    assert float(normalized_l2_distillation(student, teacher)) == pytest.approx(eq5, rel=1e-5)
    assert float(normalized_l2_distillation(teacher * 5, teacher)) == pytest.approx(0, abs=1e-6)


def test_neighbour_distillation_matches_a_hand_computed_value():
    """Three faces: each one's softmax over the other two, teacher's against student's."""
    teacher = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # 2 and 3 swapped
    tau = 0.5

    def rows(x):
        x = x / x.norm(dim=1, keepdim=True)
        sim = (x @ x.T).tolist()
        return [[math.exp(sim[i][j] / tau) for j in range(3) if j != i] for i in range(3)]

    expected = 0.0
    for t_row, s_row in zip(rows(teacher), rows(student)):
        p = [v / sum(t_row) for v in t_row]
        q = [v / sum(s_row) for v in s_row]
        expected += sum(a * math.log(a / b) for a, b in zip(p, q)) / 3
    got = float(neighbour_distillation(student, teacher, tau))
    assert got == pytest.approx(expected * tau ** 2, rel=1e-5)
    assert float(neighbour_distillation(teacher * 3, teacher, tau)) == pytest.approx(0, abs=1e-7)


def test_neighbour_distillation_weighs_a_faces_nearest_neighbours_most():
    """Swapping the similarities of a face's two nearest neighbours costs more than
    swapping those of its two farthest, though the squared differences are the same."""
    angles = torch.tensor([0.0, 0.3, 0.5, 1.9, 2.1])
    teacher = torch.stack([angles.cos(), angles.sin()], dim=1)

    def swapped(i, j):
        a = angles.clone()
        a[[i, j]] = a[[j, i]]
        return torch.stack([a.cos(), a.sin()], dim=1)

    near = float(neighbour_distillation(swapped(1, 2), teacher, 0.1))
    far = float(neighbour_distillation(swapped(3, 4), teacher, 0.1))
    assert near > 2 * far > 0, (near, far)


def test_arcface_adds_the_margin_to_the_true_class_only():
    head = ArcFace(embedding=2, classes=2, scale=10.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angle = math.radians(30)
    embedding = torch.tensor([[math.cos(angle), math.sin(angle)]]) * 3
    logits = head.logits(embedding, torch.tensor([0]))
    expected = [10 * math.cos(angle + 0.5), 10 * math.cos(math.pi / 2 - angle)]
    assert logits[0].tolist() == pytest.approx(expected, rel=1e-5)
    loss = head(embedding, torch.tensor([0])).item()
    by_hand = -expected[0] + math.log(math.exp(expected[0]) + math.exp(expected[1]))
    assert loss == pytest.approx(by_hand, rel=1e-5)


# ---------------------------------------------------------------- augmentation


@pytest.fixture(scope="module")
def face_crop(photos):
    from faceapp.core.align import align_face
    from faceapp.core.detect import MTCNNDetector

    image = load_image(photos / "img1.jpg")
    face = MTCNNDetector.from_pack("mtcnn-v1").detect(image)[0]
    return align_face(image, face.landmarks, "arcface112")


def _sharpness(img):
    return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()


def test_flip_is_reported_so_the_mirror_target_is_used(face_crop):
    only_flip = Augmentation(flip=1.0, color=0, gray=0, geometry=0, degrade=0)
    img, flipped = augment(face_crop, np.random.default_rng(0), only_flip)
    assert flipped and np.array_equal(img, face_crop[:, ::-1])
    img, flipped = augment(face_crop, np.random.default_rng(0), Augmentation.none())
    assert not flipped and np.array_equal(img, face_crop)


def test_degradation_makes_poorer_images_of_the_same_shape(face_crop):
    only_degrade = Augmentation(flip=0, color=0, gray=0, geometry=0, degrade=1.0)
    rng = np.random.default_rng(1)
    outs = [augment(face_crop, rng, only_degrade)[0] for _ in range(20)]
    assert all(o.shape == face_crop.shape and o.dtype == np.uint8 for o in outs)
    assert np.mean([_sharpness(o) for o in outs]) < 0.8 * _sharpness(face_crop)


@pytest.fixture(scope="module")
def face_views(photos):
    """One real face as the student (arcface80) and the teacher (dlib150) frame it."""
    from faceapp.core.align import align_face
    from faceapp.core.detect import MTCNNDetector

    image = load_image(photos / "img1.jpg")
    landmarks = MTCNNDetector.from_pack("mtcnn-v1").detect(image)[0].landmarks
    return (align_face(image, landmarks, "arcface80"), align_face(image, landmarks, "dlib150"),
            chip_to_crop(landmarks, "dlib150", "arcface80"))


# dlib's chip stops at the brows, the student's crop goes on to the hairline: compare
# the crop's rows the chip covers, away from borders the jitter reflects in
COVERED = (slice(30, 72), slice(12, 68))


def test_paired_views_jitter_both_networks_the_same_way(face_views):
    student, teacher, to_crop = face_views
    # the teacher's chip carried into the student's framing is the student's crop
    assert np.abs(cv2.warpAffine(teacher, to_crop, (80, 80)).astype(float)
                  - student)[COVERED].mean() < 3
    only_geometry = Augmentation(flip=0, color=0, gray=0, geometry=1.0, degrade=0)
    for seed in range(4):
        s_view, t_view = paired_views(student, teacher, to_crop, np.random.default_rng(seed),
                                      only_geometry)
        moved = np.abs(s_view.astype(float) - student)[COVERED].mean()
        apart = np.abs(cv2.warpAffine(t_view, to_crop, (80, 80)).astype(float)
                       - s_view)[COVERED].mean()
        assert moved > 8 and apart < min(5.0, moved / 4), (seed, moved, apart)


def test_paired_views_share_flip_colour_and_blend(face_views):
    student, teacher, to_crop = face_views
    partner = (np.full_like(student, 255), np.full_like(teacher, 255))  # a white card
    everything = Augmentation(flip=1.0, color=1.0, gray=0, geometry=0, degrade=0, mixup=1.0)
    s_view, t_view = paired_views(student, teacher, to_crop, np.random.default_rng(3),
                                  everything, partner)
    # the same flip, colours and blend: the chip, carried over, still matches the crop
    assert np.abs(cv2.warpAffine(t_view[:, ::-1], to_crop, (80, 80)).astype(float)
                  - s_view[:, ::-1])[COVERED].mean() < 3
    # the blend is in both (above) and it did happen
    plain = paired_views(student, teacher, to_crop, np.random.default_rng(3),
                         Augmentation(flip=1.0, color=1.0, gray=0, geometry=0, degrade=0))[0]
    assert (s_view.astype(float) - plain).mean() > 3
    # the poor-image chain is the student's alone
    poor = Augmentation(flip=0, color=0, gray=0, geometry=0, degrade=1.0)
    s_view, t_view = paired_views(student, teacher, to_crop, np.random.default_rng(5), poor)
    assert np.array_equal(t_view, teacher) and not np.array_equal(s_view, student)


def test_mixup_needs_the_online_teacher():
    from trainer.distill import DistillConfig

    with pytest.raises(ValueError, match="online teacher"):
        DistillConfig(mixup=0.5)
    assert DistillConfig(mixup=0.5, teacher_online=True).mixup == 0.5


def test_degraded_protocol_is_fixed_and_poorer(photos):
    image = load_image(photos / "img1.jpg")
    image = cv2.resize(image, (250, 250), interpolation=cv2.INTER_AREA)
    a = degrade_image(image, 100.0, np.random.default_rng(7))
    b = degrade_image(image, 100.0, np.random.default_rng(7))
    assert a.tobytes() == b.tobytes()  # same seed, same bytes
    low = cv2.imdecode(a, cv2.IMREAD_COLOR)[..., ::-1]
    assert low.shape == image.shape
    assert _sharpness(low) < 0.5 * _sharpness(image)


# ---------------------------------------------------------------- tiny real run + export


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Distill a small MobileFaceNet on 96 real training faces for 6 short epochs (int8 teacher targets,
    the shipped file) in a private trainer cache."""
    import os

    from trainer.distill import DistillConfig, Run

    cache = tmp_path_factory.mktemp("trainer-cache")
    old = os.environ.get("FACEAPP_TRAINER_CACHE")
    os.environ["FACEAPP_TRAINER_CACHE"] = str(cache)
    try:
        torch.manual_seed(0)
        config = DistillConfig(student=StudentConfig("mobilefacenet", 0.5, 64), epochs=6,
                               batch_size=16, lr=3e-3, warmup_steps=2, limit=96,
                               teacher_variant="int8", robust=False)
        run = Run("tiny", config)
        before = _clean_loss(run)
        result = run.train(device="cpu", threads=2)
        yield run, before, result
    finally:
        if old is None:
            os.environ.pop("FACEAPP_TRAINER_CACHE", None)
        else:
            os.environ["FACEAPP_TRAINER_CACHE"] = old


def _clean_loss(run, model=None):
    from trainer.cache import distill_targets, train_crops
    from trainer.distill import student_model, to_input

    cfg = run.config
    targets = distill_targets(limit=cfg.limit, teacher_variant=cfg.teacher_variant)
    crops = np.asarray(train_crops(targets, cfg.student.template))
    if model is None:  # the untrained student, as training starts it
        torch.manual_seed(0)
        model = student_model(cfg.student, targets)
    # batch statistics: a dozen steps are too few for BN's running averages to settle
    model.train()
    with torch.no_grad():  # the training objective: the centred direction (TeacherSpace)
        out = model.net(to_input(crops))
        target = torch.from_numpy(np.asarray(targets.teacher)) - model.center
    return float(normalized_l2_distillation(out, target))


def test_tiny_distillation_reduces_the_loss(tiny_run):
    run, before, result = tiny_run
    assert result["finished"] and result["epoch"] == 6
    log = run.log()
    assert [e["epoch"] for e in log] == [1, 2, 3, 4, 5, 6]
    after = _clean_loss(run, run.load_model())
    assert after < 0.85 * before, (before, after)
    assert (run.folder / "curves.png").stat().st_size > 0


def test_online_teacher_run_learns_the_clean_targets_too(tiny_run):
    """Trained only on augmented, blended views with online targets, the student also
    gets closer to the cached targets of the clean faces: views and targets agree."""
    from trainer.distill import DistillConfig, Run

    torch.manual_seed(0)
    config = DistillConfig(student=StudentConfig("mobilefacenet", 0.5, 64), epochs=6,
                           batch_size=16, lr=3e-3, warmup_steps=2, limit=96,
                           teacher_variant="int8", robust=False, teacher_online=True,
                           mixup=0.5)
    run = Run("tiny-online", config)
    before = _clean_loss(run)
    result = run.train(device="cpu", threads=2)
    assert result["finished"] and result["epoch"] == 6
    after = _clean_loss(run, run.load_model())
    assert after < 0.85 * before, (before, after)


def test_hint_maps_are_carried_into_the_students_frame():
    """A teacher map holding each cell's chip x coordinate, resampled through a known
    chip-to-crop similarity, holds the chip x of each crop cell's centre: the framing,
    the inverse and the pixel-centre conventions all line up."""
    from trainer.hints import GRID, to_crop_frame

    chip, crop, cells = 150, 112, 8
    centres = (np.arange(cells) + 0.5) * chip / cells - 0.5  # chip x of each map cell
    ramp = torch.tensor(np.tile(centres, (cells, 1)), dtype=torch.float32)[None, None]
    scale, shift = 1.2, (-30.0, -25.0)  # the crop sees the middle of the chip, larger
    crop_from_chip = np.array([[[scale, 0.0, shift[0]], [0.0, scale, shift[1]]]])
    got = to_crop_frame(ramp, crop_from_chip, chip, (crop, crop))[0, 0].numpy()
    crop_x = (np.arange(GRID) + 0.5) * crop / GRID - 0.5
    expected = (crop_x - shift[0]) / scale
    assert got.shape == (GRID, GRID)
    assert np.allclose(got, np.tile(expected, (GRID, 1)), atol=0.05), (got, expected)


def test_hints_are_refused_with_the_online_teacher_and_for_cut_students():
    from trainer.distill import DistillConfig
    from trainer.hints import StudentHints

    with pytest.raises(ValueError, match="cached maps"):
        DistillConfig(hints=1.0, teacher_online=True)
    with pytest.raises(ValueError, match="seed architectures"):
        StudentHints(build(StudentConfig("dlib-derived", 0.5, 112, act="relu")), 112)


def test_a_run_with_hints_learns_the_teachers_maps(tiny_run):
    """Six short epochs on 96 real faces: the regressed maps get much closer to the
    teacher's (standardised, so a student that learned nothing scores about 1)."""
    from trainer.distill import DistillConfig, Run

    torch.manual_seed(0)
    config = DistillConfig(student=StudentConfig("mobilefacenet", 0.5, 64), epochs=6,
                           batch_size=16, lr=3e-3, warmup_steps=2, limit=96,
                           teacher_variant="int8", robust=False, hints=1.0)
    run = Run("tiny-hints", config)
    result = run.train(device="cpu", threads=2)
    assert result["finished"]
    losses = [entry["hint_loss"] for entry in run.log()]
    assert 0.5 < losses[0] and losses[-1] < 0.8 * losses[0], losses
    again = Run("tiny-hints")  # the regressors are in the checkpoint for resuming
    assert torch.load(again.checkpoint_path, weights_only=False)["hints"]


def test_online_teacher_on_torch_gives_the_packs_embeddings(tiny_run):
    """The CUDA path (torch network from dlib's weights), run here on the CPU, embeds
    the chips as the pack that made the cached targets does."""
    from trainer.cache import distill_targets
    from trainer.online_teacher import OnlineTeacher

    run, _, _ = tiny_run
    targets = distill_targets(limit=run.config.limit, teacher_variant="int8")
    teacher = OnlineTeacher(targets, run.config, device="cpu", on_torch=True)
    on_torch = teacher.embed(np.asarray(teacher.chips[:16]))
    assert np.allclose(np.linalg.norm(on_torch, axis=1), 1, atol=1e-5)
    agreement = np.sum(on_torch * np.asarray(targets.teacher[:16]), axis=1)
    assert agreement.min() > 0.99, agreement  # the cached targets come from the int8 file


def test_a_student_starts_from_one_trained_at_another_input_size(tiny_run):
    """Only the head's global depthwise kernel depends on the input size: resampled,
    the 64px student's weights embed 80px faces much as the 64px student embeds
    64px ones, far closer than an untrained 80px student does."""
    from trainer.cache import distill_targets, train_crops
    from trainer.distill import student_model, to_input
    from trainer.nets import load_across_sizes

    run, _, _ = tiny_run
    small = run.load_model()
    targets = distill_targets(limit=run.config.limit, teacher_variant="int8")
    large_config = StudentConfig("mobilefacenet", 0.5, 80)
    torch.manual_seed(1)
    untrained = student_model(large_config).eval()
    transferred = student_model(large_config).eval()
    assert load_across_sizes(transferred, small.state_dict()) == ["net.head.gdconv.0.weight"]
    head = transferred.net.head.gdconv[0].weight
    assert head.shape[2:] == (5, 5)
    original = small.net.head.gdconv[0].weight
    torch.testing.assert_close(head.sum(dim=(2, 3)), original.sum(dim=(2, 3)), rtol=0.1, atol=0.05)

    def directions(model, template):
        crops = np.asarray(train_crops(targets, template))[:48]
        with torch.no_grad():
            return torch.nn.functional.normalize(model.net(to_input(crops)), dim=1)

    reference = directions(small, "arcface64")
    kept = (directions(transferred, "arcface80") * reference).sum(1).mean()
    fresh = (directions(untrained, "arcface80") * reference).sum(1).mean()
    assert kept > 0.8 and kept > fresh + 0.5, (kept, fresh)

    with pytest.raises(ValueError, match="different layers"):
        load_across_sizes(student_model(StudentConfig("mobiface", 0.5, 80)), small.state_dict())


def _directions(embeddings: np.ndarray, center: np.ndarray) -> np.ndarray:
    offsets = embeddings - center
    return offsets / np.linalg.norm(offsets, axis=1, keepdims=True)


def test_activation_rounding_rounds_what_the_int8_pack_rounds(tiny_run, tmp_path):
    """Quantization-aware training rounds the same tensors as the exported int8 graph,
    with the same ranges; the network's outputs move as much as the pack's do."""
    import onnx
    from onnx import numpy_helper

    from trainer.cache import distill_targets, train_crops
    from trainer.distill import to_input
    from trainer.quant_aware import ActivationRounding
    from trainer.students import export_student

    run, _, _ = tiny_run
    targets = distill_targets(limit=run.config.limit, teacher_variant="int8")
    crops = np.asarray(train_crops(targets, run.config.student.template))
    calibration, held_out = crops[:32], to_input(crops[32:80])
    pack = ModelPack.load(export_student(run, pack_name="tiny-rounding", out_root=tmp_path,
                                         calibration=calibration))
    graph = onnx.load(str(pack.file("int8"))).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    activations = [node for node in graph.node  # weights are dequantized from constants
                   if node.op_type == "DequantizeLinear" and node.input[0] not in constants]

    model = run.load_model()
    with torch.no_grad():
        plain = model(held_out).numpy()
        rounding = ActivationRounding(model.net, to_input(calibration))
        simulated = model(held_out).numpy()
        rounding.remove()
        again = model(held_out).numpy()
    np.testing.assert_allclose(again, plain, atol=1e-6)  # removed: the plain network

    assert len(rounding) == len(activations) > 30
    for fake, node in zip(rounding.roundings, activations):
        assert float(fake.scale) == pytest.approx(float(constants[node.input[1]]), rel=1e-4)
        assert int(fake.zero_point) == int(constants[node.input[2]])

    center = model.center.numpy()
    int8 = run_onnx(pack.file("int8"), held_out.numpy())
    moved = 1 - np.sum(_directions(plain, center) * _directions(simulated, center), 1).mean()
    moved_int8 = 1 - np.sum(_directions(plain, center) * _directions(int8, center), 1).mean()
    assert moved_int8 / 3 < moved < 3 * moved_int8, (moved, moved_int8)


def test_quantization_aware_fine_tuning_keeps_batch_norm_and_learns(tiny_run):
    """A generation trained through the int8 rounding: batch norm keeps the statistics
    the folded int8 graph will use, and the rounded network's loss goes down."""
    from trainer.distill import DistillConfig, Run

    run, _, _ = tiny_run
    with pytest.raises(ValueError, match="init"):
        DistillConfig(quant_aware=True)
    config = DistillConfig(student=run.config.student, epochs=6, batch_size=16, lr=3e-3,
                           warmup_steps=2, limit=96, teacher_variant="int8", robust=False,
                           init="tiny", quant_aware=True)
    tuned = Run("tiny-quant-aware", config)
    assert tuned.train(device="cpu", threads=2)["finished"]
    before, after = run.load_model().state_dict(), tuned.load_model().state_dict()
    statistics = [name for name in before if "running_" in name]
    assert len(statistics) > 50
    for name in statistics:
        torch.testing.assert_close(after[name], before[name])
    losses = [entry["distill_loss"] for entry in tuned.log()]  # computed through the rounding
    assert losses[-1] < 0.95 * losses[0], losses


def test_a_run_resumes_and_refuses_another_configuration(tiny_run):
    from trainer.distill import DistillConfig, Run

    run, _, _ = tiny_run
    again = Run("tiny")  # reads config.json
    assert again.config == run.config
    result = again.train(device="cpu", threads=2)  # already finished: nothing to do
    assert result["finished"] and len(again.log()) == 6
    with pytest.raises(ValueError, match="another configuration"):
        Run("tiny", DistillConfig(epochs=99))


def test_a_kept_generation_outlives_the_trainer_cache(tiny_run, tmp_path, monkeypatch):
    """A finished run kept in the repository is found by name once the machine's trainer
    cache is gone, with the same weights, and cannot be trained further in place."""
    from trainer.distill import DistillConfig, Run

    run, _, _ = tiny_run
    monkeypatch.setenv("FACEAPP_TRAINER_GENERATIONS", str(tmp_path / "generations"))
    with pytest.raises(ValueError, match="not finished"):
        Run("never-trained", DistillConfig(epochs=3)).keep()
    kept = run.keep()
    assert kept == tmp_path / "generations" / "tiny"
    assert sorted(p.name for p in kept.iterdir()) == ["checkpoint.pt", "config.json", "log.jsonl"]
    # the optimizer's state stays behind: the kept file is about the weights' size
    weights = sum(t.numel() * t.element_size() for t in run.load_model().state_dict().values())
    assert (kept / "checkpoint.pt").stat().st_size < 1.2 * weights + 100_000

    monkeypatch.setenv("FACEAPP_TRAINER_CACHE", str(tmp_path / "another-machine"))
    again = Run("tiny")
    assert again.kept and again.config == run.config and again.log() == run.log()
    crops = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (4, 3, 64, 64))
                             .astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(again.load_model()(crops), run.load_model()(crops))
    with pytest.raises(ValueError, match="--init tiny"):
        again.train(device="cpu")

    # the next generation's pack records where it came from, even across machines
    child = Run("tiny-g2", DistillConfig(student=run.config.student, init="tiny"))
    lineage = child.lineage()
    assert [(g["run"], g["epochs"]) for g in lineage] == [("tiny", 6), ("tiny-g2", 0)]
    assert lineage[0]["lfw_last_epoch"] is None  # a run on a --limit of faces skips LFW
    orphan = Run("orphan", DistillConfig(student=run.config.student, init="gone"))
    assert [(g["run"], g["epochs"]) for g in orphan.lineage()] == [("gone", None), ("orphan", 0)]


def test_export_makes_a_pack_the_app_loads(tiny_run, tmp_path, photos):
    from trainer.students import export_student

    run, _, _ = tiny_run
    from trainer.cache import distill_targets, train_crops
    targets = distill_targets(limit=run.config.limit, teacher_variant="int8")
    calibration = np.asarray(train_crops(targets, run.config.student.template))[:32]
    pack_dir = export_student(run, pack_name="tiny-student", out_root=tmp_path,
                              calibration=calibration)
    pack = ModelPack.load(pack_dir)
    assert pack.manifest["alignment"] == "arcface64"
    assert pack.manifest["architecture"]["arch"] == "mobilefacenet"
    by_design = pack.manifest["quantization"]["fp32_by_design"]
    assert len(by_design) == 1  # only the stem convolution, on purpose
    report = quantized_graph_report(pack_dir / pack.manifest["files"]["int8"]["path"], by_design)
    assert report["fp32_islands"] == [] and report["quantized_compute_nodes"] > 20

    from faceapp.core.align import align_face
    from faceapp.core.detect import MTCNNDetector
    image = load_image(photos / "img1.jpg")
    face = MTCNNDetector.from_pack("mtcnn-v1").detect(image)[0]
    fp32 = Embedder(pack, "fp32", flip=False)
    int8 = Embedder(pack, "int8", flip=False)
    crop = align_face(image, face.landmarks, fp32.template)
    a, b = fp32.embed(crop)[0], int8.embed(crop)[0]
    assert a.shape == (128,) and abs(np.linalg.norm(a) - 1) < 1e-5
    assert float(a @ b) > 0.95

    assert not pack.manifest["template_flip_fusion"] and not int8.template_flip

    # rebuilt from the same run, the files are byte-identical: measured figures and the
    # decisions taken on them stay
    from trainer.packs import update_manifest
    update_manifest(pack_dir, evaluation={"lfw": {"int8": {"accuracy_mean": 0.5}}},
                    listed=False)
    again = ModelPack.load(export_student(run, pack_name="tiny-student", out_root=tmp_path,
                                          calibration=calibration, template_flip=True))
    assert again.manifest["files"] == pack.manifest["files"]
    assert again.manifest["evaluation"]["lfw"]["int8"]["accuracy_mean"] == 0.5
    assert again.manifest["listed"] is False
    fused = Embedder(again, "int8")  # templates fused with their mirror, searches not
    assert (fused.flip, fused.template_flip, fused.setting) == (False, True,
                                                                "int8+flip-templates")
    mirrored = int8.raw(crop) + int8.raw(crop[:, ::-1])
    np.testing.assert_allclose(fused.embed_templates(crop)[0],
                               mirrored[0] / np.linalg.norm(mirrored[0]), atol=1e-5)
    np.testing.assert_allclose(fused.embed(crop)[0], b, atol=1e-6)
    assert "--pack-name tiny-student" in again.manifest["files"]["fp32"]["missing_hint"]
    assert again.manifest["licence"] == "CC0-1.0"


def test_command_line_options_make_the_configuration():
    from trainer.__main__ import _student_config, build_parser

    args = build_parser().parse_args(
        ["distill", "--arch", "vargfacenet", "--width", "0.5", "--input-size", "64",
         "--epochs", "3", "--distill-loss", "eq4", "--arcface-weight", "1", "--clean",
         "--online-teacher", "--mixup", "0.25", "--init", "g1", "--quant-aware",
         "--neighbours", "20", "--neighbour-temperature", "0.2"])
    config = _student_config(args)
    assert config.student == StudentConfig("vargfacenet", 0.5, 64)
    assert (config.epochs, config.distill_loss, config.arcface_weight, config.robust) == \
        (3, "eq4", 1.0, False)
    assert (config.teacher_online, config.mixup) == (True, 0.25)
    assert (config.init, config.quant_aware) == ("g1", True)
    assert (config.neighbours, config.neighbour_temperature) == (20.0, 0.2)
    assert config.alpha == 7.0  # the paper's weight unless told otherwise
