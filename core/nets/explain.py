"""Looking inside a backbone: its layer table and the feature maps of one layer.

Kept free of Streamlit and of a module-level TensorFlow import, so the pages
that only list layers stay light and the functions work from a notebook.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from core.errors import TransferLabError
from core.data.images import resize

# Five stops of the viridis colour map: dark blue (low) to yellow (high).
_VIRIDIS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32
)


def _shape(layer: Any) -> tuple | None:
    """A layer's output shape without the batch axis; None when it has several outputs."""
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    return tuple(shape[1:])


def _shape_text(shape: tuple | None) -> str:
    if shape is None:
        return "several"
    return " x ".join("?" if d is None else str(int(d)) for d in shape) or "scalar"


def layer_table(model: Any) -> pd.DataFrame:
    """One row per layer: name, type, output shape, params, trainable, and whether it
    has spatial feature maps (a 4-D output), which is what ``feature_maps`` can show."""
    rows = []
    for layer in model.layers:
        shape = _shape(layer)
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output shape": _shape_text(shape),
            "params": int(layer.count_params()) if layer.built else 0,
            "trainable": bool(layer.trainable),
            "spatial": shape is not None and len(shape) == 3,
        })
    return pd.DataFrame(rows, columns=["name", "type", "output shape", "params", "trainable", "spatial"])


def feature_maps(
    model: Any,
    layer_name: str,
    image_uint8: np.ndarray,
    preprocess: Callable[[Any], Any] | None = None,
    max_maps: int = 32,
) -> np.ndarray:
    """The ``max_maps`` most active channels of ``layer_name`` for one image.

    ``image_uint8`` (H, W, 3) is resized to the model's input size; ``preprocess``
    maps float32 0..255 pixels to the model's inputs (the backbone's own).
    Returns ``(n, h, w)`` float32, each map scaled to 0..1, most active first.
    """
    import keras

    try:
        layer = model.get_layer(layer_name)
    except ValueError as exc:
        raise TransferLabError(f"The model has no layer named '{layer_name}'.") from exc
    shape = _shape(layer)
    if shape is None or len(shape) != 3:
        raise TransferLabError(
            f"Layer '{layer_name}' has no spatial feature maps (output shape {_shape_text(shape)}); "
            "pick a convolution, pooling or activation layer."
        )
    image = np.asarray(image_uint8)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise TransferLabError(f"Expected an RGB image (H, W, 3), got an array of shape {image.shape}.")
    _, height, width, _ = model.input_shape
    if height and width and image.shape[:2] != (height, width):
        from PIL import Image

        image = np.asarray(resize(Image.fromarray(image.astype(np.uint8)), (int(height), int(width))))
    x = image.astype(np.float32)[None]
    if preprocess is not None:
        x = preprocess(x)
    probe = keras.Model(model.input, layer.output)
    maps = np.asarray(probe(x, training=False))[0]  # (h, w, c)
    order = np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[: max(1, int(max_maps))]
    chosen = np.moveaxis(maps[..., order], -1, 0).astype(np.float32)
    low = chosen.min(axis=(1, 2), keepdims=True)
    span = chosen.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (chosen - low) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def tile_maps(maps: np.ndarray, columns: int = 8, cell: int = 96, pad: int = 2) -> np.ndarray:
    """Lay ``(n, h, w)`` maps in 0..1 out as one RGB uint8 image, viridis-coloured.

    Each map is enlarged to ``cell`` px with nearest-neighbour so a 7x7 map shows
    its 49 real activations instead of a browser blur; gaps are white.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or len(maps) == 0:
        raise TransferLabError("No feature maps to show.")
    n, h, w = maps.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    ys = np.arange(cell) * h // cell
    xs = np.arange(cell) * w // cell
    grid = np.ones((rows * (cell + pad) - pad, columns * (cell + pad) - pad, 3), np.uint8) * 255
    for i, m in enumerate(maps):
        r, c = divmod(i, columns)
        big = np.clip(m[np.ix_(ys, xs)], 0, 1) * (len(_VIRIDIS) - 1)
        lo = np.floor(big).astype(int)
        hi = np.minimum(lo + 1, len(_VIRIDIS) - 1)
        frac = (big - lo)[..., None]
        rgb = _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[hi] * frac
        top, left = r * (cell + pad), c * (cell + pad)
        grid[top:top + cell, left:left + cell] = rgb.astype(np.uint8)
    return grid


# ---------------------------------------------------------------- Grad-CAM
#
# Models here nest: a run model is ``pixels -> [augmentation] -> preprocess ->
# base (a functional model) -> pool -> head (a functional model)`` and an
# ImageNet classifier is ``pixels -> preprocess -> network with its top``. The
# last convolutional feature map sits *inside* a nested model, whose layers
# belong to a different graph than the outer model's, so ``keras.Model(outer.input,
# inner_layer.output)`` cannot be built. Instead the forward pass is re-run
# layer by layer in inference mode, with two substitutions: the layers on the
# path to the chosen feature map hand their output to the tape, and the final
# softmax / sigmoid ``Dense`` is applied without its activation (Grad-CAM uses
# the class score before the softmax, which does not saturate).

_JET = np.array(  # a jet-like ramp: dark blue (cold) -> cyan -> green -> yellow -> red (hot)
    [[30, 30, 140], [40, 110, 230], [40, 200, 220], [120, 230, 110], [250, 220, 40], [250, 130, 30],
     [225, 30, 25]], dtype=np.float32
)


class GradCam:
    """One Grad-CAM result: ``heatmap`` (h, w) float32 in [0, 1] at the feature-map
    resolution, for ``class_index``, read at ``layer`` (a path like ``base/top_activation``)."""

    def __init__(self, heatmap: np.ndarray, class_index: int, layer: str, score: float):
        self.heatmap = heatmap
        self.class_index = class_index
        self.layer = layer
        self.score = score

    def __repr__(self) -> str:
        return f"GradCam(layer={self.layer!r}, class_index={self.class_index}, shape={self.heatmap.shape})"


def _is_model(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _spatial(layer: Any) -> bool:
    shape = _shape(layer)
    return shape is not None and len(shape) == 3


def gradcam_layer_path(model: Any) -> list:
    """The layers from ``model`` down to its last 4-D (spatial) layer, through nested models.

    For a run model: ``[base, base.top_activation]``; for an ImageNet classifier:
    ``[network, network.out_relu]``; for a flat CNN: ``[last_conv_or_pool]``.
    Raises ``TransferLabError`` when the model has no spatial feature map.
    """
    import keras

    def search(m) -> list | None:
        for layer in reversed(m.layers):
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if _is_model(layer):
                inner = search(layer)
                if inner:
                    return [layer, *inner]
                continue
            if _spatial(layer):
                return [layer]
        return None

    path = search(model)
    if not path:
        raise TransferLabError("Grad-CAM needs a convolutional feature map, and this model has none.")
    return path


def _final_operation(model: Any):
    """The operation that produces ``model``'s (single) output."""
    if not _is_model(model):
        return None
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1:
        return None
    history = getattr(outputs[0], "_keras_history", None)
    return history.operation if history is not None else model.layers[-1]


def _is_probability_dense(layer: Any) -> bool:
    import keras

    if not isinstance(layer, keras.layers.Dense):
        return False
    act = getattr(layer.activation, "__name__", "")
    return act in ("softmax", "sigmoid")


def _infer(op):
    """Call ``op`` in inference mode (augmentation off, dropout off, BatchNorm frozen)."""
    import keras

    if isinstance(op, keras.layers.Layer):
        return lambda *args, **kwargs: op(*args, **{**kwargs, "training": False})
    return op


def _forward(model: Any, x, path: list, want_logits: bool, record: dict):
    """Run ``model`` on ``x`` in inference mode. The output of ``path[-1]`` (reached
    through the nested models of ``path[:-1]``) is stored in ``record['maps']``; with
    ``want_logits`` the final softmax/sigmoid ``Dense`` skips its activation."""
    from keras import ops

    final = _final_operation(model) if want_logits else None
    overrides: dict[int, Callable] = {}
    if path:
        first, rest = path[0], path[1:]
        if rest:
            overrides[id(first)] = lambda *a, **k: _forward(first, a[0], rest, first is final, record)
        else:
            def keep(*a, _op=first, **k):
                out = _infer(_op)(*a, **k)
                record["maps"] = out
                return out
            overrides[id(first)] = keep
    if final is not None and id(final) not in overrides:
        if _is_model(final):
            overrides[id(final)] = lambda *a, **k: _forward(final, a[0], [], True, record)
        elif _is_probability_dense(final):
            record["logits"] = True
            overrides[id(final)] = lambda *a, **k: ops.add(ops.matmul(a[0], final.kernel), final.bias) \
                if final.use_bias else ops.matmul(a[0], final.kernel)

    def operation_fn(op):
        return overrides.get(id(op)) or _infer(op)

    if hasattr(model, "_run_through_graph") and getattr(model, "_nodes_by_depth", None) is not None:
        out = model._run_through_graph([x], operation_fn=operation_fn)
        while isinstance(out, (list, tuple)) and len(out) == 1:
            out = out[0]
        return out
    import keras

    for layer in model.layers:  # Sequential: one layer after the other
        if not isinstance(layer, keras.layers.InputLayer):
            x = operation_fn(layer)(x)
    return x


_COMPILED: "dict[int, tuple[Any, Any]]" = {}  # id(model) -> (weakref to model, {path key: fn})


def _gradcam_fn(model: Any, path: list):
    """A compiled (``tf.function``) Grad-CAM step for ``model`` and ``path``, made once per model:
    re-running the forward pass op by op eagerly costs seconds, the traced graph tens of ms."""
    import tensorflow as tf
    import weakref

    key = tuple(id(layer) for layer in path)
    entry = _COMPILED.get(id(model))
    if entry is None or entry[0]() is not model:
        entry = (weakref.ref(model), {})
        _COMPILED[id(model)] = entry
        for k in [k for k, (ref, _) in _COMPILED.items() if ref() is None]:
            del _COMPILED[k]
    fns = entry[1]
    if key in fns:
        return fns[key]
    _, height, width, _ = model.input_shape

    @tf.function(input_signature=[tf.TensorSpec((1, height, width, 3), tf.float32), tf.TensorSpec((), tf.int32)])
    def step(x, class_index):
        record: dict = {}
        with tf.GradientTape() as tape:
            out = _forward(model, x, path, True, record)
            if record.get("maps") is None:
                raise TransferLabError("Grad-CAM could not reach the feature map of this model.")
            out = tf.reshape(tf.cast(out, tf.float32), (1, -1))
            if out.shape[-1] == 1:  # one sigmoid unit: class 1 = the unit, class 0 = its negation
                threshold = 0.0 if record.get("logits") else 0.5
                predicted = tf.cast(out[0, 0] > threshold, tf.int32)
                chosen = tf.where(class_index < 0, predicted, class_index)
                score = out[0, 0] * tf.cast(2 * chosen - 1, tf.float32)
            else:
                predicted = tf.cast(tf.argmax(out[0]), tf.int32)
                chosen = tf.where(class_index < 0, predicted, class_index)
                score = tf.gather(out[0], chosen)
        maps = record["maps"]
        grads = tape.gradient(score, maps)
        if grads is None:
            raise TransferLabError("Grad-CAM found no gradient from the class score to the feature map.")
        return tf.cast(maps, tf.float32), tf.cast(grads, tf.float32), chosen, score

    fns[key] = step
    return step


def gradcam(model: Any, pixels: np.ndarray, class_index: int | None = None, path: list | None = None) -> GradCam:
    """Grad-CAM of ``class_index`` (default: the predicted class) for one image.

    ``pixels``: (H, W, 3) at the model's input size, raw 0..255 (the model holds its
    own preprocessing). For a single sigmoid output, class 1 is the unit and class 0
    its negation. The class score is taken before the softmax / sigmoid. Returns a
    heatmap in [0, 1]: ReLU of the gradient-weighted sum of the feature maps divided
    by its maximum (all zero when no region supports the class).
    """
    import tensorflow as tf

    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise TransferLabError(f"Expected an RGB image (H, W, 3), got an array of shape {image.shape}.")
    _, height, width, _ = model.input_shape
    if (height and image.shape[0] != height) or (width and image.shape[1] != width):
        raise TransferLabError(f"Grad-CAM needs the image at the model's input size {height} x {width}, "
                               f"got {image.shape[0]} x {image.shape[1]}.")
    path = path or gradcam_layer_path(model)
    k = int(model.output.shape[-1])
    if class_index is not None and not 0 <= int(class_index) < max(k, 2):
        raise TransferLabError(f"Class index {class_index} is out of range for a model with {max(k, 2)} classes.")
    step = _gradcam_fn(model, path)
    maps, grads, chosen, score = step(tf.convert_to_tensor(image[None]),
                                      tf.constant(-1 if class_index is None else int(class_index), tf.int32))
    maps, grads = maps.numpy()[0], grads.numpy()[0]
    weights = grads.mean(axis=(0, 1))  # (c,): how much each channel supports the class
    cam = np.maximum((maps * weights).sum(axis=-1), 0.0).astype(np.float32)
    top = float(cam.max()) if cam.size else 0.0
    cam = cam / top if top > 0 and np.isfinite(top) else np.zeros_like(cam)
    name = "/".join(layer.name for layer in path)
    return GradCam(np.clip(cam, 0.0, 1.0).astype(np.float32), int(chosen), name, float(score))


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """(h, w) values in [0, 1] -> (h, w, 3) uint8 on a blue-to-red ramp."""
    h = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0, 1) * (len(_JET) - 1)
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, len(_JET) - 1)
    frac = (h - lo)[..., None]
    return (_JET[lo] * (1 - frac) + _JET[hi] * frac).astype(np.uint8)


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heatmap, smoothly enlarged to the image's size, blended over it (uint8 RGB)."""
    from PIL import Image

    image = np.asarray(image_uint8, dtype=np.uint8)
    height, width = image.shape[:2]
    big = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8), "L").resize(
        (width, height), Image.Resampling.BICUBIC)
    colours = colorize(np.asarray(big, np.float32) / 255.0).astype(np.float32)
    weight = alpha * (0.35 + 0.65 * np.asarray(big, np.float32)[..., None] / 255.0)  # cold areas stay see-through
    return np.clip(image.astype(np.float32) * (1 - weight) + colours * weight, 0, 255).astype(np.uint8)
