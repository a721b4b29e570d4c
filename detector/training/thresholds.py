"""Choosing the verdict's two thresholds on validation scores, and measuring them on test scores.

The rule (issue 19): call a face **fake** only where at most ``max_rate`` (3 %) of the real faces
*of every source* score that high, and **real** only where at most 3 % of the fakes of every
source score that low; between the two the verdict is "uncertain". The worst source sets each
threshold, because a user's photos come from one camera, one collection, one generator at a
time: a pooled rate of 3 % can hide a source where a tenth of real people are accused. 3 % on
validation leaves room for test noise under the 5 % promised on the card. A source with one class
only speaks for the side it has. When the two thresholds cross (the fakes of every source
score above the reals of every source, bar 3 % of each: a gap rather than an overlap), the card
says so and both become their midpoint: every face is then decided, and both promises still
hold on validation.

Scores are calibrated fake probabilities; ``detector.results.face_verdict`` is the rule applied
(fake at or above ``fake``, real below ``real``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..results import Thresholds, face_verdict

MAX_RATE = 0.03
DIGITS = 4  # thresholds are stored rounded, always in the direction that keeps the promise


@dataclass(frozen=True)
class SourceLimit:
    """What one source allows: the lowest fake threshold its reals permit (``fake``) and the
    highest real threshold its fakes permit (``real``); None for the class it lacks."""

    source: str
    n_real: int
    n_fake: int
    fake: float | None
    real: float | None


@dataclass(frozen=True)
class ThresholdChoice:
    thresholds: Thresholds
    max_rate: float
    crossed: bool  # the rule's real threshold was above its fake one: both set to their midpoint
    fake_set_by: str | None  # the source whose reals set the fake threshold
    real_set_by: str | None  # the source whose fakes set the real threshold
    rule_fake: float  # the thresholds the rule gave before any midpoint
    rule_real: float
    per_source: list[SourceLimit] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            **self.thresholds.to_json(),
            "max_rate": self.max_rate,
            "crossed": self.crossed,
            "rule": {"real": self.rule_real, "fake": self.rule_fake},
            "fake_set_by": self.fake_set_by,
            "real_set_by": self.real_set_by,
            "per_source": {
                s.source: {"n_real": s.n_real, "n_fake": s.n_fake, "fake_from": s.fake, "real_below": s.real}
                for s in self.per_source
            },
        }


def _ceil(x: float) -> float:
    return min(1.0, math.ceil(x * 10**DIGITS - 1e-9) / 10**DIGITS)


def _floor(x: float) -> float:
    return max(0.0, math.floor(x * 10**DIGITS + 1e-9) / 10**DIGITS)


def lowest_fake_threshold(real_scores: np.ndarray, max_rate: float = MAX_RATE) -> float:
    """The smallest threshold t (at the stored precision) with at most ``max_rate`` of
    ``real_scores`` at or above t: just above the (k+1)-th highest score, k = floor(rate * n)."""
    s = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    k = math.floor(max_rate * len(s) + 1e-9)
    if k >= len(s):
        return 0.0
    t = _ceil(s[k])
    if t <= s[k]:  # the score sits exactly on the grid: the next step up leaves it below
        t = _ceil(s[k] + 10**-DIGITS)
    return t


def highest_real_threshold(fake_scores: np.ndarray, max_rate: float = MAX_RATE) -> float:
    """The largest threshold t (at the stored precision) with at most ``max_rate`` of
    ``fake_scores`` below t: the (k+1)-th lowest score, k = floor(rate * n), rounded down."""
    s = np.sort(np.asarray(fake_scores, dtype=np.float64))
    k = math.floor(max_rate * len(s) + 1e-9)
    if k >= len(s):
        return 1.0
    return _floor(s[k])


def choose_thresholds(
    scores: np.ndarray, labels: np.ndarray, sources: np.ndarray, max_rate: float = MAX_RATE
) -> ThresholdChoice:
    """Both thresholds by the rule above, from per-face ``scores`` (calibrated P(fake)),
    ``labels`` (1 fake, 0 real) and ``sources``."""
    scores, labels, sources = np.asarray(scores), np.asarray(labels), np.asarray(sources)
    limits = []
    for source in sorted(set(sources.tolist())):
        own = sources == source
        reals, fakes = scores[own & (labels == 0)], scores[own & (labels == 1)]
        limits.append(
            SourceLimit(
                source,
                len(reals),
                len(fakes),
                lowest_fake_threshold(reals, max_rate) if len(reals) else None,
                highest_real_threshold(fakes, max_rate) if len(fakes) else None,
            )
        )
    with_reals = [s for s in limits if s.fake is not None]
    with_fakes = [s for s in limits if s.real is not None]
    fake_by = max(with_reals, key=lambda s: s.fake, default=None)
    real_by = min(with_fakes, key=lambda s: s.real, default=None)
    fake = fake_by.fake if fake_by else 0.5
    real = real_by.real if real_by else 0.5
    crossed = real > fake
    if crossed:
        middle = round((real + fake) / 2, DIGITS)
        chosen = Thresholds(middle, middle)
    else:
        chosen = Thresholds(real, fake)
    return ThresholdChoice(
        chosen,
        max_rate,
        crossed,
        fake_by.source if fake_by else None,
        real_by.source if real_by else None,
        fake,
        real,
        limits,
    )


def error_rates(scores: np.ndarray, labels: np.ndarray, thresholds: Thresholds) -> dict:
    """What the verdict does to these faces: the share of reals called fake, of fakes called
    real, and of all faces left uncertain (its complement is the decided share), with counts."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    verdicts = np.array([face_verdict(float(p), thresholds) for p in scores], dtype=object)
    reals, fakes = labels == 0, labels == 1
    out: dict = {"n": len(scores), "n_real": int(reals.sum()), "n_fake": int(fakes.sum())}

    def share(mask: np.ndarray, of: np.ndarray) -> float | None:
        return round(float(mask[of].mean()), 4) if of.any() else None

    out["real_called_fake"] = share(verdicts == "fake", reals)
    out["fake_called_real"] = share(verdicts == "real", fakes)
    uncertain = verdicts == "uncertain"
    out["uncertain"] = share(uncertain, np.ones(len(scores), bool))
    out["decided"] = None if out["uncertain"] is None else round(1 - out["uncertain"], 4)
    decided = ~uncertain
    right = ((verdicts == "fake") & fakes) | ((verdicts == "real") & reals)
    out["accuracy_of_decided"] = share(right, decided)
    return out
