"""Forward passes through a network: the one pooling definition and the compiled batch call.

Extraction, training and inference all pool through ``pooling_layer``, so the
vectors cached for a head are the ones that head sees inside the pixel model.
"""

from __future__ import annotations

POOLINGS = ("avg", "max", "flatten")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling


def pooling_layer(pooling: str, name: str = "pool"):
    """The Keras layer that turns a 4-D feature map into the vector a head reads."""
    import keras

    return {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
        "flatten": keras.layers.Flatten,
    }[check_pooling(pooling)](name=name)


def compiled_forward(model, pooling: str):
    """``model`` in inference mode, then pooling, as one traced ``tf.function`` over a batch."""
    import tensorflow as tf

    pool = pooling_layer(pooling)

    @tf.function(reduce_retracing=True)
    def forward(x):
        return pool(model(x, training=False))

    return forward
