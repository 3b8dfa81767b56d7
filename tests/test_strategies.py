"""Strategy configs and model builders: round trips, validation, output heads, the classic
recipe, unfreezing the top of a base, and the base kept in inference mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.train import strategies
from core.errors import ConfigError
from core.train import registry
from core.train.strategies import Augment, StrategyConfig, output_spec, unfreeze_top

TINY_SIZE = 32


def make_tiny_backbone(folder: Path, name: str = "tiny") -> Path:
    """Write a tiny local backbone (``NAME.keras`` + manifest) with BatchNorm layers.

    Layers: conv1 bn1 relu1 pool1 conv2 bn2 top_activation; input 32 px. It loads through
    the same registry path as the shared EfficientNet-Lite backbones, in a fraction of the time.
    """
    import keras

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="top_activation")(x)
    model = keras.Model(inputs, x, name=name)
    model.save(folder / f"{name}.keras")
    (folder / f"{name}.json").write_text(json.dumps({
        "name": name, "display_name": f"Tiny test backbone ({name})", "input_size": [TINY_SIZE, TINY_SIZE],
        "preprocessing": {"mean": [127.5] * 3, "std": [127.5] * 3, "channel_order": "RGB"},
        "feature_layer": "top_activation", "params": int(model.count_params()),
    }))
    return folder


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_weights"))


@pytest.fixture
def tiny(tiny_weights_dir, monkeypatch) -> str:
    """The name of the tiny local backbone, registered through TRANSFER_LAB_WEIGHTS_DIR."""
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(tiny_weights_dir))
    return "tiny"


@pytest.fixture(scope="module")
def mobilenet_base():
    import keras

    return keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))


# ---------------------------------------------------------------- configs

def test_config_round_trip_through_json_including_augment():
    cfg = StrategyConfig(
        strategy="fine_tune", dataset="/data/x", backbone="mobilenet_v2", weights="random", input_size=96,
        pooling="max", seed=7, head_units=64, dropout=0.25, epochs=3, batch_size=16, learning_rate=3e-4,
        optimizer="sgd", early_stopping=2, reduce_lr=1, restore_best=False, class_weights=True,
        augment=Augment(enabled=True, flip="vertical", rotation=0.2, zoom=0.0, translation=0.05, contrast=0.3),
        fine_tune_layers=7, fine_tune_from="block_5_add", fine_tune_epochs=2, fine_tune_lr=2e-6,
        scratch_filters=(8, 16), probe_c=0.5, limit_per_class=11, name="round trip",
    )
    d = cfg.to_dict()
    assert d["augment"] == {"enabled": True, "flip": "vertical", "rotation": 0.2, "zoom": 0.0,
                            "translation": 0.05, "contrast": 0.3, "fill": "auto", "fill_value": 255.0}
    assert d["scratch_filters"] == [8, 16]
    back = StrategyConfig.from_dict(json.loads(json.dumps(d)))
    assert back == cfg
    assert isinstance(back.augment, Augment) and back.augment.flip == "vertical"
    assert back.scratch_filters == (8, 16)
    # unknown keys (e.g. a stale "entry" in a run made before 2026-12) are ignored, missing keys take defaults
    partial = StrategyConfig.from_dict({"strategy": "scratch", "entry": "core.train.fit", "epochs": 2})
    assert partial.strategy == "scratch" and partial.epochs == 2 and partial.augment == Augment()
    assert StrategyConfig(weights="random").weights_arg is None
    assert StrategyConfig(weights="imagenet").weights_arg == "imagenet"


def test_invalid_optimizer_rejected():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        StrategyConfig(optimizer="adagrad")
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        StrategyConfig.from_dict({"optimizer": "adagrad"})


def test_unknown_strategy_rejected_by_the_registry():
    """A config naming no registered strategy cannot make a run: checked, made or fitted."""
    from core.train.fit import fit

    bad = StrategyConfig.from_dict({"strategy": "transfer_everything"})
    for attempt in (lambda: registry.check(bad), lambda: registry.make_config("transfer_everything"),
                    lambda: fit(bad)):
        with pytest.raises(ConfigError, match="Unknown strategy 'transfer_everything'"):
            attempt()


def test_every_strategy_and_optimizer_is_accepted():
    for name in registry.STRATEGIES:
        assert registry.check(StrategyConfig(strategy=name)).strategy == name
        assert registry.make_config(name).strategy == name
        assert registry.make_config(name, "classic").strategy == name
    for opt in strategies.OPTIMIZERS:
        assert StrategyConfig(optimizer=opt).optimizer == opt


def test_classic_recipe_fields():
    cfg = registry.make_config("feature_extraction", "classic")
    assert cfg.strategy == "feature_extraction"
    assert cfg.backbone == "vgg16" and cfg.input_size == 150 and cfg.pooling == "flatten"
    assert cfg.optimizer == "rmsprop" and cfg.learning_rate == pytest.approx(2e-5)
    assert cfg.epochs == 30 and cfg.batch_size == 20
    assert cfg.head_units == 256 and cfg.dropout == pytest.approx(0.5)
    over = registry.make_config("feature_extraction", "classic", weights="random", epochs=2, limit_per_class=100)
    assert (over.weights, over.epochs, over.limit_per_class) == ("random", 2, 100)
    assert (over.backbone, over.input_size, over.pooling, over.learning_rate) == ("vgg16", 150, "flatten", 2e-5)


# ---------------------------------------------------------------- output heads

def test_output_spec_sigmoid_for_two_softmax_otherwise():
    assert output_spec(2) == (1, "sigmoid", "binary_crossentropy")
    assert output_spec(3) == (3, "softmax", "sparse_categorical_crossentropy")
    assert output_spec(10) == (10, "softmax", "sparse_categorical_crossentropy")


def test_heads_follow_the_class_count_of_real_datasets(image_folder, flat_folder):
    from core.data.dataset import scan_folder

    two, three = scan_folder(image_folder), scan_folder(flat_folder)
    assert (two.num_classes, three.num_classes) == (2, 3)
    for ds, units, act in ((two, 1, "sigmoid"), (three, 3, "softmax")):
        head = strategies.build_head(20, ds.num_classes, 16, 0.5)
        out = head.get_layer("head_output")
        assert out.units == units and out.activation.__name__ == act
        assert head.get_layer("head_dense").units == 16 and head.get_layer("head_dropout").rate == 0.5
        p = np.asarray(head.predict(np.random.default_rng(0).normal(size=(4, 20)).astype("float32"), verbose=0))
        assert p.shape == (4, units)
        if units > 1:
            assert np.allclose(p.sum(axis=1), 1, atol=1e-5)
        else:
            assert ((p > 0) & (p < 1)).all()
        scratch = strategies.build_scratch_model(32, ds.num_classes, (8, 16), 8, 0.0)
        assert scratch.output_shape == (None, units)


def test_linear_head_has_no_hidden_layer():
    head = strategies.build_head(12, 3, 0, 0.0)
    assert [layer.name for layer in head.layers] == ["features", "head_output"]
    assert head.count_params() == 12 * 3 + 3


def test_augmentation_block_follows_config():
    assert strategies.augmentation(Augment(enabled=False), 0) is None
    assert strategies.augmentation(Augment(flip="", rotation=0, zoom=0, translation=0, contrast=0), 0) is None
    aug = strategies.augmentation(Augment(flip="horizontal", rotation=0.1, zoom=0, translation=0, contrast=0.2), 0)
    assert [type(layer).__name__ for layer in aug.layers] == ["RandomFlip", "RandomRotation", "RandomContrast"]


# ---------------------------------------------------------------- unfreezing

def _is_bn(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def test_unfreeze_top_n_layers_keeps_batchnorm_frozen(mobilenet_base):
    base = mobilenet_base
    n = 20
    count = unfreeze_top(base, n)
    layers = base.layers
    top = layers[-n:]
    assert any(_is_bn(layer) for layer in top)  # the case that matters
    for layer in layers[:-n]:
        assert not layer.trainable, f"{layer.name} below the top {n} must stay frozen"
    for layer in top:
        assert layer.trainable == (not _is_bn(layer)), layer.name
    assert all(not layer.trainable for layer in layers if _is_bn(layer))
    expected = [layer for layer in top if not _is_bn(layer) and layer.weights]
    assert count == len(expected) > 0
    trainable = {id(w) for w in base.trainable_weights}
    assert trainable == {id(w) for layer in expected for w in layer.trainable_weights}


def test_unfreeze_from_named_layer(mobilenet_base):
    base = mobilenet_base
    names = [layer.name for layer in base.layers]
    start = names.index("block_15_expand")
    count = unfreeze_top(base, 3, from_layer="block_15_expand")  # the name wins over the count
    for i, layer in enumerate(base.layers):
        assert layer.trainable == (i >= start and not _is_bn(layer)), layer.name
    assert count == sum(1 for layer in base.layers[start:] if not _is_bn(layer) and layer.weights)
    with pytest.raises(ValueError, match="no_such_layer"):
        unfreeze_top(base, from_layer="no_such_layer")


def test_unfreeze_zero_layers_trains_nothing(mobilenet_base):
    assert unfreeze_top(mobilenet_base, 0) == 0
    assert mobilenet_base.trainable_weights == []


# ---------------------------------------------------------------- inference-mode base

def _bn_stats(base) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in base.layers if _is_bn(layer)}


def _train_step(model, steps=2):
    import keras

    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    # bright, skewed pixels: batch statistics far from the stored moving mean 0 / variance 1
    x = rng.uniform(150, 255, size=(8, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    y = np.array([0, 1] * 4, "float32")
    for _ in range(steps):
        model.train_on_batch(x, y)


def _transfer_model(name, aug=None):
    from core.nets import backbones

    bb = backbones.load_backbone(name)
    head = strategies.build_head(16, 2, 8, 0.0)
    return bb, strategies.build_transfer_model(bb, "avg", head, aug)


def test_transfer_model_calls_base_in_inference_mode(tiny):
    """Even with every base layer (BatchNorm included) trainable, a training step must not
    touch the BatchNorm moving statistics: the base always runs in inference mode."""
    bb, model = _transfer_model(tiny)
    bb.base.trainable = True
    assert all(layer.trainable for layer in bb.base.layers if _is_bn(layer))
    before = _bn_stats(bb.base)
    conv2 = np.array(bb.base.get_layer("conv2").get_weights()[0])
    _train_step(model)
    assert not np.allclose(conv2, bb.base.get_layer("conv2").get_weights()[0]), "the step did not train the base"
    after = _bn_stats(bb.base)
    for name, (gamma, beta, mean, var) in before.items():
        assert np.array_equal(mean, after[name][2]) and np.array_equal(var, after[name][3]), \
            f"{name} moving statistics changed: the base ran in training mode"


def test_fine_tuned_model_trains_top_layers_only_and_keeps_batchnorm(tiny):
    bb, model = _transfer_model(tiny, strategies.augmentation(Augment(), 0))
    count = unfreeze_top(bb.base, 3)  # conv2, bn2, top_activation
    assert count == 1
    frozen = {n: np.array(bb.base.get_layer(n).get_weights()[0]) for n in ("conv1", "conv2")}
    before = _bn_stats(bb.base)
    _train_step(model)
    assert np.array_equal(frozen["conv1"], bb.base.get_layer("conv1").get_weights()[0])
    assert not np.allclose(frozen["conv2"], bb.base.get_layer("conv2").get_weights()[0])
    after = _bn_stats(bb.base)
    for name in before:  # gamma, beta and moving statistics all untouched
        for b, a in zip(before[name], after[name]):
            assert np.array_equal(b, a), name


def test_transfer_model_is_pixels_in_and_matches_backbone_features(tiny):
    """pixels -> preprocess -> base -> pool -> head: the head sees exactly the backbone's pooled features."""
    bb, model = _transfer_model(tiny)
    assert model.input_shape == (None, TINY_SIZE, TINY_SIZE, 3)
    head = model.get_layer("head")
    x = np.random.default_rng(1).uniform(0, 255, size=(3, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    pooled = np.asarray(bb.model.predict(x, verbose=0)).mean(axis=(1, 2))
    assert np.allclose(model.predict(x, verbose=0), head.predict(pooled, verbose=0), atol=1e-5)


def test_make_optimizer():
    import keras

    for name, cls in (("adam", keras.optimizers.Adam), ("rmsprop", keras.optimizers.RMSprop),
                      ("sgd", keras.optimizers.SGD)):
        opt = strategies.make_optimizer(name, 2e-5)
        assert isinstance(opt, cls)
        assert float(keras.ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(2e-5)
