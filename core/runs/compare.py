"""Comparing runs: the tables, curves and verdicts the strategy and curves pages draw.

Pure logic on run-store data (configs, statuses, histories, metrics,
predictions): no Streamlit, no TensorFlow. Everything here works on a plain
``pandas`` frame or a list of ``core.runs.store.Run``.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from core.errors import TransferLabError
from core.train.strategies import STRATEGIES, StrategyConfig, classic_recipe, modern_defaults

PRESETS = {
    "modern": "Modern defaults (Adam, pooled features, early stopping)",
    "classic": "Classic recipe (VGG16 at 150 px, RMSprop 2e-5, batch 20)",
}
PHASES = {
    "head": "Training the head",
    "train": "Training",
    "fine_tune": "Fine-tuning",
    "probe": "Fitting the linear probe",
    "scan": "Scanning the dataset",
    "load": "Loading the backbone",
    "evaluate": "Evaluating",
}
ACTIVE = ("queued", "running")
SWEEP_KEY = "sweep"  # config key shared by the runs of one layer-depth sweep
GROUP_KEY = "group"  # config key shared by the runs of one "compare all"
DEFAULT_DEPTHS = (2, 5, 10, 20, 40)


class ConfigError(TransferLabError):
    """An option a user typed that cannot make a run configuration."""


# ---------------------------------------------------------------- configs

def preset_config(strategy: str, preset: str = "modern", **overrides) -> StrategyConfig:
    """The defaults for ``strategy`` under a preset, with ``overrides`` applied.

    The classic preset is the textbook recipe (VGG16, 150 px, flattened
    features, Dense 256 + Dropout 0.5, RMSprop 2e-5, batch 20, 30 epochs),
    adapted per strategy as the textbook does: fine-tuning unfreezes VGG16's
    last convolution block at 1e-5; from scratch uses four conv blocks, a
    512-unit head and RMSprop 1e-4.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"Unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}.")
    if preset == "modern":
        return _checked(modern_defaults(strategy, **overrides))
    if preset != "classic":
        raise ConfigError(f"Unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.")
    per = {
        "fine_tune": dict(fine_tune_layers=4, fine_tune_epochs=10, fine_tune_lr=1e-5),
        "scratch": dict(learning_rate=1e-4, scratch_filters=(32, 64, 128, 128), head_units=512),
    }.get(strategy, {})
    return _checked(classic_recipe(**{"strategy": strategy, **per, **overrides}))


def _checked(cfg: StrategyConfig) -> StrategyConfig:
    problems = []
    if cfg.epochs < 1:
        problems.append("epochs must be at least 1")
    if cfg.batch_size < 1:
        problems.append("batch size must be at least 1")
    if not cfg.learning_rate > 0 or (cfg.strategy == "fine_tune" and not cfg.fine_tune_lr > 0):
        problems.append("learning rates must be positive")
    if not 0.0 < cfg.val_fraction < 1.0:
        problems.append("the validation fraction must be between 0 and 1")
    if not 0.0 <= cfg.dropout < 1.0:
        problems.append("dropout must be at least 0 and below 1")
    if cfg.input_size and cfg.input_size < 32:
        problems.append("the input size must be at least 32 px (or 0 for the backbone's default)")
    if cfg.strategy == "fine_tune" and cfg.fine_tune_layers < 1 and not cfg.fine_tune_from:
        problems.append("fine-tuning needs at least one layer to unfreeze")
    if cfg.strategy == "scratch" and not cfg.scratch_filters:
        problems.append("a network from scratch needs at least one convolution block")
    if problems:
        raise ConfigError(f"{STRATEGIES[cfg.strategy]}: " + "; ".join(problems) + ".")
    return cfg


def parse_ints(text: str, what: str = "numbers", minimum: int = 1) -> tuple[int, ...]:
    """``"8, 16 32"`` -> ``(8, 16, 32)``; a ``ConfigError`` saying what is wrong otherwise."""
    parts = [p for p in str(text).replace(",", " ").split() if p]
    if not parts:
        raise ConfigError(f"Enter at least one whole number for {what}.")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{what.capitalize()} must be whole numbers separated by commas, not '{text}'.") from None
    if any(v < minimum for v in values):
        raise ConfigError(f"{what.capitalize()} must each be at least {minimum}.")
    return values


def build_configs(strategies: Sequence[str], *, preset: str = "modern", common: dict | None = None,
                  per_strategy: dict[str, dict] | None = None) -> list[StrategyConfig]:
    """One config per strategy: the preset's defaults, then ``common`` options, then that
    strategy's own options. Raises ``ConfigError`` naming the problem."""
    if not strategies:
        raise ConfigError("Pick at least one strategy to train.")
    if not (common or {}).get("dataset"):
        raise ConfigError("Choose a dataset first (Dataset page).")
    out = []
    for strategy in strategies:
        overrides = {**(common or {}), **(per_strategy or {}).get(strategy, {})}
        try:
            out.append(preset_config(strategy, preset, **overrides))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{STRATEGIES.get(strategy, strategy)}: {err}") from None
    return out


def new_group_id(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{np.random.default_rng().integers(16**4):04x}"


def compare_all_configs(*, preset: str = "modern", common: dict | None = None,
                        per_strategy: dict[str, dict] | None = None) -> list[dict]:
    """Every strategy on the same data, split and seed, tagged with one group id.

    Returns config dicts ready for ``RunStore.create``.
    """
    group = new_group_id("compare")
    configs = build_configs(list(STRATEGIES), preset=preset, common=common, per_strategy=per_strategy)
    return [{**cfg.to_dict(), GROUP_KEY: group} for cfg in configs]


def sweep_configs(base: StrategyConfig, depths: Iterable[int]) -> list[dict]:
    """Fine-tuning runs that differ only in how many top layers are unfrozen (a layer-depth sweep)."""
    depths = sorted({int(d) for d in depths})
    if not depths or depths[0] < 1:
        raise ConfigError("Layer depths must be whole numbers of at least 1.")
    sweep = new_group_id("sweep")
    out = []
    for depth in depths:
        cfg = _checked(replace(base, strategy="fine_tune", fine_tune_layers=depth, fine_tune_from="",
                               name=f"unfreeze top {depth}"))
        out.append({**cfg.to_dict(), SWEEP_KEY: sweep})
    return out


def run_name(config: dict) -> str:
    """A readable default name for a new run."""
    label = STRATEGIES.get(config.get("strategy"), config.get("strategy", "run"))
    if config.get("name"):
        return str(config["name"])
    if config.get("strategy") == "scratch":
        return label
    return f"{label} · {config.get('backbone', '')}"


# ---------------------------------------------------------------- formatting

def format_seconds(seconds, short: bool = False) -> str:
    """``45 s``, ``3 min 05 s``, ``1 h 02 min`` (short: ``45 s``, ``3.1 min``, ``1.0 h``); ``?`` when unknown."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60 or (short and s < 120):
        return f"{s} s"
    if short:
        return f"{seconds / 60:.1f} min" if s < 3600 else f"{seconds / 3600:.1f} h"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def compact(n) -> str:
    """``1234567`` -> ``1.2M``, ``6001`` -> ``6.0k``, ``812`` -> ``812``; empty when unknown."""
    v = _num(n)
    if v is None:
        return ""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{suffix}"
    return f"{v:g}"


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def progress_summary(progress: dict, state: str = "running") -> tuple[float | None, str]:
    """(fraction done of the current phase or None, one line of text) for a job's progress."""
    if state == "queued":
        return None, "Waiting in the queue"
    if not progress:
        return None, "Starting (loading TensorFlow)…"
    phase = str(progress.get("phase") or "")
    parts: list[str] = []
    fraction = None
    rate, eta = _num(progress.get("images_per_s")), _num(progress.get("eta_s"))
    if phase.startswith("extract"):
        split = phase.split(" ", 1)[1] if " " in phase else ""
        parts.append(f"Extracting features ({split})" if split else "Extracting features")
        done, total = _num(progress.get("done")), _num(progress.get("total"))
        if done is not None and total:
            fraction = done / total
            parts.append(f"{int(done):,}/{int(total):,} images")
    elif "epoch" in progress:
        parts.append(PHASES.get(phase, phase or "Training"))
        epoch, epochs = _num(progress.get("epoch")), _num(progress.get("epochs"))
        batch, batches = _num(progress.get("batch")), _num(progress.get("batches"))
        parts.append(f"epoch {int(epoch)}/{int(epochs)}" if epoch and epochs else f"epoch {int(epoch or 0)}")
        if batch and batches:
            parts.append(f"batch {int(batch)}/{int(batches)}")
        if epoch and epochs:
            within = (batch / batches) if batch and batches else 1.0
            fraction = ((epoch - 1) + min(within, 1.0)) / epochs
    else:
        parts.append(str(progress.get("message") or PHASES.get(phase, phase) or "Working"))
        done, total = _num(progress.get("done")), _num(progress.get("total"))
        if done is not None and total:
            fraction = done / total
    if rate:
        parts.append(f"{rate:,.1f} images/s")
    if eta is not None and fraction is not None and fraction < 1:
        parts.append(f"ETA {format_seconds(eta)}")
    return (None if fraction is None else float(min(max(fraction, 0.0), 1.0))), " · ".join(parts)


# ---------------------------------------------------------------- the comparison table

COLUMNS = ["run_id", "name", "strategy", "Strategy", "backbone", "weights", "input_size", "state",
           "val_accuracy", "val_loss", "macro_f1", "train_seconds", "trainable_params", "total_params",
           "epochs_run", "images_per_s", "val_images", "fine_tune_layers", "unfrozen_layers", "seed",
           "val_fraction", "dataset", GROUP_KEY, SWEEP_KEY, "created", "reason"]


def run_row(run) -> dict:
    """One row of the comparison table for a ``core.runs.store.Run``."""
    cfg = run.config
    status = run.effective_status()
    m = (run.metrics() or {}) if status["state"] == "done" else {}
    strategy = cfg.get("strategy", "")
    wall = None
    if status.get("started") and status.get("finished"):
        wall = status["finished"] - status["started"]
    return {
        "run_id": run.id, "name": run.name if run.name != run.id else run_name(cfg),
        "strategy": strategy, "Strategy": STRATEGIES.get(strategy, strategy),
        "backbone": "scratch CNN" if strategy == "scratch" else cfg.get("backbone", ""),
        "weights": "none (random init)" if strategy == "scratch" else cfg.get("weights", ""),
        "input_size": m.get("input_size") or cfg.get("input_size") or None,
        "state": status["state"], "val_accuracy": m.get("val_accuracy"), "val_loss": m.get("val_loss"),
        "macro_f1": m.get("macro_f1"), "train_seconds": m.get("train_seconds", wall),
        "trainable_params": m.get("trainable_params"), "total_params": m.get("total_params"),
        "epochs_run": m.get("epochs_run"), "images_per_s": m.get("images_per_s"),
        "val_images": m.get("val_images"),
        "fine_tune_layers": cfg.get("fine_tune_layers") if strategy == "fine_tune" else None,
        "unfrozen_layers": m.get("unfrozen_layers"), "seed": cfg.get("seed"),
        "val_fraction": cfg.get("val_fraction"), "dataset": cfg.get("dataset", ""),
        GROUP_KEY: cfg.get(GROUP_KEY), SWEEP_KEY: cfg.get(SWEEP_KEY),
        "created": status.get("created"), "reason": status.get("reason"),
    }


def comparison_table(runs: Iterable) -> pd.DataFrame:
    """One row per run (newest first as given), numeric columns as floats."""
    rows = []
    for run in runs:
        try:
            rows.append(run_row(run))
        except TransferLabError:
            continue  # deleted while listing
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("input_size", "val_accuracy", "val_loss", "macro_f1", "train_seconds", "trainable_params", "total_params",
                "epochs_run", "images_per_s", "val_images", "fine_tune_layers", "unfrozen_layers"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table


def finished(table: pd.DataFrame) -> pd.DataFrame:
    """The runs that finished and were evaluated."""
    return table[(table["state"] == "done") & table["val_accuracy"].notna()]


def pareto_front(table: pd.DataFrame, x: str = "train_seconds", y: str = "val_accuracy") -> pd.Series:
    """True for the runs no other run beats on both: at least as fast and as accurate, one strictly."""
    xs, ys = table[x].to_numpy(float), table[y].to_numpy(float)
    on = []
    for i in range(len(table)):
        dominated = np.any((xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i])))
        on.append(bool(np.isfinite(xs[i]) and np.isfinite(ys[i]) and not dominated))
    return pd.Series(on, index=table.index, name="pareto")


def accuracy_vs_time(table: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with time and accuracy, and whether each is on the trade-off front."""
    done = finished(table).dropna(subset=["train_seconds"]).copy()
    done["pareto"] = pareto_front(done)
    return done.sort_values("train_seconds")


def best_by_strategy(table: pd.DataFrame) -> pd.DataFrame:
    """The most accurate finished run of each strategy, best first."""
    done = finished(table)
    if done.empty:
        return done
    idx = done.groupby("strategy")["val_accuracy"].idxmax()
    return done.loc[idx].sort_values(["val_accuracy", "train_seconds"], ascending=[False, True])


def advisor_verdict(table: pd.DataFrame, recommended: str) -> dict:
    """Did the measurement agree with the advisor? Compares the best run of the
    recommended strategy with the best run overall, allowing for the noise of a
    finite validation set (1.96 standard errors of the best accuracy)."""
    label = STRATEGIES.get(recommended, recommended)
    best = best_by_strategy(table)
    out = {"recommended": recommended, "best_strategy": None, "best_accuracy": None,
           "recommended_accuracy": None, "tolerance": None, "agreed": None}
    if best.empty:
        out["message"] = f"The advisor recommends {label}; no run has finished yet to check it against."
        return out
    top = best.iloc[0]
    out.update(best_strategy=top["strategy"], best_accuracy=float(top["val_accuracy"]))
    if recommended not in set(best["strategy"]):
        out["message"] = (f"The advisor recommends {label}, which has not been measured yet; "
                          f"the best so far is {top['Strategy']} at {top['val_accuracy']:.1%}.")
        return out
    rec = best[best["strategy"] == recommended].iloc[0]
    n = top["val_images"] if pd.notna(top["val_images"]) and top["val_images"] > 0 else None
    p = float(top["val_accuracy"])
    tol = 1.96 * math.sqrt(max(p * (1 - p), 0.25 / n) / n) if n else 0.0
    out.update(recommended_accuracy=float(rec["val_accuracy"]), tolerance=tol)
    gap = p - float(rec["val_accuracy"])
    if top["strategy"] == recommended:
        out["agreed"] = True
        out["message"] = f"Measurement agrees: {label} is the most accurate strategy measured ({p:.1%})."
    elif gap <= tol:
        out["agreed"] = True
        out["message"] = (f"Measurement agrees within noise: {label} reached {rec['val_accuracy']:.1%}, "
                          f"{gap:.1%} below {top['Strategy']} ({p:.1%}), less than the ±{tol:.1%} "
                          f"a validation set of {int(n)} images can resolve.")
    else:
        out["agreed"] = False
        out["message"] = (f"Measurement disagrees: {top['Strategy']} reached {p:.1%}, {gap:.1%} above the "
                          f"recommended {label} ({rec['val_accuracy']:.1%}), more than the ±{tol:.1%} noise "
                          f"of {int(n) if n else '?'} validation images.")
    return out


# ---------------------------------------------------------------- curves

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
    if metrics and _num(metrics.get("fine_tune_start_epoch")):
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


# ---------------------------------------------------------------- one finished run

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


# ---------------------------------------------------------------- layer-depth sweep

def default_depths(n_layers: int | None = None) -> tuple[int, ...]:
    """A doubling ladder of top-layer counts, capped at the base's layer count."""
    if not n_layers:
        return DEFAULT_DEPTHS
    ladder = [d for d in (2, 5, 10, 20, 40, 80, 160, 320) if d < n_layers]
    return tuple(ladder[-5:] + [n_layers]) if ladder else (n_layers,)


def _phase_best(history: pd.DataFrame, phase: str) -> float | None:
    if history is None or history.empty or "phase" not in history or "val_accuracy" not in history:
        return None
    values = pd.to_numeric(history.loc[history["phase"] == phase, "val_accuracy"], errors="coerce").dropna()
    return float(values.max()) if len(values) else None


def sweep_results(runs: Iterable) -> pd.DataFrame:
    """One row per finished fine-tuning run of a sweep: layers unfrozen, the best validation
    accuracy before (head only) and during fine-tuning, the final (restored best) accuracy."""
    rows = []
    for run in runs:
        cfg = run.config
        if cfg.get("strategy") != "fine_tune" or not cfg.get(SWEEP_KEY):
            continue
        try:
            status = run.effective_status()
        except TransferLabError:
            continue
        row = {SWEEP_KEY: cfg[SWEEP_KEY], "run_id": run.id, "state": status["state"],
               "fine_tune_layers": int(cfg.get("fine_tune_layers", 0)), "backbone": cfg.get("backbone"),
               "head_accuracy": None, "fine_tune_accuracy": None, "val_accuracy": None,
               "unfrozen_layers": None, "trainable_params": None, "train_seconds": None}
        if status["state"] == "done":
            history, m = run.history(), run.metrics() or {}
            row.update(head_accuracy=_phase_best(history, "head"), fine_tune_accuracy=_phase_best(history, "fine_tune"),
                       val_accuracy=m.get("val_accuracy"), unfrozen_layers=m.get("unfrozen_layers"),
                       trainable_params=m.get("trainable_params"), train_seconds=m.get("train_seconds"))
        rows.append(row)
    cols = [SWEEP_KEY, "run_id", "state", "fine_tune_layers", "backbone", "head_accuracy", "fine_tune_accuracy",
            "val_accuracy", "unfrozen_layers", "trainable_params", "train_seconds"]
    frame = pd.DataFrame(rows, columns=cols)
    for col in cols[5:]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame.sort_values([SWEEP_KEY, "fine_tune_layers"]).reset_index(drop=True)


def sweep_verdict(results: pd.DataFrame) -> str | None:
    """Where transfer stops paying: the depth after which unfreezing more did not help."""
    done = results.dropna(subset=["fine_tune_accuracy"]).sort_values("fine_tune_layers")
    if done.empty:
        return None
    head = done["head_accuracy"].max()
    best = done.loc[done["fine_tune_accuracy"].idxmax()]
    depth = int(best["fine_tune_layers"])
    text = (f"Best fine-tuning accuracy {best['fine_tune_accuracy']:.1%} with the top {depth} layers unfrozen"
            f" (head only: {head:.1%})." if pd.notna(head) else
            f"Best fine-tuning accuracy {best['fine_tune_accuracy']:.1%} with the top {depth} layers unfrozen.")
    deeper = done[done["fine_tune_layers"] > depth]
    if len(deeper):
        text += f" Unfreezing more ({', '.join(str(int(d)) for d in deeper['fine_tune_layers'])}) did not help."
    if pd.notna(head) and best["fine_tune_accuracy"] <= head:
        text += " Fine-tuning never beat the frozen features here: keep the base frozen."
    return text
