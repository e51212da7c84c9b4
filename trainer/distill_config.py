"""The configuration of a distillation run (config.json in its folder), apart from the
run itself (trainer/distill.py) so the modules a run uses (the online teacher, the
command line) can read it without importing the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .nets import StudentConfig


@dataclass
class DistillConfig:
    student: StudentConfig = field(default_factory=StudentConfig)
    epochs: int = 12
    batch_size: int = 96
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 200
    distill_loss: str = "eq4"  # measured a little better than eq5 (bench/distill_ablation.py)
    alpha: float = 7.0  # weight of the distillation term (VarGFaceNet: 7)
    arcface_weight: float = 0.0  # 0: distillation only
    robust: bool = True  # student sees degraded faces, teacher the clean ones
    init: str | None = None  # run name of the previous generation
    seed: int = 0
    checkpoint_minutes: float = 4.0
    limit: int | None = None  # use only the first N faces (tests, quick trials)
    teacher_variant: str = "fp32"  # which file of the teacher pack makes the targets
    teacher_online: bool = False  # targets from the teacher on each augmented view
    mixup: float = 0.0  # share of faces blended with another (needs teacher_online)
    quant_aware: bool = False  # train through int8 rounding (trainer/quant_aware.py)
    # weight of the relational term: the batch's pairwise similarities (centred on the
    # teacher's mean) matched to the teacher's (Park et al. 2019, RKD)
    relational: float = 0.0
    # weight of the neighbour term: each face's distribution over its most similar
    # faces in the batch matched to the teacher's (losses.neighbour_distillation)
    neighbours: float = 0.0
    neighbour_temperature: float = 0.1
    # weight of FitNets hints: the teacher's cached stage maps of the clean face
    # (trainer/hints.py), for the seed architectures
    hints: float = 0.0
    # dlib-derived: the trained run (of this family, same input size) to cut this
    # student from instead of the teacher itself (progressive cutting)
    cut_from: str | None = None

    def __post_init__(self):
        if self.mixup > 0 and not self.teacher_online:
            raise ValueError("mixup needs the online teacher: a blend of two faces has "
                             "no cached target")
        if self.hints > 0 and self.teacher_online:
            raise ValueError("hints are the teacher's cached maps of the clean face: "
                             "they do not follow the online teacher's views")
        if self.quant_aware and not self.init:
            raise ValueError("quantization-aware training fine-tunes a trained student: "
                             "give the run to start from (init)")

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        data = dict(data)
        student = StudentConfig(**data.pop("student", {}))
        return cls(student=student, **data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["student"] = self.student.to_dict()
        return out
