"""The frozen part of training on the engine (``core.nets.engine``): what no gradient reaches.

- Frozen base + augmentation: images are decoded and augmented in tf.data (the
  strategy's Keras augmentation layers, a new draw every epoch), the frozen base and
  pooling run on the engine, and the head trains in Keras on the engine's outputs
  (``augmented_batches``, ``fit_frozen_head``).
- Fine-tuning: the base is cut at the input of the first unfrozen layer (``split_at``);
  the frozen prefix runs on the engine. Without augmentation its activations are
  computed once (``CutCache``, memory-mapped under the data directory) and every
  epoch costs only the unfrozen top; with augmentation the prefix runs on the
  engine batch by batch (``fit_fine_tune_from_cut``).

The trained layers are the backbone's own (shared with ``build_transfer_model``), so
the pixel model a run saves holds the weights trained here.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from core import layout
from core.errors import Cancelled, TransferLabError
from core.data.pipeline import image_dataset, parallel_calls, pixel_batches, without_autotune
from core.features.cache import extract_features
from core.nets import engine
from core.nets.engine import is_reference
from core.nets.forward import pooling_layer
from core.train.evaluation import head_probabilities
from core.train.loop import compile_model, fit_phase, targets


def engine_enabled(fwd) -> bool:
    """Whether a frozen forward runs on another engine than TensorFlow (else the fused Keras graph
    of the strategy is as fast, and the run keeps its plain path)."""
    return not is_reference(fwd.engine)


# ---------------------------------------------------------------- batches through the engine

def augmented_batches(forward: Callable[[np.ndarray], np.ndarray], paths, targets: np.ndarray, size: int,
                      batch_size: int, out_shape: tuple[int, ...], aug=None, *, shuffle: bool = True,
                      seed: int = 0):
    """A ``tf.data.Dataset`` of ``(forward(augment(pixels)), target)`` batches.

    Decoding and augmentation run in tf.data (augmentation layers in training mode, so
    every epoch draws new transforms), ``forward`` (the engine's frozen batch function)
    runs once per batch as the dataset is iterated; a new iteration (epoch) reshuffles.
    """
    import tensorflow as tf


    pixels = image_dataset(list(paths), np.asarray(targets), size, batch_size, shuffle=shuffle, seed=seed,
                           keep_decoded=True)
    if aug is not None:
        pixels = pixels.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=parallel_calls())
    target_dtype = tf.as_dtype(np.asarray(targets).dtype)

    def generate():
        # OpenVINO aborts when it infers on tf.data's own generator thread (measured: SIGABRT in
        # from_generator); an ordinary thread is fine, so each batch is handed to one.
        with ThreadPoolExecutor(1, thread_name_prefix="frozen-engine") as worker:
            for x, y in pixels:
                yield worker.submit(forward, x.numpy()).result(), y.numpy()

    return without_autotune(tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec((None, *out_shape), tf.float32),
                                    tf.TensorSpec((None,), target_dtype))).prefetch(1))


def _pooled_shape(bb, pooling: str) -> tuple[int, ...]:
    shape = bb.feature_shape
    return (int(np.prod(shape)),) if pooling == "flatten" else (int(shape[-1]),)


def fit_frozen_head(ctx, bb, head, aug, saved_model):
    """Frozen base + augmentation with the base on the engine: ``head`` trains in Keras on the
    engine's pooled features of augmented images; validation reads the cached features.
    ``saved_model`` (the pixel model around ``head``) is what checkpoints hold. Returns the
    validation probabilities (``head_probabilities``)."""
    cfg, k = ctx.cfg, ctx.k
    fwd = bb.frozen_forward(cfg.pooling)
    y = ctx.ds.labels("train")
    train = augmented_batches(fwd, ctx.ds.paths("train"), targets(y, k), bb.input_size, cfg.batch_size,
                              _pooled_shape(bb, cfg.pooling), aug, shuffle=True, seed=cfg.seed)
    val = extract_features(ctx.ds, cfg.backbone, split="validation", weights=cfg.weights_arg,
                           input_size=bb.input_size, pooling=cfg.pooling, seed=cfg.seed, loaded=bb,
                           should_stop=ctx.rec.should_stop)
    Xv, yv = val.usable()
    ctx.extra.update(frozen_engine=fwd.label)
    with ctx.trained_at("head", head) as at:
        compile_model(head, cfg, k, cfg.learning_rate, at)
        ctx.cancelled = fit_phase(head, cfg, ctx.rec, "train", train, (Xv, targets(yv, k)), cfg.epochs, 0,
                                  len(y), ctx.weights_for(y), ctx.ckpt, ctx.tb, cfg.restore_best, saved=saved_model)
    return head_probabilities(head, Xv, yv, val.paths, val.valid, k)


# ---------------------------------------------------------------- the fine-tuning cut

def _crossing(base, start: int) -> dict:
    """Tensors made by ``base.layers[:start]`` that ``base.layers[start:]`` read in ``base``'s own
    graph (what crosses a cut there), from the graph Keras serialises (``get_config``): only the
    base's own nodes count, not those of a sub-model later built on its layers."""
    before = {layer.name for layer in base.layers[:start]}
    after = {layer.name for layer in base.layers[start:]}
    out = {}
    for layer in base.get_config()["layers"]:
        if layer["name"] not in after:
            continue
        for name, node_index, tensor_index in _history(layer["inbound_nodes"]):
            if name not in before:
                continue
            if node_index:
                raise TransferLabError(f"Layer '{name}' of {base.name} is used twice: cannot cut the base there.")
            output = base.get_layer(name).output  # its first call: the base's own graph
            out[(name, node_index, tensor_index)] = output[tensor_index] if isinstance(output, (list, tuple)) else output
    return out


def _history(spec):
    """Every ``keras_history`` (layer name, node index, tensor index) in a serialised inbound-node spec."""
    if isinstance(spec, dict):
        if "keras_history" in spec:
            yield tuple(spec["keras_history"])
        for value in spec.values():
            yield from _history(value)
    elif isinstance(spec, (list, tuple)):
        for value in spec:
            yield from _history(value)


def first_unfrozen(base) -> int:
    """Index of the first layer of ``base`` with trainable weights (after ``unfreeze_top``)."""
    for i, layer in enumerate(base.layers):
        if layer.trainable and layer.trainable_weights:
            return i
    raise TransferLabError("Fine-tuning needs at least one unfrozen layer with weights in the base.")


@dataclass
class Cut:
    """The base split where one tensor crosses, at or before the first unfrozen layer."""

    index: int  # layers[index:] form the suffix
    layer: str  # the first layer of the suffix
    prefix: Any  # pixels -> preprocess -> base[:index] (frozen; runs on the engine)
    suffix: Any  # activation at the cut -> base output (shares the base's layers)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.prefix.output.shape[1:])


def split_at(bb, start: int | None = None) -> Cut:
    """Cut ``bb.base`` at the input of layer ``start`` (default: the first unfrozen one), moved
    earlier to the nearest place where a single tensor crosses (residual blocks are not cut
    through). Layers between that place and ``start`` stay frozen: they only move to the suffix."""
    import keras

    from core.nets.layers import InferenceModel  # lazy: starts TensorFlow

    base = bb.base
    layers = base.layers
    start = first_unfrozen(base) if start is None else int(start)
    index = start
    while index > 1 and len(_crossing(base, index)) != 1:
        index -= 1
    crossing = list(_crossing(base, index).values())
    if len(crossing) != 1:
        raise TransferLabError(f"{base.name} cannot be cut before layer {layers[start].name}.")
    tensor = crossing[0]
    inputs = keras.Input((bb.input_size, bb.input_size, 3), name="pixels")
    inner = keras.Model(base.input, tensor, name=f"{base.name}_prefix_inner")
    prefix = keras.Model(inputs, inner(bb.preprocess(inputs)), name=f"{base.name}_prefix")
    suffix = InferenceModel(tensor, base.output, name=f"{base.name}_suffix")
    return Cut(index, layers[index].name, prefix, suffix)


def prefix_forward(bb, cut: Cut):
    """The frozen prefix as an engine batch function (parity-guarded like any frozen network)."""
    import tensorflow as tf


    model = cut.prefix

    @tf.function(reduce_retracing=True)
    def reference(x):
        return model(x, training=False)

    network = f"{bb.spec.name}|{bb.weights_id}|cut:{cut.layer}"
    return engine.FrozenForward(reference, bb.input_size, network, f"cut:{cut.layer}",
                                ir_key=f"{network}|{bb.input_size}|{bb.spec.preprocess}" if bb.weights_stable else None)


class CutCache:
    """Activations at the cut of every image of a split, computed once on the engine into a
    memory-mapped array under the data directory (removed by ``close``); memory is one batch."""

    def __init__(self, forward, paths, size: int, shape: tuple[int, ...], batch_size: int = 32,
                 should_stop: Callable[[], bool] | None = None):

        self.folder = layout.cache("cut_cache") / f"{time.time_ns()}"
        self.folder.mkdir(parents=True)
        n = len(paths)
        try:
            self.X = np.lib.format.open_memmap(self.folder / "activations.npy", mode="w+", dtype=np.float32,
                                               shape=(n, *shape))
            self.valid = np.zeros(n, bool)
            done = 0
            start = time.perf_counter()
            for pixels, ok in pixel_batches(list(paths), size, batch_size):
                if should_stop and should_stop():
                    raise Cancelled("Fine-tuning was cancelled.")
                out = forward(pixels)
                self.X[done:done + len(out)] = out.reshape(len(out), *shape)
                self.valid[done:done + len(out)] = ok
                done += len(out)
            self.X.flush()
            self.seconds = time.perf_counter() - start
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.X = None
        shutil.rmtree(self.folder, ignore_errors=True)


def fit_fine_tune_from_cut(ctx, bb, head, aug, saved_model, phase: str, epochs: int, epoch_offset: int,
                           learning_rate: float, baseline=None):
    """Fine-tuning with the frozen prefix on the engine: the unfrozen top (the cut's suffix),
    pooling and ``head`` train in Keras on the prefix's activations. Without augmentation the
    activations of both splits are cached once (``CutCache``); with it, the training split's
    augmented images run through the prefix on the engine each epoch. Returns the validation
    probabilities from the cached activations (``head_probabilities``)."""
    import keras


    cfg, k = ctx.cfg, ctx.k
    cut = split_at(bb)
    fwd = prefix_forward(bb, cut)
    inputs = keras.Input(cut.shape, name="cut_activations")
    top = keras.Model(inputs, head(pooling_layer(cfg.pooling)(cut.suffix(inputs))), name="fine_tune_top")
    y, yv_all = ctx.ds.labels("train"), ctx.ds.labels("validation")
    ctx.extra.update(cut_layer=cut.layer, cut_index=cut.index, cut_shape=list(cut.shape), frozen_engine=fwd.label)
    caches = []
    try:
        val = CutCache(fwd, ctx.ds.paths("validation"), bb.input_size, cut.shape, 32, ctx.rec.should_stop)
        caches.append(val)
        Xv, yv = np.asarray(val.X[val.valid]), yv_all[val.valid]
        if aug is None:
            tr = CutCache(fwd, ctx.ds.paths("train"), bb.input_size, cut.shape, 32, ctx.rec.should_stop)
            caches.append(tr)
            train: Any = (tr.X[tr.valid] if not tr.valid.all() else tr.X, targets(y[tr.valid], k))
            ctx.extra["cut_cache_seconds"] = tr.seconds + val.seconds
        else:
            train = augmented_batches(fwd, ctx.ds.paths("train"), targets(y, k), bb.input_size, cfg.batch_size,
                                      cut.shape, aug, shuffle=True, seed=cfg.seed)
        with ctx.trained_at("fine_tune", top) as at:
            compile_model(top, cfg, k, learning_rate, at)
            ctx.cancelled = fit_phase(top, cfg, ctx.rec, phase, train, (Xv, targets(yv, k)), epochs, epoch_offset,
                                      len(y), ctx.weights_for(y), ctx.ckpt, ctx.tb, cfg.restore_best, baseline,
                                      saved=saved_model)
        return head_probabilities(top, Xv, yv, ctx.ds.paths("validation"), val.valid, k)
    finally:
        for c in caches:
            c.close()
