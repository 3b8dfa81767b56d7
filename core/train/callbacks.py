"""Keras callbacks that connect a fit to its run: progress, cancellation, best weights."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import keras


class ProgressCallback(keras.callbacks.Callback):
    """Reports per-batch progress (throttled), one history row per epoch, and stops
    at the next batch when the reporter asks to cancel."""

    def __init__(self, reporter, phase: str, epoch_offset: int, n_train: int, batch_size: int,
                 every_s: float = 0.5):
        super().__init__()
        self.reporter, self.phase = reporter, phase
        self.epoch_offset, self.n_train, self.batch_size = epoch_offset, n_train, batch_size
        self.every_s = every_s
        self.cancelled = False
        self._last = 0.0

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()
        self._epochs = self.params.get("epochs")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.reporter.should_stop():
            self.cancelled = True
            self.model.stop_training = True
        now = time.perf_counter()
        if now - self._last < self.every_s:
            return
        self._last = now
        steps = self.params.get("steps") or math.ceil(self.n_train / self.batch_size)
        elapsed = now - self._epoch_start
        done = min((batch + 1) * self.batch_size, self.n_train)
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining_epochs = (self._epochs or self._epoch + 1) - self._epoch - 1
        eta = (self.n_train - done + remaining_epochs * self.n_train) / rate if rate > 0 else float("nan")
        self.reporter.on_progress({
            "phase": self.phase, "epoch": self._epoch + 1, "epochs": self._epochs,
            "batch": batch + 1, "batches": steps, "images_per_s": rate, "eta_s": eta,
            **{k: float(v) for k, v in (logs or {}).items()},
        })

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        lr = self.model.optimizer.learning_rate
        row = {
            "epoch": epoch + 1, "phase": self.phase,
            **{k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs},
            "lr": float(keras.ops.convert_to_numpy(lr)),
            "seconds": time.perf_counter() - self._epoch_start,
        }
        self.reporter.on_epoch(row)
        if self.reporter.should_stop():
            self.cancelled = True
            self.model.stop_training = True


CHECKPOINT_EVERY_S = 20.0  # at most one checkpoint write per this many seconds while training goes on


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the best epoch (highest val accuracy, then lowest val loss),
    saves them as a loadable checkpoint, and restores them on request.

    Writing a checkpoint (the whole pixel model, backbone included) takes a second or more, while
    an epoch of a head on cached features takes a fraction of one: a new best is written at most
    every ``CHECKPOINT_EVERY_S``, and when a cancel ends the phase (``cancelled``), so a crash loses
    at most that much progress, a cancelled run keeps its best, and a head of 20 short epochs that
    ends normally (its run writes the final model next) writes none.

    ``baseline`` (val_accuracy, val_loss) makes the starting weights the ones to
    beat: fine-tuning that only hurts ends where feature extraction left off.
    ``saved`` is the model the checkpoint holds when it is not the one trained: a head
    trained on cached features is saved inside its pixel model, like every model of the app;
    a layer of the trained model's name in it (the head's compiled twin trains, ``core.train.heads``)
    gets the trained weights first; a model sharing its layers with ``saved`` (the fine-tuning cut's
    top) needs nothing.
    """

    def __init__(self, checkpoint: Path | None = None, baseline: tuple[float, float] | None = None,
                 saved=None, cancelled: Callable[[], bool] = lambda: False):
        super().__init__()
        self.checkpoint = checkpoint
        self.cancelled = cancelled
        self.baseline = baseline
        self.saved = saved
        self.best_score: tuple[float, float] | None = None
        self.best_weights = None
        self.best_epoch: int | None = None
        self.saved_at = time.perf_counter()

    def on_train_begin(self, logs=None):
        if self.baseline is not None:
            self.best_score = (self.baseline[0], -self.baseline[1])
            self.best_weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if "val_accuracy" not in logs:
            return
        score = (float(logs["val_accuracy"]), -float(logs.get("val_loss", 0.0)))
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, epoch + 1
            self.best_weights = self.model.get_weights()
            if self.checkpoint is not None and time.perf_counter() - self.saved_at >= CHECKPOINT_EVERY_S:
                self._save()

    def on_train_end(self, logs=None):
        if self.checkpoint is not None and self.best_weights is not None and self.cancelled():
            current = self.model.get_weights()
            self.model.set_weights(self.best_weights)  # the best epoch's, whatever the last one left
            self._save()
            self.model.set_weights(current)

    def _save(self) -> None:
        saved = self.model if self.saved is None else self.saved
        twin = {layer.name: layer for layer in saved.layers}.get(self.model.name) if saved is not self.model else None
        if twin is not None and twin is not self.model:  # the head trains in its compiled twin (core.train.heads)
            copy_variables(self.model, twin)
        save_model_atomic(saved, self.checkpoint)
        self.saved_at = time.perf_counter()

    def restore(self, model) -> None:
        if self.best_weights is not None:
            model.set_weights(self.best_weights)


def copy_variables(source, target) -> None:
    """Every variable of ``source`` into the same-shaped ``target`` (weights and seed states)."""
    for src, dst in zip(source.variables, target.variables, strict=True):
        dst.assign(src)


def save_model_atomic(model, target: Path) -> None:
    """``model.save`` into a temporary ``.keras`` file, then rename over ``target``."""
    import os

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        model.save(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
