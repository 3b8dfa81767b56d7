"""Validation metrics and per-file predictions for a finished model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import verdicts
from core.data.dataset import Dataset
from core.data.pipeline import image_dataset


def to_probabilities(raw, num_classes: int) -> np.ndarray:
    """Model outputs as (n, k) class probabilities (a sigmoid column becomes two)."""
    raw = np.asarray(raw, dtype=np.float64)
    if num_classes == 2 and (raw.ndim == 1 or raw.shape[-1] == 1):
        p = raw.reshape(-1)
        return np.stack([1 - p, p], axis=1)
    return raw


def head_probabilities(head, X: np.ndarray, y: np.ndarray, paths: list[str], valid: np.ndarray, num_classes: int):
    """``(probs, labels, paths)`` of the validation inputs a trained head reads directly (cached
    features, activations at the fine-tuning cut; ``X`` and ``y`` hold the ``valid`` rows of
    ``paths``): a run's evaluation without another forward pass through the frozen network (in
    TensorFlow, ~5 s for 500 photos of EfficientNet-Lite0 on the 2-core machine), on the same
    engine outputs its validation epochs scored."""
    kept = [p for p, ok in zip(paths, valid) if ok]
    return to_probabilities(head_outputs(head, X), num_classes), y, kept


def head_outputs(head, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """``head`` on in-memory rows. A dense head on feature vectors is called directly: ``predict``
    traces a new model's function first (~0.1 s, more than the call), and every fold of a repeated
    split builds a new head. Activation maps (the fine-tuning cut's top) go through ``predict``."""
    X = np.asarray(X, dtype="float32")
    if X.ndim != 2:
        return np.asarray(head.predict(X, verbose=0))
    if not len(X):
        return np.zeros((0, *head.output_shape[1:]), np.float32)
    return np.concatenate([np.asarray(head(X[i:i + batch_size], training=False)) for i in range(0, len(X), batch_size)])


def predict_files(model, paths: list[str], size: int, num_classes: int, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for image files through a pixels-in model (the inference path)."""
    data = image_dataset(paths, None, size, batch_size).map(lambda x, _: x)
    return to_probabilities(model.predict(data, verbose=0), num_classes)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def _class_scores(cm: np.ndarray, i: int) -> dict:
    """Precision, recall and F1 of class ``i``; None where undefined, so a class with no
    validation photos (and none predicted) neither scores 0 nor drags the macro F1 down."""
    tp, support, predicted = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
    recall = tp / support if support else None
    precision = tp / predicted if predicted else (0.0 if support else None)
    if recall is None and precision is None:
        f1 = None
    elif not recall or not precision:  # missed every photo, or only false alarms
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def uncertainty(y: np.ndarray, pred: np.ndarray, k: int) -> dict:
    """The accuracy's 95% interval (Wilson), balanced accuracy with its 95% interval (bootstrap
    within classes) and the worst class's recall: accuracy alone flatters a model on uneven classes."""
    y, pred = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    low, high = verdicts.wilson(int(np.sum(pred == y)), len(y))
    b_low, b_high = verdicts.balanced_interval(y, pred, k)
    r = verdicts.recalls(y, pred, k)
    worst = int(np.nanargmin(r)) if np.isfinite(r).any() else None
    return {"val_accuracy_ci": [low, high], "balanced_accuracy": verdicts.balanced_accuracy(y, pred, k),
            "balanced_accuracy_ci": [b_low, b_high],
            "worst_class_recall": float(r[worst]) if worst is not None else float("nan"), "worst_class_index": worst,
            "interval_methods": {"val_accuracy": verdicts.METHODS["accuracy"],
                                 "balanced_accuracy": verdicts.METHODS["balanced_accuracy"]}}


def summarize(probs: np.ndarray, y: np.ndarray, classes: list[str], paths: list[str]) -> tuple[dict, pd.DataFrame]:
    """Accuracy, log loss, confusion matrix, per-class precision/recall/F1, one row per file."""
    k = len(classes)
    pred = probs.argmax(axis=1)
    cm = confusion(y, pred, k)
    eps = 1e-7
    per_class = {name: _class_scores(cm, i) for i, name in enumerate(classes)}
    scored = [c["f1"] for c in per_class.values() if c["f1"] is not None]
    metrics = {
        **uncertainty(y, pred, k),
        "val_accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        "val_loss": float(-np.mean(np.log(probs[np.arange(len(y)), y] + eps))) if len(y) else float("nan"),
        "macro_f1": float(np.mean(scored)) if scored else float("nan"),
        "confusion_matrix": cm.tolist(), "classes": classes, "per_class": per_class, "val_images": int(len(y)),
    }
    if metrics["worst_class_index"] is not None:
        metrics["worst_class"] = classes[metrics["worst_class_index"]]
    predictions = pd.DataFrame({
        "path": paths, "true": [classes[i] for i in y], "predicted": [classes[i] for i in pred],
        "confidence": probs[np.arange(len(y)), pred], "true_confidence": probs[np.arange(len(y)), y],
        "correct": pred == y,
    })
    # the only columns starting "p_" (a class may be named "true"), joined at once: one insert per class
    # fragments the frame on datasets of many classes
    per_class_p = pd.DataFrame({f"p_{name}": probs[:, i] for i, name in enumerate(classes)}, index=predictions.index)
    return metrics, pd.concat([predictions, per_class_p], axis=1)


def evaluate(model, ds: Dataset, size: int, batch_size: int = 32) -> tuple[dict, pd.DataFrame]:
    """Run the finished pixels-in model over the validation files and summarise."""
    paths = ds.paths("validation")
    probs = predict_files(model, paths, size, ds.num_classes, batch_size)
    return summarize(probs, ds.labels("validation"), ds.classes, paths)
