"""The layer-depth sweep: fine-tuning runs that differ only in how many top layers
are unfrozen, and where unfreezing more stopped paying."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import pandas as pd

from core.errors import ConfigError, TransferLabError
from core.train import registry
from core.train.plans import new_group_id
from core.train.strategies import StrategyConfig

SWEEP_KEY = "sweep"  # config key shared by the runs of one layer-depth sweep


DEFAULT_DEPTHS = (2, 5, 10, 20, 40)


def sweep_configs(base: StrategyConfig, depths: Iterable[int]) -> list[dict]:
    """Fine-tuning runs that differ only in how many top layers are unfrozen (a layer-depth sweep)."""
    depths = sorted({int(d) for d in depths})
    if not depths or depths[0] < 1:
        raise ConfigError("Layer depths must be whole numbers of at least 1.")
    sweep = new_group_id("sweep")
    out = []
    for depth in depths:
        cfg = registry.check(replace(base, strategy="fine_tune", fine_tune_layers=depth, fine_tune_from="",
                               name=f"unfreeze top {depth}"))
        out.append({**cfg.to_dict(), SWEEP_KEY: sweep})
    return out


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
