"""Calibrated fake probabilities: the model's logit rescaled so that 0.8 means 8 fakes in 10.

A network trained with label smoothing, distillation and pruning ranks faces well but its raw
``sigmoid(logit)`` is not a frequency: the shipped 0.3.0 said 0.57 about faces that were fake far
less (or more) often than that. Temperature scaling (Guo et al., 2017) divides the logit by one
number ``T`` fitted on held-out data; Platt scaling also adds a bias ``b``. Both keep the order of
the scores (the AUC is unchanged) and only make the probability honest:
``P(fake) = sigmoid(logit / T + b)``.

The card holds the fit (``"calibration": {"method", "temperature", "bias"}``); ``Predictor``
applies it to every logit it returns and to every cell of the class activation map, so serving,
the heatmaps and the verdict thresholds all speak the same probability. A card without the entry
serves the raw sigmoid, as before. ``detector.training.evaluate --choose-thresholds`` chooses it
on the validation split (``choose_calibration``: a scale is kept only if it predicts sources left
out of its fit better than none) and measures the expected calibration error on the test split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

METHODS = ("none", "temperature", "platt")


@dataclass(frozen=True)
class Calibration:
    """``sigmoid(logit / temperature + bias)``; the identity (``method="none"``) by default."""

    method: str = "none"
    temperature: float = 1.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r} (one of {', '.join(METHODS)})")
        if not np.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"calibration temperature must be a positive number, got {self.temperature}")

    @classmethod
    def from_card(cls, card: Any) -> Calibration:
        """The calibration a model card states (a ``ModelCard`` or its JSON dict); none if absent."""
        data = card.get("calibration") if isinstance(card, dict) else card.extra.get("calibration")
        if not data:
            return cls()
        return cls(str(data["method"]), float(data.get("temperature", 1.0)), float(data.get("bias", 0.0)))

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated logits (float32), the same shape: apply ``sigmoid`` to get P(fake)."""
        logits = np.asarray(logits, dtype=np.float32)
        if self.method == "none":
            return logits
        return (logits / np.float32(self.temperature) + np.float32(self.bias)).astype(np.float32)

    def raw_probability(self, probability: float) -> float:
        """The uncalibrated ``sigmoid(logit)`` at which the calibrated probability is
        ``probability``: how a threshold reads for a client that does not calibrate."""
        p = min(max(probability, 1e-7), 1 - 1e-7)
        z = (np.log(p) - np.log1p(-p) - self.bias) * self.temperature
        return float(1.0 / (1.0 + np.exp(-z)))

    def to_json(self) -> dict:
        return asdict(self)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log likelihood of labels ``y`` under ``sigmoid(z)``, computed stably."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, calibration: Calibration) -> float:
    z = calibration.apply(logits).astype(np.float64)
    return _nll(z, np.asarray(labels, dtype=np.float64))


def _fit(logits: np.ndarray, labels: np.ndarray, with_bias: bool, steps: int = 100) -> tuple[float, float]:
    """Logistic regression of ``labels`` on ``a * logit + b`` by Newton's method (the problem is
    convex in (a, b) and has two unknowns, so it converges in a handful of steps)."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    a, b = 1.0, 0.0
    loss = _nll(a * x + b, y)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        r, w = p - y, p * (1 - p)
        if with_bias:
            g = np.array([np.mean(r * x), np.mean(r)])
            h = np.array([[np.mean(w * x * x), np.mean(w * x)], [np.mean(w * x), np.mean(w)]])
            h += 1e-9 * np.eye(2)
            step = np.linalg.solve(h, g)
        else:
            step = np.array([np.mean(r * x) / (np.mean(w * x * x) + 1e-12), 0.0])
        scale = 1.0
        while scale > 1e-6:  # halve the step until the loss does not rise
            na, nb = a - scale * step[0], b - scale * step[1]
            new = _nll(na * x + nb, y)
            if new <= loss + 1e-15:
                break
            scale /= 2
        else:
            break
        a, b, done = na, nb, loss - new < 1e-12
        loss = new
        if done:
            break
    return a, b


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """One temperature ``T`` minimising the negative log likelihood of ``labels``."""
    a, _ = _fit(logits, labels, with_bias=False)
    if a <= 0:
        raise ValueError("the logits rank fakes below reals: no temperature can calibrate them")
    return Calibration("temperature", 1.0 / a, 0.0)


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """A temperature and a bias (Platt scaling) minimising the negative log likelihood."""
    a, b = _fit(logits, labels, with_bias=True)
    if a <= 0:
        raise ValueError("the logits rank fakes below reals: no temperature can calibrate them")
    return Calibration("platt", 1.0 / a, b)


def fit_calibration(logits: np.ndarray, labels: np.ndarray, min_gain: float = 1e-3) -> Calibration:
    """Temperature scaling, or Platt scaling when the bias lowers the validation negative log
    likelihood by more than ``min_gain`` nats per face: one parameter unless two clearly help.
    Logits that rank fakes below reals (an untrained network) get no calibration."""
    if len(np.unique(labels)) < 2:
        return Calibration()
    try:
        temperature = fit_temperature(logits, labels)
        platt = fit_platt(logits, labels)
    except ValueError:
        return Calibration()
    gain = negative_log_likelihood(logits, labels, temperature) - negative_log_likelihood(
        logits, labels, platt
    )
    return platt if gain > min_gain else temperature


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration chosen, every candidate fitted on all the data, and each candidate's
    negative log likelihood on sources it was not fitted on (leave one source out)."""

    calibration: Calibration
    candidates: dict[str, Calibration]
    held_out_nll: dict[str, float]

    def to_json(self) -> dict:
        return {
            "candidates": {k: v.to_json() for k, v in self.candidates.items()},
            "held_out_nll": {k: round(v, 4) for k, v in self.held_out_nll.items()},
        }


def _candidates(logits: np.ndarray, labels: np.ndarray) -> dict[str, Calibration]:
    out = {"none": Calibration()}
    if len(np.unique(labels)) == 2:
        for name, fit in (("temperature", fit_temperature), ("platt", fit_platt)):
            try:
                out[name] = fit(logits, labels)
            except ValueError:  # fakes ranked below reals: nothing to scale
                pass
    return out


def choose_calibration(
    logits: np.ndarray, labels: np.ndarray, sources: np.ndarray, min_gain: float = 1e-3
) -> CalibrationChoice:
    """No calibration, temperature or Platt scaling: whichever predicts best the sources it was
    not fitted on. Each source of the data is held out in turn, the candidates are fitted on the
    others and scored on it (negative log likelihood, summed over all faces), and a candidate with
    more parameters must beat a simpler one by ``min_gain`` nats per face.

    Why not simply the fit on all of it: the sources differ in how confident the model is about
    them (it over-trusts one, under-trusts another), and one scale fitted to their pooled mix can
    move scores away from the truth on sources it has not seen, which is what a user's file is.
    With one source only, the in-sample rule of ``fit_calibration`` decides."""
    logits, labels, sources = np.asarray(logits), np.asarray(labels), np.asarray(sources)
    candidates = _candidates(logits, labels)
    names = sorted(set(sources.tolist()))
    if len(names) < 2:
        chosen = fit_calibration(logits, labels, min_gain)
        return CalibrationChoice(chosen, candidates, {})
    totals = dict.fromkeys(candidates, 0.0)
    for name in names:
        held = sources == name
        fits = _candidates(logits[~held], labels[~held])
        for key in totals:
            calibration = fits.get(key, Calibration())
            totals[key] += negative_log_likelihood(logits[held], labels[held], calibration) * held.sum()
    nll = {k: v / len(labels) for k, v in totals.items()}
    best = "none"
    for key in ("temperature", "platt"):  # in order of parameters
        if key in nll and nll[key] < nll[best] - min_gain:
            best = key
    return CalibrationChoice(candidates[best], candidates, nll)


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram: faces whose predicted P(fake) fell in [low, high)."""

    low: float
    high: float
    n: int
    mean_probability: float | None
    fake_rate: float | None


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[ReliabilityBin]:
    """Equal-width bins of predicted probability, each with its mean prediction and true rate."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for i in range(bins):
        mask = index == i
        n = int(mask.sum())
        out.append(
            ReliabilityBin(
                float(edges[i]),
                float(edges[i + 1]),
                n,
                float(p[mask].mean()) if n else None,
                float(y[mask].mean()) if n else None,
            )
        )
    return out


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the gap between predicted probability and observed fake rate, averaged over
    equal-width bins weighted by how many faces fall in each (15 bins, as Guo et al.)."""
    table = reliability(probabilities, labels, bins)
    total = sum(b.n for b in table)
    if total == 0:
        return 0.0
    return float(sum(b.n * abs(b.mean_probability - b.fake_rate) for b in table if b.n) / total)
