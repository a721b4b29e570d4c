"""Replace the shipped model only with one that is not worse on any source: the release gate.

    python -m detector.training.release CANDIDATE_DIR [--shipped models/unmask-lite0] [--install]

Why: a model that gains on the pooled score can still lose a source (the pooled AUC hides which
faces it now gets wrong), and one validation split is noisy. Both models score the validation
split as served (INT8, this CPU's exact path); per source, a bootstrap over the source's groups
(videos, identities; its crops where it has fewer than ``MIN_GROUPS``) gives the shipped model's
95 % interval, and half its width is the source's noise. The gate refuses when any source's AUC
falls by more than its noise. The shared clips are reported by
``evaluate``, never used to choose. With ``--install`` an accepted candidate is evaluated on the
test split (report, thresholds, calibration, parity) and copied over the shipped folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from ..classifier import Predictor
from ..config import REPO_ROOT, Settings
from .data import DEFAULT_CACHE, load_crops, read_manifest
from .metrics import auc

SHIPPED = REPO_ROOT / "models" / "unmask-lite0"
MIN_GROUPS = 10
ROUNDS = 400


def _source_masks(rows: list[dict]) -> dict[str, np.ndarray]:
    """Per source, the crops its AUC is computed on: its own two classes, or (one class only)
    its faces against every real face of the split."""
    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    out = {}
    for source in sorted(set(sources)):
        own = sources == source
        out[source] = own if len(set(labels[own])) == 2 else own | (labels == 0)
    return out


def bootstrap_noise(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, rounds: int = ROUNDS
) -> float:
    """Half the width of the 95 % interval of one model's AUC, resampling whole groups (crops,
    where there are too few groups): how far the score moves from sampling alone."""
    units = groups if len(set(groups)) >= MIN_GROUPS else np.arange(len(groups)).astype(str)
    keys, inverse = np.unique(units, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(keys))]
    rng = np.random.default_rng(0)
    values = []
    for _ in range(rounds):
        pick = np.concatenate([members[k] for k in rng.integers(len(keys), size=len(keys))])
        if len(set(labels[pick])) == 2:
            values.append(auc(labels[pick], scores[pick]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(high - low) / 2


def gate(candidate: Path, shipped: Path = SHIPPED, cache: Path = DEFAULT_CACHE, split: str = "val") -> dict:
    rows = [r for r in read_manifest(cache) if r["split"] == split]
    scores = {}
    for name, folder in (("shipped", shipped), ("candidate", candidate)):
        predictor = Predictor(folder, Settings(model_dir=folder))
        scores[name] = predictor.predict(load_crops(cache, rows, predictor.input_size)).astype(np.float64)
    labels = np.array([r["label"] for r in rows])
    groups = np.array([r["group"] for r in rows])
    table, refused = {}, []
    for source, mask in _source_masks(rows).items():
        if len(set(labels[mask])) < 2:  # real faces only, and no fakes to rank them against
            continue
        old, new = auc(labels[mask], scores["shipped"][mask]), auc(labels[mask], scores["candidate"][mask])
        noise = bootstrap_noise(labels[mask], scores["shipped"][mask], groups[mask])
        table[source] = {"shipped": round(old, 4), "candidate": round(new, 4), "noise": round(noise, 4)}
        if old - new > noise:
            refused.append(source)
    return {
        "split": split,
        "shipped": str(shipped),
        "candidate": str(candidate),
        "rule": "refused when a source's AUC falls by more than half the width of the shipped model's 95 % "
        "bootstrap interval on it (groups resampled)",
        "sources": table,
        "refused_for": refused,
        "accepted": not refused,
    }


def install(candidate: Path, shipped: Path, cache: Path) -> None:
    """Evaluate the accepted candidate as shipped models are, then put it in the shipped folder."""
    from . import evaluate as evaluate_mod
    from . import parity

    evaluate_mod.main(["--model", str(candidate), "--cache", str(cache), "--choose-thresholds"])
    parity.main([str(candidate)])
    for path in candidate.iterdir():
        if path.is_file():
            shutil.copy(path, shipped / path.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidate", type=Path, help="model folder (card.json + INT8 file)")
    ap.add_argument("--shipped", type=Path, default=SHIPPED)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--install", action="store_true", help="evaluate and copy an accepted candidate")
    args = ap.parse_args(argv)
    result = gate(args.candidate, args.shipped, args.cache)
    print(f"{'source':<12}{'shipped':>9}{'candidate':>11}{'noise':>9}")
    for source, row in result["sources"].items():
        mark = "  REFUSED" if source in result["refused_for"] else ""
        print(f"{source:<12}{row['shipped']:>9.4f}{row['candidate']:>11.4f}{row['noise']:>9.4f}{mark}")
    (args.candidate / "release_gate.json").write_text(json.dumps(result, indent=2) + "\n")
    if not result["accepted"]:
        print(f"refused: worse than {args.shipped} beyond the noise on {', '.join(result['refused_for'])}")
        return 1
    print(f"accepted against {args.shipped}")
    if args.install:
        install(args.candidate, args.shipped, args.cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
