"""How well a backbone's features separate a dataset's classes: one measure, measured not assumed.

``separability(X, y)`` returns, on pooled features (L2-normalised, so cosine):

- ``knn_loo_accuracy``: leave-one-out accuracy of a 5-nearest-neighbour vote;
- ``probe_cv_accuracy``: ``probe_folds``-fold cross-validated accuracy of a linear probe
  (logistic regression), the accuracy a head on cached features can expect;
- ``silhouette``: the silhouette score (-1..1; higher: tight, well-apart classes);
- ``chance``: the accuracy of always answering the largest class; ``images``.

The strategy advisor reads it on one backbone; ``separability_table`` compares
backbones beside the speed each runs at on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from core.features.neighbours import knn_loo_correct, l2_normalise
from core.data.dataset import Dataset, subset
from core.errors import Cancelled, TransferLabError
from core.features.dataset import StageProgress, dataset_features
from core import verdicts
from core.analysis import speed
from core.nets import engine
from core.features.probe import linear_probe
from core.nets.backbones import get_spec, list_backbones, weights_location

PROBE_FOLDS = 5
SILHOUETTE_MAX = 4000  # silhouette on a seeded sample above this many photos (it is quadratic)


class SeparabilityError(TransferLabError):
    """A separability figure that cannot be computed for this data."""


def probe_cv_accuracy(X: np.ndarray, y: np.ndarray, folds: int = PROBE_FOLDS, seed: int = 0) -> tuple[float, int]:
    """``(accuracy, folds)``: stratified k-fold accuracy of a logistic regression on L2-normalised
    features (pooled over the folds); the folds shrink to the smallest class's count (at least 2)."""
    correct, folds = probe_cv_correct(X, y, folds, seed)
    return float(correct.mean()), folds


def probe_cv_correct(X: np.ndarray, y: np.ndarray, folds: int = PROBE_FOLDS, seed: int = 0) -> tuple[np.ndarray, int]:
    """``(correct, folds)``: per photo, whether the cross-validated probe (trained on the folds
    without it) gets it right: what a paired test between two feature sets compares."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(y, np.int64)
    counts = np.bincount(y)
    present = counts[counts > 0]
    if len(present) < 2:
        raise SeparabilityError("Separability needs photos of at least two classes.")
    folds = int(max(2, min(folds, present.min())))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return cross_val_predict(linear_probe(), l2_normalise(X), y, cv=cv) == y, folds


def silhouette(X: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Silhouette score with cosine distance (-1..1; higher: tighter, better separated classes)."""
    from sklearn.metrics import silhouette_score

    y = np.asarray(y)
    labels = np.unique(y)
    if len(labels) < 2 or len(labels) >= len(y):
        return float("nan")
    Xn = l2_normalise(X)
    if not np.isfinite(Xn).all() or np.allclose(Xn, Xn[0]):
        return 0.0  # every photo looks the same to this backbone
    sample = SILHOUETTE_MAX if len(y) > SILHOUETTE_MAX else None
    return float(silhouette_score(Xn, y, metric="cosine", sample_size=sample, random_state=seed))


def separability(X: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = PROBE_FOLDS,
                 keep_correct: bool = False) -> dict[str, Any]:
    """The figures above for features ``X`` and class indices ``y``; ``keep_correct`` adds the per-photo
    correctness of the k-NN vote and of the probe (``knn_correct``, ``probe_correct``) for paired tests."""
    y = np.asarray(y, np.int64)
    counts = np.bincount(y)
    probe, used_folds = probe_cv_correct(X, y, folds, seed)
    knn = knn_loo_correct(X, y)
    return {
        **({"knn_correct": knn, "probe_correct": probe} if keep_correct else {}),
        "knn_loo_accuracy": float(knn.mean()),
        "probe_cv_accuracy": float(probe.mean()),
        "probe_folds": used_folds,
        "silhouette": silhouette(X, y, seed),
        "chance": float(counts.max() / counts.sum()),
        "images": int(len(y)),
    }


# ---------------------------------------------------------------- backbones compared

def default_entries() -> list[tuple[str, Any]]:
    """Every backbone whose ImageNet weights are on this machine, then the first one with
    random weights (the baseline that shows what the pretraining is worth)."""
    local = [s.name for s in list_backbones() if weights_location(s) is not None]
    entries: list[tuple[str, Any]] = [(name, "imagenet") for name in local]
    if local:
        entries.append((local[0], None))
    return entries


def _benchmark(name: str) -> float | None:
    """Images/s from the backbone speed benchmark (``core.analysis.speed``) when it was measured
    here, on the engine the app's forward passes use now."""
    try:
        result = speed.read(name)
    except TransferLabError:
        return None
    return float(result.rate(engine.choose().label)) if result else None


def weights_label(weights: Any) -> str:
    if weights is None:
        return "random"
    return "ImageNet" if weights == "imagenet" else Path(str(weights)).name


TABLE_COLUMNS = ["backbone", "weights", "knn_loo_accuracy", "knn_ci_low", "knn_ci_high", "probe_cv_accuracy",
                 "probe_ci_low", "probe_ci_high", "silhouette", "images_per_s", "images", "dims", "speed_from",
                 "chance", "probe_folds", "resolved", "best", "verdict", "name", "error"]


def separability_table(
    ds: Dataset,
    entries: Sequence[tuple[str, Any]] | None = None,
    *,
    per_class: int | None = None,
    split: str = "train",
    seed: int = 0,
    progress: StageProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> pd.DataFrame:
    """One row per (backbone, weights): how well its pooled features separate ``ds``'s classes.

    ``per_class``: measure on a seeded sample of at most that many photos a class of
    ``split`` (extraction through big backbones is slow on a CPU); None: the whole split.
    A backbone that cannot run (weights missing offline) gets its reason in ``error``.
    Ranked by the k-NN accuracy, then the silhouette.
    """

    entries = list(entries) if entries is not None else default_entries()
    if not entries:
        raise SeparabilityError("No backbone to measure: none has its weights on this machine.")
    sample = subset(ds, per_class, seed, splits=(split,)) if per_class else ds
    if not sample.split(split):
        raise SeparabilityError(f"The {split} split of '{ds.name}' has no photos.")
    rows = []
    for name, weights in entries:
        spec = get_spec(name)
        row: dict[str, Any] = {"backbone": spec.display_name, "name": name, "weights": weights_label(weights)}
        stage = f"{spec.display_name} ({weights_label(weights)})"
        try:
            feats = dataset_features(sample, spec, weights,
                                     (lambda s, p, stage=stage: progress(stage, p)) if progress else None,
                                     should_stop, splits=(split,))
            row.update(separability(feats.X, feats.y, seed, keep_correct=True))
            bench = _benchmark(name)
            row.update({"dims": int(feats.X.shape[1]), "error": "",
                        "images_per_s": bench if bench else feats.images_per_s,
                        "speed_from": "speed benchmark" if bench else
                        f"an earlier extraction ({feats.images} photos) these features were cached from"
                        if feats.speed_inherited else
                        f"this extraction ({feats.images} photos, warm-up included)" if feats.images else
                        "not measured: the features came from an older feature cache (see the Backbones page)"})
        except Cancelled:
            raise
        except TransferLabError as exc:
            row["error"] = str(exc)
        rows.append(row)
    _add_verdicts(rows)
    frame = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    frame = frame.sort_values(["knn_loo_accuracy", "silhouette"], ascending=False, na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def _add_verdicts(rows: list[dict]) -> None:
    """95% Wilson intervals of both accuracies, and the 5-NN accuracy of each backbone against the
    leader's on the same photos (McNemar exact, Holm over the pairs): ``resolved``, ``verdict`` and
    ``best`` (a resolved leader, or the fastest of those within noise of it)."""
    for row in rows:
        for figure, prefix in (("knn_correct", "knn"), ("probe_correct", "probe")):
            correct = row.pop(figure, None)
            if correct is not None:
                row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"] = verdicts.wilson(int(correct.sum()), len(correct))
                row[f"_{figure}"] = correct
    scored = [(i, r) for i, r in enumerate(rows) if r.get("_knn_correct") is not None]
    entries = [verdicts.Entry(f"{r['backbone']} · {r['weights']}", r["_knn_correct"], float(r["_knn_correct"].mean()),
                              len(r["_knn_correct"]), 1.0 / r["images_per_s"] if r.get("images_per_s") else float("nan"),
                              key=str(i)) for i, r in scored]
    for v in verdicts.compare_with_leader(entries, "photos"):
        row = rows[int(v.key)]
        row.update(resolved=v.resolved, best=v.best, verdict=v.text)
    for row in rows:
        row.pop("_knn_correct", None)
        row.pop("_probe_correct", None)


def table_verdict(table: pd.DataFrame, note: str) -> str:
    """The separability table in one paragraph: the backbone marked best and why (a resolved lead, or
    the fastest of those the photos cannot tell apart), then each comparison with the leader."""
    scored = table.dropna(subset=["knn_loo_accuracy"])
    if scored.empty:
        return ""
    best = scored[scored["best"].fillna(False).astype(bool)]
    b = (best if not best.empty else scored).iloc[0]
    several = len(scored) > 2
    lines = [f"Best separated by {b['backbone']} · {b['weights']}: {b['knn_loo_accuracy']:.1%} 5-NN accuracy "
             f"(95% CI {b['knn_ci_low']:.1%}–{b['knn_ci_high']:.1%}; chance {b['chance']:.0%}), on {note}."]
    lines += [str(v) for v in scored["verdict"] if isinstance(v, str) and v]
    if several:
        lines.append("Each backbone is compared with the leader on the same photos (McNemar exact test, "
                     "Holm-adjusted over the comparisons); speed breaks a tie (images/s).")
    return " ".join(lines)


def sample_note(ds: Dataset, per_class: int | None, split: str = "train") -> str:
    counts = ds.counts()[split]
    if per_class is None or all(n <= per_class for n in counts.values()):
        return f"all {sum(counts.values()):,} {split} photos"
    return f"a seeded sample of up to {per_class} {split} photos a class ({sum(min(n, per_class) for n in counts.values()):,} photos)"
