"""``python -m benchmarks.folds [--per-class 20] [--folds 5] [--backbone NAME] [--strategies ...]``: what
repeating a strategy over k splits costs on a small set, and what the folds say (``core.train.folds``).

On a seeded subset of the dataset (``--per-class`` photos a class in each of its splits: 20 gives 40 a
class, 80 photos of cats_vs_dogs), in a fresh data directory and one process (the backbone traced first,
so no item pays for that):

1. heads on cached features (linear probe, feature extraction): one fold through ``core.train.fit.fit``
   with an empty feature cache (the network runs on every photo), then all k folds with the features
   cached (each fold's cache entries copy the photos' rows; ``core.features.cache``), and one fold again
   fully cached. Printed: k folds / the one fold that extracted, and k folds / one cached fold (the
   per-fold work that remains: the fit and the evaluation; the backbone is loaded once per process).
2. every strategy over the k folds (modern defaults; few epochs with ``--epochs``): the validation
   accuracy's mean ± sample standard deviation, its range and every fold's figure.
3. with ``--jobs``, what a user pays: each head as real runs in worker processes, one plain run in its
   own worker extracting the features against the k folds (features cached) in the one worker the queue
   starts for them (target < 1.5x), the same folds keeping each its model (``--keep-fold-models``), and
   against that one run with the features cached.

Writes ``benchmarks/results/folds-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from .common import REPO, add_data_args, GroupResult, at_most, format_group, log, machine_description, ratio, \
    write_results

HEADS = ("linear_probe", "feature_extraction")


def _configs(strategy: str, args, epochs: int | None) -> list:
    """The k fold configs of ``strategy`` (modern defaults, fewer epochs where asked)."""
    from core.train import folds, registry
    from core.train.strategies import StrategyConfig

    entry = registry.get(strategy)
    overrides = dict(dataset=str(args.dataset), seed=args.seed, limit_per_class=args.per_class)
    if entry.pretrained:
        overrides["backbone"] = args.backbone
    if epochs and strategy not in ("linear_probe", "pixel_baseline"):
        overrides["epochs"] = epochs
        if entry.reads("fine_tune_epochs"):
            overrides["fine_tune_epochs"] = max(1, epochs // 2)
    if strategy == "scratch":
        overrides["input_size"] = args.scratch_size
    base = registry.make_config(strategy, **overrides).to_dict()
    return [StrategyConfig.from_dict(c) for c in folds.fold_configs([base], args.folds, seed=args.seed)]


def _fit(cfg) -> tuple[float, dict]:
    from core.train.fit import fit

    start = time.perf_counter()
    result = fit(cfg)
    return time.perf_counter() - start, result.metrics


def _cost(strategy: str, args, result: GroupResult, accuracies: dict) -> None:
    """Item 1 for one head: cold one fold, k cached folds, one cached fold."""
    from core.features import cache

    configs = _configs(strategy, args, None)
    cache.clear_cache()
    cold_s, _ = _fit(configs[0])
    fold_s, figures = [], []
    for cfg in configs:
        seconds, metrics = _fit(cfg)
        fold_s.append(seconds)
        figures.append(metrics["val_accuracy"])
    warm_s, _ = _fit(configs[0])
    total = sum(fold_s)
    label = f"1 {strategy}"
    cold_ratio = ratio(total, cold_s)
    result.add(f"{label}: {args.folds} folds cached / 1 fold extracting",
               f"{cold_ratio:.2f}x ({total:.1f} s / {cold_s:.1f} s)", cold_ratio)
    warm_ratio = ratio(total, warm_s)
    result.add(f"{label}: {args.folds} folds cached / 1 fold cached", f"{warm_ratio:.2f}x ({warm_s:.2f} s a fold)",
               warm_ratio)
    result.figures[f"cost_{strategy}"] = {"one_fold_extracting_s": cold_s, "folds_cached_s": fold_s,
                                         "one_fold_cached_s": warm_s}
    accuracies[strategy] = figures


def _jobs(strategy: str, args, result: GroupResult) -> None:
    """Item 3 for one head: real runs in worker processes, as the queue starts them. One plain run
    (fold 1's split, keeping its model) in a fresh worker with an empty feature cache (interpreter and
    TensorFlow start, backbone load, extraction, fit, saved model, calibration) against the k folds of
    a launch in the one worker the queue gives them (``core.runs.jobs``: the next folds ride along),
    the features cached by the first run: as launched (no model kept) and keeping each fold's model;
    and against the one run again, cached."""
    from core.features import cache
    from core.runs.store import RunStore, worker_command

    configs = _configs(strategy, args, None)
    single = replace(configs[0], keep_model=True)
    store = RunStore()

    def worker(cfgs) -> float:
        runs = [store.create(cfg.to_dict(), name=f"folds benchmark {strategy} fold {cfg.fold}") for cfg in cfgs]
        start = time.perf_counter()
        subprocess.run(worker_command(*(r.dir for r in runs)), check=False, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        failed = [f"{r.id}: {r.status().get('reason')}" for r in runs if r.status()["state"] != "done"]
        if failed:
            raise RuntimeError(f"runs failed: {failed}")
        return seconds

    cache.clear_cache()
    one_s = worker([single])
    folds_s = worker(configs)
    kept_s = worker([replace(c, keep_model=True) for c in configs])
    cached_s = worker([single])
    r = ratio(folds_s, one_s)
    result.add(f"3 {strategy} as runs: {args.folds} folds cached in one worker / 1 run extracting",
               f"{r:.2f}x ({folds_s:.1f} s / {one_s:.1f} s)", r, "< 1.5", at_most(r, 1.5))
    r = ratio(kept_s, one_s)
    result.add(f"3 {strategy} as runs: the same, each fold keeping its model / 1 run extracting",
               f"{r:.2f}x ({kept_s:.1f} s)", r)
    r = ratio(folds_s, cached_s)
    result.add(f"3 {strategy} as runs: {args.folds} folds cached in one worker / 1 run cached",
               f"{r:.2f}x ({cached_s:.1f} s one run)", r)
    result.figures[f"runs_{strategy}"] = {"one_run_extracting_s": one_s, "folds_in_one_worker_s": folds_s,
                                          "folds_keeping_models_s": kept_s, "one_run_cached_s": cached_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.folds", description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=20, help="photos a class in each split (default 20: 40 a class)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--strategies", default="", help="comma-separated strategies for item 2 (default: all)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the gradient-trained strategies in item 2 "
                   "(fine-tuning: half of them after its head; 0: the modern defaults)")
    p.add_argument("--scratch-size", type=int, default=96, help="input size of the from-scratch CNN (px)")
    p.add_argument("--jobs", action="store_true", help="also time the heads as real runs in worker processes (item 3)")
    p.add_argument("--seed", type=int, default=1337)
    add_data_args(p)
    args = p.parse_args(argv)
    args.dataset = Path(args.dataset).expanduser().resolve()
    if not args.dataset.is_dir():
        print(f"Dataset folder not found: {args.dataset} (pass --dataset)", file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="tl-bench-folds-")
    os.environ.update({"TRANSFER_LAB_HOME": home, "TRANSFER_LAB_WEIGHTS_DIR": args.weights_dir})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from core.train import folds, registry
    from core.train.loop import load_dataset

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] or list(registry.STRATEGIES)
    result = GroupResult("folds", quick=False)
    started = time.perf_counter()
    try:
        ds = load_dataset(_configs("linear_probe", args, None)[0])
        counts = ds.counts()
        per_class = ", ".join(f"{c}: {counts['train'][c] + counts['validation'][c]}" for c in ds.classes)
        result.notes.append(f"{len(ds.records)} photos ({per_class}), "
                            f"{args.folds} stratified folds of {len(ds.split('validation'))} validation photos; "
                            f"the default rule gives {folds.default_folds(ds)} fold(s) for this set.")
        log("warm-up: the backbone traced once")
        _fit(_configs("linear_probe", args, None)[0])
        accuracies: dict[str, list[float]] = {}
        for strategy in HEADS:
            log(f"cost: {strategy}")
            _cost(strategy, args, result, accuracies)
        if args.jobs:
            for strategy in HEADS:
                log(f"cost: {strategy} as runs")
                _jobs(strategy, args, result)
        rows = []
        for strategy in strategies:
            if strategy not in accuracies:
                log(f"folds: {strategy}")
                accuracies[strategy] = [_fit(cfg)[1]["val_accuracy"] for cfg in _configs(strategy, args, args.epochs)]
            s = folds.spread(accuracies[strategy])
            result.add(f"2 {registry.label(strategy)}",
                       f"{s.mean:.1%} ± {s.std * 100:.1f} points (sd), {s.low:.1%}–{s.high:.1%}", s.mean)
            rows.append([registry.label(strategy), f"{s.mean:.3f}", f"{s.std:.3f}",
                         ", ".join(f"{v:.3f}" for v in s.values)])
        result.tables["folds"] = (["strategy", "mean accuracy", "sd", "per fold"], rows)
        result.figures["accuracies"] = accuracies
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    result.notes.append("Times: core.train.fit.fit in one process (scan from its cache, the fold's split, features, "
                        "fit, evaluation); a run adds its worker's start, the saved model and the calibration (3).")
    print(format_group(result))
    settings = {"per_class": args.per_class, "folds": args.folds, "backbone": args.backbone, "epochs": args.epochs,
                "dataset": str(args.dataset), "command": " ".join(["python", "-m", "benchmarks.folds", *(argv or sys.argv[1:])])}
    print(f"\n(written to {write_results(result, machine_description(), settings, Path(args.results_dir))})")
    return 1 if any(r.ok is False for r in result.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
