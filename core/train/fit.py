"""Fit loops for every strategy, with progress, cancellation, checkpoints and evaluation.

``fit(config, reporter)`` runs one strategy end to end and returns a
``FitResult``; ``execute(run)`` is the background worker's entry point and
writes the result into the run store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from core.data.dataset import Dataset, check_trainable, scan_folder, subset
from core.train.evaluation import evaluate, summarize, to_probabilities
from core.train.strategies import (
    StrategyConfig, augmentation, build_head, build_scratch_model, build_transfer_model,
    make_optimizer, output_spec, unfreeze_top,
)


class Reporter(Protocol):
    """Where a fit sends its progress; a run store run, or anything with these methods."""

    def on_progress(self, info: dict) -> None: ...
    def on_epoch(self, row: dict) -> None: ...
    def should_stop(self) -> bool: ...


class NullReporter:
    def __init__(self):
        self.rows: list[dict] = []

    def on_progress(self, info: dict) -> None:
        pass

    def on_epoch(self, row: dict) -> None:
        self.rows.append(row)

    def should_stop(self) -> bool:
        return False


@dataclass
class FitResult:
    model: Any
    history: pd.DataFrame
    metrics: dict
    predictions: pd.DataFrame
    cancelled: bool = False
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- data

def load_dataset(cfg: StrategyConfig, progress=None) -> Dataset:
    """Scan the config's dataset; with ``limit_per_class`` keep a seeded subset."""
    ds = scan_folder(cfg.dataset, val_fraction=cfg.val_fraction, seed=cfg.seed, progress=progress)
    if cfg.limit_per_class:
        ds = subset(ds, cfg.limit_per_class, cfg.seed)
    check_trainable(ds)
    return ds


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * n_c): each class counts as much in the loss."""
    counts = np.bincount(y, minlength=num_classes).astype(float)
    return {i: float(len(y) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def _targets(y: np.ndarray, num_classes: int) -> np.ndarray:
    return y.astype("float32") if num_classes == 2 else y.astype("int64")


# ---------------------------------------------------------------- Keras glue

def _callbacks(cfg: StrategyConfig, reporter: Reporter, phase: str, epoch_offset: int, n_train: int,
               checkpoint: Path | None, tb_dir: Path | None, baseline=None, saved=None):
    import keras

    from core.train.callbacks import BestWeights, ProgressCallback

    progress = ProgressCallback(reporter, phase, epoch_offset, n_train, cfg.batch_size)
    best = BestWeights(checkpoint, baseline, saved)
    cbs: list = [progress, best]
    if cfg.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping))
    if cfg.reduce_lr:
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=cfg.reduce_lr))
    if tb_dir is not None:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(tb_dir / phase), write_graph=False))
    return cbs, progress, best


def _compile(model, cfg: StrategyConfig, num_classes: int, learning_rate: float) -> None:
    import keras

    _, _, loss = output_spec(num_classes)
    metric = (keras.metrics.BinaryAccuracy(name="accuracy") if num_classes == 2
              else keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
    model.compile(optimizer=make_optimizer(cfg.optimizer, learning_rate), loss=loss, metrics=[metric])


def _fit(model, cfg, reporter, phase, train, val, epochs, epoch_offset, n_train, weights, ckpt, tb,
         restore_best: bool, baseline=None, saved=None) -> bool:
    """One ``model.fit`` phase; returns True when it was cancelled. ``saved``: see ``BestWeights``."""
    cbs, progress, best = _callbacks(cfg, reporter, phase, epoch_offset, n_train, ckpt, tb, baseline, saved)
    kwargs = dict(validation_data=val, epochs=epoch_offset + epochs, initial_epoch=epoch_offset,
                  callbacks=cbs, verbose=0, class_weight=weights)
    if isinstance(train, tuple):
        model.fit(*train, batch_size=cfg.batch_size, shuffle=True, **kwargs)
    else:
        model.fit(train, **kwargs)
    if restore_best:
        best.restore(model)
    return progress.cancelled


# ---------------------------------------------------------------- strategies

def _features(cfg, ds, bb, reporter):
    from core.features.cache import ExtractProgress, extract_features

    out = {}
    for split in ("train", "validation"):
        def report(p: ExtractProgress, split=split):
            reporter.on_progress({"phase": f"extract {split}", "done": p.done, "total": p.total,
                                  "images_per_s": p.images_per_s, "eta_s": p.eta_s, "cached": p.cached})
        out[split] = extract_features(ds, cfg.backbone, split=split, weights=cfg.weights_arg,
                                      input_size=bb.input_size, pooling=cfg.pooling, batch_size=32,
                                      seed=cfg.seed, progress=report, should_stop=reporter.should_stop,
                                      loaded=bb)
    return out


def _linear_probe(cfg, ds, feats, reporter):
    """Logistic regression (scikit-learn) on cached features, then copied into a Keras head."""
    from sklearn.linear_model import LogisticRegression

    X, y = feats["train"].usable()
    Xv, yv = feats["validation"].usable()
    start = time.perf_counter()
    clf = LogisticRegression(C=cfg.probe_c, max_iter=3000,
                             class_weight="balanced" if cfg.class_weights else None)
    clf.fit(X, y)
    head = build_head(X.shape[1], ds.num_classes, 0, 0.0)
    dense = head.get_layer("head_output")
    dense.set_weights([clf.coef_.T.astype("float32"), clf.intercept_.astype("float32")])
    k = ds.num_classes
    train_p = to_probabilities(head.predict(X, verbose=0), k)
    val_p = to_probabilities(head.predict(Xv, verbose=0), k)
    eps = 1e-7
    reporter.on_epoch({
        "epoch": 1, "phase": "probe",
        "loss": float(-np.mean(np.log(train_p[np.arange(len(y)), y] + eps))),
        "accuracy": float(np.mean(train_p.argmax(1) == y)),
        "val_loss": float(-np.mean(np.log(val_p[np.arange(len(yv)), yv] + eps))),
        "val_accuracy": float(np.mean(val_p.argmax(1) == yv)),
        "lr": float("nan"), "seconds": time.perf_counter() - start,
    })
    return head


def _train_head(ctx, feats, bb):
    """A head on cached features; returns it and the pixel model around it (what checkpoints hold)."""
    cfg, k = ctx.cfg, ctx.k
    X, y = feats["train"].usable()
    Xv, yv = feats["validation"].usable()
    head = build_head(X.shape[1], k, cfg.head_units, cfg.dropout)
    pixels = build_transfer_model(bb, cfg.pooling, head)
    _compile(head, cfg, k, cfg.learning_rate)
    ctx.cancelled = _fit(head, cfg, ctx.rec, "head", (X, _targets(y, k)), (Xv, _targets(yv, k)),
                         cfg.epochs, 0, len(y), ctx.weights_for(y), ctx.ckpt, ctx.tb, cfg.restore_best,
                         saved=pixels)
    return head, pixels


def _image_data(cfg, ds, size, split, shuffle):
    from core.data.pipeline import image_dataset

    labels = ds.labels(split)
    data = image_dataset(ds.paths(split), _targets(labels, ds.num_classes), size, cfg.batch_size,
                         shuffle=shuffle, seed=cfg.seed)
    return data, labels


def fit(cfg: StrategyConfig, reporter: Reporter | None = None, *, run_dir: Path | None = None,
        devices: list[str] | None = None) -> FitResult:
    """Run ``cfg`` end to end: data, features or images, fit, evaluation.

    ``run_dir`` receives the best checkpoint and TensorBoard logs; ``devices``
    forces a ``MirroredStrategy`` over those devices.
    """
    from core.train.distribute import get_strategy

    import keras

    keras.utils.set_random_seed(cfg.seed)  # head init, dropout and shuffling repeat for one seed
    rec = _Recording(reporter or NullReporter())
    start = time.perf_counter()
    rec.on_progress({"phase": "scan", "message": "Scanning the dataset"})
    ds = load_dataset(cfg, progress=lambda d, t: rec.on_progress({"phase": "scan", "done": d, "total": t}))
    ctx = _Context(cfg, ds, rec, run_dir / "checkpoint.keras" if run_dir else None,
                   run_dir / "tb" if run_dir else None)
    strategy = get_strategy(devices)
    ctx.extra.update(distribution=type(strategy).__name__, replicas=strategy.num_replicas_in_sync)
    with strategy.scope():
        model, size, probs = _STRATEGY_FITS[cfg.strategy](ctx)
    if model is None:
        return FitResult(None, pd.DataFrame(rec.rows), {}, pd.DataFrame(), cancelled=True, extra=ctx.extra)
    train_seconds = time.perf_counter() - start
    rec.on_progress({"phase": "evaluate", "message": "Evaluating on the validation split"})
    if probs is not None:
        metrics, predictions = summarize(probs[0], probs[1], ds.classes, probs[2])
    else:
        metrics, predictions = evaluate(model, ds, size, batch_size=32)
    n_train = len(ds.split("train"))
    metrics.update({
        "strategy": cfg.strategy, "backbone": "scratch_cnn" if cfg.strategy == "scratch" else cfg.backbone,
        "weights": cfg.weights, "input_size": size, "train_seconds": train_seconds,
        "train_images": n_train, "epochs_run": len(rec.rows),
        "images_per_s": n_train * max(len(rec.rows), 1) / max(train_seconds, 1e-9),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "total_params": int(model.count_params()), **ctx.extra,
    })
    return FitResult(model, pd.DataFrame(rec.rows), metrics, predictions, cancelled=ctx.cancelled, extra=ctx.extra)


class _Recording:
    """Forwards to the caller's reporter and keeps the history rows."""

    def __init__(self, reporter: Reporter):
        self.reporter, self.rows = reporter, []

    def on_progress(self, info):
        self.reporter.on_progress(info)

    def on_epoch(self, row):
        self.rows.append(row)
        self.reporter.on_epoch(row)

    def should_stop(self):
        return self.reporter.should_stop()


@dataclass
class _Context:
    cfg: StrategyConfig
    ds: Dataset
    rec: _Recording
    ckpt: Path | None
    tb: Path | None
    cancelled: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return self.ds.num_classes

    def weights_for(self, y):
        return class_weights(y, self.k) if self.cfg.class_weights else None

    def fit_images(self, model, size, phase, epochs, epoch_offset, lr, baseline=None):
        """Compile ``model`` and fit it on the decoded image pipeline."""
        _compile(model, self.cfg, self.k, lr)
        train, y = _image_data(self.cfg, self.ds, size, "train", True)
        val, _ = _image_data(self.cfg, self.ds, size, "validation", False)
        self.cancelled = _fit(model, self.cfg, self.rec, phase, train, val, epochs, epoch_offset, len(y),
                              self.weights_for(y), self.ckpt, self.tb, self.cfg.restore_best, baseline)

    def backbone(self):
        from core.nets import backbones

        self.rec.on_progress({"phase": "load", "message": f"Loading {self.cfg.backbone}"})
        bb = backbones.load_backbone(self.cfg.backbone, self.cfg.weights_arg, self.cfg.input_size or None,
                                     self.cfg.seed)
        self.extra["weights_id"] = bb.weights_id
        return bb


def _fit_scratch(ctx: _Context):
    cfg = ctx.cfg
    size = cfg.input_size or 128
    model = build_scratch_model(size, ctx.k, cfg.scratch_filters, cfg.head_units, cfg.dropout,
                                augmentation(cfg.augment, cfg.seed))
    ctx.fit_images(model, size, "train", cfg.epochs, 0, cfg.learning_rate)
    return model, size, None


def _fit_frozen(ctx: _Context):
    cfg = ctx.cfg
    bb = ctx.backbone()
    bb.base.trainable = False
    head = build_head(_pooled_dim(bb, cfg.pooling), ctx.k, cfg.head_units, cfg.dropout)
    model = build_transfer_model(bb, cfg.pooling, head, augmentation(cfg.augment, cfg.seed))
    ctx.fit_images(model, bb.input_size, "train", cfg.epochs, 0, cfg.learning_rate)
    return model, bb.input_size, None


def _pooled_dim(bb, pooling: str) -> int:
    shape = bb.feature_shape
    return int(np.prod(shape)) if pooling == "flatten" else int(shape[-1])


def _fit_on_features(ctx: _Context):
    """Linear probe, feature extraction, and phase 1 of fine-tuning: heads on cached features."""
    from core.features.cache import Cancelled

    cfg = ctx.cfg
    bb = ctx.backbone()
    try:
        feats = _features(cfg, ctx.ds, bb, ctx.rec)
    except Cancelled:
        ctx.cancelled = True
        return None, bb.input_size, None
    ctx.extra["features_cached"] = all(fs.from_cache for fs in feats.values())
    if cfg.strategy == "linear_probe":
        head = _linear_probe(cfg, ctx.ds, feats, ctx.rec)
        model = build_transfer_model(bb, cfg.pooling, head)
        if ctx.ckpt is not None:
            from core.train.callbacks import save_model_atomic

            save_model_atomic(model, ctx.ckpt)
    else:
        head, model = _train_head(ctx, feats, bb)
    bb.base.trainable = False
    Xv, yv = feats["validation"].usable()
    paths = [p for p, ok in zip(feats["validation"].paths, feats["validation"].valid) if ok]
    probs = (to_probabilities(head.predict(Xv, verbose=0), ctx.k), yv, paths)
    if cfg.strategy != "fine_tune" or ctx.cancelled:
        return model, bb.input_size, probs
    return _fine_tune(ctx, bb, head, baseline=ctx.rec.rows[-1] if cfg.restore_best else None)


def _fine_tune(ctx: _Context, bb, head, baseline=None):
    """Phase 2: unfreeze the top of the base (BatchNorm frozen), recompile at a low LR, train on."""
    cfg = ctx.cfg
    model = build_transfer_model(bb, cfg.pooling, head, augmentation(cfg.augment, cfg.seed))
    ctx.extra["unfrozen_layers"] = unfreeze_top(bb.base, cfg.fine_tune_layers, cfg.fine_tune_from)
    epochs_done = len(ctx.rec.rows)
    ctx.extra["fine_tune_start_epoch"] = epochs_done + 1
    best = _best_row(ctx.rec.rows) if baseline is not None else None
    ctx.fit_images(model, bb.input_size, "fine_tune", cfg.fine_tune_epochs, epochs_done, cfg.fine_tune_lr,
                   baseline=(best["val_accuracy"], best["val_loss"]) if best else None)
    return model, bb.input_size, None


def _best_row(rows: list[dict]) -> dict | None:
    scored = [r for r in rows if "val_accuracy" in r]
    return max(scored, key=lambda r: (r["val_accuracy"], -r.get("val_loss", 0.0))) if scored else None


_STRATEGY_FITS = {
    "linear_probe": _fit_on_features,
    "feature_extraction": _fit_on_features,
    "fine_tune": _fit_on_features,
    "frozen_augment": _fit_frozen,
    "scratch": _fit_scratch,
}


# ---------------------------------------------------------------- worker entry

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
    run.write_metrics({**result.metrics, "model_bytes": record["bytes"], "model_sha256": record["sha256"]})
