""""Not sure": the classifier answers only when its calibrated top-1 probability reaches a threshold.

The accuracy/coverage trade-off is measured on the validation photos (calibrated probabilities):
for each threshold, the share of photos answered and the accuracy on them. The default threshold
is the lowest one whose answered photos make half the errors of answering everything (accuracy
1 - error / 2), so "not sure" is said as rarely as that allows; when no threshold reaches it (or
the run made no error) every photo is answered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CURVE_POINTS = 101


@dataclass
class Abstention:
    threshold: float
    target_accuracy: float
    coverage: float  # on validation, at the threshold
    accuracy_answered: float
    accuracy_all: float
    curve: list[dict] = field(default_factory=list)  # {"threshold", "coverage", "accuracy"} by rising threshold

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "target_accuracy": self.target_accuracy, "coverage": self.coverage,
                "accuracy_answered": self.accuracy_answered, "accuracy_all": self.accuracy_all, "curve": self.curve}

    def at(self, threshold: float) -> dict:
        """Coverage and accuracy on validation for a threshold the user picked (the nearest point not above it)."""
        points = [p for p in self.curve if p["threshold"] <= threshold + 1e-12]
        return points[-1] if points else {"threshold": threshold, "coverage": 1.0, "accuracy": self.accuracy_all}


def trade_off(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    """(coverage, accuracy on the answered photos) at ``threshold``; accuracy NaN when none is answered."""
    answered = np.asarray(confidence) >= threshold
    coverage = float(answered.mean()) if len(answered) else float("nan")
    accuracy = float(np.asarray(correct)[answered].mean()) if answered.any() else float("nan")
    return coverage, accuracy


def fit(probs: np.ndarray, labels: np.ndarray) -> Abstention:
    """The trade-off curve and the default threshold from calibrated validation probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == labels
    accuracy_all = float(correct.mean()) if len(labels) else float("nan")
    floor = 1.0 / p.shape[1]
    levels = np.unique(np.concatenate([[floor], np.quantile(confidence, np.linspace(0, 1, CURVE_POINTS))]))
    curve = []
    for t in levels:
        coverage, accuracy = trade_off(confidence, correct, t)
        curve.append({"threshold": float(t), "coverage": coverage, "accuracy": accuracy})
    target = 1.0 - (1.0 - accuracy_all) / 2 if len(labels) else 1.0
    threshold = floor
    if len(labels) and accuracy_all < 1.0:
        reaching = [c["threshold"] for c in curve if c["accuracy"] >= target and c["coverage"] > 0]
        threshold = float(min(reaching)) if reaching else floor
    coverage, accuracy = trade_off(confidence, correct, threshold)
    return Abstention(float(threshold), float(target), coverage, accuracy, accuracy_all, curve)


def _unit(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        raise ValueError(f"not a number in [0, 1]: {value!r}")
    return float(value)


def _unit_or_nan(value) -> float:
    return float("nan") if value is None or (isinstance(value, float) and math.isnan(value)) else _unit(value)


def from_dict(data) -> Abstention:
    """An ``Abstention`` from JSON read off disk, types and ranges checked (ValueError if not)."""
    if not isinstance(data, dict) or not isinstance(data.get("curve"), list) or len(data["curve"]) > 10 * CURVE_POINTS:
        raise ValueError("not an abstention record")
    try:
        curve = [{"threshold": _unit(c["threshold"]), "coverage": _unit(c["coverage"]),
                  "accuracy": _unit_or_nan(c["accuracy"])} for c in data["curve"]]
        return Abstention(_unit(data["threshold"]), _unit(data["target_accuracy"]), _unit(data["coverage"]),
                          _unit_or_nan(data["accuracy_answered"]), _unit_or_nan(data["accuracy_all"]), curve)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete abstention record: {exc}") from exc
