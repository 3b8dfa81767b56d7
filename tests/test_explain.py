"""Layer table and feature maps on a tiny model with known activations."""

from __future__ import annotations

import numpy as np
import pytest

from core.nets import explain
from core.errors import TransferLabError


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    inputs = keras.Input((16, 16, 3), name="pixels")
    # Channel k of "conv" copies input channel k % 3 times (k + 1): known, ordered activations.
    conv = keras.layers.Conv2D(4, 1, use_bias=False, name="conv")
    x = conv(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(2, name="head")(pooled)
    model = keras.Model(inputs, out)
    kernel = np.zeros((1, 1, 3, 4), np.float32)
    for k in range(4):
        kernel[0, 0, k % 3, k] = k + 1
    conv.set_weights([kernel])
    model.get_layer("head").trainable = False
    return model


def test_layer_table(tiny_model):
    table = explain.layer_table(tiny_model)
    assert list(table["name"]) == ["pixels", "conv", "pool", "head"]
    row = table.set_index("name")
    assert row.loc["conv", "type"] == "Conv2D"
    assert row.loc["conv", "output shape"] == "16 x 16 x 4"
    assert row.loc["conv", "params"] == 12
    assert row.loc["head", "params"] == 4 * 2 + 2
    assert not row.loc["head", "trainable"] and row.loc["conv", "trainable"]
    assert list(table["spatial"]) == [True, True, False, False]


def test_feature_maps_most_active_first_and_normalised(tiny_model):
    image = np.zeros((32, 32, 3), np.uint8)  # resized to the model's 16x16
    image[:, :16, 0] = 200  # red on the left half only
    image[:, :, 1] = 100    # uniform green
    maps = explain.feature_maps(tiny_model, "conv", image, preprocess=lambda x: x / 255.0, max_maps=3)
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    # mean activations: ch0 = 0.39*1/2, ch1 = 0.39*2, ch2 = 0, ch3 = 0.78*4/2 -> order 3, 1, 0
    # (bilinear resizing blurs the one column at the edge of the red half)
    assert np.allclose(maps[0][:, :7], 1) and np.allclose(maps[0][:, 9:], 0)  # red half, ch3
    assert np.allclose(maps[1], 0)  # uniform map has no contrast: all zero, not NaN
    assert np.allclose(maps[2][:, :7], 1) and np.allclose(maps[2][:, 9:], 0)


def test_feature_maps_rejects_non_spatial_and_unknown_layers(tiny_model):
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TransferLabError, match="no spatial feature maps"):
        explain.feature_maps(tiny_model, "pool", image)
    with pytest.raises(TransferLabError, match="no layer named"):
        explain.feature_maps(tiny_model, "nope", image)
    with pytest.raises(TransferLabError, match="RGB image"):
        explain.feature_maps(tiny_model, "conv", np.zeros((16, 16), np.uint8))


def test_tile_maps_layout():
    maps = np.stack([np.zeros((4, 4)), np.ones((4, 4)), np.eye(4)])
    grid = explain.tile_maps(maps, columns=2, cell=8, pad=1)
    assert grid.shape == (17, 17, 3) and grid.dtype == np.uint8
    assert tuple(grid[0, 0]) == (68, 1, 84)        # 0 -> dark viridis
    assert tuple(grid[0, 9]) == (253, 231, 37)     # 1 -> yellow
    assert tuple(grid[8, 8]) == (255, 255, 255)    # gap
    assert tuple(grid[9, 0]) == (253, 231, 37) and tuple(grid[9, 2]) == (68, 1, 84)  # eye, nearest
    assert tuple(grid[12, 12]) == (255, 255, 255)  # empty fourth cell
    with pytest.raises(TransferLabError):
        explain.tile_maps(np.zeros((0, 4, 4)))


@pytest.mark.real
def test_feature_maps_of_a_real_backbone(shared_assets):
    from core.nets.backbones import load_backbone

    bb = load_backbone("efficientnet_lite0")
    table = explain.layer_table(bb.base)
    assert len(table) > 50 and table["params"].sum() > 3_000_000
    layer = table[table["spatial"]]["name"].iloc[5]
    rng = np.random.default_rng(0)
    maps = explain.feature_maps(bb.base, layer, rng.integers(0, 255, (300, 200, 3), np.uint8), bb.preprocess, 16)
    assert maps.shape[0] == 16 and maps.shape[1] > 1
    assert (maps.max(axis=(1, 2)) == 1).sum() > 8  # real, varied activations
