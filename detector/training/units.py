"""Why a source fell: served models' mean P(fake) per noise unit of one source, side by side.

    python -m detector.training.units SOURCE MODEL_DIR [MODEL_DIR ...] [--split val] [--cache DIR]

Why: the release gate says *that* a source's AUC fell, not *which* faces moved. A fall from the
fakes scoring lower and one from real faces scoring higher are different failures: the second
flags real people, the one a detector must not make. This prints, for each model folder (INT8 as
served, this CPU's exact path), the source's AUC and every noise unit's (``metrics.noise_units``:
a group, or a clip of a source with few groups) crop count, class and mean raw P(fake), and the
AUC of that unit's real faces against all of the source's fakes. One JSON line per model.

Each unit also gets its mean sharpness (``sharpness``: log variance of the Laplacian inside the
frame mask) and each class the correlation of score with it: interview frames are softer than
photos and generated faces, and a model that scores sharp faces as fake separates them by focus,
not forgery (the 2026-12-06 entry of docs/experiments.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from ..classifier import Predictor
from ..config import Settings
from .data import DEFAULT_CACHE, load_crops, read_manifest
from .metrics import auc, noise_units


def sharpness(crops: np.ndarray, margin: float = 0.15) -> np.ndarray:
    """Per crop, log(1 + variance of the Laplacian) of its grey image inside ``margin`` of each
    edge (the served crop's black frame and border would otherwise dominate it)."""
    out = []
    for crop in crops:
        h, w = crop.shape[:2]
        dy, dx = round(h * margin), round(w * margin)
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
        out.append(np.log1p(cv2.Laplacian(grey, cv2.CV_64F)[dy : h - dy, dx : w - dx].var()))
    return np.array(out)


def unit_scores(rows: list[dict], scores: np.ndarray, sharp: np.ndarray | None = None) -> dict:
    """The source's AUC and, per noise unit, its size, class, mean score and (for a unit of
    real faces) the AUC of those faces against every fake of ``rows``; with ``sharp`` (one value
    per row), each unit's mean sharpness and, per class, the correlation of score with it."""
    labels = np.array([r["label"] for r in rows])
    units = noise_units(rows)
    fakes = labels == 1
    table = {}
    for unit in sorted(set(units)):
        mask = units == unit
        label = int(labels[mask][0])
        row = {"n": int(mask.sum()), "label": label, "mean": round(float(scores[mask].mean()), 4)}
        if sharp is not None:
            row["sharpness"] = round(float(sharp[mask].mean()), 3)
        if label == 0 and fakes.any():
            both = mask | fakes
            row["auc_vs_fakes"] = round(auc(labels[both], scores[both]), 4)
        table[unit] = row
    out = {"auc": round(auc(labels, scores), 4), "units": table}
    if sharp is not None:
        out["sharpness_corr"] = {
            str(label): round(float(np.corrcoef(scores[labels == label], sharp[labels == label])[0, 1]), 3)
            for label in (0, 1)
            if (labels == label).sum() > 2
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("models", type=Path, nargs="+", help="served model folders (card.json + INT8 file)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args(argv)
    rows = [r for r in read_manifest(args.cache) if r["split"] == args.split and r["source"] == args.source]
    if not rows:
        ap.error(f"no {args.split} crops of {args.source} in {args.cache}")
    by_size: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the crops and their sharpness, read once
    for folder in args.models:
        predictor = Predictor(folder, Settings(model_dir=folder))
        if predictor.input_size not in by_size:
            crops = load_crops(args.cache, rows, predictor.input_size)
            by_size[predictor.input_size] = crops, sharpness(crops)
        crops, sharp = by_size[predictor.input_size]
        table = unit_scores(rows, predictor.predict(crops).astype(np.float64), sharp)
        print(json.dumps({"model": str(folder), "source": args.source, **table}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
