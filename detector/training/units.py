"""Why a source fell: served models' mean P(fake) per noise unit of one source, side by side.

    python -m detector.training.units SOURCE MODEL_DIR [MODEL_DIR ...] [--split val] [--cache DIR]

Why: the release gate says *that* a source's AUC fell, not *which* faces moved. A fall from the
fakes scoring lower and one from real faces scoring higher are different failures: the second
flags real people, the one a detector must not make. This prints, for each model folder (INT8 as
served, this CPU's exact path), the source's AUC and every noise unit's (``metrics.noise_units``:
a group, or a clip of a source with few groups) crop count, class and mean raw P(fake), and the
AUC of that unit's real faces against all of the source's fakes. One JSON line per model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..classifier import Predictor
from ..config import Settings
from .data import DEFAULT_CACHE, load_crops, read_manifest
from .metrics import auc, noise_units


def unit_scores(rows: list[dict], scores: np.ndarray) -> dict:
    """The source's AUC and, per noise unit, its size, class, mean score and (for a unit of
    real faces) the AUC of those faces against every fake of ``rows``."""
    labels = np.array([r["label"] for r in rows])
    units = noise_units(rows)
    fakes = labels == 1
    table = {}
    for unit in sorted(set(units)):
        mask = units == unit
        label = int(labels[mask][0])
        row = {"n": int(mask.sum()), "label": label, "mean": round(float(scores[mask].mean()), 4)}
        if label == 0 and fakes.any():
            both = mask | fakes
            row["auc_vs_fakes"] = round(auc(labels[both], scores[both]), 4)
        table[unit] = row
    return {"auc": round(auc(labels, scores), 4), "units": table}


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
    for folder in args.models:
        predictor = Predictor(folder, Settings(model_dir=folder))
        scores = predictor.predict(load_crops(args.cache, rows, predictor.input_size)).astype(np.float64)
        print(json.dumps({"model": str(folder), "source": args.source, **unit_scores(rows, scores)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
