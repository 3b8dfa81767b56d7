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
# base (a functional model) -> pool -> head (a functional model)``, an ImageNet
# classifier is ``pixels -> preprocess -> network with its top``, the from-scratch
# CNN is flat with a nested head. Grad-CAM splits such a model, with public Keras
# calls only, at the last spatial feature map into two halves:
#
# - ``front``: pixels -> feature map. The stages before the nested model that holds
#   the map are called one after another; inside the model that owns the map's
#   layer, ``keras.Model(owner.inputs, layer.output)`` reads it from the owner's
#   own graph (any graph: residual blocks, branches).
# - ``back``: feature map -> class scores: the stages after the map, one after
#   another, with the final softmax / sigmoid ``Dense`` applied as ``x @ kernel +
#   bias`` (Grad-CAM uses the class score before the softmax, which does not saturate).
#
# Everything runs in inference mode (augmentation off, Dropout off, BatchNorm frozen).
# The tape watches the feature map between the halves. The stages around a nested
# model are called in order, which is right when they form a chain (every model
# Transfer Lab builds); the first use of a split checks that ``back(front(x))``
# reproduces ``model(x)`` and refuses a model it would misread.

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


def _stages(model: Any) -> list:
    """``model``'s layers in graph order, input layers left out. Keras lists a functional
    model's layers by depth, inputs first, so the last one produces the output."""
    import keras

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _is_probability_dense(layer: Any) -> bool:
    import keras

    if not isinstance(layer, keras.layers.Dense):
        return False
    act = getattr(layer.activation, "__name__", "")
    return act in ("softmax", "sigmoid")


def _infer(layer: Any) -> Callable:
    """Call ``layer`` in inference mode (augmentation off, Dropout off, BatchNorm frozen)."""
    return lambda x: layer(x, training=False)


def _linear(dense: Any) -> Callable:
    """A ``Dense`` layer without its activation: the class scores before the softmax / sigmoid."""
    from keras import ops

    def scores(x):
        y = ops.matmul(x, dense.kernel)
        return ops.add(y, dense.bias) if dense.use_bias else y

    return scores


def _submodel(model: Any, output: Any) -> list:
    """``keras.Model(model.input, output)`` (a tensor of ``model``'s own graph) as a
    one-step list; empty when ``output`` is the input itself."""
    import keras

    if output is model.input:
        return []
    return [_infer(keras.Model(model.input, output))]


def _scores(model: Any) -> tuple[list, str]:
    """``model`` as steps that end in its class scores before the activation, and the
    activation left off ("" when its last layer is no softmax / sigmoid ``Dense``)."""
    stages = _stages(model)
    if len(getattr(model, "outputs", None) or []) != 1 or not stages:
        return [_infer(model)], ""
    final = stages[-1]
    if _is_probability_dense(final):
        return [*_submodel(model, final.input), _linear(final)], final.activation.__name__
    if _is_model(final):
        return _tail(stages, want_scores=True)
    return [_infer(model)], ""


def _tail(stages: list, want_scores: bool) -> tuple[list, str]:
    """The steps that run ``stages`` one after another; with ``want_scores`` the last one
    stops at the class scores (see ``_scores``)."""
    if not stages or not want_scores:
        return [_infer(layer) for layer in stages], ""
    *rest, last = stages
    steps = [_infer(layer) for layer in rest]
    if _is_probability_dense(last):
        return [*steps, _linear(last)], last.activation.__name__
    if _is_model(last):
        inner, activation = _scores(last)
        return [*steps, *inner], activation
    return [*steps, _infer(last)], ""


class _Split:
    """``model`` cut at a feature map: ``front`` (pixels -> map) and ``back`` (map -> class
    scores, before ``activation``, "" when the output is not a softmax / sigmoid)."""

    def __init__(self, front: list, back: list, activation: str):
        self.front, self.back, self.activation = front, back, activation

    def maps(self, x):
        for step in self.front:
            x = step(x)
        return x

    def scores(self, maps):
        for step in self.back:
            maps = step(maps)
        return maps

    def outputs(self, x):
        """What the model outputs (probabilities), through the two halves."""
        from keras import ops

        y = self.scores(self.maps(x))
        if self.activation == "softmax":
            return ops.softmax(y, axis=-1)
        if self.activation == "sigmoid":
            return ops.sigmoid(y)
        return y


def _split(model: Any, path: list, want_scores: bool = True) -> _Split:
    """Cut ``model`` at ``path[-1]``'s output, reached through the nested models of ``path[:-1]``."""
    target, rest = path[0], path[1:]
    stages = _stages(model)
    index = next((i for i, layer in enumerate(stages) if layer is target), None)
    if index is None:
        raise TransferLabError(f"Grad-CAM could not find layer '{target.name}' in model '{model.name}'.")
    after, activation = _tail(stages[index + 1:], want_scores)
    if rest:
        inner = _split(target, rest, want_scores and index == len(stages) - 1)
        before = [_infer(layer) for layer in stages[:index]]
        return _Split([*before, *inner.front], [*inner.back, *after], inner.activation or activation)
    return _Split(_submodel(model, target.output), after, activation)


_COMPILED: "dict[int, tuple[Any, Any]]" = {}  # id(model) -> (weakref to model, {path key: (split, step)})


def _gradcam_fn(model: Any, path: list, x: np.ndarray):
    """The Grad-CAM step for ``model`` and ``path``, a ``tf.function`` made once per model and
    path (the traced graph runs in tens of ms). Its split is checked on ``x``, the first image:
    ``back(front(x))`` must give ``model(x)``."""
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
    split = _split(model, path)
    refused = TransferLabError(
        f"Grad-CAM cannot split model '{model.name}' at '{'/'.join(layer.name for layer in path)}': "
        "its layers around the feature map do not form a chain.")
    expected = np.asarray(model(x, training=False), np.float32)
    try:
        got = np.asarray(split.outputs(x), np.float32)
    except Exception as exc:  # a stage fed what it cannot take: the graph is no chain there
        raise refused from exc
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise refused
    _, height, width, _ = model.input_shape
    scores_are_logits = bool(split.activation)

    @tf.function(input_signature=[tf.TensorSpec((1, height, width, 3), tf.float32), tf.TensorSpec((), tf.int32)])
    def step(pixels, class_index):
        maps = split.maps(pixels)
        with tf.GradientTape() as tape:
            tape.watch(maps)
            out = tf.reshape(tf.cast(split.scores(maps), tf.float32), (1, -1))
            if out.shape[-1] == 1:  # one sigmoid unit: class 1 = the unit, class 0 = its negation
                threshold = 0.0 if scores_are_logits else 0.5
                predicted = tf.cast(out[0, 0] > threshold, tf.int32)
                chosen = tf.where(class_index < 0, predicted, class_index)
                score = out[0, 0] * tf.cast(2 * chosen - 1, tf.float32)
            else:
                predicted = tf.cast(tf.argmax(out[0]), tf.int32)
                chosen = tf.where(class_index < 0, predicted, class_index)
                score = tf.gather(out[0], chosen)
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
    step = _gradcam_fn(model, path, image[None])
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
