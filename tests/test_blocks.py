"""Features from an earlier block (core.nets.blocks) on a tiny local backbone: the cut's
output, its cache entries kept apart from the top's, and a clear error for a wrong name."""

from __future__ import annotations

import numpy as np
import pytest

from core import settings
from core.data.dataset import scan_folder
from core.nets import backbones, blocks
from tests.helpers import make_local_backbone


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(folder))
    make_local_backbone(folder)  # conv (16 px) -> top_activation (8 px)
    return backbones.load_backbone("tiny")


def test_block_outputs_name_the_stage_below_the_top(tiny):
    assert blocks.block_outputs(tiny)[-1] == "conv"
    assert blocks.earlier_block(tiny) == "conv"


def test_truncate_gives_the_earlier_feature_map_with_the_same_preprocessing(tiny):
    import keras

    cut = blocks.truncate(tiny, "conv")
    assert cut.feature_shape == (16, 16, 8) and tiny.feature_shape == (8, 8, 12)
    assert cut.weights_id == f"{tiny.weights_id}@conv"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    reference = keras.Model(tiny.base.input, tiny.base.get_layer("conv").output)(tiny.preprocess(x))
    np.testing.assert_allclose(np.asarray(cut.model(x)), np.asarray(reference), atol=1e-5)
    with pytest.raises(ValueError, match="block outputs: conv"):
        blocks.truncate(tiny, "no_such_layer")


def test_earlier_block_features_are_cached_apart_from_the_top(tiny, image_folder):
    from core.features.cache import extract_features

    ds = scan_folder(image_folder)
    top = extract_features(ds, "tiny", split="train", loaded=tiny)
    cut = extract_features(ds, "tiny", split="train", loaded=blocks.truncate(tiny, "conv"))
    assert top.X.shape[1] == 12 and cut.X.shape[1] == 8 and top.key != cut.key
    again = extract_features(ds, "tiny", split="train", loaded=blocks.truncate(tiny, "conv"))
    assert again.from_cache and np.array_equal(np.asarray(again.X), np.asarray(cut.X))
