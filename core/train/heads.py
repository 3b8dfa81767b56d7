"""A head on cached features trains in a compiled model kept for the process.

Keras traces a new model's train and test steps on its first ``fit``: about 1 s on a 2-core
CPU, more than half of what a head of 20 short epochs on a small fold costs. The k folds of a
repeated split train the same head one after another in one worker (``core.runs.jobs``), so each
head shape is compiled once a process and each fit borrows it: the fresh head's variables in
(seeded initial weights and dropout seed state), the optimizer's as built, the trained ones
back out. The arithmetic is the same as compiling the fresh head; only the tracing is shared.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from core.train.loop import compile_model

KEEP = 2  # compiled heads kept a process (a worker's folds share one)

_lock = threading.Lock()
_compiled: OrderedDict[tuple, "_Compiled"] = OrderedDict()


class _Compiled:
    def __init__(self, model, optimizer_start: list):
        self.model, self.optimizer_start = model, optimizer_start
        self.busy = threading.Lock()


@contextmanager
def compiled(head, cfg, num_classes: int, learning_rate: float, at) -> Iterator:
    """Yield a compiled model holding ``head``'s variables; ``head`` gets the trained ones at the
    end. A float16/bf16 choice (``at.mixed``), or a head another thread is training, compiles
    ``head`` itself as before."""
    from core.train.callbacks import copy_variables  # lazy: starts TensorFlow (Keras callbacks)

    entry = None if at.mixed else _entry(head, cfg, num_classes, learning_rate, at)
    if entry is None or not entry.busy.acquire(blocking=False):
        compile_model(head, cfg, num_classes, learning_rate, at)
        yield head
        return
    try:
        model = entry.model
        copy_variables(head, model)
        for variable, start in zip(model.optimizer.variables, entry.optimizer_start, strict=True):
            variable.assign(start)
        try:
            yield model
        finally:
            copy_variables(model, head)
    finally:
        entry.busy.release()


def _entry(head, cfg, num_classes: int, learning_rate: float, at) -> _Compiled:
    """The compiled model of ``head``'s shape and compile settings, made on first use; the
    least recently used beyond ``KEEP`` are dropped."""
    key = (json.dumps(head.get_config(), sort_keys=True, default=str), cfg.optimizer, float(learning_rate),
           num_classes, at.policy)
    with _lock:
        entry = _compiled.get(key)
        if entry is None:
            entry = _compiled[key] = _Compiled(*_compile(head, cfg, num_classes, learning_rate, at))
            while len(_compiled) > KEEP:
                _compiled.popitem(last=False)
        _compiled.move_to_end(key)
    return entry


def _compile(head, cfg, num_classes: int, learning_rate: float, at):
    """A clone of ``head`` compiled as ``compile_model`` does, with its optimizer built, and the
    optimizer's starting variables (step 0, the learning rate, zero moments)."""
    import keras

    model = keras.models.clone_model(head)
    compile_model(model, cfg, num_classes, learning_rate, at)
    model.optimizer.build(model.trainable_variables)
    return model, [variable.numpy() for variable in model.optimizer.variables]
