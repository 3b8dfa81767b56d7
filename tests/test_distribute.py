"""One run trains on one machine: ``TF_CONFIG`` no longer leads to MultiWorkerMirroredStrategy (it
fails under Keras 3's fit, keras-team/keras#20585); MirroredStrategy over local devices stays."""

from __future__ import annotations

import json

from core.train.distribute import describe, get_strategy


def test_a_multi_worker_tf_config_is_not_read(monkeypatch):
    import tensorflow as tf

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                                                "task": {"type": "worker", "index": 0}}))
    strategy = get_strategy()
    assert not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    assert strategy.num_replicas_in_sync == 1 and "MultiWorker" not in describe(strategy)


def test_devices_give_a_mirrored_strategy():
    import tensorflow as tf

    strategy = get_strategy(["/cpu:0"])
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert describe(strategy) == "MirroredStrategy (1 replica(s))"
