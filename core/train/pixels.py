"""The pixel baseline: logistic regression on downscaled, standardised raw pixels.

It costs seconds and needs no network, so it is the floor every other strategy
must beat: when ImageNet features do not beat raw pixels, transfer does not pay.
Images are decoded once at ``BASE`` px; the model then averages ``factor`` x
``factor`` blocks (16 or 8 px), standardises each pixel and applies the
linear map. The regression runs on the top principal components of the standardised
pixels (the chain stays one linear map). Resolution and regularisation are
chosen on a held-out part of the training split, then it is refitted on all of it.

It ends in a Keras model like every strategy: raw RGB 0..255 at ``BASE`` px in,
probabilities out, the downscaling and standardisation inside.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from core.data.images import load_rgb
from core.errors import BadImage
from core.train.strategies import output_spec

BASE = 32
FACTORS = (2, 4)  # 16 and 8 px: a linear model on more pixels only overfits slower
CS = (0.003, 0.03, 0.3)  # inverse L2 strength on standardised pixels
MIN_STD = 1.0  # a pixel constant over the training set is scaled as if it varied by one grey level
COMPONENTS = 200  # the regression runs on this many principal components: seconds, not minutes


def decode(paths: Sequence[str], size: int = BASE, workers: int = 4,
           progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 (n, size, size, 3), valid)`` through the one decoder every strategy uses."""
    out = np.zeros((len(paths), size, size, 3), np.uint8)
    valid = np.zeros(len(paths), bool)

    def one(i):
        try:
            out[i] = load_rgb(paths[i], (size, size))
            valid[i] = True
        except BadImage:
            pass

    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while it decodes
        for done, _ in enumerate(pool.map(one, range(len(paths))), 1):
            if progress and (done % 64 == 0 or done == len(paths)):
                progress(done, len(paths))
    return out, valid


def downscale(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Flattened ``factor`` x ``factor`` block means, as ``AveragePooling2D`` computes them."""
    n, h, w, c = pixels.shape
    x = pixels.astype(np.float32)
    if factor > 1:
        x = x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return x.reshape(n, -1)


@dataclass
class PixelBaseline:
    factor: int
    C: float
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray  # (k or 1, d) as scikit-learn gives it
    intercept: np.ndarray
    trials: list[dict] = field(default_factory=list)  # held-out accuracy of each (size, C) tried

    @property
    def size(self) -> int:
        return BASE // self.factor

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return (downscale(pixels, self.factor) - self.mean) / self.std

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(n, k) class probabilities, computed as the Keras model computes them."""
        z = self.features(pixels) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            p = 1 / (1 + np.exp(-z[:, 0]))
            return np.stack([1 - p, p], 1)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


def _logistic(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=500, tol=1e-3, random_state=seed)


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return X.mean(0), np.maximum(X.std(0), MIN_STD)


class _Linear:
    """Standardise, project on the top principal components, logistic regression; the
    whole chain is one linear map of the pixels (``weights``), which the Keras model holds."""

    def __init__(self, X: np.ndarray, y: np.ndarray, C: float, seed: int):
        from sklearn.decomposition import PCA

        self.mean, self.std = _standardise(X)
        Z = (X - self.mean) / self.std
        k = int(min(COMPONENTS, Z.shape[0] - 1, Z.shape[1]))
        self.pca = PCA(k, svd_solver="randomized", iterated_power=2, random_state=seed).fit(Z)
        self.clf = _logistic(C, seed).fit(self.pca.transform(Z), y)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(self.clf.score(self.pca.transform((X - self.mean) / self.std), y))

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(coef (k, d), intercept) on standardised pixels."""
        comps = self.pca.components_
        coef = self.clf.coef_ @ comps
        intercept = self.clf.intercept_ - (self.pca.mean_ @ comps.T) @ self.clf.coef_.T
        return coef, intercept


def fit(pixels: np.ndarray, y: np.ndarray, seed: int = 0, factors=FACTORS, cs=CS,
        holdout: float = 0.25) -> PixelBaseline:
    """Pick resolution and C on a stratified held-out quarter of ``pixels``, refit on all.

    BLAS runs on one thread: these matrices are small, and threads that spin-wait on a
    busy 2-core machine made the same fit 50x slower (54 s against 1 s, measured)."""
    import sklearn.decomposition  # noqa: F401  (loaded first: a limit covers only loaded libraries)
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _fit(pixels, y, seed, factors, cs, holdout)


def _fit(pixels, y, seed, factors, cs, holdout) -> PixelBaseline:
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    counts = np.bincount(y)
    trials = []
    if len(factors) * len(cs) > 1 and counts[counts > 0].min() >= 2:
        a, b = train_test_split(np.arange(len(y)), test_size=holdout, random_state=seed, stratify=y)
        for factor in factors:
            X = downscale(pixels, factor)
            for C in cs:
                trials.append({"size": BASE // factor, "factor": factor, "C": C,
                               "holdout_accuracy": _Linear(X[a], y[a], C, seed).score(X[b], y[b])})
        best = max(trials, key=lambda t: (round(t["holdout_accuracy"], 6), -t["factor"], -t["C"]))
        factor, C = best["factor"], best["C"]
    else:
        factor, C = factors[0], cs[0]
    lin = _Linear(downscale(pixels, factor), y, C, seed)
    coef, intercept = (w.astype(np.float32) for w in lin.weights())
    k = int(y.max()) + 1
    if coef.shape[0] not in (1, k):  # a class index absent from training: give it no mass
        full = np.full((k, coef.shape[1]), 0.0, np.float32)
        bias = np.full(k, -1e4, np.float32)
        full[lin.clf.classes_], bias[lin.clf.classes_] = coef, intercept
        coef, intercept = full, bias
    return PixelBaseline(factor, C, lin.mean.astype(np.float32), lin.std.astype(np.float32), coef, intercept,
                         trials)


def to_keras(pb: PixelBaseline, num_classes: int):
    """Pixels (``BASE`` px, 0..255) -> block means -> standardise -> linear -> probabilities."""
    import keras


    units, activation, _ = output_spec(num_classes)
    coef = pb.coef
    if units == 1 and coef.shape[0] == 2:  # two classes as softmax rows: their difference is the logit
        coef, intercept = coef[1:] - coef[:1], pb.intercept[1:] - pb.intercept[:1]
    else:
        intercept = pb.intercept
    inputs = keras.Input((BASE, BASE, 3), name="pixels")
    x = inputs
    if pb.factor > 1:
        x = keras.layers.AveragePooling2D(pb.factor, name="downscale")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Normalization(mean=pb.mean, variance=pb.std ** 2, name="standardise")(x)
    dense = keras.layers.Dense(units, activation=activation, name="head_output")
    outputs = dense(x)
    model = keras.Model(inputs, outputs, name="pixel_baseline")
    dense.set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])
    return model


def accuracy(pb: PixelBaseline, pixels: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pb.probabilities(pixels).argmax(1) == np.asarray(y))) if len(y) else float("nan")


def sample_accuracy(pixels: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 3) -> dict:
    """Cross-validated accuracy of the baseline (its own selection inside each fold): the
    advisor's estimate of what the pixel baseline will reach on the full dataset."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    counts = np.bincount(y)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    scores = []
    for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(pixels, y):
        scores.append(accuracy(fit(pixels[a], y[a], seed), pixels[b], y[b]))
    return {"pixel_accuracy": float(np.mean(scores)), "pixel_folds": folds}
