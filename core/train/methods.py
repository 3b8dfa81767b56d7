"""One fit function per strategy: ``fit_x(ctx) -> (model, input_size, probabilities)``.

``probabilities`` is ``(probs, labels, paths)`` of the validation split when
the fit already has them (heads on cached features, the frozen part on the
engine), else ``None`` and the run evaluates the model on the images. A cancelled fit returns a ``None`` model.
The registry (``core.train.registry``) names which function trains which strategy.
"""

from __future__ import annotations

import time

import numpy as np

from core.train import frozen, heads, pixels
from core.train.evaluation import head_outputs, head_probabilities, to_probabilities
from core.train.loop import Context, fit_phase, targets
from core.train.strategies import (
    augmentation, build_head, build_scratch_model, build_transfer_model, unfreeze_top,
)
from core.errors import Cancelled
from core.nets.blocks import truncate
from core.features.cache import ExtractProgress, extract_features
from core.train.flips import resolve_augment
from core.train.strategies import cosine_schedule, scratch_input_size


def _features(ctx: Context, bb):
    """Cached features of both splits, or None when the user cancelled the extraction."""
    cfg, reporter, out = ctx.cfg, ctx.rec, {}
    bb.base.trainable = False  # the features come from the frozen base; its weights are not trained
    try:
        for split in ("train", "validation"):
            def report(p: ExtractProgress, split=split):
                reporter.on_progress({"phase": f"extract {split}", "done": p.done, "total": p.total,
                                      "images_per_s": p.images_per_s, "eta_s": p.eta_s, "cached": p.cached})
            out[split] = extract_features(ctx.ds, cfg.backbone, split=split, weights=cfg.weights_arg,
                                          input_size=bb.input_size, pooling=cfg.pooling, batch_size=32,
                                          seed=cfg.seed, progress=report, should_stop=reporter.should_stop,
                                          loaded=bb)
    except Cancelled:
        ctx.cancelled = True
        return None
    ctx.extra["features_cached"] = all(fs.from_cache for fs in out.values())
    return out


def _validation_probs(ctx: Context, head, feats):
    val = feats["validation"]
    Xv, yv = val.usable()
    return head_probabilities(head, Xv, yv, val.paths, val.valid, ctx.k)


def fit_linear_probe(ctx: Context):
    """Logistic regression (scikit-learn) on cached features, copied into a Keras head."""
    from sklearn.linear_model import LogisticRegression

    cfg, k = ctx.cfg, ctx.k
    bb = ctx.backbone(frozen=True)
    feats = _features(ctx, bb)
    if feats is None:
        return None, bb.input_size, None
    ctx.keep_head_inputs(feats)
    X, y = feats["train"].usable()
    Xv, yv = feats["validation"].usable()
    start = time.perf_counter()
    clf = LogisticRegression(C=cfg.probe_c, max_iter=3000, class_weight="balanced" if cfg.class_weights else None)
    clf.fit(X, y)
    head = build_head(X.shape[1], k, 0, 0.0)
    head.get_layer("head_output").set_weights([clf.coef_.T.astype("float32"), clf.intercept_.astype("float32")])
    train_p = to_probabilities(head_outputs(head, X), k)
    val_p = to_probabilities(head_outputs(head, Xv), k)
    eps = 1e-7
    ctx.rec.on_epoch({
        "epoch": 1, "phase": "probe",
        "loss": float(-np.mean(np.log(train_p[np.arange(len(y)), y] + eps))),
        "accuracy": float(np.mean(train_p.argmax(1) == y)),
        "val_loss": float(-np.mean(np.log(val_p[np.arange(len(yv)), yv] + eps))),
        "val_accuracy": float(np.mean(val_p.argmax(1) == yv)),
        "lr": float("nan"), "seconds": time.perf_counter() - start,
    })
    model = build_transfer_model(bb, cfg.pooling, head)  # no checkpoint: nothing trains after this
    return model, bb.input_size, _validation_probs(ctx, head, feats)


def _train_head(ctx: Context, bb, feats):
    """A head on cached features; returns it and the pixel model around it (what checkpoints hold)."""
    cfg, k = ctx.cfg, ctx.k
    X, y = feats["train"].usable()
    Xv, yv = feats["validation"].usable()
    head = build_head(X.shape[1], k, cfg.head_units, cfg.dropout)
    pixels = build_transfer_model(bb, cfg.pooling, head)
    with ctx.trained_at("head", head) as at, heads.compiled(head, cfg, k, cfg.learning_rate, at) as trained:
        ctx.cancelled = fit_phase(trained, cfg, ctx.rec, "head", (X, targets(y, k)), (Xv, targets(yv, k)),
                                  cfg.epochs, 0, len(y), ctx.weights_for(y), ctx.ckpt, ctx.tb, cfg.restore_best,
                                  saved=pixels)
    return head, pixels


def fit_feature_extraction(ctx: Context):
    """A dense head on cached features of the frozen base, or of an earlier block of it
    (``cfg.feature_layer``, see ``core.nets.blocks``)."""
    bb = ctx.backbone(frozen=True)
    if ctx.cfg.feature_layer:
        bb = truncate(bb, ctx.cfg.feature_layer)
        ctx.extra["feature_layer"] = ctx.cfg.feature_layer
    feats = _features(ctx, bb)
    if feats is None:
        return None, bb.input_size, None
    ctx.keep_head_inputs(feats)
    head, model = _train_head(ctx, bb, feats)
    return model, bb.input_size, _validation_probs(ctx, head, feats)


def fit_fine_tune(ctx: Context):
    """Phase 1: the head on cached features. Phase 2: unfreeze the top of the base
    (BatchNorm frozen), recompile at a low learning rate, train on images."""
    cfg = ctx.cfg
    bb = ctx.backbone()
    feats = _features(ctx, bb)
    if feats is None:
        return None, bb.input_size, None
    head, model = _train_head(ctx, bb, feats)
    if ctx.cancelled:
        return model, bb.input_size, _validation_probs(ctx, head, feats)
    best = _best_row(ctx.rec.rows) if cfg.restore_best else None
    aug = resolved_augmentation(ctx, bb)
    model = build_transfer_model(bb, cfg.pooling, head, aug)
    ctx.extra["unfrozen_layers"] = unfreeze_top(bb.base, cfg.fine_tune_layers, cfg.fine_tune_from)
    epochs_done = len(ctx.rec.rows)
    ctx.extra["fine_tune_start_epoch"] = epochs_done + 1
    baseline = (best["val_accuracy"], best["val_loss"]) if best else None
    if frozen.engine_enabled(bb.frozen_forward(cfg.pooling)):  # the frozen prefix on the engine
        probs = frozen.fit_fine_tune_from_cut(ctx, bb, head, aug, model, "fine_tune", cfg.fine_tune_epochs,
                                              epochs_done, cfg.fine_tune_lr, baseline)
        return model, bb.input_size, probs
    ctx.fit_images(model, bb.input_size, "fine_tune", cfg.fine_tune_epochs, epochs_done, cfg.fine_tune_lr,
                   baseline=baseline)
    return model, bb.input_size, None


def _best_row(rows: list[dict]) -> dict | None:
    scored = [r for r in rows if "val_accuracy" in r]
    return max(scored, key=lambda r: (r["val_accuracy"], -r.get("val_loss", 0.0))) if scored else None


def fit_frozen_augment(ctx: Context):
    """Images, augmented each epoch, through the frozen base into a trained head."""
    cfg = ctx.cfg
    bb = ctx.backbone()
    bb.base.trainable = False
    head = build_head(_pooled_dim(bb, cfg.pooling), ctx.k, cfg.head_units, cfg.dropout)
    aug = resolved_augmentation(ctx, bb)
    model = build_transfer_model(bb, cfg.pooling, head, aug)
    if frozen.engine_enabled(bb.frozen_forward(cfg.pooling)):  # the frozen base on the engine
        return model, bb.input_size, frozen.fit_frozen_head(ctx, bb, head, aug, model)
    ctx.fit_images(model, bb.input_size, "train", cfg.epochs, 0, cfg.learning_rate)
    return model, bb.input_size, None


def _pooled_dim(bb, pooling: str) -> int:
    shape = bb.feature_shape
    return int(np.prod(shape)) if pooling == "flatten" else int(shape[-1])


def resolved_augmentation(ctx: Context, backbone=None):
    """The config's augmentation block with its "auto" flip and fill measured on this dataset
    (``core.train.flips``, on ``backbone``'s features; None: a local ImageNet backbone's); the
    decision and its reasons land in the run's metrics."""
    cfg = ctx.cfg
    if cfg.augment.enabled and "auto" in (cfg.augment.flip, cfg.augment.fill):
        ctx.rec.on_progress({"phase": "augment", "message": "Measuring which flips and fill fit the data"})
    decision = resolve_augment(cfg.augment, ctx.ds, cfg.seed, backbone=backbone)
    ctx.extra["augment_decision"] = decision.to_dict()
    return augmentation(decision.augment, cfg.seed)


def fit_scratch(ctx: Context):
    """A modern small CNN from random initialisation (conv-BN-ReLU blocks, warm-up + cosine
    schedule, early stopping on validation, augmentation measured on the data): what the data
    alone can teach. Input size 0: from the images' sizes (``scratch_input_size``)."""
    import math


    cfg = ctx.cfg
    train = ctx.ds.split("train")
    size = cfg.input_size or scratch_input_size([r.width for r in train], [r.height for r in train])
    model = build_scratch_model(size, ctx.k, cfg.scratch_filters, cfg.head_units, cfg.dropout,
                                resolved_augmentation(ctx))
    steps = math.ceil(len(train) / cfg.batch_size)
    lr = cosine_schedule(cfg.learning_rate, cfg.epochs, steps) if not cfg.reduce_lr else cfg.learning_rate
    ctx.fit_images(model, size, "train", cfg.epochs, 0, lr, path="scratch")
    return model, size, None


def fit_pixel_baseline(ctx: Context):
    """Logistic regression on downscaled, standardised raw pixels (``core.train.pixels``),
    held in a Keras model like every strategy's: seconds, and the floor transfer must beat."""
    from core.train.callbacks import save_model_atomic  # lazy: starts TensorFlow

    start = time.perf_counter()
    data = {}
    for split in ("train", "validation"):
        def report(done, total, split=split):
            ctx.rec.on_progress({"phase": f"decode {split}", "done": done, "total": total})
        pix, valid = pixels.decode(ctx.ds.paths(split), progress=report)
        data[split] = (pix[valid], ctx.ds.labels(split)[valid],
                       [p for p, ok in zip(ctx.ds.paths(split), valid) if ok])
        if ctx.rec.should_stop():
            ctx.cancelled = True
            return None, pixels.BASE, None
    (X, y, _), (Xv, yv, paths) = data["train"], data["validation"]
    ctx.rec.on_progress({"phase": "fit", "message": "Choosing the resolution and regularisation"})
    pb = pixels.fit(X, y, ctx.cfg.seed)
    model = pixels.to_keras(pb, ctx.k)
    train_p = to_probabilities(model.predict(X.astype("float32"), verbose=0), ctx.k)
    val_p = to_probabilities(model.predict(Xv.astype("float32"), verbose=0), ctx.k)
    eps = 1e-7
    ctx.rec.on_epoch({
        "epoch": 1, "phase": "probe",
        "loss": float(-np.mean(np.log(train_p[np.arange(len(y)), y] + eps))),
        "accuracy": float(np.mean(train_p.argmax(1) == y)),
        "val_loss": float(-np.mean(np.log(val_p[np.arange(len(yv)), yv] + eps))) if len(yv) else float("nan"),
        "val_accuracy": float(np.mean(val_p.argmax(1) == yv)) if len(yv) else float("nan"),
        "lr": float("nan"), "seconds": time.perf_counter() - start,
    })
    ctx.extra.update(pixel_size=pb.size, pixel_c=pb.C, pixel_trials=pb.trials)
    if ctx.ckpt is not None:
        save_model_atomic(model, ctx.ckpt)
    return model, pixels.BASE, (val_p, yv, paths)
