"""Nearest neighbours of pooled features by cosine similarity: one chunked routine.

Every analysis that asks "which photos look alike" (the label-issue finder's
neighbour check, the k-NN vote of the separability measure) reads
``nearest_neighbours``. Memory is bounded by ``chunk`` rows of similarities.
"""

from __future__ import annotations

import numpy as np

from core.errors import TransferLabError

KNN_K = 5


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so dot products are cosine similarities."""
    X = np.asarray(X, np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def nearest_neighbours(X: np.ndarray, k: int = KNN_K, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, similarities)``, both ``(n, k)``: each row's ``k`` most cosine-similar other rows
    (itself excluded), most similar first. ``k`` shrinks to ``n - 1`` for tiny inputs."""
    Xn = l2_normalise(X).astype(np.float32)
    n = len(Xn)
    k = max(1, min(k, n - 1))
    indices = np.zeros((n, k), np.int64)
    sims = np.zeros((n, k), np.float32)
    for s in range(0, n, chunk):
        sim = Xn[s:s + chunk] @ Xn.T
        rows = np.arange(sim.shape[0])
        sim[rows, s + rows] = -np.inf
        nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        nn_sim = np.take_along_axis(sim, nn, axis=1)
        order = np.argsort(-nn_sim, axis=1, kind="stable")
        indices[s:s + chunk] = np.take_along_axis(nn, order, axis=1)
        sims[s:s + chunk] = np.take_along_axis(nn_sim, order, axis=1)
    return indices, sims


def knn_disagreement(X: np.ndarray, y: np.ndarray, k: int = KNN_K, chunk: int = 1024) -> np.ndarray:
    """For each photo, the share of its ``k`` nearest neighbours (cosine, itself excluded) with another label."""
    y = np.asarray(y)
    nn, _ = nearest_neighbours(X, k, chunk)
    return (y[nn] != y[:, None]).mean(axis=1)


def knn_loo_accuracy(X: np.ndarray, y: np.ndarray, k: int = KNN_K, chunk: int = 1024) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote (cosine similarity, the photo itself excluded)."""
    return float(knn_loo_correct(X, y, k, chunk).mean())


def knn_loo_correct(X: np.ndarray, y: np.ndarray, k: int = KNN_K, chunk: int = 1024) -> np.ndarray:
    """Per photo, whether the leave-one-out k-nearest-neighbour vote gets it right (what a paired
    test between two backbones compares).

    Ties are broken by the summed similarity of the tied classes' neighbours.
    """
    y = np.asarray(y, np.int64)
    n = len(y)
    if n < 2:
        raise TransferLabError("k-NN accuracy needs at least two photos.")
    nn, nn_sim = nearest_neighbours(X, k, chunk)
    rows = np.arange(n)[:, None]
    n_classes = int(y.max()) + 1
    votes = np.zeros((n, n_classes))
    weight = np.zeros((n, n_classes))
    np.add.at(votes, (rows, y[nn]), 1.0)
    np.add.at(weight, (rows, y[nn]), nn_sim.astype(np.float64))
    score = votes + 1e-6 * (weight - weight.min()) / (np.ptp(weight) + 1e-12)
    return score.argmax(axis=1) == y
