"""core.runs.compare: configs, smoothing, best epoch, overfitting hint, the comparison table,
the advisor's verdict, the layer-depth sweep and the worst predictions (no TensorFlow)."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from core.runs import compare
from core.runs import curves
from core.errors import ConfigError
from core.train import plans
from core.runs import progress
from core.train import registry
from core.runs import sweep
from core.runs.store import RunStore


def history(val_loss, loss=None, val_acc=None, phase=None) -> pd.DataFrame:
    n = len(val_loss)
    return pd.DataFrame({
        "epoch": np.arange(1, n + 1), "phase": phase or ["head"] * n,
        "loss": loss if loss is not None else np.linspace(1.0, 0.1, n),
        "accuracy": np.linspace(0.5, 0.99, n),
        "val_loss": val_loss, "val_accuracy": val_acc if val_acc is not None else np.linspace(0.5, 0.9, n),
    })


# ---------------------------------------------------------------- smoothing

def test_smooth_zero_weight_is_identity_and_first_value_is_kept():
    x = [1.0, 3.0, 2.0, 5.0]
    assert np.allclose(curves.smooth(x, 0.0), x)
    s = curves.smooth(x, 0.6)
    assert s[0] == pytest.approx(1.0)  # debiased: no pull towards zero at the start
    # by hand: ema_t = 0.6 ema_{t-1} + 0.4 x_t, divided by 1 - 0.6^t
    e1 = 0.4 * 1.0
    e2 = 0.6 * e1 + 0.4 * 3.0
    assert s[1] == pytest.approx(e2 / (1 - 0.36))


def test_smooth_reduces_noise_and_skips_nans():
    rng = np.random.default_rng(0)
    noisy = 0.5 + rng.normal(0, 0.1, 200)
    assert np.std(curves.smooth(noisy, 0.9)[20:]) < np.std(noisy) / 2
    s = curves.smooth([1.0, np.nan, 1.0], 0.5)
    assert np.isnan(s[1]) and s[2] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        curves.smooth([1.0], 1.0)


# ---------------------------------------------------------------- best epoch

def test_best_epoch_highest_accuracy_ties_to_lower_loss():
    h = history(val_loss=[0.9, 0.5, 0.4, 0.6], val_acc=[0.6, 0.8, 0.8, 0.7])
    best = curves.best_epoch(h)
    assert best["epoch"] == 3 and best["value"] == pytest.approx(0.8) and best["index"] == 2
    by_loss = curves.best_epoch(h, "val_loss")
    assert by_loss["epoch"] == 3 and by_loss["value"] == pytest.approx(0.4)


def test_best_epoch_handles_empty_and_missing():
    assert curves.best_epoch(pd.DataFrame()) is None
    assert curves.best_epoch(pd.DataFrame({"epoch": [1], "loss": [1.0]})) is None
    h = pd.DataFrame({"epoch": [1, 2], "val_accuracy": [np.nan, 0.7], "val_loss": [np.nan, 0.5]})
    assert curves.best_epoch(h)["epoch"] == 2


# ---------------------------------------------------------------- overfitting

def test_overfit_hint_fires_when_val_loss_rises_and_train_loss_falls():
    h = history(val_loss=[0.9, 0.6, 0.45, 0.5, 0.58, 0.7], loss=[1.0, 0.7, 0.5, 0.35, 0.2, 0.1])
    hint = curves.overfit_hint(h, patience=3)
    assert hint is not None
    assert hint["best_epoch"] == 3 and hint["epochs_since"] == 3
    assert "epoch 3" in hint["message"] and "overfitting" in hint["message"]


def test_overfit_hint_quiet_when_improving_too_short_or_train_loss_rises():
    assert curves.overfit_hint(history(val_loss=[0.9, 0.7, 0.5, 0.4, 0.3])) is None  # still improving
    # only two epochs of rise with patience 3
    assert curves.overfit_hint(history(val_loss=[0.9, 0.6, 0.4, 0.45, 0.5]), patience=3) is None
    # validation loss rises but so does training loss: diverging, not overfitting
    h = history(val_loss=[0.9, 0.5, 0.6, 0.7, 0.8], loss=[0.8, 0.6, 0.7, 0.8, 0.9])
    assert curves.overfit_hint(h, patience=3) is None
    # wandering just above the minimum is noise, not a trend
    h = history(val_loss=[0.9, 0.5, 0.52, 0.501, 0.515, 0.502, 0.505], loss=np.linspace(1, 0.1, 7))
    assert curves.overfit_hint(h, patience=3) is None
    # mostly falling after the minimum, with one late jump: not a climb
    h = history(val_loss=[0.9, 0.5, 0.7, 0.65, 0.6, 0.58, 0.56], loss=np.linspace(1, 0.1, 7))
    assert curves.overfit_hint(h, patience=3) is None
    assert curves.overfit_hint(pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "loss": [1, 0.9, 0.8, 0.7, 0.6]})) is None


# ---------------------------------------------------------------- fine-tuning boundary, curves

def test_fine_tune_boundary_from_metrics_or_phase():
    h = history(val_loss=[0.5] * 5, phase=["head", "head", "head", "fine_tune", "fine_tune"])
    assert curves.fine_tune_boundary(h) == 4
    assert curves.fine_tune_boundary(h, {"fine_tune_start_epoch": 3}) == 3
    assert curves.fine_tune_boundary(history(val_loss=[0.5] * 3)) is None
    assert curves.fine_tune_boundary(pd.DataFrame(), {}) is None


def test_curves_frame_long_form_with_smoothing():
    h = history(val_loss=[0.9, 0.6, 0.5])
    frame = curves.curves_frame(h, 0.5, label="r1")
    assert set(frame["quantity"]) == {"accuracy", "loss"} and set(frame["split"]) == {"train", "validation"}
    assert len(frame) == 12 and (frame["run"] == "r1").all()
    val = frame[(frame["quantity"] == "loss") & (frame["split"] == "validation")]
    assert val["value"].tolist() == [0.9, 0.6, 0.5]
    assert val["smoothed"].iloc[0] == pytest.approx(0.9) and val["smoothed"].iloc[2] > 0.5
    assert curves.curves_frame(pd.DataFrame()).empty


# ---------------------------------------------------------------- configs

def test_preset_config_modern_and_classic():
    fe = registry.make_config("feature_extraction", "modern", dataset="/d", backbone="mobilenet_v2")
    assert fe.optimizer == "adam" and fe.backbone == "mobilenet_v2" and fe.early_stopping == 4
    classic = registry.make_config("feature_extraction", "classic", dataset="/d")
    assert (classic.backbone, classic.input_size, classic.pooling, classic.optimizer, classic.learning_rate,
            classic.batch_size, classic.epochs, classic.head_units) == ("vgg16", 150, "flatten", "rmsprop", 2e-5,
                                                                        20, 30, 256)
    ft = registry.make_config("fine_tune", "classic")
    assert ft.fine_tune_layers == 4 and ft.fine_tune_lr == 1e-5  # VGG16's block5: 3 convs + pool
    assert registry.make_config("scratch", "classic").scratch_filters == (32, 64, 128, 128)
    with pytest.raises(ConfigError, match="Unknown strategy"):
        registry.make_config("magic")
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        registry.make_config("scratch", epochs=0)


def test_build_configs_order_of_overrides_and_errors():
    cfgs = plans.build_configs(["feature_extraction", "scratch"], common={"dataset": "/d", "seed": 7, "epochs": 2},
                                 per_strategy={"scratch": {"epochs": 9, "scratch_filters": (8, 16)}})
    assert [c.strategy for c in cfgs] == ["feature_extraction", "scratch"]
    assert cfgs[0].epochs == 2 and cfgs[1].epochs == 9 and cfgs[1].scratch_filters == (8, 16)
    assert all(c.seed == 7 and c.dataset == "/d" for c in cfgs)
    with pytest.raises(ConfigError, match="at least one strategy"):
        plans.build_configs([], common={"dataset": "/d"})
    with pytest.raises(ConfigError, match="dataset"):
        plans.build_configs(["scratch"], common={})
    with pytest.raises(ConfigError, match="Feature extraction"):
        plans.build_configs(["feature_extraction"], common={"dataset": "/d", "no_such_option": 1})


def test_compare_all_same_data_split_and_seed():
    configs = plans.compare_all_configs(common={"dataset": "/d", "seed": 5, "val_fraction": 0.3,
                                                  "backbone": "mobilenet_v2"})
    assert [c["strategy"] for c in configs] == ["linear_probe", "feature_extraction", "frozen_augment",
                                                "fine_tune", "scratch", "pixel_baseline"]
    assert {(c["dataset"], c["seed"], c["val_fraction"]) for c in configs} == {("/d", 5, 0.3)}
    assert len({c[plans.GROUP_KEY] for c in configs}) == 1


def test_parse_ints():
    assert plans.parse_ints("8, 16 32") == (8, 16, 32)
    for bad in ("", "8, x", "0, 4"):
        with pytest.raises(ConfigError):
            plans.parse_ints(bad, "filters")


def test_sweep_configs_differ_only_in_depth():
    base = registry.make_config("fine_tune", dataset="/d", seed=3)
    configs = sweep.sweep_configs(base, [20, 5, 5, 10])
    assert [c["fine_tune_layers"] for c in configs] == [5, 10, 20]
    assert len({c[sweep.SWEEP_KEY] for c in configs}) == 1
    strip = lambda c: {k: v for k, v in c.items() if k not in ("fine_tune_layers", "name")}  # noqa: E731
    assert strip(configs[0]) == strip(configs[2])
    with pytest.raises(ConfigError):
        sweep.sweep_configs(base, [0])
    assert sweep.default_depths(30) == (2, 5, 10, 20, 30)
    assert sweep.default_depths(None) == sweep.DEFAULT_DEPTHS


# ---------------------------------------------------------------- progress text

def test_progress_summary():
    assert progress.progress_summary({}, "queued") == (None, "Waiting in the queue")
    frac, text = progress.progress_summary({"phase": "fine_tune", "epoch": 2, "epochs": 4, "batch": 5,
                                           "batches": 10, "images_per_s": 123.4, "eta_s": 75})
    assert frac == pytest.approx((1 + 0.5) / 4)
    assert text == "Fine-tuning · epoch 2/4 · batch 5/10 · 123.4 images/s · ETA 1 min 15 s"
    frac, text = progress.progress_summary({"phase": "extract train", "done": 50, "total": 200,
                                           "images_per_s": 10.0, "eta_s": 15.0})
    assert frac == 0.25 and text.startswith("Extracting features (train) · 50/200 images")
    assert progress.progress_summary({"phase": "load", "message": "Loading vgg16"}) == (None, "Loading vgg16")
    assert progress.format_seconds(3725) == "1 h 02 min" and progress.format_seconds(float("nan")) == "?"
    assert [progress.format_seconds(v, short=True) for v in (59, 108, 600, 7200)] == ["59 s", "108 s", "10.0 min",
                                                                                     "2.0 h"]
    assert [progress.compact(v) for v in (812, 6001, 2_586_177, None)] == ["812", "6.0k", "2.6M", ""]


# ---------------------------------------------------------------- the comparison table (real run store)

def finished_run(store, strategy, acc, seconds, params, val_images=100, **config):
    run = store.create({"strategy": strategy, "dataset": "/d", "backbone": "mobilenet_v2", "seed": 1, **config})
    run.set_status("running")
    run.write_metrics({"val_accuracy": acc, "val_loss": 1 - acc, "train_seconds": seconds,
                       "trainable_params": params, "val_images": val_images, "input_size": 32})
    run.set_status("done")
    return run


def test_comparison_table_from_runs_and_pareto_front():
    store = RunStore()
    a = finished_run(store, "linear_probe", 0.80, 5.0, 1_000)
    b = finished_run(store, "feature_extraction", 0.90, 20.0, 300_000)
    c = finished_run(store, "frozen_augment", 0.85, 200.0, 300_000)  # slower and worse than b
    failed = store.create({"strategy": "scratch", "dataset": "/d", "weights": "imagenet"})  # the form's default
    failed.set_status("failed", reason="Folder not found: /d")
    queued = store.create({"strategy": "fine_tune", "dataset": "/other"})
    table = compare.comparison_table(store.list())
    assert len(table) == 5 and list(table.columns) == compare.COLUMNS
    row = table.set_index("run_id").loc[failed.id]
    assert row["state"] == "failed" and row["reason"] == "Folder not found: /d" and math.isnan(row["val_accuracy"])
    assert row["backbone"] == "scratch CNN" and row["Strategy"] == "From scratch"
    assert row["weights"] == "none (random init)"  # a scratch model has no pretrained weights
    assert table.set_index("run_id").loc[queued.id, "state"] == "queued"
    trade = compare.accuracy_vs_time(table)
    assert trade["run_id"].tolist() == [a.id, b.id, c.id]
    assert trade.set_index("run_id")["pareto"].to_dict() == {a.id: True, b.id: True, c.id: False}
    assert compare.best_by_strategy(table)["strategy"].tolist() == ["feature_extraction", "frozen_augment",
                                                                    "linear_probe"]


def test_advisor_verdict_agrees_disagrees_or_waits():
    store = RunStore()
    table = compare.comparison_table(store.list())
    assert compare.advisor_verdict(table, "fine_tune")["agreed"] is None
    finished_run(store, "feature_extraction", 0.90, 20.0, 1000, val_images=1000)
    finished_run(store, "fine_tune", 0.70, 100.0, 5000, val_images=1000)
    table = compare.comparison_table(store.list())
    v = compare.advisor_verdict(table, "feature_extraction")
    assert v["agreed"] is True and v["best_strategy"] == "feature_extraction" and "agrees" in v["message"]
    v = compare.advisor_verdict(table, "fine_tune")
    assert v["agreed"] is False and "disagrees" in v["message"]
    v = compare.advisor_verdict(table, "frozen_augment")
    assert v["agreed"] is None and "not been measured" in v["message"]
    # within noise: 0.90 vs 0.89 on 100 images is no real difference
    store2 = RunStore(store.root.parent / "runs2")
    finished_run(store2, "feature_extraction", 0.90, 20.0, 1000, val_images=100)
    finished_run(store2, "frozen_augment", 0.89, 100.0, 1000, val_images=100)
    v = compare.advisor_verdict(compare.comparison_table(store2.list()), "frozen_augment")
    assert v["agreed"] is True and "within noise" in v["message"]


def test_sweep_results_and_verdict():
    store = RunStore()
    base = registry.make_config("fine_tune", dataset="/d")
    configs = sweep.sweep_configs(base, [2, 10, 40])
    for cfg, ft_acc in zip(configs, [0.85, 0.91, 0.88]):
        run = store.create(cfg)
        run.set_status("running")
        for e, (phase, acc) in enumerate([("head", 0.8), ("head", 0.84), ("fine_tune", ft_acc)], 1):
            run.append_history({"epoch": e, "phase": phase, "val_accuracy": acc, "val_loss": 1 - acc})
        run.write_metrics({"val_accuracy": max(ft_acc, 0.84), "unfrozen_layers": cfg["fine_tune_layers"] // 2})
        run.set_status("done")
    store.create({**configs[0], "fine_tune_layers": 80})  # still queued
    res = sweep.sweep_results(store.list())
    assert res["fine_tune_layers"].tolist() == [2, 10, 40, 80]
    assert res["head_accuracy"].tolist()[:3] == [0.84] * 3
    assert res["fine_tune_accuracy"].tolist()[:3] == [0.85, 0.91, 0.88] and math.isnan(res["fine_tune_accuracy"][3])
    text = sweep.sweep_verdict(res)
    assert "top 10 layers" in text and "Unfreezing more (40) did not help" in text


# ---------------------------------------------------------------- one run

def test_confusion_per_class_and_worst_predictions():
    metrics = {"classes": ["a", "b"], "confusion_matrix": [[3, 1], [0, 4]],
               "per_class": {"a": {"precision": 1.0, "recall": 0.75, "f1": 0.857, "support": 4},
                             "b": {"precision": 0.8, "recall": 1.0, "f1": 0.889, "support": 4}}}
    cm = curves.confusion_frame(metrics)
    assert cm.loc["a", "b"] == 1 and cm.index.name == "true" and cm.columns.name == "predicted"
    assert curves.confusion_frame({}).empty
    assert curves.per_class_frame(metrics)["class"].tolist() == ["a", "b"]
    pred = pd.DataFrame({"path": ["p1", "p2", "p3", "p4"], "true": ["a", "a", "b", "b"],
                         "predicted": ["a", "b", "b", "b"], "confidence": [0.9, 0.8, 0.6, 0.99],
                         "true_confidence": [0.9, 0.2, 0.6, 0.99], "correct": [True, False, True, True]})
    worst = curves.worst_predictions(pred, 2)
    assert worst["path"].tolist() == ["p2", "p3"]
    assert curves.worst_predictions(pred, 5, wrong_only=True)["path"].tolist() == ["p2"]
    assert curves.worst_predictions(None).empty


def test_run_name_defaults():
    assert plans.run_name({"strategy": "scratch"}) == "From scratch"
    assert plans.run_name({"strategy": "fine_tune", "backbone": "vgg16"}) == "Fine-tuning · vgg16"
    assert plans.run_name({"strategy": "fine_tune", "name": "mine"}) == "mine"
    assert plans.new_group_id("x").startswith(f"x-{time.strftime('%Y%m%d')}")


def test_a_launch_name_marks_each_of_several_runs_with_its_strategy():
    one = plans.name_runs([{"strategy": "scratch"}], "trial")
    assert one[0]["name"] == "trial"
    several = plans.name_runs([{"strategy": "scratch"}, {"strategy": "fine_tune"}], "trial")
    assert [c["name"] for c in several] == ["trial · From scratch", "trial · Fine-tuning"]
    assert "name" not in plans.name_runs([{"strategy": "scratch"}], "")[0]
