"""How a model's scores are judged: the area under the ROC curve, pooled and per source."""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties averaged)."""
    labels = np.asarray(labels)
    pos, neg = labels == 1, labels == 0
    if pos.sum() == 0 or neg.sum() == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * neg.sum()))


def auc_by_source(rows: list[dict], scores: np.ndarray) -> tuple[float, dict[str, float]]:
    """Pooled AUC, and each source's: its own two classes, or (a one-class source) its faces
    against every real face of the split, rounded for the logs."""
    labels = np.array([r["label"] for r in rows])
    sources = np.array([r["source"] for r in rows])
    out = {}
    for source in sorted(set(sources)):
        own = sources == source
        mask = own if len(set(labels[own])) == 2 else own | (labels == 0)
        value = auc(labels[mask], scores[mask])
        if not np.isnan(value):
            out[source] = round(value, 4)
    return auc(labels, scores), out
