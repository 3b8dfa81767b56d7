"""A run end to end: ``fit(config)`` scans the data, trains the config's strategy
(its fit function from the registry) and evaluates it. Writing the result into the
run store is the worker's part (``core.runs.worker.train_run``): training never reads
back into the layers above it.
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
from core.train.distribute import get_strategy


def fit(cfg: StrategyConfig, reporter: Reporter | None = None, *, run_dir: Path | None = None,
        devices: list[str] | None = None) -> FitResult:
    """Run ``cfg`` end to end: data, features or images, fit, evaluation.

    ``run_dir`` receives the best checkpoint and TensorBoard logs; ``devices``
    forces a ``MirroredStrategy`` over those devices.
    """
    import keras

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
    return FitResult(model, pd.DataFrame(rec.rows), metrics, predictions, cancelled=ctx.cancelled, extra=ctx.extra,
                     head_inputs=ctx.head_inputs, dataset=ds)
