"""Real tier: every strategy on ../shared/datasets/cats_vs_dogs with the shared EfficientNet-Lite0,
the random-weights contrast, fine-tuning after feature extraction, and the classic VGG16 recipe.

The measured accuracies and wall times are printed (``pytest -s``) and written to
``real_training_figures.json`` in the session's temporary folder.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from core.train import fit as training
from core.train import loop
from core.train import registry
from core.train.strategies import StrategyConfig

pytestmark = pytest.mark.real  # test_frozen_base_with_augmentation_and_scratch is also marked slow

LITE0 = "efficientnet_lite0"
SUBSET = 100  # images per class and split for the strategies that push pixels through the base
# the classic recipe's images per class and split: its claim is that the recipe runs end to end as a run
# (VGG16 at 150 px, the flattened head, two epochs, the run's files), which 40 + 40 images show as well
# as 200 + 200; VGG16 costs some 17 times EfficientNet-Lite0's operations an image
VGG_SUBSET = 20
FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def figures_report(tmp_path_factory):
    yield FIGURES
    path = tmp_path_factory.getbasetemp() / "real_training_figures.json"
    path.write_text(json.dumps(FIGURES, indent=2))
    lines = [f"{'figure':42s} {'val_acc':>8s} {'wall_s':>8s} {'train':>6s} {'val':>5s}"]
    for key, f in FIGURES.items():
        lines.append(f"{key:42s} {f.get('val_accuracy', float('nan')):8.4f} {f['wall_s']:8.1f} "
                     f"{f.get('train_images', 0):6d} {f.get('val_images', 0):5d}")
    print("\n" + "\n".join(lines) + f"\nreal-tier figures written to {path}")


def measured(key: str, cfg: StrategyConfig, **fit_kwargs) -> loop.FitResult:
    start = time.perf_counter()
    result = training.fit(cfg, **fit_kwargs)
    wall = time.perf_counter() - start
    m = result.metrics
    FIGURES[key] = {
        "strategy": cfg.strategy, "backbone": m.get("backbone"), "weights": cfg.weights,
        "input_size": m.get("input_size"), "val_accuracy": m.get("val_accuracy"), "val_loss": m.get("val_loss"),
        "wall_s": round(wall, 1), "train_seconds": round(m.get("train_seconds", 0.0), 1),
        "train_images": m.get("train_images"), "val_images": m.get("val_images"),
        "epochs_run": m.get("epochs_run"), "trainable_params": m.get("trainable_params"),
        "limit_per_class": cfg.limit_per_class,
    }
    print(f"\n[real] {key}: val_accuracy={m.get('val_accuracy', float('nan')):.4f} wall={wall:.1f}s "
          f"({m.get('train_images')} train / {m.get('val_images')} val images)", flush=True)
    return result


def lite0(dataset, strategy: str, **overrides) -> StrategyConfig:
    return registry.make_config(strategy, dataset=str(dataset), backbone=LITE0, **overrides)


_DECIDED: dict = {}


def subset_augment(dataset):
    """The augmentation every image-pipeline run on the subset trains with: its "auto" flip and fill measured
    (``core.train.flips.resolve_augment``) on the very images and seed those runs load, with
    EfficientNet-Lite0's ImageNet features (the run's own base, and the default a from-scratch run judges
    on), once for the module. Each run would measure the same thing again (some 35 s on CI's 2 cores); given
    the result, it trains with exactly the augmentation it would have decided. That the decision itself is
    made from the data is test_real_digits.py's test_flips_and_fill_are_decided_from_the_data."""
    from dataclasses import replace

    from core.nets.loaded import loaded_backbone
    from core.train.flips import resolve_augment
    from core.train.loop import load_dataset

    if "decision" not in _DECIDED:
        cfg = lite0(dataset, "frozen_augment", limit_per_class=SUBSET)
        assert "auto" in (cfg.augment.flip, cfg.augment.fill)  # the runs' default: measured
        _DECIDED["decision"] = resolve_augment(cfg.augment, load_dataset(cfg), cfg.seed,
                                               backbone=loaded_backbone(LITE0))
    decided = _DECIDED["decision"].augment
    assert decided.flip != "auto" and decided.fill != "auto" and _DECIDED["decision"].flips
    return replace(decided)


# ---------------------------------------------------------------- full dataset, cached features

def test_feature_extraction_reaches_097(cats_vs_dogs):
    result = measured("feature_extraction (full)", lite0(cats_vs_dogs, "feature_extraction"))
    m = result.metrics
    assert m["train_images"] == 2000 and m["val_images"] == 1000 and len(result.predictions) == 1000
    assert m["val_accuracy"] >= 0.97, m
    assert m["weights_id"].startswith("imagenet-")


def test_linear_probe_reaches_097(cats_vs_dogs):
    result = measured("linear_probe (full)", lite0(cats_vs_dogs, "linear_probe"))
    assert result.metrics["val_accuracy"] >= 0.97, result.metrics
    assert result.metrics["trainable_params"] == 1280 + 1
    if "feature_extraction (full)" in FIGURES:  # same backbone, size and pooling: the cache is reused
        assert result.metrics["features_cached"] is True


# ---------------------------------------------------------------- a seeded subset: image-pipeline strategies

def test_fine_tune_after_feature_extraction_ends_no_more_than_001_below(cats_vs_dogs):
    fe = measured(f"feature_extraction ({SUBSET}/class)", lite0(cats_vs_dogs, "feature_extraction",
                                                                limit_per_class=SUBSET))
    ft = measured(f"fine_tune ({SUBSET}/class)", lite0(cats_vs_dogs, "fine_tune", limit_per_class=SUBSET,
                                                       epochs=fe.metrics["epochs_run"], early_stopping=4,
                                                       reduce_lr=2, fine_tune_epochs=1, fine_tune_layers=20,
                                                       augment=subset_augment(cats_vs_dogs)))
    assert ft.metrics["features_cached"] is True  # phase 1 reuses the subset's cached features
    hist = ft.history
    head = hist[hist["phase"] == "head"]
    assert (hist["phase"] == "fine_tune").sum() == 1
    assert ft.extra["fine_tune_start_epoch"] == len(head) + 1 and ft.extra["unfrozen_layers"] > 0
    head_best = head["val_accuracy"].max()  # the feature extraction this run fine-tunes after
    FIGURES[f"fine_tune ({SUBSET}/class)"]["head_phase_best_val_accuracy"] = float(head_best)
    assert ft.metrics["val_accuracy"] >= head_best - 0.01, (ft.metrics["val_accuracy"], head_best)
    assert fe.metrics["val_accuracy"] >= 0.95
    assert ft.metrics["val_accuracy"] >= fe.metrics["val_accuracy"] - 0.01 - 0.01, (
        "fine-tuning ended well below feature extraction on the same subset (0.01 + one head-training "
        f"noise image allowed): {ft.metrics['val_accuracy']} vs {fe.metrics['val_accuracy']}")
    assert ft.metrics["trainable_params"] > fe.metrics["trainable_params"]


def test_random_weights_stay_far_below_imagenet(cats_vs_dogs):
    imagenet = measured(f"linear_probe imagenet ({SUBSET}/class)",
                        lite0(cats_vs_dogs, "linear_probe", limit_per_class=SUBSET))
    rand = measured(f"feature_extraction random weights ({SUBSET}/class)",
                    lite0(cats_vs_dogs, "feature_extraction", weights="random", limit_per_class=SUBSET))
    assert rand.metrics["weights_id"].startswith("random-")
    if f"feature_extraction ({SUBSET}/class)" in FIGURES:  # the subset's ImageNet features are reused
        assert imagenet.metrics["features_cached"] is True
    assert rand.metrics["val_accuracy"] <= 0.75, rand.metrics
    assert imagenet.metrics["val_accuracy"] - rand.metrics["val_accuracy"] >= 0.2


@pytest.mark.slow  # about a minute more on CI's 2 cores; figures for the comparison table
def test_frozen_base_with_augmentation_and_scratch(cats_vs_dogs):
    frozen = measured(f"frozen_augment ({SUBSET}/class)",
                      lite0(cats_vs_dogs, "frozen_augment", limit_per_class=SUBSET, epochs=1,
                            augment=subset_augment(cats_vs_dogs)))
    scratch = measured(f"scratch 128px ({SUBSET}/class)",
                       registry.make_config("scratch", dataset=str(cats_vs_dogs), limit_per_class=SUBSET, epochs=4,
                                            augment=subset_augment(cats_vs_dogs)))
    assert frozen.metrics["val_accuracy"] >= 0.85, frozen.metrics  # a head on a frozen ImageNet base
    assert len(frozen.predictions) == len(scratch.predictions) == 2 * SUBSET
    assert scratch.metrics["backbone"] == "scratch_cnn" and scratch.metrics["epochs_run"] >= 1
    # what transfer buys: a small CNN from scratch on 200 images is far from the frozen ImageNet base
    assert scratch.metrics["val_accuracy"] < frozen.metrics["val_accuracy"]


# ---------------------------------------------------------------- the classic recipe

def test_classic_vgg16_recipe_runs_end_to_end_as_a_run(cats_vs_dogs):
    """VGG16 at 150 px, flattened 4x4x512, Dense 256 + Dropout 0.5, RMSprop 2e-5: with *random*
    weights, since the official VGG16 ImageNet weights are not available offline."""
    from core.runs import worker
    from core.runs.store import RunStore

    cfg = registry.make_config("feature_extraction", "classic", dataset=str(cats_vs_dogs), weights="random",
                               epochs=2, limit_per_class=VGG_SUBSET, name="classic VGG16 recipe (random weights)")
    run = RunStore().create(cfg.to_dict(), name=cfg.name)
    previous = signal.getsignal(signal.SIGTERM)  # worker.main installs its own SIGTERM handler
    start = time.perf_counter()
    try:
        code = worker.main([str(run.dir)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    wall = time.perf_counter() - start
    status = run.status()
    assert code == 0 and status["state"] == "done", status
    m = run.metrics()
    FIGURES["classic VGG16 recipe, random weights"] = {
        "strategy": m["strategy"], "backbone": m["backbone"], "weights": "random", "input_size": m["input_size"],
        "val_accuracy": m["val_accuracy"], "val_loss": m["val_loss"], "wall_s": round(wall, 1),
        "train_seconds": round(m["train_seconds"], 1), "train_images": m["train_images"],
        "val_images": m["val_images"], "epochs_run": m["epochs_run"], "trainable_params": m["trainable_params"],
        "limit_per_class": VGG_SUBSET,
    }
    print(f"\n[real] classic VGG16 recipe (random weights): val_accuracy={m['val_accuracy']:.4f} wall={wall:.1f}s",
          flush=True)
    assert m["backbone"] == "vgg16" and m["input_size"] == 150 and m["epochs_run"] == 2
    assert m["trainable_params"] == 4 * 4 * 512 * 256 + 256 + 256 + 1  # flatten 4x4x512 -> Dense 256 -> 1
    assert m["train_images"] == 2 * VGG_SUBSET and m["val_images"] == 2 * VGG_SUBSET
    assert np.isfinite(m["val_loss"]) and 0 <= m["val_accuracy"] <= 1
    for name in ("model.keras", "predictions.csv", "history.csv", "config.json"):
        assert (run.dir / name).is_file(), name
    assert run.config["learning_rate"] == pytest.approx(2e-5) and run.config["optimizer"] == "rmsprop"
