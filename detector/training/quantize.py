"""Static INT8 post-training quantization of an exported model, calibrated on real face crops.

    python -m detector.training.quantize .cache/models/fp32/model.onnx models/unmask-lite0/model.onnx

QDQ format with per-channel weights: EfficientNet-Lite was designed for this (ReLU6, no
squeeze-excite), so INT8 keeps its accuracy while the file shrinks about 4x and a CPU runs it
faster. Calibration uses crops from the training split only, never the test split; the result
is then held against its FP32 source on the validation split (``fidelity``, kept in the card).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..classifier import Predictor
from ..graph import PAIR_SUM_LIMIT, worst_pair_sum
from .data import DEFAULT_CACHE, load_crops, read_manifest, served_batches
from .metrics import auc


class CropReader(CalibrationDataReader):
    """Calibration data for ONNX Runtime: ``served_batches``, so the activation ranges are
    measured on what the model will really see. One crop a call: the histogram calibrators
    stack every call's outputs and need them all the same shape (MinMax is the same either way)."""

    def __init__(self, cache: Path, count: int, predictor: Predictor, seed: int = 0, batch: int = 1):
        self._batches = served_batches(cache, count, predictor, seed, batch)
        self._it = iter(self._batches)

    def get_next(self):
        batch = next(self._it, None)
        return None if batch is None else {"image": batch}

    def rewind(self) -> None:
        self._it = iter(self._batches)


# How activation ranges are set from the calibration crops. MinMax keeps every value seen, so one
# outlying crop widens a range and coarsens the steps for all; Percentile clips the last 0.001 %,
# Entropy picks the range that keeps the histogram's information.
CALIBRATIONS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


def quantize(
    fp32: Path,
    int8: Path,
    cache: Path = DEFAULT_CACHE,
    count: int = 256,
    calibration: str = "minmax",
    weight_bits: int = 8,
) -> dict:
    """``fp32`` must sit beside its model card: calibration preprocesses as the card says.

    ``weight_bits=7`` stores weights within +-64 (ONNX Runtime's ``reduce_range``), so no CPU's
    16-bit pair sums can saturate (``detector.graph.worst_pair_sum``); a model fine-tuned onto
    that grid (``detector.training.qat``) loses nothing to it."""
    predictor = Predictor(fp32.parent)
    pre = int8.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(pre),
            str(int8),
            CropReader(cache, count, predictor),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATIONS[calibration],
            reduce_range=weight_bits == 7,
        )
    finally:
        pre.unlink(missing_ok=True)
    worst = worst_pair_sum(onnx.load(str(int8)))
    if weight_bits == 7 and worst > PAIR_SUM_LIMIT:
        raise RuntimeError(f"7-bit weights still reach a pair sum of {worst}")
    return {
        "fp32_bytes": fp32.stat().st_size,
        "int8_bytes": int8.stat().st_size,
        "calibration_crops": count,
        "calibration": calibration,
        "weight_bits": weight_bits,
        "worst_pair_sum": worst,
        "pair_sum_limit": PAIR_SUM_LIMIT,
    }


def fidelity(fp32_dir: Path, int8_dir: Path, cache: Path = DEFAULT_CACHE, split: str = "val") -> dict:
    """How closely the INT8 model follows its FP32 source on held-out crops, as each is served.

    Quantization is judged against the model it approximates, not against a test set: a
    calibration is better when the INT8 logits stay nearer the FP32 ones. Measured on the
    validation split, so choosing a calibration by it leaves the test split untouched."""
    rows = [r for r in read_manifest(cache) if r["split"] == split]
    if not rows:
        return {}
    fp32, int8 = Predictor(fp32_dir), Predictor(int8_dir)
    crops = load_crops(cache, rows, fp32.input_size)
    labels = np.array([r["label"] for r in rows])

    def logits(predictor: Predictor) -> np.ndarray:
        probs = np.clip(predictor.predict(crops).astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(probs / (1 - probs))

    def area(scores: np.ndarray) -> float | None:  # None where the split holds one label only
        value = auc(labels, scores)
        return None if np.isnan(value) else round(value, 4)

    ours, theirs = logits(int8), logits(fp32)
    diff = ours - theirs
    return {
        "split": split,
        "crops": len(rows),
        "auc_fp32": area(theirs),
        "auc_int8": area(ours),
        "mean_abs_logit_diff": round(float(np.abs(diff).mean()), 4),
        "p95_abs_logit_diff": round(float(np.percentile(np.abs(diff), 95)), 4),
        "max_abs_logit_diff": round(float(np.abs(diff).max()), 4),
        "mean_logit_shift": round(float(diff.mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fp32", type=Path)
    ap.add_argument("int8", type=Path)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--count", type=int, default=256, help="calibration crops")
    ap.add_argument("--calibration", choices=sorted(CALIBRATIONS), default="minmax")
    ap.add_argument(
        "--weight-bits",
        type=int,
        choices=[8, 7],
        default=8,
        help="7: weights no CPU's pair sums can saturate",
    )
    args = ap.parse_args(argv)
    args.int8.parent.mkdir(parents=True, exist_ok=True)
    info = quantize(args.fp32, args.int8, args.cache, args.count, args.calibration, args.weight_bits)
    card_path = args.int8.parent / "card.json"
    source_card = args.fp32.parent / "card.json"
    if source_card.exists() and source_card.resolve() != card_path.resolve():
        card_path.write_text(source_card.read_text())  # the FP32 card is the starting point
    if card_path.exists():
        card = json.loads(card_path.read_text())
        card["file"] = args.int8.name
        card["file_bytes"] = info["int8_bytes"]
        card["quantization"] = {
            "method": "onnxruntime static QDQ, per-channel, uint8 activations, "
            + ("int8 weights within +-64 (reduce_range)" if args.weight_bits == 7 else "int8 weights"),
            **info,
        }
        options = "".join(
            f" --{name.replace('_', '-')} {getattr(args, name)}"
            for name in ("count", "calibration", "weight_bits")
            if getattr(args, name) != ap.get_default(name)
        )
        card.setdefault("commands", {})["quantize"] = (
            f"python -m detector.training.quantize {args.fp32} {args.int8}{options}"
        )
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        # beside its card the INT8 file serves: now it can be held against the FP32 one
        info["validation"] = fidelity(args.fp32.parent, args.int8.parent, args.cache)
        card["quantization"]["validation"] = info["validation"]
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
