"""Fit loops for every strategy on small generated data: metrics, history, predictions,
the pixels-in model, fine-tuning phases, class weights, seeds, early stopping, cancel,
and a short fit under MirroredStrategy over two logical CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.train import callbacks
from core.train import fit as training
from core.train import loop
from core.errors import DatasetError
from core.train.evaluation import predict_files
from core.train.strategies import StrategyConfig
from tests.helpers import assert_matches_reference, write_images
from tests.test_strategies import TINY_SIZE, make_tiny_backbone

pytestmark = pytest.mark.engine  # run again under the default engine (scripts/test.sh)

REPO = Path(__file__).resolve().parents[1]
STRATEGY_NAMES = ("linear_probe", "feature_extraction", "frozen_augment", "fine_tune", "scratch")
HEAD_EPOCHS, FT_EPOCHS = 2, 1


def _dataset(root: Path, train=(12, 12), val=(4, 4)) -> Path:
    """The image_folder layout: train/{a,b} and validation/{a,b} of generated stripes."""
    for i, cls in enumerate(["a", "b"]):
        write_images(root / "train" / cls, i, train[i], size=(TINY_SIZE, TINY_SIZE), seed=1)
        write_images(root / "validation" / cls, i, val[i], size=(TINY_SIZE, TINY_SIZE), seed=2)
    return root


def tiny_config(dataset, strategy="feature_extraction", **kw) -> StrategyConfig:
    base = dict(strategy=strategy, dataset=str(dataset), backbone="tiny", input_size=TINY_SIZE,
                epochs=HEAD_EPOCHS, batch_size=8, head_units=16, dropout=0.2, learning_rate=1e-2,
                fine_tune_epochs=FT_EPOCHS, fine_tune_layers=3, fine_tune_lr=1e-5, scratch_filters=(8, 16))
    return StrategyConfig(**{**base, **kw})


class CountingReporter(loop.NullReporter):
    """Says stop after ``stop_after`` calls to should_stop (None: never); records progress."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.stop_after, self.calls, self.progress = stop_after, 0, []

    def on_progress(self, info):
        self.progress.append(dict(info))

    def should_stop(self):
        self.calls += 1
        return self.stop_after is not None and self.calls > self.stop_after


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A module-wide data directory, the tiny backbone and a generated dataset."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("train_home")
    weights = make_tiny_backbone(tmp_path_factory.mktemp("train_weights"))
    data = _dataset(tmp_path_factory.mktemp("train_data") / "ds")
    mp.setenv("TRANSFER_LAB_HOME", str(home))
    mp.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(weights))
    yield {"home": home, "weights": weights, "data": data, "tmp": tmp_path_factory}
    mp.undo()


@pytest.fixture
def use_env(env, monkeypatch):
    """Per test: point the app at the module's data directory and weights (tl_home resets them)."""
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(env["home"]))
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(env["weights"]))
    return env


@pytest.fixture(scope="module")
def fitted(env):
    """One fit per strategy, done once for the module (lazily), with a run folder each."""
    cache: dict[str, tuple] = {}

    def get(strategy: str):
        if strategy not in cache:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(callbacks, "CHECKPOINT_EVERY_S", 0.0)  # every better epoch writes one
                mp.setenv("TRANSFER_LAB_HOME", str(env["home"]))
                mp.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(env["weights"]))
                cfg = tiny_config(env["data"], strategy)
                run_dir = env["tmp"].mktemp(f"run_{strategy}")
                reporter = CountingReporter()
                result = training.fit(cfg, reporter, run_dir=run_dir)
            cache[strategy] = (cfg, result, run_dir, reporter)
        return cache[strategy]

    return get


def _validation_files(root: Path) -> set[str]:
    return {str(p) for p in (root / "validation").rglob("*.png")}


# ---------------------------------------------------------------- every strategy

@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_fit_returns_metrics_history_predictions(strategy, fitted, env):
    cfg, result, run_dir, reporter = fitted(strategy)
    assert not result.cancelled
    m = result.metrics
    assert m["strategy"] == strategy
    assert 0.0 <= m["val_accuracy"] <= 1.0 and np.isfinite(m["val_loss"])
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == 8 and cm.sum(axis=1).tolist() == [4, 4]
    assert m["val_accuracy"] == pytest.approx(np.trace(cm) / 8)
    assert set(m["per_class"]) == {"a", "b"}
    for row in m["per_class"].values():
        assert set(row) >= {"precision", "recall", "f1", "support"} and row["support"] == 4
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and 0 <= row["f1"] <= 1
    assert m["classes"] == ["a", "b"] and m["val_images"] == 8 and m["train_images"] == 24
    assert 0 < m["trainable_params"] <= m["total_params"]
    assert m["train_seconds"] > 0 and m["images_per_s"] > 0
    assert m["input_size"] == TINY_SIZE
    assert m["replicas"] == 1

    hist = result.history
    expected_rows = {"linear_probe": 1, "fine_tune": HEAD_EPOCHS + FT_EPOCHS}.get(strategy, HEAD_EPOCHS)
    assert len(hist) == expected_rows == m["epochs_run"]
    assert hist["epoch"].tolist() == list(range(1, expected_rows + 1))
    for col in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "phase"):
        assert col in hist.columns and hist[col].notna().all(), col
    pd.testing.assert_frame_equal(pd.DataFrame(reporter.rows), hist)  # the caller's reporter saw every row

    pred = result.predictions
    assert len(pred) == 8 and set(pred["path"]) == _validation_files(env["data"])
    assert (pred["true"] == [Path(p).parent.name for p in pred["path"]]).all()
    assert np.allclose(pred["p_a"] + pred["p_b"], 1, atol=1e-5)
    assert ((pred["predicted"] == pred["true"]) == pred["correct"]).all()
    assert pred["correct"].mean() == pytest.approx(m["val_accuracy"])
    assert any(p.get("phase") == "evaluate" for p in reporter.progress)


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_returned_model_takes_pixels_and_reproduces_stored_predictions(strategy, fitted):
    cfg, result, _, _ = fitted(strategy)
    model = result.model
    assert model.input_shape == (None, TINY_SIZE, TINY_SIZE, 3) and model.output_shape == (None, 1)
    pred = result.predictions
    probs = predict_files(model, pred["path"].tolist(), TINY_SIZE, 2)  # the inference path
    assert_matches_reference(probs[:, 0], pred["p_a"], rtol=0, atol=1e-4)
    assert_matches_reference(probs[:, 1], pred["p_b"], rtol=0, atol=1e-4)
    assert (np.array(["a", "b"])[probs.argmax(1)] == pred["predicted"]).all()


def test_linear_probe_separates_the_learnable_patterns(fitted):
    _, result, _, _ = fitted("linear_probe")
    assert result.metrics["val_accuracy"] == 1.0  # class colours and stripes: linearly separable features
    assert result.history["phase"].tolist() == ["probe"]
    assert result.metrics["trainable_params"] == 16 + 1  # a logistic head on 16 pooled features


def test_fine_tune_history_has_two_phases(fitted):
    cfg, result, _, _ = fitted("fine_tune")
    hist = result.history
    assert hist["phase"].tolist() == ["head"] * HEAD_EPOCHS + ["fine_tune"] * FT_EPOCHS
    assert result.extra["fine_tune_start_epoch"] == HEAD_EPOCHS + 1 == result.metrics["fine_tune_start_epoch"]
    assert hist.loc[hist["phase"] == "fine_tune", "epoch"].min() == result.extra["fine_tune_start_epoch"]
    assert hist.loc[hist["phase"] == "head", "lr"].tolist() == pytest.approx([cfg.learning_rate] * HEAD_EPOCHS)
    assert hist.loc[hist["phase"] == "fine_tune", "lr"].tolist() == pytest.approx([cfg.fine_tune_lr] * FT_EPOCHS)
    assert result.extra["unfrozen_layers"] == 1  # top 3 layers of the tiny base: conv2 (+ frozen bn2, relu)


def test_trainable_parameters_per_strategy(fitted):
    fe, ft, fa = (fitted(s)[1] for s in ("feature_extraction", "fine_tune", "frozen_augment"))
    head = fe.model.get_layer("head").count_params()
    assert head == 16 * 16 + 16 + 16 + 1
    assert fe.metrics["trainable_params"] == head  # base frozen: the head only
    assert fa.metrics["trainable_params"] == head
    conv2 = 3 * 3 * 8 * 16 + 16
    assert ft.metrics["trainable_params"] == head + conv2  # + the unfrozen top conv, BatchNorm frozen
    assert ft.metrics["total_params"] == fe.metrics["total_params"] == fa.metrics["total_params"]
    assert fe.metrics["total_params"] == head + fe.model.get_layer("tiny_base").count_params()


def test_scratch_model_is_the_small_cnn(fitted):
    cfg, result, _, _ = fitted("scratch")
    assert result.metrics["backbone"] == "scratch_cnn"
    names = [layer.name for layer in result.model.layers]
    assert "stem_conv" in names and "block2b_conv" in names and "block3a_conv" not in names  # filters (8, 16)
    moving = sum(2 * layer.moving_mean.shape[0] for layer in result.model.layers if hasattr(layer, "moving_mean"))
    assert result.metrics["trainable_params"] == result.metrics["total_params"] - moving  # all but BN statistics


def test_run_dir_gets_checkpoint_and_tensorboard_logs(fitted):
    import keras

    import core.nets.layers  # noqa: F401  registers ChannelAffine for safe loading

    for strategy in ("scratch", "fine_tune"):
        _, result, run_dir, _ = fitted(strategy)
        assert (run_dir / "checkpoint.keras").is_file()
        events = list((run_dir / "tb").rglob("events.out.tfevents.*"))
        assert events, f"no TensorBoard events for {strategy}"
        ckpt = keras.saving.load_model(run_dir / "checkpoint.keras", safe_mode=True, compile=False)
        assert ckpt.input_shape == (None, TINY_SIZE, TINY_SIZE, 3)


def test_three_classes_use_softmax(use_env, flat_folder):
    cfg = tiny_config(flat_folder, "feature_extraction", epochs=1)
    result = training.fit(cfg)
    m = result.metrics
    assert m["classes"] == ["a", "b", "c"] and np.array(m["confusion_matrix"]).shape == (3, 3)
    assert result.model.output_shape == (None, 3)
    assert result.model.get_layer("head").get_layer("head_output").activation.__name__ == "softmax"
    pred = result.predictions
    assert len(pred) == m["val_images"] == 6  # stratified 20 % of 10 per class
    assert np.allclose(pred[["p_a", "p_b", "p_c"]].sum(axis=1), 1, atol=1e-5)
    probe = training.fit(tiny_config(flat_folder, "linear_probe"))
    probs = predict_files(probe.model, probe.predictions["path"].tolist(), TINY_SIZE, 3)
    assert_matches_reference(probs, probe.predictions[["p_a", "p_b", "p_c"]].to_numpy(), rtol=0, atol=1e-4)
    assert probe.metrics["val_accuracy"] == 1.0


# ---------------------------------------------------------------- fit options

def test_class_weights_balanced():
    y = np.array([0] * 12 + [1] * 4)
    w = loop.class_weights(y, 2)
    assert w == pytest.approx({0: 16 / 24, 1: 16 / 8})
    assert w[0] * 12 == pytest.approx(w[1] * 4)  # each class weighs the same in the loss
    w3 = loop.class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)  # a class with no images
    assert w3 == pytest.approx({0: 0.5, 1: 1.5, 2: 0.75, 3: 0.0})


def class_weights_seen(monkeypatch) -> list:
    """The ``class_weight`` of every Keras fit from here on, in order."""
    import keras

    seen = []
    original = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("class_weight"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    return seen


def test_fit_passes_balanced_class_weights(use_env, tmp_path, monkeypatch):
    data = _dataset(tmp_path / "imbalanced", train=(6, 2), val=(2, 2))
    seen = class_weights_seen(monkeypatch)
    training.fit(tiny_config(data, "feature_extraction", epochs=1, class_weights=True))
    training.fit(tiny_config(data, "feature_extraction", epochs=1, class_weights=False))
    assert seen == [pytest.approx({0: 8 / 12, 1: 8 / 4}), None]


def test_class_weights_are_on_by_default_for_uneven_classes_and_recorded(use_env, tmp_path, monkeypatch):
    """The default (None) is decided from the training classes: on from registry.IMBALANCE_RATIO (3:1),
    off below; the run records the choice, the ratio and why, beside balanced accuracy and the worst recall."""
    from core.train import registry

    assert registry.make_config("feature_extraction").class_weights is None and StrategyConfig().class_weights is None
    uneven, even = _dataset(tmp_path / "uneven", train=(9, 3), val=(2, 2)), _dataset(tmp_path / "even", train=(4, 4))
    seen = class_weights_seen(monkeypatch)
    weighted = training.fit(tiny_config(uneven, "feature_extraction", epochs=1)).metrics
    plain = training.fit(tiny_config(even, "feature_extraction", epochs=1)).metrics
    assert seen == [pytest.approx({0: 12 / 18, 1: 12 / 6}), None]
    assert weighted["class_weights"] is True and weighted["imbalance_ratio"] == 3.0
    assert "on by default" in weighted["class_weights_reason"]
    assert plain["class_weights"] is False and "off by default" in plain["class_weights_reason"]
    for m in (weighted, plain):
        assert 0 <= m["balanced_accuracy"] <= 1 and 0 <= m["worst_class_recall"] <= 1
        assert m["val_accuracy_ci"][0] <= m["val_accuracy"] <= m["val_accuracy_ci"][1]


def test_same_seed_same_history(use_env):
    cfg = tiny_config(use_env["data"], "feature_extraction", epochs=2, seed=5)
    first = training.fit(cfg).history
    second = training.fit(cfg).history
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert np.allclose(first[cols].to_numpy(), second[cols].to_numpy(), rtol=1e-6, atol=1e-7)


def test_a_head_trains_in_one_compiled_model_a_process_as_if_compiled_alone(use_env, monkeypatch):
    """The folds of a repeated split share the compiled head (core.train.heads): the same fit gives the
    same history, head and predictions as the head compiled on its own, before and after another fold
    trained in it, and the run's model holds the best epoch's weights."""
    from core.train import heads
    from core.train.loop import compile_model

    cfg = tiny_config(use_env["data"], "feature_extraction", epochs=4, seed=3, folds=3, fold=0)
    other = tiny_config(use_env["data"], "feature_extraction", epochs=4, seed=3, folds=3, fold=1)
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]

    @contextmanager
    def alone(head, cfg, num_classes, learning_rate, at):
        compile_model(head, cfg, num_classes, learning_rate, at)
        yield head

    with monkeypatch.context() as mp:
        mp.setattr(heads, "compiled", alone)
        reference = training.fit(cfg)
    heads._compiled.clear()
    first, _, again = training.fit(cfg), training.fit(other), training.fit(cfg)
    assert len(heads._compiled) == 1  # one compiled model for the three fits
    for result in (first, again):
        assert np.allclose(result.history[cols].to_numpy(), reference.history[cols].to_numpy(), rtol=1e-5, atol=1e-6)
        assert np.allclose(result.predictions["confidence"], reference.predictions["confidence"], atol=1e-5)
        best = result.history.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]
        assert result.metrics["val_accuracy"] == pytest.approx(best["val_accuracy"])


def test_early_stopping_stops_early(use_env):
    # plain SGD at learning rate 0: val_loss never improves, so patience 2 ends the fit after 3 epochs
    cfg = tiny_config(use_env["data"], "feature_extraction", epochs=30, optimizer="sgd", learning_rate=0.0,
                      early_stopping=2)
    result = training.fit(cfg)
    assert len(result.history) == 3 == result.metrics["epochs_run"]


def test_reduce_lr_on_plateau_lowers_the_rate(use_env):
    cfg = tiny_config(use_env["data"], "feature_extraction", epochs=4, optimizer="sgd", learning_rate=1e-7,
                      reduce_lr=1)
    lr = training.fit(cfg).history["lr"].tolist()
    assert lr[0] == pytest.approx(1e-7) and lr[-1] < 0.5e-7 and lr == sorted(lr, reverse=True)


def test_dataset_errors_are_readable(tmp_path):
    with pytest.raises(DatasetError, match="Folder not found"):
        training.fit(StrategyConfig(strategy="scratch", dataset=str(tmp_path / "missing")))
    write_images(tmp_path / "one" / "train" / "a", 0, 3)
    write_images(tmp_path / "one" / "validation" / "a", 0, 2)
    with pytest.raises(DatasetError, match="at least two classes"):
        training.fit(StrategyConfig(strategy="scratch", dataset=str(tmp_path / "one")))


def test_limit_per_class_trains_on_a_seeded_subset(use_env):
    cfg = tiny_config(use_env["data"], "linear_probe", limit_per_class=5)
    result = training.fit(cfg)
    assert result.metrics["train_images"] == 10 and result.metrics["val_images"] == 8  # val has 4 a class
    chosen = sorted(loop.load_dataset(cfg).paths("train"))
    assert sorted(p for p in result.predictions["path"]) == sorted(loop.load_dataset(cfg).paths("validation"))
    assert chosen == sorted(loop.load_dataset(cfg).paths("train"))  # seeded: the same subset again
    other = sorted(loop.load_dataset(tiny_config(use_env["data"], "linear_probe", limit_per_class=5,
                                                     seed=99)).paths("train"))
    assert len(other) == 10 and other != chosen


# ---------------------------------------------------------------- cancel

def _load_checkpoint(path: Path):
    import keras

    import core.nets.layers  # noqa: F401

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def test_cancel_mid_epoch_keeps_history_and_a_loadable_checkpoint(use_env, tmp_path):
    cfg = tiny_config(use_env["data"], "scratch", epochs=5, batch_size=2)  # 12 batches an epoch
    reporter = CountingReporter(stop_after=3)
    result = training.fit(cfg, reporter, run_dir=tmp_path / "run")
    assert result.cancelled
    # stopped at the batch after the request: 4 batch checks + the epoch-end check, not 12 batches x 5 epochs
    assert reporter.calls <= 6
    assert len(result.history) == 1 and result.history["epoch"].tolist() == [1]
    ckpt = tmp_path / "run" / "checkpoint.keras"
    assert ckpt.is_file()
    model = _load_checkpoint(ckpt)
    assert model.input_shape == (None, TINY_SIZE, TINY_SIZE, 3)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    out = np.asarray(model.predict(pixels, verbose=0))
    assert out.shape == (2, 1) and np.isfinite(out).all()


def test_cancel_during_feature_extraction(use_env, tmp_path):
    data = _dataset(tmp_path / "fresh")  # not cached yet: the extractor runs and checks should_stop
    cfg = tiny_config(data, "feature_extraction")
    result = training.fit(cfg, CountingReporter(stop_after=0))
    assert result.cancelled and result.model is None and result.history.empty


def test_cancelled_feature_extraction_checkpoint_takes_pixels(use_env, tmp_path):
    cfg = tiny_config(use_env["data"], "feature_extraction", epochs=5, batch_size=2)
    result = training.fit(cfg, CountingReporter(stop_after=3), run_dir=tmp_path / "run")
    assert result.cancelled and len(result.history) == 1
    model = _load_checkpoint(tmp_path / "run" / "checkpoint.keras")
    assert model.input_shape == (None, TINY_SIZE, TINY_SIZE, 3)
    # the head trained in its compiled twin (core.train.heads): the checkpoint holds the trained weights
    pixels = np.random.default_rng(1).uniform(0, 255, (4, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(pixels, verbose=0), result.model.predict(pixels, verbose=0), atol=1e-6)


def test_cancelled_fine_tune_head_phase_keeps_a_checkpoint(use_env, tmp_path):
    cfg = tiny_config(use_env["data"], "fine_tune", epochs=5, batch_size=2)
    result = training.fit(cfg, CountingReporter(stop_after=3), run_dir=tmp_path / "run")
    assert result.cancelled and result.history["phase"].tolist() == ["head"]
    assert (tmp_path / "run" / "checkpoint.keras").is_file()


def test_checkpoints_are_written_at_most_every_few_seconds_and_on_a_cancel(tmp_path, monkeypatch):
    """A better epoch writes the checkpoint when the last write is CHECKPOINT_EVERY_S old; a phase
    that ends normally writes none at its end (the run's final model follows); a cancel writes the best."""
    import keras

    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    y = (x[:, 0] > 0.5).astype("float32")

    def fit(every: float, cancel: bool) -> Path:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
        target = tmp_path / f"every{every}-cancel{cancel}.keras"
        monkeypatch.setattr(callbacks, "CHECKPOINT_EVERY_S", every)
        best = callbacks.BestWeights(target, cancelled=lambda: cancel)
        model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[best])
        return target

    assert not fit(3600.0, cancel=False).exists()
    assert fit(0.0, cancel=False).is_file()
    saved = fit(3600.0, cancel=True)
    assert saved.is_file()


# ---------------------------------------------------------------- distribution

def test_fit_under_mirrored_strategy_on_two_logical_cpus(tmp_path, tl_home):
    data = _dataset(tmp_path / "ds")
    script = tmp_path / "mirrored.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
        sys.path.insert(0, {str(REPO)!r})
        from core.train.strategies import StrategyConfig
        from core.train.fit import fit
        cfg = StrategyConfig(strategy="scratch", dataset={str(data)!r}, input_size=32, epochs=1,
                             batch_size=8, scratch_filters=(8, 16), head_units=8)
        r = fit(cfg, devices=["/cpu:0", "/cpu:1"])
        var = r.model.trainable_variables[0]
        print("RESULT " + json.dumps({{
            "replicas": r.metrics["replicas"], "distribution": r.metrics["distribution"],
            "rows": len(r.history), "predictions": len(r.predictions),
            "val_accuracy": r.metrics["val_accuracy"],
            "variable": type(getattr(var, "value", var)).__name__,
        }}))
    """))
    env = {**os.environ, "TRANSFER_LAB_HOME": str(tl_home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["replicas"] == 2 and out["distribution"] == "MirroredStrategy"
    assert out["rows"] == 1 and out["predictions"] == 8 and 0 <= out["val_accuracy"] <= 1
    assert "Mirrored" in out["variable"], out  # variables were created in the strategy scope
