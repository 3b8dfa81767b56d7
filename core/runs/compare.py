"""Comparing runs: the comparison table, the accuracy/time trade-off, the advisor's check.

Pure logic on run-store data (configs, statuses, histories, metrics,
predictions): no Streamlit, no TensorFlow. Everything here works on a plain
``pandas`` frame or a list of ``core.runs.store.Run``.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from core import verdicts
from core.errors import TransferLabError
from core.runs.cluster import where
from core.runs.sweep import SWEEP_KEY
from core.train import folds, registry
from core.train.plans import GROUP_KEY, run_name

ACTIVE = ("queued", "running")


# ---------------------------------------------------------------- the comparison table

COLUMNS = ["run_id", "name", "strategy", "Strategy", "backbone", "weights", "input_size", "state",
           "val_accuracy", "val_ci_low", "val_ci_high", "balanced_accuracy", "worst_class_recall", "worst_class",
           "class_weights", "val_loss", "macro_f1", "train_seconds", "trainable_params", "total_params",
           "epochs_run", "images_per_s", "val_images", "fine_tune_layers", "unfrozen_layers", "seed",
           "val_fraction", "dataset", GROUP_KEY, SWEEP_KEY, "created", "reason", "started_by", "ran_on",
           folds.FOLD_GROUP_KEY, "fold", "folds", "fold_seed", "fold_scheme"]


def run_row(run) -> dict:
    """One row of the comparison table for a ``core.runs.store.Run``."""
    cfg = run.config
    status = run.effective_status()
    m = (run.metrics() or {}) if status["state"] == "done" else {}
    strategy = cfg.get("strategy", "")
    entry = registry.STRATEGIES.get(strategy)
    pretrained = registry.uses_backbone(strategy)
    wall = None
    if status.get("started") and status.get("finished"):
        wall = status["finished"] - status["started"]
    return {
        "run_id": run.id, "name": run.name if run.name != run.id else run_name(cfg),
        "strategy": strategy, "Strategy": registry.label(strategy),
        "backbone": cfg.get("backbone", "") if pretrained else entry.network,
        "weights": cfg.get("weights", "") if pretrained else "none (random init)",
        "input_size": m.get("input_size") or cfg.get("input_size") or None,
        "state": status["state"], "val_accuracy": m.get("val_accuracy"),
        **_interval(m), "balanced_accuracy": m.get("balanced_accuracy"),
        "worst_class_recall": m.get("worst_class_recall"), "worst_class": m.get("worst_class"),
        "class_weights": m.get("class_weights", cfg.get("class_weights")), "val_loss": m.get("val_loss"),
        "macro_f1": m.get("macro_f1"), "train_seconds": m.get("train_seconds", wall),
        "trainable_params": m.get("trainable_params"), "total_params": m.get("total_params"),
        "epochs_run": m.get("epochs_run"), "images_per_s": m.get("images_per_s"),
        "val_images": m.get("val_images"),
        "fine_tune_layers": cfg.get("fine_tune_layers") if entry and entry.reads("fine_tune_layers") else None,
        "unfrozen_layers": m.get("unfrozen_layers"), "seed": cfg.get("seed"),
        "val_fraction": cfg.get("val_fraction"), "dataset": cfg.get("dataset", ""),
        GROUP_KEY: cfg.get(GROUP_KEY), SWEEP_KEY: cfg.get(SWEEP_KEY),
        "created": status.get("created"), "reason": status.get("reason"),
        "started_by": cfg.get("started_by"),  # the signed-in user who launched it (None without sign-in)
        "ran_on": where(status),  # "Ray node IP (host, node id)" for a run dispatched to a Ray cluster, else the host
        **_fold_fields(cfg),
    }


def _fold_fields(cfg: dict) -> dict:
    """A fold run's group, index, k, split seed and scheme; all None for a plain run or for fold fields
    read from disk that are not what ``core.train.folds`` writes (a group id is data: validated)."""
    group = folds.valid_group(cfg.get(folds.FOLD_GROUP_KEY))
    seed, scheme = cfg.get("fold_seed"), cfg.get("fold_scheme")
    if group is None or folds.fold_label(cfg) is None or not isinstance(seed, int) or scheme not in folds.SCHEMES:
        return {folds.FOLD_GROUP_KEY: None, "fold": None, "folds": None, "fold_seed": None, "fold_scheme": None}
    return {folds.FOLD_GROUP_KEY: group, "fold": cfg["fold"], "folds": cfg["folds"], "fold_seed": seed,
            "fold_scheme": scheme}


def fold_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± spread per strategy of each repeated-splits launch in ``table`` (``core.train.folds``)."""
    return folds.fold_summary(table)


def _interval(m: dict) -> dict:
    """The accuracy's 95% Wilson interval: stored with the metrics, or from accuracy and images for
    runs evaluated before intervals were stored."""
    ci = m.get("val_accuracy_ci")
    if not ci and m.get("val_accuracy") is not None and m.get("val_images"):
        n = int(m["val_images"])
        ci = verdicts.wilson(int(round(float(m["val_accuracy"]) * n)), n)
    return {"val_ci_low": ci[0] if ci else None, "val_ci_high": ci[1] if ci else None}


def comparison_table(runs: Iterable) -> pd.DataFrame:
    """One row per run (newest first as given), numeric columns as floats."""
    rows = []
    for run in runs:
        try:
            rows.append(run_row(run))
        except TransferLabError:
            continue  # deleted while listing
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("input_size", "val_accuracy", "val_ci_low", "val_ci_high", "balanced_accuracy", "worst_class_recall",
                "val_loss", "macro_f1", "train_seconds", "trainable_params", "total_params",
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


def _correct(predictions: pd.DataFrame | None) -> pd.Series | None:
    """Per validation image (by path), whether the run got it right."""
    if predictions is None or predictions.empty or not {"path", "correct"} <= set(predictions.columns):
        return None
    correct = predictions["correct"].astype(str).str.lower().isin(("true", "1"))
    return pd.Series(correct.to_numpy(), index=predictions["path"].astype(str)).sort_index()


def paired_verdicts(table: pd.DataFrame, predictions) -> pd.DataFrame:
    """The finished runs of ``table`` with their 95% intervals and a verdict each: runs scored on the
    same validation images are compared with the most accurate of them (McNemar exact, Holm over the
    pairs, ``core.verdicts``), and ``best`` marks a resolved winner or the cheapest of those
    within noise. ``predictions(run_id)``: a run's per-image predictions (``Run.predictions``).
    ``group`` numbers the sets of validation images; runs on different images are never paired."""
    done = finished(table)
    groups: dict[tuple, list] = {}
    for _, row in done.iterrows():
        correct = _correct(predictions(row["run_id"]))
        key = tuple(correct.index) if correct is not None else ("unpaired", row["run_id"])
        groups.setdefault(key, []).append((row, correct))
    out = []
    for number, members in enumerate(groups.values(), start=1):
        entries = [verdicts.Entry(str(row["name"]), None if c is None else c.to_numpy(),
                                  float(row["val_accuracy"]) if c is None else float(c.mean()),
                                  int(row["val_images"]) if c is None and pd.notna(row["val_images"]) else
                                  int(len(c)) if c is not None else 0,
                                  float(row["train_seconds"]) if pd.notna(row["train_seconds"]) else float("nan"),
                                  key=str(row["run_id"])) for row, c in members]
        frame = verdicts.frame(verdicts.compare_with_leader(entries, "validation images"))
        out.append(frame.rename(columns={"key": "run_id"}).assign(group=number))
    columns = ["run_id", "name", "accuracy", "ci_low", "ci_high", "images", "lead_of_leader", "lead_low",
               "lead_high", "p_adjusted", "resolved", "best", "verdict", "group"]
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)


def verdict_lines(paired: pd.DataFrame) -> list[str]:
    """The verdicts in words, one group of validation images after another, leader first; the
    multiple-comparison method said once."""
    lines = [str(v) for v in paired["verdict"]]
    if (paired.groupby("group").size() > 2).any():
        lines.append("Each run is compared with the leader on the same validation images (McNemar exact test); "
                     "the p-values are Holm-adjusted over those comparisons, so 'resolved' keeps a 5% error rate "
                     "for the whole table.")
    return lines


def advisor_verdict(table: pd.DataFrame, recommended: str, predictions=None) -> dict:
    """Did the measurement agree with the advisor? Compares the best run of the
    recommended strategy with the best run overall: with ``predictions(run_id)`` and both
    scored on the same validation images, by McNemar's exact test on them; otherwise
    allowing for the noise of a finite validation set (1.96 standard errors of the best accuracy)."""
    label = registry.label(recommended)
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
    both = [_correct(predictions(rid)) for rid in (top["run_id"], rec["run_id"])] if predictions else [None, None]
    if top["strategy"] != recommended and all(c is not None for c in both) and both[0].index.equals(both[1].index):
        test = verdicts.paired(both[0].to_numpy(), both[1].to_numpy())
        out.update(agreed=not test.p < verdicts.ALPHA, tolerance=test.margin, paired=True)
        words = verdicts.verdict_text(
            verdicts.Verdict(top["Strategy"], p, 0, 0, test.n, 0, True, None, None, None),
            verdicts.Verdict(label, float(rec["val_accuracy"]), 0, 0, test.n, 1, False, test, test.p,
                             test.p < verdicts.ALPHA), "validation images")
        out["message"] = (f"Measurement agrees within noise: {words}" if out["agreed"] else
                          f"Measurement disagrees: {words}")
        return out
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






















# ---------------------------------------------------------------- layer-depth sweep







