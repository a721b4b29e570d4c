"""Narrow an INT8 model's convolution weights to 7 bits, so no CPU's 16-bit sums can saturate.

    python -m detector.training.narrow models/unmask-lite0-0.3.0 .cache/narrow --version 0.3.0-narrow

Why: on x86 without VNNI, ONNX Runtime adds pairs of uint8 x int8 products in 16 bits with
saturation (``detector.cpu``). With every weight within +-64, two products reach at most
2 x 255 x 64 = 32,640 and fit; the file then computes the same integers on every CPU, with the
fast kernels everywhere (the alternative, uint8 weights, is exact but about half as fast:
``detector.graph``). Each output channel whose largest weight exceeds 64 is re-quantized from
its own dequantized values, its scale widened by ``max / 64``; its int32 bias is re-expressed
at the new scale (input scale x weight scale, as the quantizer sets it). Activations, their
ranges and everything else stay as calibrated. It is a new model: evaluate it. Done to 0.3.0
after training, it cost up to 0.09 validation AUC on a source (docs/experiments.md), so the
shipped 0.3.1 learnt its 7-bit weights instead (``detector.training.qat``); this stays as the
measure of what rounding alone costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ..graph import PAIR_SUM_LIMIT, initializer, integer_weights, producer, worst_pair_sum

WEIGHT_LIMIT = 64  # 2 x 255 x 64 = 32,640 <= 32,767


def narrow_weights(model, limit: int = WEIGHT_LIMIT) -> int:
    """Re-quantize, in place, each per-channel int8 convolution weight whose channels exceed
    ``limit`` in magnitude; the number of weight tensors changed."""
    from onnx import TensorProto, numpy_helper

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(initializer(model, name))

    def store(name: str, values: np.ndarray) -> None:
        initializer(model, name).CopyFrom(numpy_helper.from_array(values, name))

    changed = 0
    for conv, dq, init in integer_weights(model):
        w = numpy_helper.to_array(init).astype(np.float64)
        scale = array(dq.input[1]).astype(np.float32)
        zero = array(dq.input[2]) if len(dq.input) > 2 else np.zeros_like(scale, dtype=np.int8)
        out = w.shape[0]
        if scale.shape != (out,) or zero.any():
            raise ValueError(f"{init.name}: expected symmetric per-channel int8 weights")
        peak = np.abs(w).reshape(out, -1).max(axis=1)
        factor = np.where(peak > limit, peak / limit, 1.0)
        if (factor == 1.0).all():
            continue
        shape = (out,) + (1,) * (w.ndim - 1)
        store(init.name, np.clip(np.round(w / factor.reshape(shape)), -limit, limit).astype(np.int8))
        new_scale = (scale * factor).astype(np.float32)
        store(dq.input[1], new_scale)
        bias_dq = producer(model, conv.input[2]) if len(conv.input) > 2 else None
        if bias_dq is not None and bias_dq.op_type == "DequantizeLinear":
            bias = initializer(model, bias_dq.input[0])
            if bias is None or bias.data_type != TensorProto.INT32:
                raise ValueError(f"{conv.name}: expected an int32 bias")
            input_dq = producer(model, conv.input[0])
            input_scale = array(input_dq.input[1]).astype(np.float32)
            b = numpy_helper.to_array(bias).astype(np.float64) * array(bias_dq.input[1]).astype(np.float64)
            bias_scale = (input_scale * new_scale).astype(np.float32)
            store(bias.name, np.round(b / bias_scale).astype(np.int32))
            store(bias_dq.input[1], bias_scale)
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="model folder (card.json + INT8 file)")
    ap.add_argument("out", type=Path, help="folder for the narrowed model and its card")
    ap.add_argument("--version", required=True, help="the new model's version")
    args = ap.parse_args(argv)
    card = json.loads((args.source / "card.json").read_text())
    model = onnx.load(str(args.source / card["file"]))
    before = worst_pair_sum(model)
    changed = narrow_weights(model)
    after = worst_pair_sum(model)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / card["file"]
    onnx.save(model, str(target))
    for extra in ("report.json", "roc.png"):  # the source's, until the new model is evaluated
        if (args.source / extra).exists() and args.source.resolve() != args.out.resolve():
            shutil.copy(args.source / extra, args.out / extra)
    card["narrowed_from"] = card.get("version")
    card["version"] = args.version
    card["file_bytes"] = target.stat().st_size
    card.setdefault("quantization", {})["weights"] = {
        "bits": 7,
        "limit": WEIGHT_LIMIT,
        "tensors_narrowed": changed,
        "worst_pair_sum_before": before,
        "worst_pair_sum": after,
        "pair_sum_limit": PAIR_SUM_LIMIT,
    }
    card.setdefault("commands", {})["narrow"] = (
        f"python -m detector.training.narrow {args.source} {args.out} --version {args.version}"
    )
    (args.out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({"tensors_narrowed": changed, "worst_pair_sum": [before, after]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
