"""Distillation and classification losses (VarGFaceNet section 3.3, ArcFace)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def angular_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """VarGFaceNet Eq. 4: mean over the batch of (1 - cos(F_t, F_s))^2."""
    cos = F.cosine_similarity(student, teacher, dim=1)
    return ((1.0 - cos) ** 2).mean()


def normalized_l2_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """VarGFaceNet Eq. 5: mean of ||F_t/|F_t| - F_s/|F_s|||^2 (= 2 - 2 cos)."""
    diff = F.normalize(teacher, dim=1) - F.normalize(student, dim=1)
    return (diff ** 2).sum(dim=1).mean()


def relational_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two batches' pairwise cosine matrices."""
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher, dim=1)
    return ((s @ s.T - t @ t.T) ** 2).mean()


DISTILLATION_LOSSES = {"eq4": angular_distillation, "eq5": normalized_l2_distillation}


def neighbour_distillation(student: torch.Tensor, teacher: torch.Tensor,
                           temperature: float = 0.1) -> torch.Tensor:
    """KL divergence from the teacher's to the student's distribution over each face's
    batch neighbours, softmax(cos / temperature) without the face itself.

    A small temperature puts the weight on each face's most similar other faces: the
    impostors that decide false accepts at a low FAR and 1:N, where the mean squared
    relational term treats the thousands of easy pairs alike.
    """
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher, dim=1)
    self_pair = torch.eye(len(s), dtype=torch.bool, device=s.device)
    s_logits = (s @ s.T / temperature).masked_fill(self_pair, -1e4)
    t_logits = (t @ t.T / temperature).masked_fill(self_pair, -1e4)
    log_p_s = F.log_softmax(s_logits, dim=1)
    p_t = F.softmax(t_logits, dim=1)
    # temperature squared keeps the gradient's size independent of the temperature
    return (p_t * (torch.log(p_t.clamp_min(1e-12)) - log_p_s)).sum(dim=1).mean() \
        * temperature ** 2


class ArcFace(nn.Module):
    """Additive angular margin softmax: logits s*cos(theta + m) for the true class,
    s*cos(theta) for the others (Deng et al. 2019), with the usual fallback when
    theta + m would pass pi."""

    def __init__(self, embedding: int, classes: int, scale: float = 32.0, margin: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, embedding))
        nn.init.normal_(self.weight, std=0.01)
        self.scale, self.margin = scale, margin
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))
        cos = cos.clamp(-1.0, 1.0)
        sin = torch.sqrt((1.0 - cos ** 2).clamp_min(1e-9))
        with_margin = cos * self.cos_m - sin * self.sin_m
        with_margin = torch.where(cos > self.threshold, with_margin, cos - self.fallback)
        one_hot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * (one_hot * with_margin + (1.0 - one_hot) * cos)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)
