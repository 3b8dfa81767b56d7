"""The Keras glue every strategy's fit shares: data, callbacks, compile, one fit phase.

A strategy's fit function (``core.train.methods``) gets a ``Context`` and
returns ``(model, input_size, probabilities)``; everything else about a run
(progress, checkpoints, TensorBoard, class weights) is handled here once.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from core.data.dataset import Dataset, check_trainable, scan_folder, subset
from core.train import precision
from core.train.folds import fold_dataset
from core.train.strategies import StrategyConfig, make_optimizer, output_spec
from core.data.pipeline import image_dataset
from core.nets import backbones
from core.nets.loaded import loaded_backbone


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
    head_inputs: dict[str, np.ndarray] | None = None  # Context.head_inputs
    dataset: Dataset | None = None  # what it was fitted on (a fold's split for a fold run)

    def head_inputs_of(self, paths) -> tuple[np.ndarray, np.ndarray]:
        """``(rows of the photos it has, which it has)`` from ``head_inputs``, the shape
        ``core.serve.inference.outputs_of_files`` returns for a saved model."""
        ok = np.asarray([p in self.head_inputs for p in paths], bool)
        rows = [self.head_inputs[p] for p, has in zip(paths, ok) if has]
        return (np.stack(rows) if rows else np.zeros((0, 0), np.float32)), ok


def load_dataset(cfg: StrategyConfig, progress=None) -> Dataset:
    """Scan the config's dataset; with ``limit_per_class`` keep a seeded subset; with ``folds`` the fold's split."""
    ds = scan_folder(cfg.dataset, val_fraction=cfg.val_fraction, seed=cfg.seed, progress=progress)
    if cfg.limit_per_class:
        ds = subset(ds, cfg.limit_per_class, cfg.seed)
    if cfg.folds >= 2:  # one fold of a repeated-splits launch: train + validation pooled and split again
        ds = fold_dataset(ds, cfg.folds, cfg.fold, cfg.fold_seed, cfg.fold_scheme, cfg.val_fraction)
    check_trainable(ds)
    return ds


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * n_c): each class counts as much in the loss."""
    counts = np.bincount(y, minlength=num_classes).astype(float)
    return {i: float(len(y) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def targets(y: np.ndarray, num_classes: int) -> np.ndarray:
    return y.astype("float32") if num_classes == 2 else y.astype("int64")


def compile_model(model, cfg: StrategyConfig, num_classes: int, learning_rate: float,
                  at: "precision.Precision | None" = None) -> None:
    """Loss and accuracy on float32 outputs; the optimizer loss-scaled when ``at`` is float16."""
    import keras

    _, _, loss = output_spec(num_classes)
    metric = (keras.metrics.BinaryAccuracy(name="accuracy") if num_classes == 2
              else keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
    opt = make_optimizer(cfg.optimizer, learning_rate)
    model.compile(optimizer=precision.optimizer(opt, at or precision.FLOAT32), loss=loss, metrics=[metric])


def _callbacks(cfg: StrategyConfig, reporter: Reporter, phase: str, epoch_offset: int, n_train: int,
               checkpoint: Path | None, tb_dir: Path | None, baseline=None, saved=None):
    import keras

    from core.train.callbacks import BestWeights, ProgressCallback  # lazy: starts TensorFlow

    progress = ProgressCallback(reporter, phase, epoch_offset, n_train, cfg.batch_size)
    best = BestWeights(checkpoint, baseline, saved, cancelled=lambda: progress.cancelled)
    cbs: list = [progress, best]
    if cfg.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping))
    if cfg.reduce_lr:
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=cfg.reduce_lr))
    if tb_dir is not None:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(tb_dir / phase), write_graph=False))
    return cbs, progress, best


def fit_phase(model, cfg, reporter, phase, train, val, epochs, epoch_offset, n_train, weights, ckpt, tb,
              restore_best: bool, baseline=None, saved=None) -> bool:
    """One ``model.fit`` phase; returns True when it was cancelled. ``saved``: see ``BestWeights``."""
    cbs, progress, best = _callbacks(cfg, reporter, phase, epoch_offset, n_train, ckpt, tb, baseline, saved)
    if isinstance(train, tuple):
        train = array_batches(*train, cfg.batch_size, seed=cfg.seed)
    if isinstance(val, tuple):
        val = array_batches(*val, cfg.batch_size)
    model.fit(train, validation_data=val, epochs=epoch_offset + epochs, initial_epoch=epoch_offset,
              callbacks=cbs, verbose=0, class_weight=weights, shuffle=False)  # the pipelines shuffle themselves
    if restore_best:
        best.restore(model)
    return progress.cancelled


def array_batches(x, y, batch_size: int, seed: int | None = None):
    """Arrays (cached features) as a ``tf.data`` pipeline, shuffled anew each epoch with ``seed``: given
    the arrays, Keras slices them again every epoch, which in a head's tens of short epochs was two
    thirds of the fit (20 epochs on 64 photos: 5.4 s as arrays, 1.8 s as a pipeline)."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def image_data(cfg, ds, size, split, shuffle):
    """The decoded image pipeline of one split, with its labels."""
    labels = ds.labels(split)
    data = image_dataset(ds.paths(split), targets(labels, ds.num_classes), size, cfg.batch_size,
                         shuffle=shuffle, seed=cfg.seed, keep_decoded=True)
    return data, labels


class Recording:
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
class Context:
    """What a strategy's fit function works with; ``extra`` lands in the run's metrics."""

    cfg: StrategyConfig
    ds: Dataset
    rec: Recording
    ckpt: Path | None
    tb: Path | None
    cancelled: bool = False
    extra: dict = field(default_factory=dict)
    # path -> the head's input for that photo, where a fit has them without a forward pass (heads on
    # cached features): the post-fit feature statistics read these instead of running the saved model
    head_inputs: dict[str, np.ndarray] | None = None

    def keep_head_inputs(self, feats: dict) -> None:
        """Keep the cached features of both splits (decoded photos) as the head's inputs."""
        self.head_inputs = {path: fs.X[i] for fs in feats.values()
                            for i, path in enumerate(fs.paths) if fs.valid[i]}

    @property
    def k(self) -> int:
        return self.ds.num_classes

    def weights_for(self, y):
        return class_weights(y, self.k) if self.cfg.class_weights else None

    @contextmanager
    def trained_at(self, path: str, model):
        """``model`` computes at the run's precision for ``path`` (``core.train.precision``) inside
        the block, float32 after; the choice lands in the run's metrics (``precision``, one entry
        per phase when they differ, and ``precision_reason``)."""
        choice = precision.choose(path, self.cfg.precision)
        seen = [p for p in self.extra.get("precision", "").split(" + ") if p]
        if choice.policy not in seen:
            seen.append(choice.policy)
        self.extra["precision"] = " + ".join(seen)
        self.extra.setdefault("precision_by_path", {})[path] = choice.policy
        self.extra["precision_reason"] = choice.reason
        with precision.training(model, choice):
            yield choice

    def fit_images(self, model, size, phase, epochs, epoch_offset, lr, baseline=None, path="fine_tune"):
        """Compile ``model`` and fit it on the decoded image pipeline, at ``path``'s precision."""
        train, y = image_data(self.cfg, self.ds, size, "train", True)
        val, _ = image_data(self.cfg, self.ds, size, "validation", False)
        with self.trained_at(path, model) as at:
            compile_model(model, self.cfg, self.k, lr, at)
            self.cancelled = fit_phase(model, self.cfg, self.rec, phase, train, val, epochs, epoch_offset, len(y),
                                       self.weights_for(y), self.ckpt, self.tb, self.cfg.restore_best, baseline)

    def backbone(self, frozen: bool = False):
        """The run's backbone. ``frozen``: the fit never changes its weights (heads on cached features), so
        pretrained weights come from the process's cache (``core.nets.loaded``): the k folds of a repeated
        split, run one after another in one worker, load and trace the network once, not k times."""
        self.rec.on_progress({"phase": "load", "message": f"Loading {self.cfg.backbone}"})
        if frozen and self.cfg.weights_arg is not None:
            bb = loaded_backbone(self.cfg.backbone, self.cfg.weights_arg, self.cfg.input_size or None)
        else:
            bb = backbones.load_backbone(self.cfg.backbone, self.cfg.weights_arg, self.cfg.input_size or None,
                                         self.cfg.seed)
        self.extra["weights_id"] = bb.weights_id
        return bb
