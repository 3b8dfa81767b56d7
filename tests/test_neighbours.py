"""The one chunked nearest-neighbour routine and what is built on it."""

from __future__ import annotations

import numpy as np
import pytest

from core.features import neighbours
from core.errors import TransferLabError
from tests.test_label_issues import blobs


def test_nearest_neighbours_exclude_the_photo_and_match_brute_force():
    X, _ = blobs(n_per_class=25, k=3, dim=8)
    nn, sims = neighbours.nearest_neighbours(X, k=4, chunk=16)  # chunks smaller than the data
    Xn = neighbours.l2_normalise(X)
    full = Xn @ Xn.T
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :4]
    assert nn.shape == sims.shape == (75, 4)
    assert not (nn == np.arange(75)[:, None]).any()
    assert np.allclose(sims, np.take_along_axis(full, expected, axis=1), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-7).all()  # most similar first
    same, _ = neighbours.nearest_neighbours(X, k=4, chunk=1024)
    assert (same == nn).all()
    assert neighbours.nearest_neighbours(X[:3], k=5)[0].shape == (3, 2)  # k shrinks to n - 1


def test_knn_disagreement():
    X = np.array([[1, 0], [0.99, 0.1], [0.98, 0.15], [0, 1], [0.1, 0.99], [0.15, 0.98]], float)
    y = np.array([0, 0, 1, 1, 1, 1])
    d = neighbours.knn_disagreement(X, y, k=2)
    assert d[2] == 1.0 and d[4] == 0.0 and d[0] == 0.5


def test_knn_loo_accuracy():
    X, y = blobs(n_per_class=40, k=3, dim=16, spread=0.2)
    assert neighbours.knn_loo_accuracy(X, y) == 1.0
    shuffled = np.random.default_rng(0).permutation(y)
    acc = neighbours.knn_loo_accuracy(X, shuffled)
    assert acc < 0.6  # labels unrelated to the features: near chance (1/3)
    # leave-one-out really leaves the photo out: duplicates of one point with another label
    X2 = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    assert neighbours.knn_loo_accuracy(X2, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert neighbours.knn_loo_accuracy(X2, np.array([0, 1, 0, 1]), k=1) == 0.0
    # a chunk smaller than the data gives the same answer
    assert neighbours.knn_loo_accuracy(X, shuffled, chunk=7) == acc
    # a 2-2 tie among 4 neighbours goes to the class whose neighbours are closer
    X3 = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    assert neighbours.knn_loo_accuracy(X3, np.array([0, 0, 1, 1, 1]), k=4) == pytest.approx(0.4)  # 2 of 5 right
    with pytest.raises(TransferLabError, match="two photos"):
        neighbours.knn_loo_accuracy(X[:1], y[:1])


def test_l2_normalise_handles_zero_rows():
    Xn = neighbours.l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(Xn, [[0.6, 0.8], [0, 0]])
