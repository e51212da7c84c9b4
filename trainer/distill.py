"""Distilling a student from the teacher's cached embeddings (CPU or CUDA).

A run lives in `<trainer cache>/runs/<name>/`: config.json, checkpoint.pt (model,
optimizer, schedule, position inside the epoch, random state), log.jsonl (one line per
epoch: losses and LFW accuracy) and curves.png. Running the same command again resumes
from the checkpoint, which is written every few minutes and at the end of each epoch,
so a 2-core machine can train across several sessions.

A trainer cache does not outlive its machine. `Run.keep()` copies a finished run's
weights, configuration and log into the repository (`trainer/generations/<name>/`,
the student's weights only: ~4 MB for MobileFaceNet), where `--init` and
`export-student` find it when the cache has no run of that name: the next generation
starts from it on any machine.

Loss: L = w_arc * L_arc + alpha * L_s, where L_s is the angular distillation loss
(VarGFaceNet Eq. 4 or Eq. 5) between the student's embedding of an augmented face and
the teacher's embedding of the clean face (or of its mirror when the student's input
was flipped), and L_arc is ArcFace on the samples with an identity label (celeba10k).
Generation 2 of recursive distillation starts from generation 1's weights (`init`).

With `teacher_online` the teacher runs during training instead (consistent teaching,
Beyer et al. 2022, "Knowledge distillation: A good teacher is patient and
consistent"): both networks see the same jittered, recoloured face, blended with
another face for a `mixup` share of the batch, and the target is the teacher's
embedding of that very view. 26k cached targets are a small, fixed set for a student
to memorise; online targets make every step new data. It costs a teacher pass per
face, run on onnxruntime while the student trains.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .augment import Augmentation, augment
from .cache import distill_targets, lfw_crops, train_crops
from .distill_config import DistillConfig
from .losses import DISTILLATION_LOSSES, ArcFace, neighbour_distillation, relational_loss
from .nets import StudentConfig, build, load_across_sizes
from .nets.normalisation import STUDENT_MEAN, STUDENT_STD
from .online_teacher import OnlineTeacher
from .quant_aware import ActivationRounding, freeze_batch_norm
from .upstream import cache_dir

RECALIBRATE_STEPS = 50  # quantization-aware training: int8 ranges measured again


CALIBRATION_FACES = 512  # int8 ranges are measured on these training faces


def calibration_rows(count: int, faces: int = CALIBRATION_FACES) -> np.ndarray:
    """Which training faces calibrate int8 ranges (the export's, and quantization-aware
    training's, so both round with the same ranges)."""
    return np.sort(np.random.default_rng(1).choice(count, min(count, faces), replace=False))


def teacher_center(targets) -> np.ndarray:
    """The mean teacher embedding over the training faces and their mirrors."""
    both = np.concatenate([np.asarray(targets.teacher), np.asarray(targets.teacher_mirror)])
    return both.mean(axis=0).astype(np.float32)


class TeacherSpace(torch.nn.Module):
    """A student whose output lives in the teacher's embedding space.

    dlib's embeddings share a large common component: the mean of the unit vectors
    has norm ~0.92 and two strangers score cosine ~0.84. Matching raw targets, a
    student spends its first epochs on that component (LFW 54% after one epoch here).
    So the student network (`net`) learns the centred direction (t - c), where faces
    are told apart, and this wrapper maps it back: c + radius * unit(net(x)), radius
    being the mean length of (t - c). Centring alone would be simpler, but it costs the
    teacher itself a point on LFW (98.97 -> 97.97%, int8): dlib's geometry is kept.
    """

    def __init__(self, net: torch.nn.Module, center: np.ndarray, radius: float = 0.4):
        super().__init__()
        self.net = net
        self.register_buffer("center", torch.as_tensor(np.asarray(center, np.float32)))
        self.register_buffer("radius", torch.tensor(float(radius)))

    def forward(self, x):
        direction = torch.nn.functional.normalize(self.net(x), dim=1)
        return self.center + self.radius * direction


def student_model(config: StudentConfig, targets=None) -> TeacherSpace:
    """A new student; without targets, an empty one to load saved weights into."""
    net = build(config)
    if getattr(net, "raw_teacher_space", False):
        # cut from the teacher: it already outputs the teacher's own descriptor
        return TeacherSpace(net, np.zeros(config.embedding, np.float32), 1.0)
    if targets is None:
        return TeacherSpace(net, np.zeros(config.embedding, np.float32))
    center = teacher_center(targets)
    residual = np.asarray(targets.teacher) - center
    return TeacherSpace(net, center, float(np.linalg.norm(residual, axis=1).mean()))


def aligned_faces(targets, rows: np.ndarray, template: str = "dlib150") -> np.ndarray:
    """Some training faces aligned for `template` (default: the teacher's chips)."""
    from faceapp.core.align import align_face
    from faceapp.core.imageio import load_image

    from .data import shared_data_root

    root = shared_data_root()
    return np.stack([align_face(load_image(root / targets.paths[i]), targets.landmarks[i],
                                template) for i in rows])


def runs_dir() -> Path:
    return cache_dir() / "runs"


def kept_runs_dir() -> Path:
    """Finished runs kept in the repository (weights, configuration, log)."""
    override = os.environ.get("FACEAPP_TRAINER_GENERATIONS")
    return Path(override) if override else Path(__file__).resolve().parent / "generations"


def to_input(crops: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 RGB -> the student's N x 3 x H x W input."""
    # np.array copies: the crops may be a read-only memory map
    batch = torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float()
    return (batch - STUDENT_MEAN) / STUDENT_STD


@torch.no_grad()
def embed_crops(model: torch.nn.Module, crops: np.ndarray, device: str = "cpu",
                batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(crops), batch):
        x = to_input(crops[start:start + batch]).to(device)
        out.append(torch.nn.functional.normalize(model(x), dim=1).cpu().numpy())
    return np.concatenate(out)


def lfw_accuracy(model: torch.nn.Module, template: str, device: str = "cpu",
                 degraded: bool = False) -> dict:
    from .evaluate import verification_report

    crops, pairs = lfw_crops(template, degraded=degraded)
    emb = embed_crops(model, crops, device)
    scores = np.sum(emb[pairs.left] * emb[pairs.right], axis=1)
    report = verification_report(scores, pairs)
    return {"accuracy": report["accuracy_mean"], "std": report["accuracy_std"],
            "tar_at_far_0.001": report["tar_at_far_0.001"]}


def lfw_low_accuracy(model: torch.nn.Module, template: str, device: str = "cpu") -> dict:
    """Low-High and Low-Low accuracy (trainer/degrade.py) of a model in training."""
    from .evaluate import verification_report

    high_crops, pairs = lfw_crops(template)
    low_crops, _ = lfw_crops(template, degraded=True)
    high, low = embed_crops(model, high_crops, device), embed_crops(model, low_crops, device)
    out = {}
    for name, (a, b) in {"low_high": (low, high), "low_low": (low, low)}.items():
        report = verification_report(np.sum(a[pairs.left] * b[pairs.right], axis=1), pairs)
        out[name] = {"accuracy": report["accuracy_mean"],
                     "tar_at_far_0.001": report["tar_at_far_0.001"]}
    return out


def _progress(total: int, initial: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, mininterval=10.0)


class Run:
    """One distillation run on disk."""

    def __init__(self, name: str, config: DistillConfig | None = None):
        self.name = name
        self.folder = runs_dir() / name
        kept = kept_runs_dir() / name
        # a run in this machine's cache wins; otherwise a generation kept in the repository
        self.kept = not self.folder.exists() and (kept / "config.json").exists()
        if self.kept:
            self.folder = kept
        saved = self.folder / "config.json"
        if saved.exists():
            stored = DistillConfig.from_dict(json.loads(saved.read_text()))
            if config is not None and config.to_dict() != stored.to_dict():
                raise ValueError(f"run '{name}' exists with another configuration "
                                 f"({saved}); pick a new name or drop the options")
            config = stored
        if config is None:
            raise FileNotFoundError(f"no run named '{name}' in {runs_dir()} "
                                    f"or {kept_runs_dir()}")
        self.config = config

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    def log(self) -> list[dict]:
        path = self.folder / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def load_model(self, which: str = "checkpoint.pt") -> torch.nn.Module:
        model = student_model(self.config.student)  # the center comes with the weights
        state = torch.load(self.folder / which, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        return model.eval()

    def lineage(self) -> list[dict]:
        """This run and the runs it started from (--init) or was cut from
        (--cut-from), oldest first, as far as they are on this machine or kept in the
        repository."""
        chain, run = [], self
        while True:
            log = run.log()
            chain.append({"run": run.name, "epochs": len(log),
                          "lfw_last_epoch": (log[-1].get("lfw") or {}).get("accuracy")
                          if log else None})
            parent = run.config.init or run.config.cut_from
            if not parent:
                return chain[::-1]
            try:
                run = Run(parent)
            except FileNotFoundError:
                chain.append({"run": parent, "epochs": None, "lfw_last_epoch": None})
                return chain[::-1]

    def keep(self) -> Path:
        """Copy the finished run's weights, configuration and log into the repository."""
        if self.kept:
            return self.folder
        log = self.log()
        if not log or log[-1]["epoch"] < self.config.epochs:
            raise ValueError(f"run '{self.name}' has not finished its "
                             f"{self.config.epochs} epochs: nothing to keep yet")
        saved = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        out = kept_runs_dir() / self.name
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "checkpoint.tmp"
        torch.save({"model": saved["model"]}, tmp)  # no optimizer: it is for --init
        os.replace(tmp, out / "checkpoint.pt")
        (out / "log.jsonl").write_text((self.folder / "log.jsonl").read_text())
        (out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        return out

    def _save(self, state: dict) -> None:
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def train(self, device: str | None = None, max_minutes: float | None = None,
              threads: int | None = None) -> dict:
        """Train (or resume) until the configured epochs are done or max_minutes pass."""
        cfg = self.config
        if self.kept:
            raise ValueError(f"'{self.name}' is a generation kept in the repository; "
                             f"train a new run from it with --init {self.name}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if threads:
            torch.set_num_threads(threads)
        self.folder.mkdir(parents=True, exist_ok=True)

        targets = distill_targets(limit=cfg.limit, teacher_variant=cfg.teacher_variant)
        crops = train_crops(targets, cfg.student.template)
        n = len(targets)
        teacher = torch.from_numpy(np.asarray(targets.teacher))
        teacher_mirror = torch.from_numpy(np.asarray(targets.teacher_mirror))
        labelled = targets.labels >= 0
        classes, label_index = np.unique(targets.labels[labelled], return_inverse=True)
        labels = np.full(n, -1, np.int64)
        labels[labelled] = label_index

        # channels-last runs the depthwise convolutions ~30% faster on CPU
        model = student_model(cfg.student, targets).to(device, memory_format=torch.channels_last)
        # kept only once the student could be built: a failed start leaves no run behind
        (self.folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        mean = torch.from_numpy(teacher_center(targets)).to(device)
        arcface = ArcFace(cfg.student.embedding, len(classes)).to(device) \
            if cfg.arcface_weight > 0 else None
        hints = hint_maps = None
        if cfg.hints > 0:
            from .hints import StudentHints, channel_statistics, hint_targets

            hints = StudentHints(model.net, cfg.student.input_size).to(device)
            hint_maps = hint_targets(targets, cfg.student.template)
            hint_mean, hint_std = (torch.from_numpy(v)[None, :, None, None]
                                   for v in channel_statistics(hint_maps))
        params = list(model.parameters()) + (list(arcface.parameters()) if arcface else []) \
            + (list(hints.parameters()) if hints is not None else [])
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = n // cfg.batch_size
        total_steps = steps_per_epoch * cfg.epochs

        def lr_at(step: int) -> float:
            if step < cfg.warmup_steps:
                return cfg.lr * (step + 1) / cfg.warmup_steps
            progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return cfg.lr * 0.5 * (1 + np.cos(np.pi * min(1.0, progress)))

        state = {"epoch": 0, "step_in_epoch": 0, "order": None, "sums": {}}
        if self.checkpoint_path.exists():
            saved = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if arcface is not None and saved.get("arcface"):
                arcface.load_state_dict(saved["arcface"])
            if hints is not None:
                hints.load_state_dict(saved["hints"])
            state = saved["state"]
            print(f"resuming '{self.name}' at epoch {state['epoch'] + 1}, "
                  f"step {state['step_in_epoch']}", file=sys.stderr)
        elif hasattr(model.net, "raw_teacher_space") and not cfg.init:
            from .nets.dlib_derived import derive_from_student, derive_from_teacher
            from .teachers.dlib_resnet import load_dlib_resnet

            rows = calibration_rows(n)
            if cfg.cut_from:
                source = Run(cfg.cut_from)
                if source.config.student.input_size != cfg.student.input_size:
                    raise ValueError("cut_from: the run cut from must have this input size")
                derived = derive_from_student(
                    model.net, source.load_model().net,
                    to_input(aligned_faces(targets, rows, cfg.student.template)))
                derived["cut_from"] = cfg.cut_from
            else:
                derived = derive_from_teacher(model.net, load_dlib_resnet(),
                                              aligned_faces(targets, rows))
            (self.folder / "derived.json").write_text(json.dumps(derived, indent=2))
            print(f"cut from the teacher: dropped blocks {derived['dropped_blocks']}",
                  file=sys.stderr)
        elif cfg.init:
            previous = Run(cfg.init)
            resized = load_across_sizes(model, previous.load_model().state_dict())
            print(f"generation 2: starting from run '{cfg.init}'"
                  + (f" (resized from {previous.config.student.input_size}px: "
                     f"{', '.join(resized)})" if resized else ""), file=sys.stderr)

        rounding = None
        if cfg.quant_aware:
            calibration = to_input(np.asarray(crops[calibration_rows(n)]))
            rounding = ActivationRounding(
                model.net, calibration.to(device).contiguous(memory_format=torch.channels_last))
        distill_loss = DISTILLATION_LOSSES[cfg.distill_loss]
        if cfg.teacher_online:
            online = OnlineTeacher(targets, cfg, device)
            aug = Augmentation(geometry=0.5, mixup=cfg.mixup,
                               degrade=Augmentation.degrade if cfg.robust else 0.0)
        else:
            online = None
            aug = Augmentation() if cfg.robust else Augmentation(
                flip=0.5, color=0.0, gray=0.0, geometry=0.0, degrade=0.0)
        started = time.monotonic()
        last_save = started
        pool = ThreadPoolExecutor(max_workers=1)  # prepares the next batch meanwhile

        def make_batch(indices: np.ndarray, seed: int):
            rng = np.random.default_rng(seed)
            if online is not None:
                images, target = online.batch(crops, indices, rng, aug)
                return to_input(images), target, torch.from_numpy(labels[indices]), None
            images, flipped = [], []
            for i in indices:
                img, was_flipped = augment(crops[i], rng, aug)
                images.append(img)
                flipped.append(was_flipped)
            flipped = torch.tensor(flipped)
            target = torch.where(flipped[:, None], teacher_mirror[indices], teacher[indices])
            hint = None
            if hint_maps is not None:  # the cached maps are of the unflipped face
                maps = torch.from_numpy(np.asarray(hint_maps[indices], np.float32))
                hint = ((maps - hint_mean) / hint_std, ~flipped)
            return to_input(np.stack(images)), target, torch.from_numpy(labels[indices]), hint

        def save() -> None:
            self._save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "arcface": arcface.state_dict() if arcface else None,
                        "hints": hints.state_dict() if hints is not None else None,
                        "state": state, "config": cfg.to_dict()})

        finished = True
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            if state["order"] is None:
                state["order"] = np.random.default_rng(cfg.seed + epoch).permutation(n).tolist()
                state["sums"] = {"distill": 0.0, "arc": 0.0, "cosine": 0.0, "batches": 0}
            order = np.asarray(state["order"])
            model.train()
            if rounding is not None:
                freeze_batch_norm(model)
            bar = _progress(steps_per_epoch, state["step_in_epoch"],
                            f"{self.name} epoch {epoch + 1}/{cfg.epochs}")

            def batch_at(step):
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                return pool.submit(make_batch, idx, cfg.seed * 1_000_003 + epoch * 100_003 + step)

            pending = batch_at(state["step_in_epoch"])
            while state["step_in_epoch"] < steps_per_epoch:
                step = state["step_in_epoch"]
                x, target, batch_labels, hint = pending.result()
                if step + 1 < steps_per_epoch:
                    pending = batch_at(step + 1)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(epoch * steps_per_epoch + step)
                if rounding is not None and step % RECALIBRATE_STEPS == 0:
                    rounding.calibrate()  # the ranges follow the weights
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                target = target.to(device)
                embedding = model.net(x)
                # both in the teacher's space, centred on its mean, where faces differ
                # (for a TeacherSpace student this is its own direction: same loss)
                student = (model.center + model.radius
                           * torch.nn.functional.normalize(embedding, dim=1)) - mean
                loss_s = distill_loss(student, target - mean)
                loss = cfg.alpha * loss_s
                loss_rel = torch.zeros(())
                if cfg.relational > 0:
                    loss_rel = relational_loss(student, target - mean)
                    loss = loss + cfg.relational * loss_rel
                loss_nb = torch.zeros(())
                if cfg.neighbours > 0:
                    loss_nb = neighbour_distillation(student, target - mean,
                                                     cfg.neighbour_temperature)
                    loss = loss + cfg.neighbours * loss_nb
                loss_hint = torch.zeros(())
                if hints is not None:
                    loss_hint = hints.loss(hint[0].to(device), hint[1].to(device))
                    loss = loss + cfg.hints * loss_hint
                loss_arc = torch.zeros(())
                if arcface is not None:
                    has_label = batch_labels >= 0
                    if has_label.any():
                        loss_arc = arcface(embedding[has_label.to(device)],
                                           batch_labels[has_label].to(device))
                        loss = loss + cfg.arcface_weight * loss_arc
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():  # in the teacher's own space
                    cos = torch.nn.functional.cosine_similarity(
                        model.center + model.radius * torch.nn.functional.normalize(
                            embedding, dim=1), target).mean()
                sums = state["sums"]
                sums["distill"] += loss_s.item()
                sums["arc"] += loss_arc.item()
                sums["relational"] = sums.get("relational", 0.0) + loss_rel.item()
                sums["neighbours"] = sums.get("neighbours", 0.0) + loss_nb.item()
                sums["hints"] = sums.get("hints", 0.0) + loss_hint.item()
                sums["cosine"] += float(cos)
                sums["batches"] += 1
                state["step_in_epoch"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss_s.item():.4f}", cos=f"{float(cos):.3f}")
                now = time.monotonic()
                if now - last_save > cfg.checkpoint_minutes * 60:
                    save()
                    last_save = now
                if max_minutes and now - started > max_minutes * 60:
                    finished = False
                    break
            bar.close()
            if not finished:
                break
            sums = state["sums"]
            entry = {"epoch": epoch + 1, "lr": lr_at((epoch + 1) * steps_per_epoch - 1),
                     "distill_loss": sums["distill"] / max(1, sums["batches"]),
                     "arc_loss": sums["arc"] / max(1, sums["batches"]),
                     "relational_loss": sums.get("relational", 0.0) / max(1, sums["batches"]),
                     "neighbour_loss": sums.get("neighbours", 0.0) / max(1, sums["batches"]),
                     "hint_loss": sums.get("hints", 0.0) / max(1, sums["batches"]),
                     "train_cosine": sums["cosine"] / max(1, sums["batches"]),
                     "minutes": round((time.monotonic() - started) / 60, 2)}
            if cfg.limit is None:
                if rounding is not None:  # LFW through the rounding: simulated int8
                    entry["int8_rounding"] = True
                entry["lfw"] = lfw_accuracy(model, cfg.student.template, device)
                if epoch + 1 == cfg.epochs:
                    entry["lfw_low"] = lfw_low_accuracy(model, cfg.student.template, device)
            with open(self.folder / "log.jsonl", "a") as log:
                log.write(json.dumps(entry) + "\n")
            print(json.dumps(entry), file=sys.stderr)
            state = {"epoch": epoch + 1, "step_in_epoch": 0, "order": None, "sums": {}}
            save()
            last_save = time.monotonic()
            self.plot()
        pool.shutdown()
        save()
        return {"finished": finished, "epoch": state["epoch"], "log": self.log()}

    def plot(self) -> Path | None:
        entries = self.log()
        if not entries:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [e["epoch"] for e in entries]
        fig, left = plt.subplots(figsize=(6, 4))
        left.plot(epochs, [e["distill_loss"] for e in entries], "b-o", label="distillation loss")
        left.set_xlabel("epoch")
        left.set_ylabel("distillation loss", color="b")
        if any("lfw" in e for e in entries):
            right = left.twinx()
            right.plot([e["epoch"] for e in entries if "lfw" in e],
                       [100 * e["lfw"]["accuracy"] for e in entries if "lfw" in e], "r-s")
            right.set_ylabel("LFW accuracy % (research data)", color="r")
        left.set_title(self.name)
        fig.tight_layout()
        path = self.folder / "curves.png"
        fig.savefig(path)
        plt.close(fig)
        return path
