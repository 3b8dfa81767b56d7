"""A tiny local backbone with an ImageNet-shaped top, for fast labelling and map tests.

``tinynet.keras`` + ``tinynet.json`` + ``names.txt`` (1,000 class names): input 32 px,
a 1x1 conv that passes the colour channels through (+1) as ``top_activation``, global
average pooling, dropout and a 1,000-way softmax wired so that reddish photos score
the ImageNet cat classes (281-285) and greenish ones the dog classes (151-268). With
``tests.conftest.write_images`` (class 0 red, class 1 green, class 2 blue) a zero-shot
labeller has something real to find.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NAME = "tinynet"
CAT = list(range(281, 286))
DOG = list(range(151, 269))
KNOWN = {7: "cock", 24: "great grey owl", 151: "Chihuahua", 268: "Mexican hairless", 281: "tabby",
         282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat", 383: "Madagascar cat",
         1: "goldfish", 0: "tench", 6: "stingray", 389: "barracouta", 397: "puffer", 511: "convertible",
         817: "sports car"}


def class_names() -> list[str]:
    return [KNOWN.get(i, f"thing {i}") for i in range(1000)]


def build(folder: Path) -> Path:
    """Write the tiny backbone into ``folder`` (a weights directory) and return the folder."""
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((32, 32, 3), name="image")
    conv = keras.layers.Conv2D(3, 1, name="top_conv")
    x = keras.layers.ReLU(name="top_activation")(conv(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(0.2, name="top_dropout")(x)
    dense = keras.layers.Dense(1000, activation="softmax", name="predictions")
    model = keras.Model(inputs, dense(x), name=NAME)
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3), np.ones(3, np.float32)])
    W = np.zeros((3, 1000), np.float32)
    W[0, CAT], W[1, CAT] = 10.0, -10.0
    W[1, DOG], W[0, DOG] = 10.0, -10.0
    dense.set_weights([W, np.zeros(1000, np.float32)])
    model.save(folder / f"{NAME}.keras")
    (folder / "names.txt").write_text("\n".join(class_names()) + "\n", encoding="utf-8")
    manifest = {
        "name": NAME, "display_name": "TinyNet", "input_size": [32, 32],
        "preprocessing": {"mean": [127.5] * 3, "std": [127.5] * 3, "channel_order": "RGB"},
        "feature_layer": "top_activation", "pooled_layer": "avg_pool", "predictions_layer": "predictions",
        "classes_file": "names.txt", "params": int(model.count_params()),
    }
    (folder / f"{NAME}.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder
