"""Looking inside a backbone: its layer table and the feature maps of one layer.

Kept free of Streamlit and of a module-level TensorFlow import, so the pages
that only list layers stay light and the functions work from a notebook.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from .errors import TransferLabError
from .images import resize

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
