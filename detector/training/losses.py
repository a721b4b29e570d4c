"""What a student learns from: the labels, and a teacher's softened scores where one is given."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``(1 - alpha) * hard + alpha * T^2 * soft``: plain BCE when there is no teacher.

    The T^2 factor keeps the soft term's gradient on the same scale whatever the temperature,
    so ``alpha`` alone sets the balance (Hinton et al., 2015).
    """
    hard = F.binary_cross_entropy_with_logits(logits, labels)
    if teacher_logits is None:
        return hard
    soft_targets = torch.sigmoid(teacher_logits / temperature)
    soft = F.binary_cross_entropy_with_logits(logits / temperature, soft_targets) * temperature**2
    return (1 - alpha) * hard + alpha * soft
