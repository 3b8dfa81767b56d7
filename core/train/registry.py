"""The strategy registry: every strategy declared once.

The command line, the pages, the comparison presets, the advisor and the
benchmarks all read this module: a strategy's name, label, what it trains on,
its modern and classic defaults, its own options and checks, and its fit
function. Adding a strategy is one ``Strategy`` entry (its fit function in
``core.train.methods``) plus its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from core.errors import ConfigError
from core.train import folds, methods, precision
from core.train.strategies import StrategyConfig

# Class weights go on by default when the largest training class has at least this many times the
# images of the smallest. At 3:1 always answering the largest class already scores 75% on two classes,
# so accuracy flatters a model that neglects the small one, and unweighted heads measurably lose recall
# on it; below that the weights change little, and leaving them off keeps the plain loss.
IMBALANCE_RATIO = 3.0

PRESETS = {
    "modern": "Modern defaults (Adam, pooled features, early stopping)",
    "classic": "Classic recipe (VGG16 at 150 px, RMSprop 2e-5, batch 20)",
}
# The textbook recipe every preset="classic" config starts from: VGG16 at 150 px, flattened
# 4x4x512 features, Dense 256 + Dropout 0.5, RMSprop 2e-5, 30 epochs, batch 20.
CLASSIC = dict(backbone="vgg16", input_size=150, pooling="flatten", head_units=256, dropout=0.5,
               optimizer="rmsprop", learning_rate=2e-5, epochs=30, batch_size=20)


@dataclass(frozen=True)
class Option:
    """One field of a strategy's own options form: ``kind`` is int, rate, float, ints or text."""

    field: str
    label: str
    kind: str = "int"
    lo: float = 0
    hi: float = 1000
    help: str = ""


@dataclass(frozen=True)
class Strategy:
    name: str
    label: str
    summary: str  # one sentence: what it trains and on what
    inputs: str  # "features": a head on cached backbone features; "pixels": images every epoch
    fit: Callable  # (core.train.loop.Context) -> (model, input_size, probabilities | None)
    pretrained: bool = True  # False: no backbone, the network is learnt from the data alone
    network: str = ""  # how tables name the network of a strategy without a backbone
    augments: bool = False  # reads the augmentation options
    modern: Mapping = field(default_factory=dict)
    classic: Mapping = field(default_factory=dict)  # on top of CLASSIC
    options: tuple[Option, ...] = ()
    problems: Callable[[StrategyConfig], list[str]] = lambda cfg: []

    def reads(self, option: str) -> bool:
        """Whether this strategy has ``option`` among its own options (e.g. layers to unfreeze)."""
        return any(o.field == option for o in self.options)


_EPOCHS = Option("epochs", "Epochs", "int", 1, 500)
_LR = Option("learning_rate", "Learning rate", "rate")
_EARLY = Option("early_stopping", "Early stopping patience", "int", 0, 100,
                "Stop after this many epochs without a lower validation loss; 0: off.")
_REDUCE = Option("reduce_lr", "Reduce LR patience", "int", 0, 100,
                 "Divide the learning rate by 3 after this many epochs without progress; 0: off.")
_UNITS = Option("head_units", "Dense units (0: linear head)", "int", 0, 8192)
_DROPOUT = Option("dropout", "Dropout", "float", 0.0, 0.95)
_HEAD = (_EPOCHS, _LR, _EARLY, _REDUCE, _UNITS, _DROPOUT)


def _fine_tune_problems(cfg: StrategyConfig) -> list[str]:
    out = [] if cfg.fine_tune_lr > 0 else ["learning rates must be positive"]
    if cfg.fine_tune_layers < 1 and not cfg.fine_tune_from:
        out.append("fine-tuning needs at least one layer to unfreeze")
    return out


def _scratch_problems(cfg: StrategyConfig) -> list[str]:
    return [] if cfg.scratch_filters else ["a network from scratch needs at least one convolution block"]


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy(
        "linear_probe", "Linear probe", "logistic regression on cached features (seconds)", "features",
        methods.fit_linear_probe, modern=dict(epochs=1),
        options=(Option("probe_c", "Regularisation C (larger: weaker)", "float", 1e-4, 1e4,
                        "Logistic regression on cached features; no epochs, no learning rate."),),
    ),
    Strategy(
        "feature_extraction", "Feature extraction", "a small dense head on cached features", "features",
        methods.fit_feature_extraction,
        modern=dict(epochs=20, learning_rate=1e-3, early_stopping=4, reduce_lr=2),
        options=(*_HEAD, Option("feature_layer", "Feature layer (empty: the top)", "text", help=(
            "Train on an earlier block of the base: more generic features, the classic advice for "
            "small data unlike ImageNet. The advisor measures the block before the last."))),
    ),
    Strategy(
        "frozen_augment", "Frozen base + augmentation", "images through the frozen base each epoch, augmented",
        "pixels", methods.fit_frozen_augment, augments=True,
        modern=dict(epochs=5, learning_rate=1e-3), options=_HEAD,
    ),
    Strategy(
        "fine_tune", "Fine-tuning", "the head first, then the top layers at a low learning rate", "features",
        methods.fit_fine_tune, augments=True,
        modern=dict(epochs=5, learning_rate=1e-3, fine_tune_epochs=3, fine_tune_lr=1e-5),
        # the textbook unfreezes VGG16's last convolution block at 1e-5
        classic=dict(fine_tune_layers=4, fine_tune_epochs=10, fine_tune_lr=1e-5),
        options=(Option("epochs", "Head epochs (frozen base)", "int", 1, 500),
                 Option("learning_rate", "Head learning rate", "rate"), _EARLY, _REDUCE, _UNITS, _DROPOUT,
                 Option("fine_tune_layers", "Top layers to unfreeze", "int", 1, 2000,
                        "Counted from the top of the base; BatchNorm layers stay frozen."),
                 Option("fine_tune_epochs", "Fine-tuning epochs", "int", 1, 500),
                 Option("fine_tune_lr", "Fine-tuning learning rate", "rate", help=(
                     "Low, so the pretrained features are adjusted rather than overwritten."))),
        problems=_fine_tune_problems,
    ),
    Strategy(
        "scratch", "From scratch", "a small CNN, no pretraining", "pixels", methods.fit_scratch,
        pretrained=False, network="scratch CNN", augments=True,
        # input size 0: from the data; a warm-up + cosine schedule (reduce_lr 0) over the epochs
        modern=dict(epochs=30, learning_rate=2e-3, input_size=0, early_stopping=8, head_units=0, dropout=0.2),
        classic=dict(learning_rate=1e-4, scratch_filters=(32, 64, 128, 128), head_units=512),
        options=(_EPOCHS, _LR, _EARLY, _REDUCE, Option("head_units", "Dense units", "int", 0, 8192), _DROPOUT,
                 Option("input_size", "Input size (px, 0: from the data)", "int", 0, 1024),
                 Option("scratch_filters", "Filters per conv block", "ints",
                        help="One number per convolution block, e.g. 32, 64, 128.")),
        problems=_scratch_problems,
    ),
    Strategy(
        "pixel_baseline", "Pixel baseline", "logistic regression on downscaled raw pixels: seconds, the floor",
        "pixels", methods.fit_pixel_baseline, pretrained=False, network="raw pixels",
        modern=dict(epochs=1), classic=dict(epochs=1),
    ),
)}
LABELS = {name: s.label for name, s in STRATEGIES.items()}


def get(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"Unknown strategy '{name}'; choose one of {', '.join(STRATEGIES)}.") from None


def label(name: str) -> str:
    """The strategy's label, or the name itself for one this version does not know (old runs)."""
    return LABELS.get(name, name)


def uses_backbone(name: str) -> bool:
    """Whether runs of ``name`` train on a pretrained backbone (unknown names: assume so)."""
    entry = STRATEGIES.get(name)
    return entry is None or entry.pretrained


def check(cfg: StrategyConfig) -> StrategyConfig:
    """``cfg`` when it can make a run; a ``ConfigError`` naming every problem otherwise."""
    strategy = get(cfg.strategy)
    problems = []
    if cfg.epochs < 1:
        problems.append("epochs must be at least 1")
    if cfg.batch_size < 1:
        problems.append("batch size must be at least 1")
    if not cfg.learning_rate > 0:
        problems.append("learning rates must be positive")
    if not 0.0 < cfg.val_fraction < 1.0:
        problems.append("the validation fraction must be between 0 and 1")
    if not 0.0 <= cfg.dropout < 1.0:
        problems.append("dropout must be at least 0 and below 1")
    if cfg.input_size and cfg.input_size < 32:
        problems.append("the input size must be at least 32 px (or 0 for the backbone's default)")
    if (cfg.precision or "").strip().lower() not in ("", *precision.CHOICES):
        problems.append(f"the precision must be one of {', '.join(precision.CHOICES)}")
    problems += folds.check(cfg.folds, cfg.fold, cfg.fold_scheme)
    problems += [p for p in strategy.problems(cfg) if p not in problems]
    if problems:
        raise ConfigError(f"{strategy.label}: " + "; ".join(problems) + ".")
    return cfg


def imbalance_ratio(counts) -> float:
    """Largest over smallest class count (inf when a class has none; 1.0 for fewer than two)."""
    counts = [int(c) for c in (counts.values() if hasattr(counts, "values") else counts)]
    if len(counts) < 2:
        return 1.0
    return float(max(counts) / min(counts)) if min(counts) else float("inf")


def class_weights_default(cfg: StrategyConfig, counts) -> tuple[StrategyConfig, dict]:
    """``cfg`` with ``class_weights`` decided when it was left to the data (None): on from
    ``IMBALANCE_RATIO`` up; and what to record in the run (the choice, the ratio, why)."""
    from dataclasses import replace

    ratio = imbalance_ratio(counts)
    if cfg.class_weights is None:
        on = ratio >= IMBALANCE_RATIO
        why = (f"on by default: the largest training class has {ratio:.1f}x the images of the smallest "
               f"(from {IMBALANCE_RATIO:g}:1 on, weights balance the loss)" if on else
               f"off by default: classes within {IMBALANCE_RATIO:g}:1 ({ratio:.1f}:1)")
        cfg = replace(cfg, class_weights=on)
    else:
        why = f"{'on' if cfg.class_weights else 'off'}, as chosen (classes {ratio:.1f}:1)"
    return cfg, {"class_weights": bool(cfg.class_weights), "imbalance_ratio": ratio, "class_weights_reason": why}


def imbalance_note(counts: dict) -> str:
    """The imbalance in words, with what runs do about it and what to read instead of accuracy."""
    ratio = imbalance_ratio(counts)
    if len(counts) < 2 or not any(counts.values()):
        return ""
    largest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
    share = counts[largest] / max(sum(counts.values()), 1)
    if ratio < IMBALANCE_RATIO:
        return (f"Classes are within {IMBALANCE_RATIO:g}:1 ({ratio:.1f}:1 largest to smallest): runs train "
                "without class weights unless you choose them.")
    return (f"Imbalance {ratio:.1f}:1: '{largest}' has {counts[largest]:,} training images, '{smallest}' "
            f"{counts[smallest]:,}. Always answering '{largest}' would score {share:.0%} accuracy, so accuracy "
            "flatters a model here: read balanced accuracy and the worst class's recall beside it. Runs weight "
            f"the classes by default (from {IMBALANCE_RATIO:g}:1 on), and each run records it.")


def make_config(strategy: str, preset: str = "modern", **overrides) -> StrategyConfig:
    """The checked config of ``strategy`` under a preset, with ``overrides`` applied."""
    entry = get(strategy)
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.")
    base = {**CLASSIC, **entry.classic} if preset == "classic" else dict(entry.modern)
    try:
        cfg = StrategyConfig(**{**base, **overrides, "strategy": strategy})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{entry.label}: {err}") from None
    return check(cfg)
