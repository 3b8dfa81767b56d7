"""Accuracy: strategy x backbone on cats_vs_dogs through ``core.train.fit.fit``,
validation accuracy and wall time, beside the published anchors.

The feature cache is cleared once per weights, as a user's first session would
start: the first strategy of each weights pays the extraction, the ones after it
read the cache (the table says which). Epochs are "a few" (issue 8), chosen so the
whole table fits an hour of a 2-core CPU; random weights run the strategies that
train on cached features, the cheap and telling contrast.
"""

from __future__ import annotations

import gc
import time

from .common import Context, GroupResult, attempt, fmt_seconds, log

BACKBONE = "efficientnet_lite0"
STRATEGIES = ("linear_probe", "feature_extraction", "frozen_augment", "fine_tune")
RANDOM_STRATEGIES = ("linear_probe", "feature_extraction")
QUICK_PER_CLASS = 50
# epochs of the strategies that train on images (forward passes over every photo, every epoch)
EPOCHS = {"frozen_augment": dict(epochs=3), "fine_tune": dict(fine_tune_epochs=2), "scratch": dict(epochs=10)}
QUICK_EPOCHS = {"frozen_augment": dict(epochs=2), "fine_tune": dict(fine_tune_epochs=1),
                "scratch": dict(epochs=5)}

ANCHORS = [
    ("classic VGG16 recipe (Chollet)", "feature extraction (cached features, Dense 256)", "~0.90"),
    ("classic VGG16 recipe (Chollet)", "frozen base + augmentation", "~0.95-0.96"),
    ("classic VGG16 recipe (Chollet)", "fine-tuning the top block", "~0.97"),
    ("Keras MobileNetV2 tutorial", "frozen base + augmentation, before fine-tuning", "~0.95"),
    ("Keras MobileNetV2 tutorial", "after fine-tuning", "~0.98"),
]


def configs(ctx: Context):
    """(row label, weights, StrategyConfig) for every cell of the table."""
    from core.train import registry

    limit = QUICK_PER_CLASS if ctx.quick else 0
    epochs = QUICK_EPOCHS if ctx.quick else EPOCHS
    out = []
    for weights, strategies in (("imagenet", STRATEGIES), ("random", RANDOM_STRATEGIES)):
        for strategy in strategies:
            cfg = registry.make_config(strategy, dataset=str(ctx.dataset), backbone=BACKBONE, weights=weights,
                                       seed=ctx.seed, limit_per_class=limit, **epochs.get(strategy, {}))
            out.append((registry.label(strategy), f"{BACKBONE} ({weights})", cfg))
    extra = epochs["scratch"]
    out.append((registry.label("scratch"), "small CNN (random init)",
                registry.make_config("scratch", dataset=str(ctx.dataset), seed=ctx.seed, limit_per_class=limit, **extra)))
    out.append((registry.label("pixel_baseline"), "raw pixels (no network)",
                registry.make_config("pixel_baseline", dataset=str(ctx.dataset), seed=ctx.seed, limit_per_class=limit)))
    return out


def one(ctx: Context, result: GroupResult, strategy_label: str, backbone_label: str, cfg) -> dict:
    from core.features.cache import clear_cache
    from core.train.fit import fit

    seen = ctx.memo.setdefault("accuracy_weights_seen", set())
    if cfg.weights not in seen:  # a first session: the first strategy of these weights extracts
        seen.add(cfg.weights)
        clear_cache()
    log(f"accuracy: {strategy_label} / {backbone_label}")
    t0 = time.perf_counter()
    res = fit(cfg)
    wall = time.perf_counter() - t0
    m = res.metrics
    row = {"strategy": cfg.strategy, "backbone": backbone_label, "val_accuracy": m.get("val_accuracy"),
           "val_loss": m.get("val_loss"), "wall_seconds": wall, "train_seconds": m.get("train_seconds"),
           "epochs_run": m.get("epochs_run"), "train_images": m.get("train_images"),
           "features_cached": m.get("features_cached"),
           "val_images": m.get("val_images"), "input_size": m.get("input_size"), "config": cfg.to_dict()}
    result.figures.setdefault("runs", []).append(row)
    del res
    gc.collect()
    return row


def run(ctx: Context) -> GroupResult:
    result = GroupResult("accuracy", ctx.quick)
    rows = []
    for strategy_label, backbone_label, cfg in configs(ctx):
        row = attempt(result, f"{strategy_label} / {backbone_label}", one, ctx, result, strategy_label,
                      backbone_label, cfg)
        if row:
            features = {True: "from cache", False: "extracted"}.get(row["features_cached"], "-")
            rows.append([strategy_label, backbone_label, row["val_accuracy"], fmt_seconds(row["wall_seconds"]),
                         features, row["epochs_run"], f"{row['train_images']} / {row['val_images']}",
                         row["input_size"]])
    result.tables["strategy x backbone on cats_vs_dogs (validation accuracy, wall time)"] = (
        ["strategy", "backbone (weights)", "val accuracy", "wall time", "features", "epochs", "train / val images",
         "px"], rows)
    result.tables["published anchors (same 2,000 / 1,000 cats-vs-dogs subset)"] = (
        ["source", "strategy", "val accuracy"], [list(a) for a in ANCHORS])
    best = max((r for r in result.figures.get("runs", [])), key=lambda r: r["val_accuracy"] or 0, default=None)
    if best:
        result.add("best validation accuracy", f"{best['strategy']} / {best['backbone']}", best["val_accuracy"],
                   ">= 0.97 (classic fine-tuned)", best["val_accuracy"] >= 0.97 if not ctx.quick else None)
    if ctx.quick:
        result.notes.append(f"--quick: limit_per_class={QUICK_PER_CLASS} ({2 * QUICK_PER_CLASS} train / "
                            f"{2 * QUICK_PER_CLASS} validation images) and fewer epochs "
                            f"({'; '.join(k + ' ' + ', '.join(f'{a}={b}' for a, b in v.items()) for k, v in QUICK_EPOCHS.items())}); "
                            "not comparable "
                            "with the anchors")
    result.notes.append("configs: core.train.registry.make_config (Adam; feature extraction with early stopping); "
                        "random weights = the same EfficientNet-Lite0 graph with Keras' initialisers")
    return result
