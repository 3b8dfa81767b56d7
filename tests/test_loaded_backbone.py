"""One backbone cache per process (core.nets.loaded), shared by the pages and the analyses."""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict

import pytest

from core.analysis import labeling
from core.data.dataset import scan_folder
from core.features import dataset as features
from core.nets import backbones, loaded
from tests import tiny_backbone

pytestmark = pytest.mark.engine  # run again under the default engine (scripts/test.sh)


@pytest.fixture
def tiny(tiny, monkeypatch) -> str:
    """The tiny backbone, with this process's backbone cache empty."""
    monkeypatch.setattr(loaded, "_HELD", OrderedDict())
    return tiny_backbone.NAME


@pytest.fixture
def loads(monkeypatch) -> list[tuple]:
    """Every real load_backbone call, recorded."""
    calls: list[tuple] = []
    real = backbones.load_backbone

    def counting(name, weights="imagenet", input_size=None, seed=0):
        calls.append((name, weights, input_size))
        return real(name, weights, input_size, seed)

    monkeypatch.setattr(backbones, "load_backbone", counting)
    return calls


def test_a_backbone_is_loaded_once_and_shared(tiny, loads):
    a = loaded.loaded_backbone(tiny)
    b = loaded.loaded_backbone(tiny, "imagenet")
    assert a is b and len(loads) == 1
    rand = loaded.loaded_backbone(tiny, None)  # random weights: another network
    assert rand is not a and len(loads) == 2
    assert rand.weights_id == "random-0" and a.weights_id.startswith("imagenet-")


def test_least_recently_used_goes_first(tiny, loads):
    first = loaded.loaded_backbone(tiny)
    loaded.loaded_backbone(tiny, None)
    assert loaded.loaded_backbone(tiny) is first  # used again: now the most recent
    loaded.loaded_backbone("mobilenet_v2", None, input_size=32)  # a third one evicts the random tinynet
    assert len(loaded._HELD) == loaded.KEEP
    assert loaded.loaded_backbone(tiny) is first and len(loads) == 3
    loaded.loaded_backbone(tiny, None)
    assert len(loads) == 4


def test_other_weight_files_load_again(tiny, tiny_weights, loads, tmp_path, monkeypatch):
    a = loaded.loaded_backbone(tiny)
    other = tmp_path / "other"
    shutil.copytree(tiny_weights, other)  # identical bytes elsewhere: the same weights, no reload
    net = other / f"{tiny}.keras"
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(other))
    assert loaded.loaded_backbone(tiny) is a and len(loads) == 1
    import keras

    model = keras.saving.load_model(net, safe_mode=True)
    w = model.get_layer("top_conv").get_weights()
    model.get_layer("top_conv").set_weights([w[0] * 2, w[1]])
    model.save(net)  # different weights under the same name
    assert loaded.loaded_backbone(tiny) is not a and len(loads) == 2


def test_sessions_asking_at_once_get_one_copy(tiny, loads):
    got = []
    threads = [threading.Thread(target=lambda: got.append(loaded.loaded_backbone(tiny))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and all(bb is got[0] for bb in got)


def test_the_analyses_extract_through_the_shared_backbone(tiny, loads, image_folder, tmp_path):
    """Features of two datasets and an auto-labelling run: one load, and none once everything is cached."""
    ds = scan_folder(image_folder)
    assert not features.features_cached(ds, tiny)
    feats = features.dataset_features(ds, tiny)
    assert features.features_cached(ds, tiny) and len(loads) == 1
    assert len(feats.X) == len(ds.records) and feats.splits.count("validation") == len(ds.split("validation"))
    shutil.copytree(image_folder / "train", tmp_path / "inbox")
    labeling.auto_label(labeling.scan_unlabelled(tmp_path / "inbox"), ds.classes, tiny, method="few_shot",
                        labelled=ds)
    assert len(loads) == 1
    loaded._HELD.clear()
    features.dataset_features(ds, tiny)  # every split cached: the backbone is not loaded at all
    assert len(loads) == 1
