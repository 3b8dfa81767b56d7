"""tf.data pipelines over image files: parallel decode + resize, batch, prefetch.

Decoding goes through ``core.data.images.load_rgb`` (EXIF, modes, first frame), so
the pixels match what the live classifier feeds the same model. Kept apart
from ``core.data.dataset`` so that scanning a dataset never imports TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from core.errors import BadImage
from core.data.images import load_rgb


def _load_or_blank(path: bytes, height: int, width: int) -> tuple[np.ndarray, bool]:
    """Decode one file; a file that went bad since the scan gives a blank and ``False``."""
    try:
        return load_rgb(path.decode("utf-8"), (int(height), int(width))), True
    except BadImage:
        return np.zeros((int(height), int(width), 3), np.uint8), False


def image_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None,
    size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    with_valid_mask: bool = False,
):
    """Batches of ``(pixels float32 0..255, label)`` (or ``(pixels, valid)`` with the mask).

    Decoding runs on parallel threads (Pillow releases the GIL while decoding).
    """
    import tensorflow as tf

    n = len(paths)
    path_ds = tf.data.Dataset.from_tensor_slices(np.asarray(list(paths), dtype=object).astype(str))
    label_arr = np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64)
    ds = tf.data.Dataset.zip((path_ds, tf.data.Dataset.from_tensor_slices(label_arr)))
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def decode(path, label):
        img, ok = tf.numpy_function(_load_or_blank, [path, size, size], (tf.uint8, tf.bool), stateful=False)
        img = tf.ensure_shape(img, (size, size, 3))
        ok = tf.ensure_shape(ok, ())
        pixels = tf.cast(img, tf.float32)
        return (pixels, ok) if with_valid_mask else (pixels, label)

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
