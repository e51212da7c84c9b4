"""The teacher embedding each augmented view as the student sees it, during training."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .augment import Augmentation, chip_to_crop, paired_views
from .cache import train_crops

if TYPE_CHECKING:
    from .distill_config import DistillConfig


class OnlineTeacher:
    """The teacher embedding augmented views during training (consistent teaching).

    On CPU it is the pack's onnxruntime file (the one that made the cached targets,
    and 10% faster than torch here); on CUDA the torch network converted from the same
    dlib weights, which runs beside the student on the GPU.
    """

    def __init__(self, targets, cfg: DistillConfig, device: str = "cpu",
                 on_torch: bool | None = None):
        from faceapp.core.embed import Embedder
        from faceapp.core.models import ModelPack

        from .cache import TEACHER_PACK

        # one thread: it runs beside the student's step, which has the others
        self.embedder = Embedder(ModelPack.load(TEACHER_PACK), cfg.teacher_variant,
                                 flip=False, threads=1)
        self.network, self.device = None, device
        if on_torch is None:
            on_torch = device != "cpu"
        if on_torch:
            from .teachers.dlib_resnet import load_dlib_resnet
            self.network = load_dlib_resnet().to(device).eval()
        self.chips = train_crops(targets, self.embedder.template.name)
        self.landmarks = np.asarray(targets.landmarks)
        self.student_template = cfg.student.template

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Unit-length teacher embeddings of N x 150 x 150 x 3 uint8 RGB chips."""
        if self.network is None:
            return self.embedder.embed(chips)
        with torch.no_grad():
            out = self.network(self.network.normalise(chips).to(self.device))
            return torch.nn.functional.normalize(out, dim=1).cpu().numpy()

    def batch(self, crops: np.ndarray, indices: np.ndarray, rng: np.random.Generator,
              aug: Augmentation) -> tuple[np.ndarray, torch.Tensor]:
        students, teachers = [], []
        for i in indices:
            j = int(rng.integers(len(crops)))
            to_crop = chip_to_crop(self.landmarks[i], self.embedder.template,
                                   self.student_template)
            s_view, t_view = paired_views(crops[i], self.chips[i], to_crop, rng, aug,
                                          partner=(crops[j], self.chips[j]))
            students.append(s_view)
            teachers.append(t_view)
        target = self.embed(np.stack(teachers))
        return np.stack(students), torch.from_numpy(np.asarray(target, np.float32))
