"""Run configs (plain dataclasses) and the models the strategies train.

Which strategies exist, their defaults and checks: ``core.train.registry``.

Every strategy ends in the same kind of model: raw RGB pixels (0..255) in,
class probabilities out (sigmoid for two classes, softmax otherwise), with the
backbone's preprocessing inside. The classifier page and the exporters can
therefore treat any finished run alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.nets.backbones import DEFAULT_BACKBONE
from core.nets.forward import pooling_layer

OPTIMIZERS = ("adam", "rmsprop", "sgd")
# "auto": decided from the data by measurement (core.train.flips); "": no flip
FLIPS = ("auto", "", "horizontal", "vertical", "horizontal_and_vertical")
FILLS = ("auto", "reflect", "constant", "nearest")  # "auto": background colour if the data has one


@dataclass
class Augment:
    """Keras preprocessing layers put in front of the model (training only)."""

    enabled: bool = True
    flip: str = "auto"  # one of FLIPS; a flip can turn one character or symbol into another
    rotation: float = 0.05  # fraction of a full turn: 0.05 = up to 18 degrees either way
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1
    fill: str = "auto"  # one of FILLS: how rotation, zoom and shift fill the pixels they uncover
    fill_value: float = 255.0  # the colour a "constant" fill paints (0..255)


@dataclass
class StrategyConfig:
    """Everything a run needs; stored as ``config.json`` and enough to rerun it."""

    strategy: str = "feature_extraction"
    dataset: str = ""  # folder of the dataset
    backbone: str = DEFAULT_BACKBONE
    weights: str = "imagenet"  # "imagenet", "random" or a file path
    input_size: int = 0  # 0: the backbone's default
    pooling: str = "avg"  # avg | max | flatten
    feature_layer: str = ""  # feature extraction from this layer of the base (an earlier block); "": the top
    val_fraction: float = 0.2
    seed: int = 1337
    # head
    head_units: int = 256
    dropout: float = 0.5
    # fit loop
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    early_stopping: int = 0  # patience in epochs; 0 = off
    reduce_lr: int = 0  # patience in epochs; 0 = off
    restore_best: bool = True
    class_weights: bool | None = None  # None: on when the classes are uneven (core.train.registry.IMBALANCE_RATIO)
    augment: Augment = field(default_factory=Augment)
    # fine-tuning (phase 2)
    fine_tune_layers: int = 20  # unfreeze this many top layers of the base ...
    fine_tune_from: str = ""  # ... or every layer from this one (name) upwards
    fine_tune_epochs: int = 5
    fine_tune_lr: float = 1e-5
    # from scratch
    scratch_filters: tuple[int, ...] = (32, 64, 128)
    # linear probe
    probe_c: float = 1.0
    limit_per_class: int = 0  # 0: all images; else a seeded subset per class and split
    # repeated splits (core.train.folds): this run is fold ``fold`` of ``folds`` over train + validation
    # pooled, split by ``fold_scheme`` ("kfold" | "repeated") with ``fold_seed``; folds 0: the dataset's split
    folds: int = 0
    fold: int = 0
    fold_seed: int = 0
    fold_scheme: str = "kfold"
    # write model.keras and the records that serve it (calibration, unlike-data statistics); the folds of a
    # repeated split measure a strategy and keep no model unless asked (core.train.folds.fold_configs)
    keep_model: bool = True
    # what gradient steps compute at (core.train.precision): "" the server's (TRANSFER_LAB_PRECISION,
    # default auto), or auto | float32 | mixed_bfloat16 | mixed_float16
    precision: str = ""
    name: str = ""

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        self.scratch_filters = tuple(int(f) for f in self.scratch_filters)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")

    @property
    def weights_arg(self) -> Any:
        return None if self.weights == "random" else self.weights

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scratch_filters"] = list(self.scratch_filters)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "StrategyConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------- model builders

def output_spec(num_classes: int) -> tuple[int, str, str]:
    """(units, activation, loss): sigmoid for two classes, softmax otherwise."""
    if num_classes == 2:
        return 1, "sigmoid", "binary_crossentropy"
    return num_classes, "softmax", "sparse_categorical_crossentropy"


def build_head(input_dim: int, num_classes: int, units: int, dropout: float, name: str = "head"):
    """Dense(units) + Dropout + output; ``units == 0`` gives a linear (logistic) head."""
    import keras

    out_units, activation, _ = output_spec(num_classes)
    inputs = keras.Input((input_dim,), name="features")
    x = inputs
    if units:
        x = keras.layers.Dense(units, activation="relu", name="head_dense")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(out_units, activation=activation, name="head_output")(x)
    return keras.Model(inputs, outputs, name=name)


def augmentation(aug: Augment, seed: int):
    """The augmentation block, or None when disabled or empty.

    Each layer draws from its own seed: Keras layers built with one seed draw the
    same numbers, so rotation, zoom and shift would move together (the most rotated
    image always the most zoomed and shifted) instead of independently. An unresolved
    "auto" (see ``core.train.flips.resolve_augment``) means no flip and a reflect fill.
    """
    import keras

    if not aug.enabled:
        return None
    flip = "" if aug.flip == "auto" else aug.flip
    fill = "reflect" if aug.fill == "auto" else aug.fill
    geometry = dict(fill_mode=fill, fill_value=float(aug.fill_value))
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if aug.rotation:
        layers.append(keras.layers.RandomRotation(aug.rotation, seed=seed + 1, **geometry))
    if aug.zoom:
        layers.append(keras.layers.RandomZoom(aug.zoom, seed=seed + 2, **geometry))
    if aug.translation:
        layers.append(keras.layers.RandomTranslation(aug.translation, aug.translation, seed=seed + 3, **geometry))
    if aug.contrast:
        layers.append(keras.layers.RandomContrast(aug.contrast, value_range=(0, 255), seed=seed + 4))
    return keras.Sequential(layers, name="augmentation") if layers else None


def build_transfer_model(backbone, pooling: str, head, aug=None):
    """pixels -> [augmentation] -> preprocess -> base (inference mode) -> pool -> head."""
    import keras

    size = backbone.input_size
    inputs = keras.Input((size, size, 3), name="pixels")
    x = aug(inputs) if aug is not None else inputs
    x = backbone.preprocess(x)
    x = backbone.base(x)  # an InferenceModel: BatchNorm and Dropout in inference mode, even when unfrozen
    x = pooling_layer(pooling)(x)
    outputs = head(x)
    return keras.Model(inputs, outputs, name=f"{backbone.spec.name}_transfer")


def unfreeze_top(base, layers: int = 0, from_layer: str = "") -> int:
    """Make the top ``layers`` of ``base`` (or all from ``from_layer``) trainable,
    BatchNormalization excepted; returns how many layers became trainable."""
    import keras

    base.trainable = True
    names = [layer.name for layer in base.layers]
    if from_layer:
        if from_layer not in names:
            raise ValueError(f"layer {from_layer!r} is not in {base.name}")
        start = names.index(from_layer)
    else:
        start = max(len(names) - int(layers), 0)
    count = 0
    for i, layer in enumerate(base.layers):
        trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        count += int(trainable and bool(layer.weights))
    return count


# Keras' default BatchNorm momentum (0.99) needs hundreds of steps before its moving statistics,
# which validation uses, describe the data: a 1,400-image dataset has 45 steps an epoch, and
# validation stayed near chance for epochs while training accuracy climbed (0.10 against 0.57).
BN_MOMENTUM = 0.9


def build_scratch_model(size: int, num_classes: int, filters, units: int, dropout: float, aug=None):
    """A modern small CNN trained from random init: a stride-2 conv-BatchNorm-ReLU stem, then
    per entry of ``filters`` a block of two conv-BN-ReLU layers (2x2 max pooling between
    blocks), global average pooling, dropout and the classifier (a dense layer first when
    ``units``). BatchNorm (momentum ``BN_MOMENTUM``) lets Adam train it fast; the stem halves
    the resolution so that depth, not pixels, takes the compute; pixels are scaled to -1..1
    inside the model."""
    import keras

    from core.nets.layers import ChannelAffine  # lazy: starts TensorFlow

    def conv_bn_relu(x, f, name, strides=1):
        x = keras.layers.Conv2D(f, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input((size, size, 3), name="pixels")
    x = aug(inputs) if aug is not None else inputs
    x = ChannelAffine(scale=(1 / 127.5,) * 3, offset=(-1.0,) * 3, name="preprocess")(x)
    x = conv_bn_relu(x, filters[0], "stem", strides=2)
    for i, f in enumerate(filters):
        if i and min(x.shape[1], x.shape[2]) >= 4:
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
        x = conv_bn_relu(x, f, f"block{i + 1}a")
        x = conv_bn_relu(x, f, f"block{i + 1}b")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout and not units:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    head = build_head(int(x.shape[-1]), num_classes, units, dropout)
    return keras.Model(inputs, head(x), name="scratch_cnn")


SCRATCH_SIZES = (32, 128)  # smallest and largest automatic input size of the from-scratch CNN


def scratch_input_size(widths, heights) -> int:
    """The from-scratch CNN's input size from the data: the median short side, a multiple of
    16, within ``SCRATCH_SIZES`` (small images are not upscaled into slower epochs)."""
    import numpy as np

    sides = np.minimum(np.asarray(widths), np.asarray(heights))
    if not len(sides):
        return SCRATCH_SIZES[1]
    side = int(np.median(sides)) // 16 * 16
    return int(min(max(side, SCRATCH_SIZES[0]), SCRATCH_SIZES[1]))


def cosine_schedule(learning_rate: float, epochs: int, steps_per_epoch: int, warmup_epochs: int = 1):
    """Linear warm-up over the first epoch, then cosine decay to 1% over the rest: the
    schedule a from-scratch network needs to settle, in whatever number of epochs it gets."""
    import keras

    total = max(int(epochs) * int(steps_per_epoch), 1)
    warm = min(int(warmup_epochs) * int(steps_per_epoch), total // 4)
    return keras.optimizers.schedules.CosineDecay(
        learning_rate * 0.1 if warm else learning_rate, max(total - warm, 1), alpha=0.01,
        warmup_target=learning_rate if warm else None, warmup_steps=warm)


def make_optimizer(name: str, learning_rate: float):
    import keras

    return {
        "adam": keras.optimizers.Adam,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
    }[name](learning_rate=learning_rate)
