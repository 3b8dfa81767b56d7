"""The ``tf.distribute`` strategy models are built under.

Multi-worker from ``TF_CONFIG``, ``MirroredStrategy`` across local GPUs, else
TensorFlow's default strategy: the same code scales from a laptop to a cluster.
"""

from __future__ import annotations

import json
import os


def get_strategy(devices: list[str] | None = None):
    """Pick the strategy for this process; ``devices`` forces a mirrored set (tests, CLI)."""
    import tensorflow as tf

    if devices:
        return tf.distribute.MirroredStrategy(devices)
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config and len(json.loads(tf_config).get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def describe(strategy) -> str:
    return f"{type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s))"
