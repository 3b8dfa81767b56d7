"""The pixel baseline (core.train.pixels) and the from-scratch CNN on the digits (fast tier:
a subset): accurate, seconds, one Keras model on raw pixels whose probabilities are the fit's."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.dataset import scan_folder
from core.train import pixels, registry
from tests.digits import write_digits


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"), per_class=30)


@pytest.fixture(scope="module")
def digit_split(digits_root):
    ds = scan_folder(digits_root, val_fraction=0.25, seed=0)
    (Xt, vt), (Xv, vv) = pixels.decode(ds.paths("train")), pixels.decode(ds.paths("validation"))
    assert vt.all() and vv.all()
    return Xt, ds.labels("train"), Xv, ds.labels("validation")


def test_pixel_baseline_is_accurate_on_digits_and_chooses_on_held_out_data(digit_split):
    Xt, yt, Xv, yv = digit_split
    pb = pixels.fit(Xt, yt, seed=0)
    assert pixels.accuracy(pb, Xv, yv) >= 0.85
    assert {t["size"] for t in pb.trials} == {16, 8} and len(pb.trials) == len(pixels.FACTORS) * len(pixels.CS)
    best = max(t["holdout_accuracy"] for t in pb.trials)
    assert [t for t in pb.trials if t["factor"] == pb.factor and t["C"] == pb.C][0]["holdout_accuracy"] == best


def test_keras_model_matches_the_fit_and_survives_a_safe_reload(digit_split, tmp_path):
    import keras

    Xt, yt, Xv, yv = digit_split
    pb = pixels.fit(Xt, yt, seed=0)
    model = pixels.to_keras(pb, 10)
    p = model.predict(Xv.astype("float32"), verbose=0)
    np.testing.assert_allclose(p, pb.probabilities(Xv), atol=1e-4)
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(back.predict(Xv.astype("float32"), verbose=0), p, atol=1e-6)


def test_two_classes_end_in_one_sigmoid_like_every_strategy(digit_split):
    Xt, yt, Xv, yv = digit_split
    keep, keep_v = yt < 2, yv < 2
    pb = pixels.fit(Xt[keep], yt[keep], seed=0)
    model = pixels.to_keras(pb, 2)
    assert model.output.shape[-1] == 1
    p1 = model.predict(Xv[keep_v].astype("float32"), verbose=0)[:, 0]
    np.testing.assert_allclose(p1, pb.probabilities(Xv[keep_v])[:, 1], atol=1e-4)


def test_pixel_baseline_runs_through_the_registry_and_its_metrics_are_the_models(digits_root):
    from core.train.fit import fit

    cfg = registry.make_config("pixel_baseline", dataset=str(digits_root), val_fraction=0.25, seed=0)
    result = fit(cfg)
    assert result.metrics["val_accuracy"] >= 0.85 and result.metrics["backbone"] == "raw_pixels"
    assert result.metrics["input_size"] == pixels.BASE and result.extra["pixel_size"] in (16, 8)
    ds = scan_folder(digits_root, val_fraction=0.25, seed=0)
    from core.data.pipeline import image_dataset

    batches = image_dataset(ds.paths("validation"), ds.labels("validation"), pixels.BASE, 32)
    probs = np.concatenate([result.model.predict(x, verbose=0) for x, _ in batches])
    assert np.mean(probs.argmax(1) == ds.labels("validation")) == pytest.approx(result.metrics["val_accuracy"])


def test_scratch_cnn_is_conv_bn_relu_blocks_with_global_pooling():
    from core.train.strategies import build_scratch_model, cosine_schedule, scratch_input_size

    model = build_scratch_model(32, 10, (8, 16), 0, 0.3)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 5 and kinds.count("Conv2D") == 5  # stem + 2 a block
    assert "GlobalAveragePooling2D" in kinds and "Dropout" in kinds
    assert scratch_input_size([64] * 5, [64] * 5) == 64  # small images stay small
    assert scratch_input_size([500, 400], [375, 300]) == 128 and scratch_input_size([20], [20]) == 32
    sched = cosine_schedule(1e-3, 10, 100)
    lrs = [float(sched(s)) for s in (0, 100, 500, 999)]
    assert lrs[0] < lrs[1] and lrs[1] == pytest.approx(1e-3, rel=1e-3) and lrs[2] < lrs[1] and lrs[3] < 2e-5


def test_scratch_run_sizes_itself_from_the_data_and_records_the_measured_augmentation(digits_root):
    from core.train.fit import fit

    cfg = registry.make_config("scratch", dataset=str(digits_root), val_fraction=0.25, seed=0, epochs=1,
                               scratch_filters=(8,))
    result = fit(cfg)
    assert result.metrics["input_size"] == 64  # the digits' own size, not an upscaled 128
    decision = result.extra["augment_decision"]
    assert decision["augment"]["flip"] == "" and decision["augment"]["fill"] == "constant"
    assert any("flip left out" in r for r in decision["reasons"])
    assert result.history["lr"].iloc[0] < cfg.learning_rate  # the warm-up of the schedule
