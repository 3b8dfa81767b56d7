"""Training precision (``core.train.precision``): what ``auto`` picks per machine and trained
path, the overrides (run, server, CLI), the policy set on a model only while it trains
(float32 outputs throughout, a float32 model afterwards), loss scaling under float16, and the
accuracy guard: bf16 training learns what float32 training learns, within the validation noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import ConfigError
from core.nets import engine
from core.train import precision, registry
from core.train.fit import fit
from core.train.strategies import StrategyConfig, build_scratch_model
from tests.helpers import write_images

SCRATCH = dict(input_size=32, scratch_filters=(8, 16), head_units=0, dropout=0.2, batch_size=16, learning_rate=2e-3,
               early_stopping=0, restore_best=False)


@pytest.fixture(autouse=True)
def auto_precision(monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)


# ---------------------------------------------------------------- the choice

@pytest.mark.parametrize("gpu,bf16,expected", [
    (True, False, {"scratch": "mixed_float16", "head": "mixed_float16", "fine_tune": "mixed_float16"}),
    (False, True, {"scratch": "mixed_bfloat16", "head": "float32", "fine_tune": "float32"}),
    (False, False, {"scratch": "float32", "head": "float32", "fine_tune": "float32"}),
])
def test_auto_picks_per_machine_and_path(gpu, bf16, expected):
    got = {path: precision.choose(path, gpu=gpu, bf16=bf16).policy for path in precision.PATHS}
    assert got == expected
    assert all(precision.choose(p, gpu=gpu, bf16=bf16).reason.startswith("auto") for p in precision.PATHS)


def test_a_run_overrides_the_server_which_overrides_auto(monkeypatch):
    monkeypatch.setenv(precision.PRECISION_ENV, "float32")
    assert precision.choose("scratch", gpu=False, bf16=True).policy == "float32"
    assert precision.choose("scratch", "mixed_bfloat16", gpu=False, bf16=False).policy == "mixed_bfloat16"
    assert precision.choose("head", "auto", gpu=True).policy == "mixed_float16"
    monkeypatch.setenv(precision.PRECISION_ENV, "fp8")
    with pytest.raises(ConfigError, match="TRANSFER_LAB_PRECISION"):
        precision.choose("scratch")
    assert "fp8" in precision.describe()  # the sidebar line says what is wrong instead of failing


def test_a_bad_precision_is_a_config_problem():
    with pytest.raises(ConfigError, match="precision must be one of"):
        registry.make_config("scratch", dataset="/d", precision="half")
    assert registry.make_config("scratch", dataset="/d", precision="float32").precision == "float32"


def test_this_machine_is_described_from_its_cpu_flags():
    line = precision.describe()
    if engine.has_gpu():
        assert "fp16" in line
    elif precision.native_bf16():
        assert "scratch bf16 mixed" in line
    else:  # the CI machine: AVX2, no AVX512_BF16
        assert line.startswith("float32 · auto: CPU has no native bf16")


# ---------------------------------------------------------------- the policy on a model

def _dtypes(model):
    return {layer.name: layer.compute_dtype for layer in precision._leaves(model)}


def test_layers_compute_low_only_inside_the_block_and_outputs_stay_float32():
    import keras

    model = build_scratch_model(32, 3, (8, 16), 0, 0.2)
    before = model.get_weights()
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    with precision.training(model, precision.Precision("mixed_bfloat16")):
        inside = _dtypes(model)
        assert inside["stem_conv"] == "bfloat16" and inside["block2b_bn"] == "bfloat16"
        assert model.get_layer("preprocess").compute_dtype == "float32"
        assert model.get_layer("head").get_layer("head_output").compute_dtype == "float32"
        out = model(x)
        assert out.dtype == "float32"
        assert all(w.dtype == "float32" for w in model.weights)  # variables are float32 under mixed policies
    assert set(_dtypes(model).values()) == {"float32"}
    assert all(w.dtype == "float32" for w in model.weights)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    config = keras.saving.serialize_keras_object(model)
    assert "bfloat16" not in str(config)  # what a run saves is a float32 model


def test_float16_gets_loss_scaling():
    import keras

    opt = keras.optimizers.Adam(1e-3)
    assert precision.optimizer(opt, precision.Precision("mixed_bfloat16")) is opt
    assert isinstance(precision.optimizer(opt, precision.Precision("mixed_float16")), keras.optimizers.LossScaleOptimizer)


# ---------------------------------------------------------------- fits

def _stripes(root, n_train=12, n_val=4):
    for i, cls in enumerate("ab"):
        write_images(root / "train" / cls, i, n_train, size=(32, 32), seed=1)
        write_images(root / "validation" / cls, i, n_val, size=(32, 32), seed=2)
    return root


@pytest.mark.parametrize("asked", ["mixed_bfloat16", "mixed_float16"])
def test_a_mixed_fit_records_its_precision_and_leaves_a_float32_model(tmp_path, asked):
    cfg = StrategyConfig(strategy="scratch", dataset=str(_stripes(tmp_path / "ds")), epochs=1, precision=asked,
                         **SCRATCH)
    result = fit(cfg)
    m = result.metrics
    assert m["precision"] == asked and m["precision_reason"] == f"{asked} asked for"
    assert m["precision_by_path"] == {"scratch": asked}
    assert np.isfinite(result.history["loss"]).all() and 0.0 <= m["val_accuracy"] <= 1.0
    assert {layer.compute_dtype for layer in precision._leaves(result.model)} == {"float32"}
    assert result.model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).dtype == np.float32


def test_auto_here_and_the_scikit_learn_strategies_record_float32(tmp_path):
    data = str(_stripes(tmp_path / "ds"))
    if not engine.has_gpu() and not precision.native_bf16():
        m = fit(StrategyConfig(strategy="scratch", dataset=data, epochs=1, **SCRATCH)).metrics
        assert m["precision"] == "float32" and "no native bf16" in m["precision_reason"]
    m = fit(StrategyConfig(strategy="pixel_baseline", dataset=data, precision="mixed_bfloat16")).metrics
    assert m["precision"] == "float32" and "scikit-learn" in m["precision_reason"]


@pytest.mark.engine
def test_heads_and_fine_tuning_train_under_a_forced_precision(tmp_path, tiny):
    """The head on cached features and the unfrozen top (the cut on the engine, or the whole
    pixel model under TensorFlow) both take the policy, and give it back."""
    from tests.test_strategies import TINY_SIZE

    root = tmp_path / "ds"
    for i, cls in enumerate("ab"):
        write_images(root / "train" / cls, i, 8, size=(TINY_SIZE, TINY_SIZE), seed=1)
        write_images(root / "validation" / cls, i, 4, size=(TINY_SIZE, TINY_SIZE), seed=2)
    cfg = StrategyConfig(strategy="fine_tune", dataset=str(root), backbone=tiny, input_size=TINY_SIZE, epochs=1,
                         fine_tune_epochs=1, fine_tune_layers=3, batch_size=8, head_units=8,
                         precision="mixed_bfloat16")
    result = fit(cfg)
    m = result.metrics
    assert m["precision_by_path"] == {"head": "mixed_bfloat16", "fine_tune": "mixed_bfloat16"}
    assert m["precision"] == "mixed_bfloat16"
    assert list(result.history["phase"].unique()) == ["head", "fine_tune"]
    assert np.isfinite(result.history["loss"]).all()
    assert {layer.compute_dtype for layer in precision._leaves(result.model)} == {"float32"}


# ---------------------------------------------------------------- the accuracy guard

def test_bf16_training_matches_float32_accuracy_within_the_noise(tmp_path):
    """The from-scratch CNN on letters (10 classes, far from ImageNet), same seed, under both
    precisions: validation accuracies within two standard errors of their difference, both far
    above chance. On a CPU without native bf16 the bf16 fit is emulated (slow), so it is small."""
    from tests.glyphs import write_glyphs

    data = str(write_glyphs(tmp_path / "letters", per_class=40))
    acc = {}
    for asked in ("float32", "mixed_bfloat16"):
        cfg = StrategyConfig(strategy="scratch", dataset=data, epochs=8, precision=asked, val_fraction=0.25,
                             **{**SCRATCH, "scratch_filters": (16, 32)})
        result = fit(cfg)
        assert result.metrics["precision"] == asked
        acc[asked] = (result.metrics["val_accuracy"], int(result.metrics["val_images"]
                                                          if "val_images" in result.metrics else len(result.predictions)))
    print("accuracy guard (val accuracy, val images):", acc)
    (a, n), (b, m) = acc["float32"], acc["mixed_bfloat16"]
    se = math.sqrt(a * (1 - a) / n + b * (1 - b) / m)
    assert min(a, b) > 0.3, acc  # chance is 0.1: both learnt the letters
    assert abs(a - b) <= 2 * max(se, 1 / n), acc


# ---------------------------------------------------------------- the command line

def test_cli_forces_a_precision_and_the_engine_command_says_the_choice(image_folder, tl_home):
    from tests.test_cli import cli

    proc = cli("train", "--dataset", image_folder, "--strategy", "scratch", "--epochs", 1, "--input-size", 32,
               "--batch-size", 8, "--precision", "mixed_bfloat16", home=tl_home)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1]
    assert '"precision": "mixed_bfloat16"' in printed
    refused = cli("train", "--dataset", image_folder, "--strategy", "scratch", "--precision", "half", home=tl_home)
    assert refused.returncode == 2 and "invalid choice" in refused.stderr
    shown = cli("engine", home=tl_home, TRANSFER_LAB_PRECISION="float32")
    assert shown.returncode == 0, shown.stderr
    assert "training precision: float32 · float32 asked for" in shown.stdout


# ---------------------------------------------------------------- the benchmark's precision table

def test_accuracy_benchmark_tables_each_precision_and_checks_the_wall_ratio(monkeypatch, tmp_path):
    from benchmarks import accuracy
    from benchmarks.common import Context, GroupResult

    cells = [("From scratch", "small CNN", StrategyConfig(strategy="scratch")),
             ("Pixel baseline", "raw pixels", StrategyConfig(strategy="pixel_baseline"))]
    walls = {("scratch", "float32"): 100.0, ("scratch", "auto"): 50.0,
             ("pixel_baseline", "float32"): 10.0, ("pixel_baseline", "auto"): 10.0}

    def fake_one(ctx, result, strategy_label, backbone_label, cfg, request):
        assert request == "auto"
        ran = "mixed_bfloat16" if cfg.precision == "auto" and cfg.strategy == "scratch" else "float32"
        return {"val_accuracy": 0.80 if ran == "float32" else 0.78, "val_images": 1000, "precision": ran,
                "wall_seconds": walls[cfg.strategy, cfg.precision], "epochs_run": 3}

    monkeypatch.setattr(accuracy, "one", fake_one)
    ctx = Context(dataset=tmp_path, weights_dir=None, home=tmp_path, quick=True, precisions=("float32", "auto"))
    result = GroupResult("accuracy", True)
    accuracy.precision_table(ctx, result, cells)
    (title, (header, rows)), = result.tables.items()
    assert "float32" in title and header[2:4] == ["asked", "ran at"]
    scratch_auto = next(r for r in rows if r[0] == "From scratch" and r[2] == "auto")
    assert scratch_auto[3] == "mixed_bfloat16" and scratch_auto[7] == "yes"  # 0.02 apart, 2 SE = 0.036
    row = result.rows[-1]
    assert row.item == "wall time auto / float32" and row.value == pytest.approx(60 / 110) and row.ok is True
