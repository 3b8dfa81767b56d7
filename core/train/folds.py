"""Repeated splits for small data: one strategy trained once per split, reported as mean ± spread.

On a small validation set one split's accuracy is mostly noise: which photos happen to be held
out moves it by as much as the strategies differ. So a launch may repeat each strategy over k
splits of train + validation pooled: ``kfold`` (stratified k-fold: every photo is validated
exactly once) or ``repeated`` (k independent stratified splits at the config's validation
fraction). Each split is an ordinary run (same queue, same worker, same Ray dispatch) whose
config records ``folds`` (k), ``fold`` (its index), ``fold_seed`` and ``fold_scheme``; a fold
group id in the config (``FOLD_GROUP_KEY``) links the k runs of one launch. The comparison
aggregates them here.

Heads on cached features pay for features once: a fold's dataset keeps every photo's path, so
the feature cache (``core.features.cache``, rows reused per unchanged file) copies rows between
entries instead of running the network again.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from core.data.dataset import Dataset, stratified_split
from core.errors import ConfigError, DatasetError
from core.train.strategies import StrategyConfig

SCHEMES = {"kfold": "k-fold (each photo validated once)", "repeated": "repeated stratified splits"}
FOLD_GROUP_KEY = "fold_group"  # config key shared by the k runs of one repeated-splits launch
MAX_FOLDS = 20
DEFAULT_FOLDS = 5  # 20% of the photos validated per fold, the same share as the default single split

# The default rule: repeat over DEFAULT_FOLDS splits when the dataset's validation split holds fewer
# than SMALL_VALIDATION photos. A 95% interval of an accuracy p on n photos is about
# ±1.96·sqrt(p(1-p)/n); at p = 0.90 it is narrower than ±3 points only from n = 385. Below that one
# split cannot rank strategies a few points apart, and the choice of held-out photos moves the figure
# as much as the noise does; k folds validate every photo once (k-fold) and show that spread. The
# price is k fits, which on data this small is minutes for pixel strategies and next to nothing for
# heads on cached features (features are extracted once, whatever k).
SMALL_VALIDATION = 385
_GROUP_RE = re.compile(r"^folds-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")


def interval_half_width(n: int, p: float = 0.9) -> float:
    """Half the width of the normal-approximation 95% interval of an accuracy ``p`` on ``n`` photos."""
    return 1.96 * math.sqrt(p * (1 - p) / n) if n > 0 else float("inf")


def default_folds(ds: Dataset) -> int:
    """The rule above: ``DEFAULT_FOLDS`` for a validation split under ``SMALL_VALIDATION`` photos (fewer
    when the smallest class has fewer photos than folds), 1 (the dataset's own split) otherwise."""
    counts = ds.counts()
    n_val = sum(counts["validation"].values())
    if n_val >= SMALL_VALIDATION:
        return 1
    smallest = min((counts["train"][c] + counts["validation"][c] for c in ds.classes), default=0)
    k = min(DEFAULT_FOLDS, smallest)
    return k if k >= 2 else 1


def default_reason(ds: Dataset) -> str:
    """The rule in words, for the page's help and the CLI."""
    n_val = len(ds.split("validation"))
    k = default_folds(ds)
    width = interval_half_width(n_val)
    if k > 1:
        return (f"{n_val} validation photos: one split's 95% interval is about ±{width:.0%} at 90% accuracy, "
                f"so runs repeat over {k} splits by default (under {SMALL_VALIDATION} validation photos).")
    return (f"{n_val} validation photos: one split's 95% interval is about ±{width:.1%} at 90% accuracy; "
            f"one split is the default from {SMALL_VALIDATION} validation photos on.")


def check(folds: int, fold: int, scheme: str) -> list[str]:
    """The problems of a config's fold fields (``core.train.registry.check`` lists them)."""
    problems = []
    if folds and not 2 <= folds <= MAX_FOLDS:
        problems.append(f"repeated splits need 2 to {MAX_FOLDS} folds (0: the dataset's own split)")
    elif folds and not 0 <= fold < folds:
        problems.append(f"the fold index must be between 0 and {folds - 1}")
    if scheme not in SCHEMES:
        problems.append(f"the split scheme must be one of {', '.join(SCHEMES)}")
    return problems


def dataset_problem(ds: Dataset, folds: int, scheme: str = "kfold") -> str:
    """Why ``ds`` cannot be split into ``folds`` k-fold splits ("" when it can), said before runs are queued."""
    if folds < 2 or scheme != "kfold":
        return ""
    per_class = {c: 0 for c in ds.classes}
    for r in ds.records:
        per_class[r.label] = per_class.get(r.label, 0) + 1
    short = sorted(c for c, n in per_class.items() if n < folds)
    if not short:
        return ""
    return (f"{folds}-fold splits need at least {folds} photos of each class; {', '.join(short[:5])} "
            f"{'has' if len(short) == 1 else 'have'} fewer. Choose fewer folds.")


# ---------------------------------------------------------------- split generation

def kfold_assignment(items: Sequence[tuple[str, str]], k: int, seed: int) -> dict[str, int]:
    """``path -> fold`` for stratified k-fold: each class shuffled (seeded, independent of file order)
    and dealt round-robin, each class starting where the previous left off, so every fold gets
    ``n_c // k`` or one more photo of each class and the folds' sizes differ by at most one."""
    by_class: dict[str, list[str]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    out: dict[str, int] = {}
    start = 0
    for label in sorted(by_class):
        files = sorted(by_class[label])
        random.Random(f"{seed}:{label}:kfold").shuffle(files)
        for i, f in enumerate(files):
            out[f] = (start + i) % k
        start = (start + len(files)) % k
    return out


def fold_dataset(ds: Dataset, folds: int, fold: int, seed: int, scheme: str = "kfold",
                 val_fraction: float = 0.2) -> Dataset:
    """``ds`` with train and validation pooled and split again for fold ``fold`` of ``folds``.

    The fingerprint names the fold, so caches of different splits never mix; the records keep
    their paths, so the feature cache reuses each photo's row across folds.
    """
    problems = check(folds, fold, scheme)
    if problems or folds < 2:
        raise ConfigError("; ".join(problems) or "repeated splits need at least 2 folds")
    items = [(r.path, r.label) for r in ds.records]
    if scheme == "kfold":
        problem = dataset_problem(ds, folds, scheme)
        if problem:
            raise DatasetError(problem)
        assignment = kfold_assignment(items, folds, seed)
        split_of = {p: "validation" if f == fold else "train" for p, f in assignment.items()}
    else:
        from pathlib import Path

        made = stratified_split([(Path(p), label) for p, label in items], val_fraction, _repeat_seed(seed, fold))
        split_of = {str(p): s for p, s in made.items()}
    records = [replace(r, split=split_of[r.path]) for r in ds.records]
    tag = f"{scheme}{folds}-f{fold}-s{seed}" + (f"-v{val_fraction:g}" if scheme == "repeated" else "")
    return Dataset(ds.name, ds.root, ds.classes, records, ds.bad_files, f"{ds.fingerprint}-{tag}", "folds")


def _repeat_seed(seed: int, fold: int) -> int:
    """The seed of the ``fold``-th repeated split: distinct per fold, stable for one seed."""
    return int(seed) * 1009 + int(fold) + 1


# ---------------------------------------------------------------- configs

def new_group_id() -> str:
    """``folds-20261207-071500-3f2a``: the shape ``valid_group`` accepts (as ``core.train.plans`` names groups)."""
    import time

    return f"folds-{time.strftime('%Y%m%d-%H%M%S')}-{np.random.default_rng().integers(16**4):04x}"


def valid_group(value) -> str | None:
    """A fold group id read from a run's config, or None: ids are data and must look like ours."""
    return value if isinstance(value, str) and _GROUP_RE.fullmatch(value) else None


def fold_configs(configs: Iterable[dict], folds: int, *, scheme: str = "kfold", seed: int | None = None,
                 group: str | None = None, keep_models: bool = False) -> list[dict]:
    """Each config repeated once per fold, all under one fold group id; ``folds`` < 2: unchanged.

    ``seed``: the split seed (default: each config's own seed). The configs were checked when made
    (``core.train.registry.make_config``); the fold fields are checked here. ``keep_models``: each fold
    writes its model as a plain run does. Off by default, as in scikit-learn's ``cross_validate``: the
    folds measure the strategy (their predictions, histories and metrics are kept); the model to serve
    is a run on the whole training split. A model is a file of the network's size (15 MB for
    EfficientNet-Lite0) and a third of a cached fold's time.
    """

    configs = list(configs)
    if folds < 2:
        return configs
    problems = check(folds, 0, scheme)
    if problems:
        raise ConfigError("Repeated splits: " + "; ".join(problems) + ".")
    group = group or new_group_id()
    out = []
    for cfg in configs:
        extra = {k: v for k, v in cfg.items() if k not in {f for f in StrategyConfig.__dataclass_fields__}}
        for fold in range(folds):
            made = replace(StrategyConfig.from_dict(cfg), folds=folds, fold=fold, fold_scheme=scheme,
                           fold_seed=int(cfg.get("seed", 0) if seed is None else seed), keep_model=keep_models)
            entry = {**made.to_dict(), **extra, FOLD_GROUP_KEY: group}
            if cfg.get("name"):
                entry["name"] = f"{cfg['name']} · fold {fold + 1}/{folds}"
            out.append(entry)
    return out


def fold_label(config: dict) -> str | None:
    """``"2/5"`` for a fold run (1-based), None for a plain run or fold fields that do not add up."""
    folds, fold = config.get("folds"), config.get("fold")
    if not (isinstance(folds, int) and isinstance(fold, int) and 2 <= folds <= MAX_FOLDS and 0 <= fold < folds):
        return None
    return f"{fold + 1}/{folds}"


# ---------------------------------------------------------------- aggregation

@dataclass(frozen=True)
class Spread:
    """Mean and spread of one figure over folds: ``std`` is the sample standard deviation (ddof 1),
    ``low``/``high`` the smallest and largest fold; ``values`` the per-fold figures in fold order."""

    mean: float
    std: float
    low: float
    high: float
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)


def spread(values: Iterable[float]) -> Spread:
    vals = tuple(float(v) for v in values if v is not None and np.isfinite(v))
    if not vals:
        nan = float("nan")
        return Spread(nan, nan, nan, nan, ())
    arr = np.asarray(vals)
    return Spread(float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else float("nan"),
                  float(arr.min()), float(arr.max()), vals)


FOLD_COLUMNS = [FOLD_GROUP_KEY, "strategy", "Strategy", "backbone", "folds", "folds_done", "val_accuracy_mean",
                "val_accuracy_std", "val_accuracy_low", "val_accuracy_high", "per_fold", "balanced_accuracy_mean",
                "train_seconds_mean", "train_seconds_total", "val_images", "dataset", "scheme", "fold_seed",
                "run_ids"]


def fold_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per fold group and strategy (and backbone): how many folds finished, the accuracy's mean ± sample
    standard deviation, its range and the per-fold figures (in fold order), the mean fit time. ``table``
    is ``core.runs.compare.comparison_table`` (its ``fold_group``, ``fold``, ``folds`` columns)."""
    rows = []
    if table.empty or FOLD_GROUP_KEY not in table:
        return pd.DataFrame(columns=FOLD_COLUMNS)
    grouped = table[table[FOLD_GROUP_KEY].map(valid_group).notna() & table["fold"].notna()]
    for (group, strategy, backbone), runs in grouped.groupby([FOLD_GROUP_KEY, "strategy", "backbone"], sort=False):
        runs = runs.sort_values("fold")
        done = runs[(runs["state"] == "done") & runs["val_accuracy"].notna()]
        acc = spread(done["val_accuracy"])
        rows.append({
            FOLD_GROUP_KEY: group, "strategy": strategy, "Strategy": runs["Strategy"].iloc[0], "backbone": backbone,
            "folds": int(runs["folds"].max()), "folds_done": len(done),
            "val_accuracy_mean": acc.mean, "val_accuracy_std": acc.std, "val_accuracy_low": acc.low,
            "val_accuracy_high": acc.high, "per_fold": list(acc.values),
            "balanced_accuracy_mean": spread(done["balanced_accuracy"]).mean,
            "train_seconds_mean": spread(done["train_seconds"]).mean,
            "train_seconds_total": float(done["train_seconds"].sum()) if len(done) else float("nan"),
            "val_images": float(done["val_images"].sum()) if len(done) else float("nan"),
            "dataset": runs["dataset"].iloc[0], "scheme": runs["fold_scheme"].iloc[0],
            "fold_seed": runs["fold_seed"].iloc[0], "run_ids": list(runs["run_id"]),
        })
    out = pd.DataFrame(rows, columns=FOLD_COLUMNS)
    return out.sort_values("val_accuracy_mean", ascending=False, na_position="last").reset_index(drop=True)


def describe(row) -> str:
    """``"87.5% ± 3.1 points over 5 folds (82.0–91.0%)"`` for a ``fold_summary`` row."""
    if not row["folds_done"]:
        return f"0 of {row['folds']} folds done"
    text = f"{row['val_accuracy_mean']:.1%}"
    if row["folds_done"] > 1:
        text += (f" ± {row['val_accuracy_std'] * 100:.1f} points (sd) over {row['folds_done']} folds "
                 f"({row['val_accuracy_low']:.1%}–{row['val_accuracy_high']:.1%})")
    else:
        text += " on 1 fold"
    if row["folds_done"] < row["folds"]:
        text += f", {row['folds_done']} of {row['folds']} done"
    return text
