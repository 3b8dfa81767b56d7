"""One run's history and results as the curves page draws them: smoothing, the best
epoch, the overfitting hint, the fine-tuning boundary, confusion and worst predictions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.runs.progress import as_number
from core.train.flips import FlipCheck

def smooth(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average.

    ``weight`` 0 returns the values; towards 1 it smooths more. NaNs stay NaN and are skipped.
    """
    x = np.asarray(values, dtype=float)
    if not 0.0 <= weight < 1.0:
        raise ValueError("smoothing weight must be in [0, 1)")
    if weight == 0.0:
        return x.copy()
    out = np.full_like(x, np.nan)
    last, n = 0.0, 0
    for i, v in enumerate(x):
        if not np.isfinite(v):
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out[i] = last / (1 - weight ** n)
    return out


def _epochs(history: pd.DataFrame) -> np.ndarray:
    if "epoch" in history:
        return pd.to_numeric(history["epoch"], errors="coerce").to_numpy(float)
    return np.arange(1, len(history) + 1, dtype=float)


def best_epoch(history: pd.DataFrame, metric: str = "val_accuracy") -> dict | None:
    """The best epoch by ``metric`` (highest accuracy, lowest loss); accuracy ties go to
    the lower validation loss, then the earlier epoch (as the run's best-weights rule)."""
    if history is None or history.empty or metric not in history:
        return None
    values = pd.to_numeric(history[metric], errors="coerce").to_numpy(float)
    if not np.isfinite(values).any():
        return None
    epochs = _epochs(history)
    maximise = "acc" in metric
    if maximise:
        loss = (pd.to_numeric(history["val_loss"], errors="coerce").to_numpy(float)
                if "val_loss" in history else np.zeros_like(values))
        loss = np.where(np.isfinite(loss), loss, np.inf)
        keys = [(-v if np.isfinite(v) else np.inf, l, i) for i, (v, l) in enumerate(zip(values, loss))]
    else:
        keys = [(v if np.isfinite(v) else np.inf, 0.0, i) for i, v in enumerate(values)]
    i = min(keys)[2]
    row = history.iloc[i]
    return {"index": int(i), "epoch": float(epochs[i]), "value": float(values[i]), "metric": metric,
            "phase": row.get("phase") if "phase" in history else None}


def overfit_hint(history: pd.DataFrame, patience: int = 3, tolerance: float = 0.02) -> dict | None:
    """Validation loss turned up while training loss kept falling: a hint of overfitting.

    Fires when the last ``patience`` or more epochs all come after the lowest
    validation loss, most of those epochs climbed, the validation loss has risen
    since by more than ``tolerance`` (relative: noise is not a trend) and the
    training loss has fallen since.
    """
    if history is None or len(history) < patience + 1 or not {"loss", "val_loss"} <= set(history):
        return None
    val = pd.to_numeric(history["val_loss"], errors="coerce").to_numpy(float)
    train = pd.to_numeric(history["loss"], errors="coerce").to_numpy(float)
    ok = np.isfinite(val) & np.isfinite(train)
    if ok.sum() < patience + 1:
        return None
    idx = np.flatnonzero(ok)
    v, t, e = val[idx], train[idx], _epochs(history)[idx]
    m = int(np.argmin(v))
    after = len(v) - 1 - m
    if after < patience:
        return None
    rise = v[-1] - v[m]
    if not (rise > tolerance * abs(v[m]) and rise > 0 and t[-1] < t[m]):
        return None
    # the epochs after the minimum must mostly climb, not wander around it
    climbs = int(np.sum(np.diff(v[m:]) > 0))
    if climbs < math.ceil(after / 2):
        return None
    return {
        "best_epoch": float(e[m]), "epochs_since": int(after), "val_loss_min": float(v[m]),
        "val_loss_last": float(v[-1]), "train_loss_then": float(t[m]), "train_loss_last": float(t[-1]),
        "message": (f"Possible overfitting: validation loss bottomed out at epoch {e[m]:g} "
                    f"({v[m]:.3f}) and has risen for {after} epochs since (now {v[-1]:.3f}) while "
                    f"training loss kept falling ({t[m]:.3f} → {t[-1]:.3f}). More data, more "
                    f"augmentation, dropout or early stopping would help; the run keeps its best epoch."),
    }


def fine_tune_boundary(history: pd.DataFrame | None, metrics: dict | None = None) -> float | None:
    """The first fine-tuning epoch (base unfrozen), from the metrics or the history's phase column."""
    if metrics and as_number(metrics.get("fine_tune_start_epoch")):
        return float(metrics["fine_tune_start_epoch"])
    if history is not None and not history.empty and "phase" in history:
        rows = history[history["phase"] == "fine_tune"]
        if not rows.empty:
            return float(_epochs(history)[history.index.get_loc(rows.index[0])])
    return None


def curves_frame(history: pd.DataFrame, weight: float = 0.0, label: str = "") -> pd.DataFrame:
    """Long form: run, epoch, phase, quantity (accuracy|loss), split (train|validation), value, smoothed."""
    cols = ["run", "epoch", "phase", "quantity", "split", "value", "smoothed"]
    if history is None or history.empty:
        return pd.DataFrame(columns=cols)
    epochs = _epochs(history)
    phase = history["phase"].astype(str).to_numpy() if "phase" in history else np.array([""] * len(history))
    parts = []
    for quantity in ("accuracy", "loss"):
        for split, col in (("train", quantity), ("validation", f"val_{quantity}")):
            if col not in history:
                continue
            values = pd.to_numeric(history[col], errors="coerce").to_numpy(float)
            parts.append(pd.DataFrame({"run": label, "epoch": epochs, "phase": phase, "quantity": quantity,
                                       "split": split, "value": values, "smoothed": smooth(values, weight)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def confusion_frame(metrics: dict) -> pd.DataFrame:
    """The confusion matrix with class names: rows true, columns predicted."""
    classes = list(metrics.get("classes") or [])
    cm = np.asarray(metrics.get("confusion_matrix") or [], dtype=int)
    if not classes or cm.shape != (len(classes), len(classes)):
        return pd.DataFrame()
    return pd.DataFrame(cm, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="predicted"))


def per_class_frame(metrics: dict) -> pd.DataFrame:
    rows = [{"class": name, **values} for name, values in (metrics.get("per_class") or {}).items()]
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])


def worst_predictions(predictions: pd.DataFrame | None, n: int = 12, wrong_only: bool = False) -> pd.DataFrame:
    """The validation images the model got most wrong: lowest probability of the true class first."""
    if predictions is not None and "p_true" in predictions and "true_confidence" not in predictions:
        predictions = predictions.rename(columns={"p_true": "true_confidence"})  # runs made before the rename
    if predictions is None or predictions.empty or "true_confidence" not in predictions:
        return pd.DataFrame(columns=["path", "true", "predicted", "confidence", "true_confidence", "correct"])
    frame = predictions
    if wrong_only and "correct" in frame:
        frame = frame[~frame["correct"].astype(bool)]
    return frame.sort_values(["true_confidence", "path"], ascending=[True, True]).head(n).reset_index(drop=True)


def augmentation_summary(metrics: dict) -> str:
    """One line: the augmentation a run trained with, after "auto" was measured ("" when none recorded)."""
    decision = (metrics or {}).get("augment_decision") or {}
    aug = decision.get("augment") or {}
    if not aug:
        return ""
    if not aug.get("enabled", True):
        return "off"
    fill = aug.get("fill", "")
    fill_text = f"{fill} ({aug.get('fill_value', 0):.0f})" if fill == "constant" else fill
    measured = " (measured on the data)" if decision.get("flips") or decision.get("border") else " (as chosen)"
    return (f"flip {(aug.get('flip') or 'none').replace('_', ' ')}, fill {fill_text}, rotation {aug.get('rotation')}, "
            f"zoom {aug.get('zoom')}, shift {aug.get('translation')}, contrast {aug.get('contrast')}{measured}")


def _allowed(check: dict) -> bool:
    """The stored verdict, or the rule's for runs stored before the decision kept it."""
    if "allowed" in check:
        return bool(check["allowed"])
    return FlipCheck(**check).allowed


def flip_checks_frame(metrics: dict) -> pd.DataFrame:
    """The flip measurements of a run, one row per direction: what the pixel probe read on
    originals and on flipped copies, and whether the flip was allowed."""
    checks = ((metrics or {}).get("augment_decision") or {}).get("flips") or []
    rows = [{"flip": c["direction"], "probe on originals": c["accuracy"],
             "probe on flipped copies": c["flipped_accuracy"], "copies told from originals": c["looks_flipped"],
             "verdict": "allowed" if _allowed(c) else "left out"}
            for c in checks]
    return pd.DataFrame(rows, columns=["flip", "probe on originals", "probe on flipped copies",
                                       "copies told from originals", "verdict"])
