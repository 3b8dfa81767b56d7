"""The ``tf.distribute`` strategy models are built under: ``MirroredStrategy`` across the
GPUs of this machine, else TensorFlow's default strategy.

What scales beyond one machine is the *number* of runs (``core.runs.cluster``: each run on a
Ray node, with its own GPUs mirrored here) and feature extraction (``core.features.sharded``).
One run is never split across machines: ``tf.distribute.MultiWorkerMirroredStrategy`` does not
work with Keras 3's ``Model.fit`` (both workers fail converting a ``PerReplica`` value to a
tensor, keras-team/keras#20585), so ``TF_CONFIG`` is not read and no multi-worker path is offered.
"""

from __future__ import annotations


def get_strategy(devices: list[str] | None = None):
    """Pick the strategy for this process; ``devices`` forces a mirrored set (tests, CLI)."""
    import tensorflow as tf

    if devices:
        return tf.distribute.MirroredStrategy(devices)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def describe(strategy) -> str:
    return f"{type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s))"
