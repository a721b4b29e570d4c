"""How much one set of weights beats another on validation, and whether that is beyond the noise.

    python -m detector.training.gain BEFORE.pt AFTER.pt [AFTER2.pt ...] [--cache DIR] [--val-max 1500]
        [--shared]

Why: issue 20's training stops when two consecutive continuations bring no validation gain
beyond the noise. ``make train`` now logs each continuation's gain with its interval (the run
log's ``gain``); this scores weights from anywhere (earlier continuations, taken from git
history) on the same validation sample the training scores itself on, each against the one
before it, so the whole curve can be read with its noise. Prints one JSON line per pair, with
the sources that fell beyond their noise (``metrics.sources_fallen``, the keep rule's judgement).
``--shared`` scores the validation crops as a shared 360p video carries them (``evaluate``'s
``shared_360p_crf35``): training's own validation judges the crops as they are only, and a run
that buys robustness to shared media at no cost there reads as no gain.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .data import DEFAULT_CACHE, CropSet, read_manifest, select, validation_sample
from .evaluate import as_shared
from .metrics import auc_by_source, fallen, noise_units, paired_gain, sources_fallen
from .model import load_checkpoint
from .train import predict


def score(
    weights: Path, rows: list[dict], cache: Path, degrade: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """The weights' fake probabilities for ``rows``, prepared as their own training prepared them
    (after ``degrade``, where given)."""
    model, ckpt = load_checkpoint(weights)
    crops = CropSet(
        cache,
        rows,
        False,
        ckpt.get("size") or 224,
        frame_mask=float(ckpt.get("args", {}).get("frame_mask", 0.0)),
        arch=ckpt["arch"],
        degrade=degrade,
    )
    return predict(
        model.to(memory_format=torch.channels_last), DataLoader(crops, batch_size=64, num_workers=1)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", help="two or more weight files, oldest first")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE))
    ap.add_argument("--val-max", type=int, default=1500, help="as train.py's --val-max")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--shared", action="store_true", help="score the crops as a shared 360p video carries them"
    )
    args = ap.parse_args(argv)
    if len(args.weights) < 2:
        ap.error("give at least two weight files")
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    rows = validation_sample(select(read_manifest(cache), "val", None, set()), args.val_max)
    labels = np.array([r["label"] for r in rows])
    if len(set(labels.tolist())) < 2:
        ap.error(f"the validation sample in {cache} holds one label: no AUC to compare")
    groups = noise_units(rows)
    degrade = as_shared if args.shared else None
    sources = np.array([r["source"] for r in rows])
    scores = [score(Path(w), rows, cache, degrade) for w in args.weights]
    for i in range(1, len(scores)):
        before, after = scores[i - 1], scores[i]
        pooled, per_source = auc_by_source(rows, after)
        line = {
            "before": args.weights[i - 1],
            "after": args.weights[i],
            "auc": round(pooled, 4),
            "shared": args.shared,
            **paired_gain(labels, before, after, groups),
            "per_source": per_source,
            "fallen": fallen(sources_fallen(labels, sources, groups, before, after)),
        }
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
