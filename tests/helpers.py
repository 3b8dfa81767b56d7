"""Helpers the test modules share: where the repository and the shared real assets are,
generated class-patterned images, and a small local backbone on disk.

Import them from here (``from tests.helpers import write_images``); fixtures live in
``conftest.py``, which pytest loads by itself and no module imports.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRANSFER_LAB_SHARED", REPO.parent / "shared")).resolve()
SHARED_WEIGHTS = SHARED / "keras-weights"
CATS_VS_DOGS = SHARED / "datasets" / "cats_vs_dogs"


def pattern(label_index: int, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A class-dependent picture: class 0 horizontal stripes, class 1 vertical, etc.,
    in a class colour, with noise, so tiny models can learn it."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    period = 6
    kinds = [yy // period % 2, xx // period % 2, (xx + yy) // period % 2, (xx // period + yy // period) % 2]
    stripes = kinds[label_index % len(kinds)].astype(np.float32)
    colour = np.array([[255, 60, 60], [60, 200, 60], [60, 60, 255], [230, 200, 40]][label_index % 4], np.float32)
    img = stripes[..., None] * colour + (1 - stripes[..., None]) * 30
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, label_index: int, n: int, size=(40, 48), seed=0, fmt="png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1000 * label_index)
    out = []
    for i in range(n):
        path = folder / f"img_{i:03d}.{fmt}"
        Image.fromarray(pattern(label_index, rng, size)).save(path)
        out.append(path)
    return out


LOCAL_MEAN = (100.0, 110.0, 120.0)  # the preprocessing in make_local_backbone's manifest
LOCAL_STD = (50.0, 60.0, 70.0)


def make_local_backbone(folder: Path, name: str = "tiny", size: int = 32, seed: int = 0,
                        feature_filters: int = 12, feature_stride: int = 2, **manifest_extra):
    """A small functional ImageNet-style classifier saved as NAME.keras + NAME.json (a local
    backbone): conv -> ``top_activation`` (the feature layer) -> avg_pool -> 5-way predictions.
    ``manifest_extra`` overrides or adds manifest keys."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(feature_filters, 3, strides=feature_stride, padding="same", activation="relu",
                            name="top_activation")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, outputs, name=name)
    # "pretrained": weights no random initialisation would give, whatever the seed
    model.set_weights([w * 1.5 + 0.01 for w in model.get_weights()])
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / f"{name}.keras")
    manifest = {
        "name": name, "display_name": f"{name} test net", "input_size": [size, size],
        "preprocessing": {"mean": list(LOCAL_MEAN), "std": list(LOCAL_STD), "channel_order": "RGB"},
        "feature_layer": "top_activation", "pooled_layer": "avg_pool", "predictions_layer": "predictions",
        "params": model.count_params(), "imagenet_top1": 12.5, "license": "MIT", "source": "test",
        **manifest_extra,
    }
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    return model


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", poll: float = 0.1):
    """``predicate()``'s first truthy value, polled; an AssertionError naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def worker_log(run) -> str:
    """A run's worker log, for failure messages."""
    return run.log_path.read_text() if run.log_path.exists() else "(no worker.log)"


def wait_state(run, *states: str, timeout: float) -> dict:
    """The run's status once its (recorded) state is one of ``states``."""
    wait_for(lambda: run.status()["state"] in states, timeout,
             f"{run.id} to be {states} (is {run.status()}); log:\n{worker_log(run)[-3000:]}")
    return run.status()


BF16_SCALE_SHARE = 0.02  # bf16 keeps 8 mantissa bits: outputs stay within ~1% of their scale of f32's


def engine_precision() -> str:
    """The precision frozen forward passes run at in this test run (``TRANSFER_LAB_ENGINE``)."""
    from core.nets import engine

    return engine.choose().precision


def assert_matches_reference(actual, desired, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Engine outputs against a TensorFlow f32 reference: at f32 tolerances, or, when the engine
    computes in bf16, within ``BF16_SCALE_SHARE`` of the reference's largest magnitude (a
    wrong image, order or preprocessing is still far outside that)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    if engine_precision() == "bf16":
        rtol, atol = 0.0, max(atol, BF16_SCALE_SHARE * float(np.abs(desired).max() or 1.0))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol)


def unescaped(text: str) -> str:
    """Markdown shown by the app as a reader sees it: backslash escapes, character references and
    word joiners (``app_pages.common.plain``) turned back into the characters they stand for."""
    import html
    import re

    return html.unescape(re.sub(r"\\(.)", r"\1", text)).replace("\u2060", "")


def texts(elements) -> str:
    """The text of AppTest elements as a reader sees it (markdown escapes removed), `` | ``-joined."""
    return " | ".join(unescaped(str(e.value)) for e in elements)
