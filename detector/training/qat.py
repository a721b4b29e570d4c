"""Weights trained onto the 7-bit grid they will be stored on, so narrowing them costs nothing.

Why: 7-bit weights (every value within +-64 of its channel's scale) are what makes the INT8 file
compute the same integers on every CPU at full speed (``detector.cpu``, ``detector.graph``).
Rounding a finished model's weights to 7 bits cost up to 0.09 validation AUC on a source
(``detector.training.narrow``). Fine-tuned with each convolution's weight replaced, in the
forward pass, by its per-output-channel 7-bit rounding (gradients pass straight through), the
network learns to work with the rounded values; ``bake`` then leaves them in place. Batch norms
folded into the convolutions at export scale each output channel, so the folded weights stay on
a per-channel 7-bit grid, which ``quantize --weight-bits 7`` stores exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

LIMIT = 64  # integer levels -64..64: two products of uint8 activations fit 16 bits


class GridRound(nn.Module):
    """A weight rounded per output channel to ``limit`` levels each side, straight-through."""

    def __init__(self, limit: int = LIMIT):
        super().__init__()
        self.limit = limit

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, weight.ndim))
        scale = weight.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / self.limit
        rounded = torch.clamp(torch.round(weight / scale), -self.limit, self.limit) * scale
        return weight + (rounded - weight).detach()


def on_the_grid(model: nn.Module, limit: int = LIMIT) -> int:
    """Round every convolution's weight in the forward pass from now on; how many."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        parametrize.register_parametrization(conv, "weight", GridRound(limit))
    return len(convs)


def bake(model: nn.Module) -> None:
    """Leave the rounded weights in place and drop the rounding (a plain model again)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
