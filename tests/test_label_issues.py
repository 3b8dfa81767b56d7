"""Label issues (confident learning through cleanlab on out-of-fold probabilities) and outliers,
on generated features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.analysis import label_issues


def blobs(n_per_class=60, k=3, dim=16, seed=0, spread=0.35):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    X = np.concatenate([c + rng.normal(scale=spread * 3, size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(k), n_per_class)
    return X, y


def test_label_issues_rank_flipped_labels_first():
    X, y = blobs()
    noisy, flipped = label_issues.flip_labels(y, 4, seed=1)
    assert (noisy != y).sum() == 12 and set(np.flatnonzero(noisy != y)) == set(flipped)
    paths = [f"/p/{i}.png" for i in range(len(y))]
    issues = label_issues.label_issues(X, noisy, ["a", "b", "c"], paths)
    assert list(issues["rank"][:3]) == [1, 2, 3] and len(issues) == len(y)
    top = {int(Path(p).stem) for p in issues["path"][:12]}
    assert len(top & set(flipped)) >= 11
    first = issues.iloc[0]
    truth = "abc"[y[int(Path(first["path"]).stem)]]
    assert first["suggested"] == truth and first["label"] != truth and first["flagged"]
    # flagged first, then doubtful (the probe picks another class), then the rest; least likely label first
    tier = np.where(issues["flagged"], 0, np.where(issues["suggested"] != issues["label"], 1, 2))
    assert (np.diff(tier) >= 0).all()
    for t in range(3):
        assert (np.diff(issues["p_given"][tier == t]) >= 0).all()
    assert issues["flagged"].sum() <= 20  # clean photos are not flagged wholesale
    flagged = {int(Path(p).stem) for p in issues.loc[issues["flagged"], "path"]}
    assert len(flagged & set(flipped)) >= 10  # cleanlab's filter finds most of the flipped labels


def test_label_issues_are_cleanlabs_on_the_out_of_fold_probabilities():
    """The ranking is cleanlab's self-confidence score, the flags its find_label_issues."""
    from cleanlab.filter import find_label_issues

    X, y = blobs(seed=5)
    noisy, _ = label_issues.flip_labels(y, 5, seed=2)
    paths = [str(i) for i in range(len(y))]
    issues = label_issues.label_issues(X, noisy, ["a", "b", "c"], paths).set_index("path")
    probs = label_issues.out_of_fold_probabilities(X, noisy)
    assert np.allclose(issues.loc[paths, "p_given"], probs[np.arange(len(y)), noisy])
    assert (issues.loc[paths, "flagged"].to_numpy() == find_label_issues(noisy, probs)).all()


def test_label_issues_with_a_class_index_that_has_no_photos():
    X, y = blobs(k=3)
    keep = y != 1  # class "b" exists in the dataset but has no photo here
    noisy, flipped = label_issues.flip_labels(np.where(y[keep] == 2, 1, 0), 3, seed=0)
    labels = np.where(noisy == 1, 2, 0)
    issues = label_issues.label_issues(X[keep], labels, ["a", "b", "c"], [str(i) for i in range(keep.sum())])
    assert set(issues["suggested"]) <= {"a", "c"}
    assert len({int(p) for p in issues["path"][:6]} & set(flipped)) >= 5


def test_label_issues_on_clean_labels_flag_little():
    X, y = blobs(seed=3)
    issues = label_issues.label_issues(X, y, ["a", "b", "c"], [str(i) for i in range(len(y))])
    assert issues["flagged"].sum() <= 2
    assert issues["knn_disagree"].mean() < 0.05


def test_label_issues_need_two_classes():
    X, y = blobs(k=2)
    with pytest.raises(label_issues.LabelIssueError):
        label_issues.label_issues(X, np.zeros_like(y), ["a", "b"], [str(i) for i in range(len(y))])
    with pytest.raises(label_issues.LabelIssueError, match="two photos of every class"):
        label_issues.label_issues(X, np.r_[1, np.zeros(len(y) - 1, int)], ["a", "b"], [str(i) for i in range(len(y))])


def test_outliers_are_far_from_every_class_centre():
    X, y = blobs(k=2, dim=8, seed=4)
    rng = np.random.default_rng(0)
    odd = rng.normal(size=(3, 8)) * 0.01 + np.eye(8)[7] * -50  # far off in a direction no class has
    X2 = np.concatenate([X, odd])
    y2 = np.concatenate([y, [0, 1, 0]])
    paths = [str(i) for i in range(len(y2))]
    out = label_issues.outliers(X2, y2, ["a", "b"], paths)
    assert set(out["path"][:3]) == {str(len(y)), str(len(y) + 1), str(len(y) + 2)}
    assert (np.diff(out["distance"]) <= 0).all() and out["z_score"].iloc[0] > 2
    assert set(out.columns) >= {"label", "nearest_class", "distance", "distance_own"}
