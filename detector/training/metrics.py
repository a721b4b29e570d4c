"""How a model's scores are judged: the area under the ROC curve, pooled and per source, and
how sure a difference is (bootstraps over groups)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePath

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


def source_masks(labels: np.ndarray, sources: np.ndarray) -> dict[str, np.ndarray]:
    """Per source, the crops its AUC is computed on: its own two classes, or (one class only)
    its faces against every real face of the split."""
    labels, sources = np.asarray(labels), np.asarray(sources)
    out = {}
    for source in sorted(set(sources.tolist())):
        own = sources == source
        out[source] = own if len(set(labels[own].tolist())) == 2 else own | (labels == 0)
    return out


def auc_by_source(rows: list[dict], scores: np.ndarray) -> tuple[float, dict[str, float]]:
    """Pooled AUC, and each source's (``source_masks``), rounded for the logs."""
    labels = np.array([r["label"] for r in rows])
    out = {}
    for source, mask in source_masks(labels, np.array([r["source"] for r in rows])).items():
        value = auc(labels[mask], scores[mask])
        if not np.isnan(value):
            out[source] = round(value, 4)
    return auc(labels, scores), out


ROUNDS = 400  # bootstrap draws behind every interval and noise figure here
MIN_GROUPS = 10  # fewer groups than this: resample clips or crops, a handful of groups is no interval


_FRAME_SUFFIX = re.compile(r"_f\d+$")  # political's interview frames: <clip>_f001900.jpg


def noise_units(rows: list[dict]) -> np.ndarray:
    """What each bootstrap resamples, per manifest row: its group where its source has at least
    ``MIN_GROUPS`` groups among ``rows``; otherwise the clip it was cut from (the frames of one
    interview, ``<clip>_fNNNN``, count once together) or else the file itself.

    Why: a source with a single validation group (political holds one person there) used to be
    resampled crop by crop, and its 202 real frames from two interviews counted as 202 independent
    faces, so its noise was far too narrow (run 11 was judged against it)."""
    by_source: dict[str, set[str]] = {}
    for r in rows:
        by_source.setdefault(r["source"], set()).add(r["group"])
    units = []
    for r in rows:
        if len(by_source[r["source"]]) >= MIN_GROUPS:
            units.append(f"{r['source']}:{r['group']}")
        else:
            clip = _FRAME_SUFFIX.sub("", PurePath(r["file"]).stem)
            units.append(f"{r['source']}:{r['group']}:{clip}")
    return np.array(units)


def group_resamples(groups: np.ndarray, rounds: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``rounds`` bootstrap draws of row indices, whole groups at a time (videos, identities:
    their crops are near copies, so resampling crops would understate the noise); crops where
    there are fewer than ``MIN_GROUPS`` groups."""
    groups = np.asarray(groups)
    units = groups if len(set(groups)) >= MIN_GROUPS else np.arange(len(groups)).astype(str)
    keys, inverse = np.unique(units, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(keys))]
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        yield np.concatenate([members[k] for k in rng.integers(len(keys), size=len(keys))])


def paired_gain(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray, groups: np.ndarray, rounds: int = ROUNDS
) -> dict[str, float]:
    """How much ``after`` beats ``before`` in AUC on the same crops, with the 95 % interval of
    that difference from resampling groups (both models on each draw, so what they share cancels).

    Why paired: two models scored on one validation sample are judged against each other, not
    against the sample; the interval of the difference is narrower than either model's own, and a
    gain is beyond the noise when the interval's low end is above zero (issue 20's stop rule).
    """
    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        raise ValueError("a gain in AUC needs real and fake crops; these crops hold one label")
    diffs = [
        auc(labels[pick], after[pick]) - auc(labels[pick], before[pick])
        for pick in group_resamples(groups, rounds)
        if len(set(labels[pick])) == 2
    ]
    low, high = np.percentile(diffs, [2.5, 97.5])
    gain = auc(labels, after) - auc(labels, before)
    return {"gain": round(gain, 4), "low": round(float(low), 4), "high": round(float(high), 4)}


def bootstrap_noise(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, rounds: int = ROUNDS
) -> float:
    """Half the width of the 95 % interval of one model's AUC, resampling whole groups (crops,
    where there are too few groups): how far the score moves from sampling alone."""
    values = [
        auc(labels[pick], scores[pick])
        for pick in group_resamples(groups, rounds)
        if len(set(labels[pick].tolist())) == 2
    ]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(high - low) / 2


def sources_fallen(
    labels: np.ndarray,
    sources: np.ndarray,
    groups: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    rounds: int = ROUNDS,
) -> dict[str, dict[str, float | bool]]:
    """Per source with both classes among its crops: AUC before and after, the noise of the
    before model's (``bootstrap_noise``), and whether after fell by more than it.

    Why per source: a pooled gain can hide a source the model now gets wrong (the sixth
    continuation of 2026-12-02 gained 0.007 pooled and lost the StyleGAN faces beyond their
    noise), so the release gate and training's keep rule judge every source the same way."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    table = {}
    for source, mask in source_masks(labels, sources).items():
        if len(set(labels[mask].tolist())) < 2:  # real faces only, and no fakes to rank them against
            continue
        old, new = auc(labels[mask], before[mask]), auc(labels[mask], after[mask])
        noise = bootstrap_noise(labels[mask], before[mask], groups[mask], rounds)
        table[source] = {
            "before": round(old, 4),
            "after": round(new, 4),
            "noise": round(noise, 4),
            "fallen": bool(old - new > noise),
        }
    return table


SHARED = " (shared)"  # how a source fallen as a shared video carries it is named, after the source


def fallen(table: dict[str, dict[str, float | bool]]) -> list[str]:
    """The sources ``sources_fallen`` found fallen, in its order (by name)."""
    return [source for source, row in table.items() if row["fallen"]]
