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
from core.settings import usable_cores


def _load_or_blank(path: bytes, height: int, width: int) -> tuple[np.ndarray, bool]:
    """Decode one file; a file that went bad since the scan gives a blank and ``False``."""
    try:
        return load_rgb(path.decode("utf-8"), (int(height), int(width))), True
    except BadImage:
        return np.zeros((int(height), int(width), 3), np.uint8), False


def _decode_into(batch: np.ndarray, row: int, path: str) -> bool:
    """Decode one file straight into its row of the float32 batch, on the worker: converting
    and stacking on the consumer's thread cost it ~0.7 ms an image on the 2-core machine, while
    the engine waited."""
    size = batch.shape[1]
    batch[row], ok = _load_or_blank(path.encode("utf-8"), size, size)
    return ok


def pixel_batches(paths: Sequence[str], size: int, batch_size: int, *, workers: int | None = None,
                  ahead: int = 2):
    """``(pixels float32 (n, size, size, 3), valid bool (n,))`` numpy batches in order, each
    decoded by all ``workers`` threads at once (one image each, written into the batch); ``ahead``
    batches more are decoded while the consumer works on the current one (memory: that many batches).

    For a consumer that runs a frozen forward pass on numpy (``core.nets.engine``): no tf.data
    element overhead and no tensor round trip. Decoding ahead wins on a quiet machine even though
    the engine uses every core: EfficientNet-Lite0 bf16 over 300 cats_vs_dogs JPEGs on the 2-core
    machine ran at 0.73 of the bare forward pass with ``ahead=2`` and 0.66 decoding and forwarding
    in turn (``ahead=0``). The pixels are ``image_dataset``'s (``load_rgb``; a bad file is a blank).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor


    paths = list(paths)
    workers = workers or min(8, max(2, usable_cores()))
    starts = deque(range(0, len(paths), batch_size))
    pending: deque = deque()

    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        def top_up(count: int) -> None:
            while len(pending) < count and starts:
                start = starts.popleft()
                chunk = paths[start:start + batch_size]
                batch = np.empty((len(chunk), size, size, 3), np.float32)
                pending.append((batch, [pool.submit(_decode_into, batch, row, p) for row, p in enumerate(chunk)]))

        try:
            top_up(1)
            while pending:
                batch, futures = pending.popleft()
                valid = np.array([f.result() for f in futures], bool)
                top_up(ahead)  # decoded while the consumer works on this batch
                yield batch, valid
                top_up(1)
        finally:
            for _, futures in pending:
                for f in futures:
                    f.cancel()


def without_autotune(ds):
    """``ds`` with tf.data's autotuner off. With it on, the end of an iteration (an epoch, a
    validation pass) often waited for it: EfficientNet-Lite0 on 600 augmented cats_vs_dogs photos,
    2-core machine, 2.1-2.3 s at the end of 7 of 12 epochs (epochs of 5.2 s against 2.9 s); off,
    never. Parallelism and prefetch are set explicitly instead (``parallel_calls``, ``PREFETCH``)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def parallel_calls() -> int:
    """Map parallelism: one call per usable core (what the autotuner settled on here)."""
    return max(1, usable_cores())


PREFETCH = 2  # batches ready ahead of the consumer
KEEP_DECODED_MB = 1024  # a split whose decoded pixels fit in this many MB is decoded once, not every epoch


def image_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None,
    size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    with_valid_mask: bool = False,
    keep_decoded: bool = False,
):
    """Batches of ``(pixels float32 0..255, label)`` (or ``(pixels, valid)`` with the mask).

    Decoding runs on parallel threads (Pillow releases the GIL while decoding). With
    ``keep_decoded`` (datasets iterated for several epochs) a split that fits in
    ``KEEP_DECODED_MB`` keeps its decoded uint8 pixels in memory after the first pass, and
    later epochs only shuffle and batch: on a 2-core CPU decoding JPEGs again every epoch
    costs as much as a fast engine's forward pass.
    """
    import tensorflow as tf

    n = len(paths)
    path_ds = tf.data.Dataset.from_tensor_slices(np.asarray(list(paths), dtype=object).astype(str))
    label_arr = np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64)
    ds = tf.data.Dataset.zip((path_ds, tf.data.Dataset.from_tensor_slices(label_arr)))

    def decode(path, label):
        img, ok = tf.numpy_function(_load_or_blank, [path, size, size], (tf.uint8, tf.bool), stateful=False)
        return tf.ensure_shape(img, (size, size, 3)), tf.ensure_shape(ok, ()), label

    keep = keep_decoded and n * size * size * 3 <= KEEP_DECODED_MB * 2**20
    if keep:  # decode in file order once, then shuffle the decoded images every epoch
        ds = ds.map(decode, num_parallel_calls=parallel_calls(), deterministic=True).cache()
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if not keep:
        ds = ds.map(decode, num_parallel_calls=parallel_calls(), deterministic=True)

    def as_float(img, ok, label):
        return (tf.cast(img, tf.float32), ok if with_valid_mask else label)

    ds = ds.map(as_float, num_parallel_calls=parallel_calls()).batch(batch_size).prefetch(PREFETCH)
    return without_autotune(ds)
