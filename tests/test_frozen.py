"""core.train.frozen: the frozen part of training on the engine (tiny local backbones, fast tier)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.data.dataset import scan_folder
from core.data.images import load_rgb
from core.nets import backbones, engine
from core.train import frozen
from core.train.loop import Context, NullReporter, Recording, targets
from core.train.strategies import Augment, StrategyConfig, augmentation, build_head, build_transfer_model, \
    unfreeze_top


pytest.importorskip("openvino")


@pytest.fixture
def ds(image_folder, local_weights, monkeypatch):
    monkeypatch.setenv(engine.ENGINE_ENV, "openvino")
    return scan_folder(image_folder)


def _ctx(ds, **kw) -> Context:
    cfg = StrategyConfig(dataset=str(ds.root), backbone="tiny", epochs=kw.pop("epochs", 3), batch_size=8,
                         head_units=8, dropout=0.0, learning_rate=kw.pop("learning_rate", 1e-2), **kw)
    return Context(cfg, ds, Recording(NullReporter()), None, None)


def _pixels(paths, size=32):
    return np.stack([load_rgb(p, (size, size)) for p in paths]).astype(np.float32)


def test_augmented_batches_run_the_engine_and_draw_new_augmentations_each_epoch(ds):
    bb = backbones.load_backbone("tiny")
    fwd = bb.frozen_forward("avg")
    paths, y = ds.paths("train"), targets(ds.labels("train"), 2)
    plain = frozen.augmented_batches(fwd, paths, y, 32, 8, (12,), None, shuffle=False)
    X = np.concatenate([f.numpy() for f, _ in plain])
    np.testing.assert_allclose(X, fwd(_pixels(paths)), rtol=1e-5, atol=1e-6)
    assert fwd.engine == "openvino"
    aug = augmentation(Augment(flip="horizontal", rotation=0.2, zoom=0.0, translation=0.0, contrast=0.0), 0)
    batches = frozen.augmented_batches(fwd, paths, y, 32, 8, (12,), aug, shuffle=False)
    one = np.concatenate([f.numpy() for f, _ in batches])
    two = np.concatenate([f.numpy() for f, _ in batches])
    labels = np.concatenate([t.numpy() for _, t in batches])
    assert one.shape == X.shape and not np.allclose(one, X) and not np.allclose(one, two)
    np.testing.assert_array_equal(labels, y)
    # tf.data's autotuner held the end of an epoch ~2 s (core.data.pipeline.without_autotune)
    assert not batches.options().autotune.enabled and not plain.options().autotune.enabled


def test_frozen_head_trains_on_engine_features_and_the_pixel_model_holds_it(ds):
    ctx = _ctx(ds, epochs=4)
    bb = ctx.backbone()
    bb.base.trainable = False
    before = [w.copy() for w in bb.base.get_weights()]
    head = build_head(12, 2, 8, 0.0)
    aug = augmentation(Augment(rotation=0.05, zoom=0.0, translation=0.0, contrast=0.0), 0)
    model = build_transfer_model(bb, "avg", head, aug)
    frozen.fit_frozen_head(ctx, bb, head, aug, model)
    assert len(ctx.rec.rows) == 4 and ctx.extra["frozen_engine"] == bb.frozen_forward("avg").label
    assert all(np.array_equal(a, b) for a, b in zip(before, bb.base.get_weights()))  # the base stayed frozen
    assert ctx.rec.rows[-1]["val_accuracy"] >= 0.75  # stripes of two colours: separable
    x = _pixels(ds.paths("validation"))
    via_head = head.predict(np.asarray(bb.forward("avg")(x)), verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), via_head, rtol=1e-4, atol=1e-5)


def _residual_backbone(folder):
    """A local backbone whose top block has a skip connection: no single tensor crosses inside it."""
    import json

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block_conv1")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="block_conv2")(y)
    x = keras.layers.Add(name="block_add")([x, y])
    x = keras.layers.Conv2D(12, 1, activation="relu", name="top_activation")(x)
    out = keras.layers.Dense(5, activation="softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D(name="avg_pool")(x))
    keras.Model(inputs, out, name="resnetty").save(folder / "resnetty.keras")
    (folder / "resnetty.json").write_text(json.dumps({
        "name": "resnetty", "input_size": [32, 32], "preprocessing": {"mean": [127.5] * 3, "std": [127.5] * 3},
        "feature_layer": "top_activation", "pooled_layer": "avg_pool", "predictions_layer": "predictions"}))


def test_the_cut_is_moved_before_a_residual_block_and_composes_to_the_base(local_weights):
    _residual_backbone(local_weights)
    bb = backbones.load_backbone("resnetty")
    names = [layer.name for layer in bb.base.layers]
    unfreeze_top(bb.base, from_layer="block_conv2")  # inside the block: the skip crosses there
    cut = frozen.split_at(bb)
    assert cut.layer == "block_conv1" and names.index("block_conv1") == cut.index
    assert cut.shape == (16, 16, 8)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(cut.suffix(cut.prefix(x)).numpy(), bb.model(x).numpy(), rtol=1e-5, atol=1e-5)
    unfreeze_top(bb.base, from_layer="top_activation")  # after the add: one tensor crosses
    assert frozen.split_at(bb).layer == "top_activation"


def test_fine_tuning_from_the_cut_cache_trains_the_top_of_the_base_only(ds, tl_home):
    ctx = _ctx(ds, epochs=2, learning_rate=1e-2, augment=Augment(enabled=False))
    bb = ctx.backbone()
    head = build_head(12, 2, 8, 0.0)
    model = build_transfer_model(bb, "avg", head)
    unfreeze_top(bb.base, 1)  # top_activation only
    conv_before = bb.base.get_layer("conv").get_weights()[0].copy()
    top_before = bb.base.get_layer("top_activation").get_weights()[0].copy()
    frozen.fit_fine_tune_from_cut(ctx, bb, head, None, model, "fine_tune", 2, 0, 1e-2)
    assert ctx.extra["cut_layer"] == "top_activation" and ctx.extra["cut_shape"] == [16, 16, 8]
    assert ctx.extra["cut_cache_seconds"] > 0 and len(ctx.rec.rows) == 2
    assert ctx.extra["frozen_engine"].startswith("openvino")
    np.testing.assert_array_equal(bb.base.get_layer("conv").get_weights()[0], conv_before)  # frozen prefix
    assert not np.allclose(bb.base.get_layer("top_activation").get_weights()[0], top_before)  # trained top
    assert not any((tl_home / "cut_cache").iterdir())  # the activations were removed after the fit
    # the saved pixel model runs the weights trained from the cache
    x = _pixels(ds.paths("validation"))
    cut = frozen.split_at(bb)
    expected = head(keras.layers.GlobalAveragePooling2D()(cut.suffix(cut.prefix(x)))).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_fine_tuning_with_augmentation_runs_the_prefix_on_the_engine_each_epoch(ds, monkeypatch):
    ctx = _ctx(ds, epochs=2)
    bb = ctx.backbone()
    head = build_head(12, 2, 8, 0.0)
    aug = augmentation(Augment(rotation=0.1, zoom=0.0, translation=0.0, contrast=0.0), 0)
    model = build_transfer_model(bb, "avg", head, aug)
    unfreeze_top(bb.base, 1)
    calls = []
    real = frozen.prefix_forward

    class Counting:
        def __init__(self, fwd):
            self.fwd, self.label = fwd, fwd.label

        def __call__(self, x):
            calls.append(len(x))
            return self.fwd(x)

    def counting(bb, cut):
        return Counting(real(bb, cut))

    monkeypatch.setattr(frozen, "prefix_forward", counting)
    frozen.fit_fine_tune_from_cut(ctx, bb, head, aug, model, "fine_tune", 2, 0, 1e-3)
    n_train, n_val = len(ds.paths("train")), len(ds.paths("validation"))
    assert sum(calls) == n_val + 2 * n_train  # validation cached once, training images every epoch
    assert "cut_cache_seconds" not in ctx.extra and len(ctx.rec.rows) == 2


def test_the_strategy_fits_run_their_frozen_part_on_the_engine(image_folder, local_weights, monkeypatch):
    """frozen_augment and fine_tune through the registry: the head (and the unfrozen top) train
    on the engine's outputs, and the run's metrics say so. Their evaluation reads the engine's
    validation outputs too: no TensorFlow pass of the pixel model over the validation files."""
    from core import layout
    from core.train import fit as fit_module, registry
    from core.train.fit import fit

    monkeypatch.setenv(engine.ENGINE_ENV, "openvino")

    def no_pixel_pass(*a, **k):
        raise AssertionError("evaluated the pixel model in TensorFlow")

    monkeypatch.setattr(fit_module, "evaluate", no_pixel_pass)
    common = dict(dataset=str(image_folder), backbone="tiny", epochs=2, batch_size=8, head_units=8, seed=0)
    fa = fit(registry.make_config("frozen_augment", **common))
    assert fa.metrics["frozen_engine"] == engine.choose().label and fa.metrics["epochs_run"] == 2
    assert 0.0 <= fa.metrics["val_accuracy"] <= 1.0
    ft = fit(registry.make_config("fine_tune", fine_tune_layers=1, fine_tune_epochs=2, **common))
    assert ft.metrics["cut_layer"] == "top_activation" and ft.metrics["frozen_engine"].startswith("openvino")
    assert ft.metrics["epochs_run"] == 4
    kept = list((layout.cache("engine") / "ir").iterdir())
    assert len(kept) == 2  # the base's IR and the cut prefix's, kept for the next process
    for run in (fa, ft):  # one prediction a validation file, scored as the metrics say
        assert len(run.predictions) == run.metrics["val_images"] > 0
        assert run.predictions["correct"].mean() == pytest.approx(run.metrics["val_accuracy"])
