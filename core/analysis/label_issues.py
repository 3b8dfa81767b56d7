"""Photos that look mislabelled, and photos unlike the rest (outliers), from pooled features.

Label issues are confident learning through ``cleanlab``: a linear probe gives
each photo out-of-fold (5-fold) class probabilities, ``cleanlab.filter.find_label_issues``
flags the photos whose given label the probe confidently contradicts, and
``cleanlab.rank.get_label_quality_scores`` (self-confidence: the out-of-fold
probability of the given label) ranks every photo, most suspect first.
Outliers are the photos farthest from every class centre.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.features.neighbours import KNN_K, knn_disagreement, l2_normalise
from core.errors import TransferLabError

FOLDS = 5
PROBE_C = 1.0


class LabelIssueError(TransferLabError):
    """The label check cannot run on this data (one class, a class with one photo, no photos)."""


def out_of_fold_probabilities(X: np.ndarray, y: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """``(n, k)`` predicted probabilities of each photo from a linear probe that never saw it (k-fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, np.int64)
    k = int(y.max()) + 1 if len(y) else 0
    counts = np.bincount(y, minlength=k)
    present = counts[counts > 0]
    if len(present) < 2:
        raise LabelIssueError("Finding label issues needs photos of at least two classes.")
    if present.min() < 2:
        raise LabelIssueError("Finding label issues needs at least two photos of every class.")
    folds = int(max(2, min(folds, present.min())))
    Xn = l2_normalise(X)
    probs = np.zeros((len(y), k))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(Xn, y):
        clf = LogisticRegression(C=PROBE_C, max_iter=5000).fit(Xn[train], y[train])
        probs[np.ix_(test, clf.classes_)] = clf.predict_proba(Xn[test])
    return probs


def _present_only(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels re-indexed over the classes that have photos, and their probability columns:
    cleanlab expects every class index ``0..k-1`` to occur."""
    present = np.flatnonzero(np.bincount(y, minlength=probs.shape[1]))
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = probs[:, present]
    return remap[y], sub / np.maximum(sub.sum(axis=1, keepdims=True), 1e-12)


def label_issues(X: np.ndarray, y: np.ndarray, classes: Sequence[str], paths: Sequence[str],
                 folds: int = FOLDS, seed: int = 0) -> pd.DataFrame:
    """Every photo ranked most suspect first: flagged, then doubtful (the probe picks another
    class), then the rest; within each, by how unlikely its label is.

    ``p_given``: cleanlab's self-confidence label-quality score, the out-of-fold
    probability of the given label. ``flagged``: ``cleanlab.filter.find_label_issues``
    (confident learning, pruned by the estimated noise rate) calls the label wrong.
    ``knn_disagree``: share of the 5 nearest neighbours with another label.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(y, np.int64)
    probs = out_of_fold_probabilities(X, y, folds, seed)
    labels, sub = _present_only(y, probs)
    p_given = get_label_quality_scores(labels, sub, method="self_confidence")
    flagged = find_label_issues(labels, sub, filter_by="prune_by_noise_rate", n_jobs=1)
    pred = probs.argmax(axis=1)
    frame = pd.DataFrame({
        "path": list(paths), "file": [Path(p).name for p in paths],
        "label": [classes[i] for i in y], "suggested": [classes[i] for i in pred],
        "p_given": p_given, "p_suggested": probs[np.arange(len(y)), pred],
        "knn_disagree": knn_disagreement(X, y, KNN_K), "flagged": np.asarray(flagged, bool),
    })
    # Flagged first, then those the probe puts in another class, then the rest: a page that says
    # "N look mislabelled, check them first" shows those N first.
    tier = np.where(frame["flagged"], 0, np.where(pred != y, 1, 2))
    frame = frame.assign(_tier=tier).sort_values(["_tier", "p_given", "knn_disagree"],
                                                 ascending=[True, True, False], kind="stable").drop(columns="_tier")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def outliers(X: np.ndarray, y: np.ndarray, classes: Sequence[str], paths: Sequence[str]) -> pd.DataFrame:
    """Every photo ranked by its cosine distance to the nearest class centre (farthest first).

    Photos far from every class are often broken, off-topic or odd duplicates.
    """
    y = np.asarray(y, np.int64)
    Xn = l2_normalise(X)
    present = [j for j in range(len(classes)) if (y == j).any()]
    if not present:
        raise LabelIssueError("No photos to look for outliers in.")
    centres = l2_normalise(np.stack([Xn[y == j].mean(axis=0) for j in present]))
    dist = 1.0 - Xn @ centres.T  # cosine distance to each class centre
    nearest = dist.argmin(axis=1)
    d_min = dist[np.arange(len(y)), nearest]
    own = np.array([dist[i, present.index(c)] for i, c in enumerate(y)])
    z = (d_min - d_min.mean()) / (d_min.std() or 1.0)
    frame = pd.DataFrame({
        "path": list(paths), "file": [Path(p).name for p in paths], "label": [classes[i] for i in y],
        "nearest_class": [classes[present[j]] for j in nearest], "distance": d_min, "distance_own": own,
        "z_score": z,
    })
    frame = frame.sort_values("distance", ascending=False, kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame.reset_index(drop=True)


def flip_labels(y: np.ndarray, n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A copy of two-or-more-class labels with ``n_per_class`` of each class moved to the next class.

    For testing the label-issue finder: returns ``(noisy labels, flipped indices)``.
    """
    y = np.asarray(y, np.int64)
    rng = np.random.default_rng(seed)
    k = int(y.max()) + 1
    noisy = y.copy()
    flipped = []
    for j in range(k):
        idx = rng.choice(np.flatnonzero(y == j), size=n_per_class, replace=False)
        noisy[idx] = (j + 1) % k
        flipped += list(idx)
    return noisy, np.sort(np.array(flipped))
