"""Calibrated confidence: one temperature fitted on a run's validation predictions, the expected
calibration error (ECE) before and after, and the reliability bins the curves page draws.

Temperature scaling divides the logits by one number T, so the ranking of classes (and the
accuracy) cannot change. A softmax's log-probabilities are its logits up to a constant per photo,
and a sigmoid's probability p gives the logit log(p / (1 - p)); both are recovered from the stored
probabilities, so a finished run needs no new forward pass. T is fitted by minimising the
validation log loss. The "after" ECE is measured honestly, cross-fitted: each half of the
validation photos is scaled by the T fitted on the other half. When that held-out ECE is not lower
than the raw one the run keeps T = 1 (method "none": the raw network was already as calibrated as
temperature scaling can make it), so a calibrated run never reports a worse ECE than its network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

EPS = 1e-7
BINS = 15  # ECE bins (equal width over the top-1 confidence)
T_RANGE = (0.05, 20.0)
FOLDS = 2


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """(n, k) probabilities -> log-probabilities: logits up to a per-row constant."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0)
    return np.log(p)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the same class order, confidence softened (T > 1) or sharpened (T < 1)."""
    z = log_probabilities(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], EPS, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in ``T_RANGE`` with the lowest log loss (golden-section search on log T: the loss is
    convex in 1/T, so one minimum)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    loss = lambda log_t: log_loss(apply_temperature(probs, math.exp(log_t)), labels)  # noqa: E731
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(math.exp((a + b) / 2))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per top-1 confidence bin (``bins`` of equal width over [0, 1]): photos, mean confidence and
    accuracy; empty bins are left out."""
    p = np.asarray(probs, dtype=np.float64)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = pred == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(mask.sum()),
                         "confidence": float(conf[mask].mean()), "accuracy": float(correct[mask].mean())})
    return rows


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Top-label ECE: the photo-weighted mean |accuracy - confidence| over the bins."""
    n = len(labels)
    if n == 0:
        return float("nan")
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in reliability_bins(probs, labels, bins)) / n)


def cross_fitted(probs: np.ndarray, labels: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Every photo scaled by the temperature fitted on the other folds: held-out calibrated probabilities."""
    labels = np.asarray(labels, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    out = np.asarray(probs, dtype=np.float64).copy()
    parts = [part for part in np.array_split(order, folds) if len(part)]
    if len(parts) < 2:
        return out
    for part in parts:
        rest = np.setdiff1d(order, part)
        out[part] = apply_temperature(probs[part], fit_temperature(probs[rest], labels[rest]))
    return out


@dataclass
class Calibration:
    """What a run stores in ``calibration.json`` (numbers and short fixed words only)."""

    method: str  # "temperature" or "none"
    temperature: float
    ece_before: float
    ece_after: float  # cross-fitted (held-out) when the method is "temperature"
    nll_before: float
    nll_after: float
    accuracy: float
    images: int
    bins_before: list[dict] = field(default_factory=list)
    bins_after: list[dict] = field(default_factory=list)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return apply_temperature(probs, self.temperature) if self.method == "temperature" else np.asarray(probs, np.float64)

    def to_dict(self) -> dict:
        return {"method": self.method, "temperature": self.temperature, "ece_before": self.ece_before,
                "ece_after": self.ece_after, "nll_before": self.nll_before, "nll_after": self.nll_after,
                "accuracy": self.accuracy, "images": self.images, "bins": BINS,
                "bins_before": self.bins_before, "bins_after": self.bins_after}


def calibrate(probs: np.ndarray, labels: np.ndarray, seed: int = 0) -> Calibration:
    """Fit the temperature on validation ``probs`` (n, k) against ``labels``; see the module doc."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    held_out = cross_fitted(probs, labels, seed=seed)
    before, after = expected_calibration_error(probs, labels), expected_calibration_error(held_out, labels)
    accuracy = float(np.mean(probs.argmax(1) == labels)) if len(labels) else float("nan")
    nll = log_loss(probs, labels) if len(labels) else float("nan")
    if not len(labels) or not after < before:
        return Calibration("none", 1.0, before, before, nll, nll, accuracy, int(len(labels)),
                           reliability_bins(probs, labels), reliability_bins(probs, labels))
    temperature = fit_temperature(probs, labels)
    return Calibration("temperature", temperature, before, after, nll, log_loss(held_out, labels), accuracy,
                       int(len(labels)), reliability_bins(probs, labels), reliability_bins(held_out, labels))


# ---------------------------------------------------------------- reading back

def _number(value, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise ValueError(f"not a number in [{low}, {high}]: {value!r}")
    return float(value)


def _bins(rows) -> list[dict]:
    if not isinstance(rows, list) or len(rows) > 1000:
        raise ValueError("bins must be a short list")
    return [{"low": _number(r["low"], 0, 1), "high": _number(r["high"], 0, 1), "count": int(_number(r["count"], 0)),
             "confidence": _number(r["confidence"], 0, 1), "accuracy": _number(r["accuracy"], 0, 1)} for r in rows]


def from_dict(data) -> Calibration:
    """A ``Calibration`` from JSON read off disk: every field type- and range-checked (ValueError if not)."""
    if not isinstance(data, dict) or data.get("method") not in ("temperature", "none"):
        raise ValueError("not a calibration record")
    try:
        return Calibration(
            data["method"], _number(data["temperature"], T_RANGE[0], T_RANGE[1]), _number(data["ece_before"], 0, 1),
            _number(data["ece_after"], 0, 1), _number(data["nll_before"], 0), _number(data["nll_after"], 0),
            _number(data["accuracy"], 0, 1), int(_number(data["images"], 0)),
            _bins(data.get("bins_before", [])), _bins(data.get("bins_after", [])),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete calibration record: {exc}") from exc
