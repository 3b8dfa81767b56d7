"""A run end to end: ``fit(config)`` scans the data, trains the config's strategy
(its fit function from the registry) and evaluates it; ``execute(run)`` is the
background worker's entry point and writes the result into the run store.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.train import registry
from core.train.evaluation import evaluate, summarize
from core.train.loop import Context, FitResult, NullReporter, Recording, Reporter, load_dataset
from core.train.strategies import StrategyConfig


def fit(cfg: StrategyConfig, reporter: Reporter | None = None, *, run_dir: Path | None = None,
        devices: list[str] | None = None) -> FitResult:
    """Run ``cfg`` end to end: data, features or images, fit, evaluation.

    ``run_dir`` receives the best checkpoint and TensorBoard logs; ``devices``
    forces a ``MirroredStrategy`` over those devices.
    """
    import keras

    from core.train.distribute import get_strategy

    strategy = registry.get(cfg.strategy)  # configs were checked when made (registry.make_config)
    keras.utils.set_random_seed(cfg.seed)  # head init, dropout and shuffling repeat for one seed
    rec = Recording(reporter or NullReporter())
    start = time.perf_counter()
    rec.on_progress({"phase": "scan", "message": "Scanning the dataset"})
    ds = load_dataset(cfg, progress=lambda d, t: rec.on_progress({"phase": "scan", "done": d, "total": t}))
    cfg, weighting = registry.class_weights_default(cfg, ds.counts()["train"])  # on for uneven classes
    ctx = Context(cfg, ds, rec, run_dir / "checkpoint.keras" if run_dir else None,
                  run_dir / "tb" if run_dir else None)
    distribution = get_strategy(devices)
    ctx.extra.update(distribution=type(distribution).__name__, replicas=distribution.num_replicas_in_sync, **weighting)
    with distribution.scope():
        model, size, probs = strategy.fit(ctx)
    if model is None:
        return FitResult(None, pd.DataFrame(rec.rows), {}, pd.DataFrame(), cancelled=True, extra=ctx.extra)
    if "precision" not in ctx.extra:  # the linear probe and the pixel baseline: scikit-learn, no gradient step
        ctx.extra.update(precision="float32", precision_reason="no gradient training (scikit-learn)")
    train_seconds = time.perf_counter() - start
    rec.on_progress({"phase": "evaluate", "message": "Evaluating on the validation split"})
    if probs is not None:
        metrics, predictions = summarize(probs[0], probs[1], ds.classes, probs[2])
    else:
        metrics, predictions = evaluate(model, ds, size, batch_size=32)
    n_train = len(ds.split("train"))
    metrics.update({
        "strategy": cfg.strategy,
        "backbone": cfg.backbone if strategy.pretrained else strategy.network.replace(" ", "_").lower(),
        "weights": cfg.weights, "input_size": size, "train_seconds": train_seconds,
        "train_images": n_train, "epochs_run": len(rec.rows),
        "images_per_s": n_train * max(len(rec.rows), 1) / max(train_seconds, 1e-9),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "total_params": int(model.count_params()), **ctx.extra,
    })
    return FitResult(model, pd.DataFrame(rec.rows), metrics, predictions, cancelled=ctx.cancelled, extra=ctx.extra)


class _RunReporter:
    """Sends a fit's progress and history into a run store run."""

    def __init__(self, run):
        self.run = run
        self.phase = None

    def on_progress(self, info: dict) -> None:
        changed = info.get("phase") != self.phase  # never drop the first message of a phase
        self.phase = info.get("phase")
        self.run.write_progress(info, force=changed)

    def on_epoch(self, row: dict) -> None:
        self.run.append_history(row)

    def should_stop(self) -> bool:
        return self.run.cancel_requested()


def execute(run) -> None:
    """Background worker entry: fit the run's config and store model, metrics, predictions."""
    from core.runs.models import save_model
    from core.runs.store import RunCancelled

    cfg = StrategyConfig.from_dict(run.config)
    result = fit(cfg, _RunReporter(run), run_dir=run.dir)
    if result.cancelled:
        raise RunCancelled("cancelled by user; history and the best checkpoint are kept")
    record = save_model(result.model, run.model_path)
    run.write_predictions(result.predictions)
    trusted = _assess(run, cfg, result)
    run.write_metrics({**result.metrics, "model_bytes": record["bytes"], "model_sha256": record["sha256"], **trusted})


def _assess(run, cfg: StrategyConfig, result: FitResult) -> dict:
    """The post-fit step: calibration, the "not sure" threshold and the training data's feature
    statistics, from the run's validation predictions and its saved model (``core.serve.trust``).
    Returns the figures for the run's metrics; a failure leaves the run uncalibrated, not failed."""
    import sys

    from core.errors import TransferLabError
    from core.serve import inference, trust

    run.write_progress({"phase": "calibrate", "message": "Calibrating the confidence; features of the training "
                        "photos for the unlike-data check"}, force=True)
    start = time.perf_counter()
    try:
        ds = load_dataset(cfg)
        predictor = inference.load_run(run, with_features=True)
        found = trust.assess(run.dir, result.predictions, result.metrics["classes"], ds.paths("train"),
                             ds.labels("train"), lambda paths: inference.outputs_of_files(predictor, paths),
                             seed=cfg.seed)
    except (TransferLabError, ValueError, OSError, RuntimeError) as exc:
        print(f"calibration skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {}
    cal, abst = found.calibration, found.abstention
    return {"calibration": cal.method, "temperature": cal.temperature, "ece_before": cal.ece_before,
            "ece_after": cal.ece_after, "not_sure_threshold": abst.threshold, "not_sure_coverage": abst.coverage,
            "unlike_data_threshold": found.ood.threshold if found.ood else None,
            "calibration_seconds": time.perf_counter() - start}
