""""This photo is unlike the training data": a score from the features the run's head reads.

Why a feature distance and not energy or the maximum logit: a two-class run ends in one sigmoid,
so its energy and its maximum logit are its confidence again, and a network trained to be
confident is confident on a car shown to a flowers model. The features before the head (the
pooled backbone output) still say that the photo looks like nothing seen in training.

The score, on L2-normalised features (their direction, not their size, carries the content):
the squared distance from the subspace spanned by the training photos' top principal components
(what of the photo the training data never varied along), over its mean on training photos, plus
the squared Mahalanobis distance to the nearest class centre inside that subspace, over the
number of components. An ordinary training photo scores about 2. Measured on cats vs dogs with
EfficientNet-Lite0 features against digit and letter images, the sum separated them better than
either part (the in-subspace part alone ranks digits as *more* typical: their features collapse
towards the centre). The default threshold is the 99th percentile of the scores of (up to 500)
validation photos, so about 1 % of photos like them are flagged (on cats vs dogs, 5.8 % of the
validation photos the threshold was not set on were flagged at the 97.5th: a small sample's upper
tail is noisy, so the margin); each photo's score is also
shown as the share of validation photos that score lower.

Stored as ``ood.json``: the mean, the components, the class centres, the variances, the quantiles
(numbers only, checked when read back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COMPONENTS = 64
DEFAULT_QUANTILE = 0.99
QUANTILES = 201  # validation scores kept at 0, 0.5, ..., 100 %
MAX_FLOATS = 400_000  # components stored at most (about 8 MB of JSON); a larger record is refused


def normalise(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    f = f.reshape(len(f), -1)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


@dataclass
class FeatureDistance:
    """The fitted statistics and the validation-calibrated threshold."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (d, m)
    centres: np.ndarray  # (k, m)
    variances: np.ndarray  # (m,) within-class
    residual_scale: float  # mean squared residual of a training photo
    quantiles: np.ndarray  # (QUANTILES,) validation scores
    threshold: float
    train_images: int
    validation_images: int

    def scores(self, features: np.ndarray) -> np.ndarray:
        x = normalise(features) - self.mean
        z = x @ self.components
        residual = ((x - z @ self.components.T) ** 2).sum(axis=1) / self.residual_scale
        inside = (((z[:, None, :] - self.centres[None]) ** 2) / self.variances).sum(axis=-1).min(axis=1)
        return residual + inside / max(self.components.shape[1], 1)

    def unusual_share(self, scores: np.ndarray) -> np.ndarray:
        """The share of validation photos scoring lower (0..1): 0.99 = more unusual than 99 % of them."""
        levels = np.linspace(0.0, 1.0, len(self.quantiles))
        return np.interp(np.asarray(scores, np.float64), self.quantiles, levels, left=0.0, right=1.0)

    def flags(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        return np.asarray(scores) > (self.threshold if threshold is None else threshold)

    def to_dict(self) -> dict:
        return {"method": "feature_distance", "mean": self.mean.tolist(), "components": self.components.tolist(),
                "centres": self.centres.tolist(), "variances": self.variances.tolist(),
                "residual_scale": self.residual_scale, "quantiles": self.quantiles.tolist(),
                "threshold": self.threshold, "default_quantile": DEFAULT_QUANTILE,
                "train_images": self.train_images, "validation_images": self.validation_images}


def fit(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
        components: int = COMPONENTS) -> FeatureDistance:
    """Fit on training features (rows) and their labels; calibrate the threshold on validation features."""
    x = normalise(train_features)
    labels = np.asarray(train_labels, dtype=np.int64)
    if len(x) < 3:
        raise ValueError("at least 3 training photos are needed for the feature statistics")
    if x.shape[1] > MAX_FLOATS:
        raise ValueError(f"{x.shape[1]:,} features per photo are too many to keep statistics of")
    mean = x.mean(axis=0)
    centred = x - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    m = max(1, min(components, len(x) - 1, x.shape[1], MAX_FLOATS // x.shape[1]))
    basis = vt[:m].T
    z = centred @ basis
    classes = np.unique(labels)
    centres = np.stack([z[labels == c].mean(axis=0) for c in classes])
    within = z - centres[np.searchsorted(classes, labels)]
    variances = within.var(axis=0) + 1e-8
    residual = ((centred - z @ basis.T) ** 2).sum(axis=1).mean()
    stats = FeatureDistance(mean, basis, centres, variances, float(max(residual, 1e-12)), np.zeros(QUANTILES), 0.0,
                            int(len(x)), 0)
    val_scores = stats.scores(val_features) if len(val_features) else stats.scores(train_features)
    stats.quantiles = np.quantile(val_scores, np.linspace(0, 1, QUANTILES))
    stats.threshold = float(np.quantile(val_scores, DEFAULT_QUANTILE))
    stats.validation_images = int(len(val_features))
    return stats


def _array(value, shape_len: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != shape_len or not np.all(np.isfinite(arr)):
        raise ValueError("malformed array in the feature statistics")
    return arr


def from_dict(data) -> FeatureDistance:
    """A ``FeatureDistance`` from JSON read off disk, shapes and values checked (ValueError if not)."""
    if not isinstance(data, dict) or data.get("method") != "feature_distance":
        raise ValueError("not a feature-distance record")
    try:
        mean, comps = _array(data["mean"], 1), _array(data["components"], 2)
        centres, variances = _array(data["centres"], 2), _array(data["variances"], 1)
        quantiles = _array(data["quantiles"], 1)
        d, m = comps.shape
        if (comps.size > MAX_FLOATS or len(mean) != d or centres.shape[1] != m or len(variances) != m
                or len(centres) < 1 or np.any(variances <= 0) or len(quantiles) < 2 or np.any(np.diff(quantiles) < 0)):
            raise ValueError("inconsistent shapes in the feature statistics")
        numbers = [data["residual_scale"], data["threshold"], data["train_images"], data["validation_images"]]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
               for v in numbers) or data["residual_scale"] <= 0:
            raise ValueError("bad numbers in the feature statistics")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete feature statistics: {exc}") from exc
    return FeatureDistance(mean, comps, centres, variances, float(data["residual_scale"]), quantiles,
                           float(data["threshold"]), int(data["train_images"]), int(data["validation_images"]))
