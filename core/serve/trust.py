"""How far to trust a run's answers, measured at the end of the run and kept in its folder.

``assess`` runs once a fit has finished, from what the run already has: its validation
probabilities (calibration: ``core.serve.calibration``; the "not sure" threshold:
``core.serve.abstain``) and the features its head reads on training and validation photos (the
"unlike the training data" statistics: ``core.serve.ood``). It writes ``calibration.json`` and
``ood.json``, numbers only. ``load`` reads them back as data, every field checked; a run made
before this step, or whose files do not pass the checks, is "not calibrated" (``None``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core import atomic
from core.serve import abstain, calibration, ood

CALIBRATION_FILE = "calibration.json"
OOD_FILE = "ood.json"
MAX_TRAIN_PHOTOS = 500  # a seeded sample of the training photos fits the feature statistics
MAX_VALIDATION_PHOTOS = 500  # and of the validation photos sets the threshold (a forward pass each)
NOT_CALIBRATED = "not calibrated (a run made before calibration was measured, or its record is unreadable)"

log = logging.getLogger(__name__)


@dataclass
class RunTrust:
    calibration: calibration.Calibration
    abstention: abstain.Abstention
    ood: ood.FeatureDistance | None  # None when the features could not be read (the rest still holds)


def validation_probabilities(predictions: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(probs (n, k), labels) from a run's predictions frame (its ``p_<class>`` and ``true`` columns)."""
    columns = [f"p_{c}" for c in classes]
    missing = [c for c in columns if c not in predictions.columns]
    if missing or "true" not in predictions.columns:
        raise ValueError(f"the predictions lack the columns {missing or ['true']}")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([index[str(t)] for t in predictions["true"]], dtype=np.int64)
    return predictions[columns].to_numpy(dtype=np.float64), labels


def sample(paths: Sequence[str], labels: Sequence[int], n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """At most ``n`` of the photos, drawn with a seed (the same sample for the same run)."""
    order = np.random.default_rng(seed).permutation(len(paths))[:n]
    order.sort()
    return [paths[i] for i in order], np.asarray(labels, dtype=np.int64)[order]


FeaturesFn = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]  # paths -> (features of ok rows, ok mask)


def assess(run_dir: Path, predictions: pd.DataFrame, classes: Sequence[str], train_paths: Sequence[str],
           train_labels: Sequence[int], features_of: FeaturesFn | None, seed: int = 0) -> RunTrust:
    """Fit and store the calibration, the abstention threshold and (with ``features_of``) the
    feature statistics of a finished run."""
    probs, labels = validation_probabilities(predictions, classes)
    cal = calibration.calibrate(probs, labels, seed=seed)
    abst = abstain.fit(cal.apply(probs), labels)
    atomic.write_json(Path(run_dir) / CALIBRATION_FILE, {**cal.to_dict(), "abstain": abst.to_dict()})
    stats = None
    if features_of is not None and len(train_paths) >= 3:
        tpaths, tlabels = sample(list(train_paths), train_labels, MAX_TRAIN_PHOTOS, seed)
        vpaths, _ = sample([str(p) for p in predictions["path"]], np.zeros(len(predictions)), MAX_VALIDATION_PHOTOS,
                           seed)
        try:
            tfeats, tok = features_of(tpaths)
            stats = ood.fit(tfeats, tlabels[tok], features_of(vpaths)[0])
        except ValueError as exc:  # a model whose head's input cannot be told, too many features: calibration stands
            log.warning("%s: no unlike-data statistics: %s", run_dir, exc)
        else:
            atomic.write_json(Path(run_dir) / OOD_FILE, stats.to_dict())
    return RunTrust(cal, abst, stats)


def load(run_dir: Path) -> RunTrust | None:
    """The run's stored trust records, or None (not calibrated); a damaged ``ood.json`` only loses the flag."""
    data = atomic.read_json(Path(run_dir) / CALIBRATION_FILE)
    if data is None:
        return None
    try:
        cal = calibration.from_dict(data)
        abst = abstain.from_dict(data.get("abstain"))
    except ValueError as exc:
        log.warning("%s: calibration record ignored: %s", run_dir, exc)
        return None
    stats = None
    raw = atomic.read_json(Path(run_dir) / OOD_FILE)
    if raw is not None:
        try:
            stats = ood.from_dict(raw)
        except ValueError as exc:
            log.warning("%s: feature statistics ignored: %s", run_dir, exc)
    return RunTrust(cal, abst, stats)
