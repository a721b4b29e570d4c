"""The scores a released model must give on every CPU, recorded in its card.

    python -m detector.training.parity models/unmask-lite0

Why: INT8 arithmetic differs between CPUs (``detector.cpu``), and a verdict that depends on the
buyer's CPU cannot be trusted on any of them. This scores a fixed set of real face crops (DFDC
crops from ``../shared/data``, already the model's input size, so no resampling can differ) as
served on this machine, and beside it the reference computation of the same graph (every
QuantizeLinear / DequantizeLinear pair in float, ``detector.graph.reference_session``). The card
keeps both; ``tests/test_graph.py`` holds every machine's served scores to the recorded ones
within ``TOLERANCE`` and to the reference within the recorded spread, and runs the same check on
an emulated AVX2 CPU where ``qemu-x86_64`` is installed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..classifier import Predictor, sigmoid
from ..config import REPO_ROOT, Settings
from ..cpu import classify, this_cpu
from ..graph import for_serving, reference_session
from ..media import load_image

DATA = REPO_ROOT.parent / "shared" / "data" / "faces" / "dfdc"
TOLERANCE = 0.005  # the most a served probability may move between CPUs
PER_LABEL = 12


def parity_crops(data: Path = DATA, per_label: int = PER_LABEL) -> tuple[list[str], np.ndarray]:
    """The fixed crops: the first ``per_label`` real and fake DFDC crops by name (224 x 224)."""
    names = [p for label in ("real", "fake") for p in sorted((data / label).glob("*.jpg"))[:per_label]]
    crops = np.stack([load_image(p) for p in names])
    return [str(p.relative_to(data.parent.parent)) for p in names], crops


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return sigmoid(np.asarray(logits, dtype=np.float64))


def network_probabilities(predictor: Predictor, crops: np.ndarray) -> np.ndarray:
    """The served graph's own P(fake) (before the card's calibration, which is the same float
    arithmetic on every CPU and may change with a re-evaluation): what CPUs could disagree on."""
    return _sigmoid(predictor.logits(crops, calibrated=False))


def reference_probabilities(model_dir: Path, crops: np.ndarray) -> np.ndarray:
    """The reference computation's P(fake) for ``crops`` (float input, the file's graph, before the
    card's calibration)."""
    predictor = Predictor(model_dir, Settings(model_dir=model_dir, threads=1), rewrite=False)
    session = reference_session(model_dir / predictor.card.file)
    logits = session.run(["logit"], {session.get_inputs()[0].name: predictor.preprocess(crops)})[0][:, 0]
    return _sigmoid(logits)


# The CPU classes a card describes: how each is served the same file.
CLASSES = {
    "x86 with VNNI or AMX": classify("x86_64", {"avx2", "avx512f", "avx512_vnni"}),
    "x86 with AVX2 or AVX-512, no VNNI": classify("x86_64", {"avx2", "avx512f"}),
    "ARM (NEON, dot product)": classify("aarch64", {"asimddp"}),
}


def serving_paths(model_dir: Path) -> dict[str, list[str]]:
    """Per CPU class, what ``detector.graph`` does to the file before ONNX Runtime runs it."""
    predictor = Predictor(model_dir, Settings(model_dir=model_dir, threads=1))
    path = model_dir / predictor.card.file
    return {name: list(for_serving(path, predictor._lut, cpu=cpu).rewrites) for name, cpu in CLASSES.items()}


def measure(model_dir: Path, data: Path = DATA) -> dict:
    names, crops = parity_crops(data)
    served = Predictor(model_dir, Settings(model_dir=model_dir, threads=1))
    probs = network_probabilities(served, crops)
    diff = np.abs(probs - reference_probabilities(model_dir, crops))
    return {
        "crops": names,
        "probabilities": [round(float(p), 6) for p in probs],
        "tolerance": TOLERANCE,
        "measured_on": this_cpu().name,
        "served_rewrites": list(served.rewrites),
        "serving": {
            **serving_paths(model_dir),
            "browser (onnxruntime-web)": "the file as stored, float input: the same integers",
        },
        "vs_reference": {
            "max_abs_diff": round(float(diff.max()), 4),
            "mean_abs_diff": round(float(diff.mean()), 4),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, nargs="?", default=REPO_ROOT / "models" / "unmask-lite0")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--print", action="store_true", help="print the served scores, change nothing")
    args = ap.parse_args(argv)
    if args.print:
        _, crops = parity_crops(args.data)
        probs = network_probabilities(Predictor(args.model, Settings(model_dir=args.model, threads=1)), crops)
        print(json.dumps({"cpu": this_cpu().name, "probabilities": [float(p) for p in probs]}))
        return 0
    result = measure(args.model, args.data)
    card_path = args.model / "card.json"
    card = json.loads(card_path.read_text())
    card["parity"] = result
    card.setdefault("commands", {})["parity"] = f"python -m detector.training.parity {args.model}"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "crops"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
