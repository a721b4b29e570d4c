"""A trainable torch checkpoint rebuilt from a shipped ONNX model (FP32 or INT8 QDQ).

    python -m detector.training.recover models/unmask-lite0 --out ~/.cache/unmask/runs/shipped/best.pt

Pruning and distillation start from a torch checkpoint, but checkpoints live outside the
repository and a machine can lose them; the shipped model file is what always survives. The
exported graph has each batch norm folded into its convolution (and an INT8 file stores the
weights per channel), so the weights are dequantized and then unfolded: every batch norm gets
the running statistics of its convolution's output on training crops and the scale and shift
that give back the folded output exactly. Inference is unchanged; in training mode batch
statistics sit where the running ones are, so fine-tuning starts from the model that shipped
instead of from a network its own batch norms would rescale. A pruned file rebuilds too: its
layers are thinned to the file's channel counts and the checkpoint holds torch-pruning's state,
so a release can be pruned further from the previous one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..classifier import Predictor
from .data import DEFAULT_CACHE, served_batches
from .model import create_model
from .prune import count_parameters


def _initializers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def _value(name: str, inits: dict[str, np.ndarray], producers: dict) -> np.ndarray:
    """An initializer, or the float value of a DequantizeLinear over initializers."""
    if name in inits:
        return inits[name].astype(np.float32)
    node = producers[name]
    if node.op_type != "DequantizeLinear":
        raise ValueError(f"{name} is computed by {node.op_type}, not stored")
    q = inits[node.input[0]].astype(np.float32)
    scale = inits[node.input[1]].astype(np.float32)
    zero = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q - zero) * scale


def folded_weights(
    onnx_path: Path,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Per torch convolution name, its folded (weight, bias); then the head's weight and bias."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    inits = _initializers(graph)
    producers = {out: node for node in graph.node for out in node.output}
    convs = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")  # /_blocks.3/_expand_conv/Conv
        convs[module] = (_value(node.input[1], inits, producers), _value(node.input[2], inits, producers))
    einsum = next(n for n in graph.node if n.op_type == "Einsum")
    fc_weight = _value(einsum.input[1], inits, producers)
    add = next(n for n in graph.node if n.op_type == "Add" and n.output[0].startswith("cam"))
    bias = next(i for i in add.input if _stored(i, inits, producers))  # the other is the map's
    return convs, fc_weight, _value(bias, inits, producers).reshape(-1)


def _stored(name: str, inits: dict[str, np.ndarray], producers: dict) -> bool:
    """Whether ``name`` is a stored value (an initializer, or one dequantized), not computed."""
    node = producers.get(name)
    return name in inits or (
        node is not None and node.op_type == "DequantizeLinear" and node.input[0] in inits
    )


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """Each convolution with the batch norm that follows it in the module's definition."""
    pairs, pending = [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            pending = (name, module)
        elif isinstance(module, nn.BatchNorm2d) and pending is not None:
            pairs.append((*pending, module))
            pending = None
    return pairs


def thin(conv: nn.Conv2d, bn: nn.BatchNorm2d, shape: tuple, name: str) -> None:
    """Give a layer the channel counts a pruned file has (pruning removes whole channels, so the
    kernel size and stride stay; a depthwise convolution stays one group per channel)."""
    out_channels, in_per_group = int(shape[0]), int(shape[1])
    if tuple(shape[2:]) != tuple(conv.weight.shape[2:]) or out_channels > conv.out_channels:
        raise ValueError(f"{name}: file has {tuple(shape)}, the architecture {tuple(conv.weight.shape)}")
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels
    conv.out_channels = out_channels
    conv.in_channels = out_channels if depthwise else in_per_group
    conv.groups = out_channels if depthwise else conv.groups
    conv.weight = nn.Parameter(torch.empty(tuple(shape)))
    bn.num_features = out_channels
    bn.weight = nn.Parameter(torch.ones(out_channels))
    bn.bias = nn.Parameter(torch.zeros(out_channels))
    bn.running_mean = torch.zeros(out_channels)
    bn.running_var = torch.ones(out_channels)


def rebuild(onnx_path: Path, arch: str, batches: list[torch.Tensor]) -> nn.Module:
    """The model with the file's weights, batch norms unfolded on ``batches`` (see module doc)."""
    convs, fc_weight, fc_bias = folded_weights(onnx_path)
    model = create_model(arch, pretrained=False).eval()
    pairs = conv_bn_pairs(model)
    if {name for name, _, _ in pairs} != set(convs):
        raise ValueError(f"{onnx_path} does not have the convolutions of {arch}")
    biases = {}
    with torch.no_grad():
        for name, conv, bn in pairs:
            weight, bias = convs[name]
            if tuple(weight.shape) != tuple(conv.weight.shape):
                thin(conv, bn, weight.shape, name)
            conv.weight.copy_(torch.from_numpy(weight))
            biases[name] = torch.from_numpy(bias)
            # Exact folded output first: BN(x) = x + bias.
            bn.running_mean.zero_()
            bn.running_var.fill_(1 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(biases[name])
        if model._fc.in_features != fc_weight.shape[1]:
            model._fc = nn.Linear(fc_weight.shape[1], fc_weight.shape[0])
        model._fc.weight.copy_(torch.from_numpy(fc_weight))
        model._fc.bias.copy_(torch.from_numpy(fc_bias))

    if not batches:
        return model
    sums: dict[str, list] = {name: [0.0, 0.0, 0] for name, _, _ in pairs}

    def hook(name: str):
        def record(_module, _inputs, output):
            x = output.detach().double()
            sums[name][0] = sums[name][0] + x.sum(dim=(0, 2, 3))
            sums[name][1] = sums[name][1] + (x * x).sum(dim=(0, 2, 3))
            sums[name][2] += x.numel() // x.shape[1]

        return record

    handles = [conv.register_forward_hook(hook(name)) for name, conv, _ in pairs]
    with torch.no_grad():
        for x in batches:
            model(x)
    for h in handles:
        h.remove()
    with torch.no_grad():
        for name, _, bn in pairs:
            total, squares, n = sums[name]
            mean = total / n
            var = (squares / n - mean * mean).clamp_min(0)
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var.float() + bn.eps))
            bn.bias.copy_(mean.float() + biases[name])
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path, help="a folder with model.onnx and card.json")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--batches", type=int, default=16)
    args = ap.parse_args(argv)

    card = json.loads((args.model_dir / "card.json").read_text())
    arch = card["training"]["args"]["arch"]
    size = card["input_size"]
    predictor = Predictor(args.model_dir)  # its preprocessing only: the crops as served
    batches = [
        torch.from_numpy(b) for b in served_batches(args.cache, args.batches * 32, predictor, batch=32)
    ]
    model = rebuild(args.model_dir / card["file"], arch, batches)
    train_args = dict(card["training"]["args"], cache=str(args.cache))
    pruned = count_parameters(model) != count_parameters(create_model(arch, pretrained=False))
    if pruned:  # thinner layers: torch-pruning's state rebuilds them (export.load_checkpoint)
        import torch_pruning as tp

        state = tp.state_dict(model)
    else:
        state = model.state_dict()
    payload = {
        "model": state,
        "pruned": pruned,
        "arch": arch,
        "size": size,
        "args": train_args,
        "state": {
            "step": card["training"]["steps"],
            "seconds": card["training"]["minutes"] * 60,
            "best_auc": card["training"].get("best_val_auc"),
        },
        "recovered_from": f"{args.model_dir / card['file']} ({card['name']} {card['version']})",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, args.out)
    print(json.dumps({"checkpoint": str(args.out), "from": payload["recovered_from"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
