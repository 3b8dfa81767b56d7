"""Pooled features of a whole dataset (train then validation), from the feature cache.

The analyses (labelling, label issues, feature maps, separability) read a
dataset's average-pooled features through here: one cache entry per split, the
backbone loaded only on a cache miss and then kept (``core.nets.loaded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from core.data.dataset import Dataset
from core.errors import TransferLabError
from core.features.cache import cache_key, extract_features, measured_speed
from core import layout
from core.nets.backbones import resolve
from core.nets.loaded import loaded_backbone

StageProgress = Callable[[str, Any], None]
"""Called as ``progress(stage, core.features.cache.ExtractProgress)`` during extraction."""

POOLING = "avg"


def _entry_key(ds: Dataset, spec, split: str, weights: Any) -> str:
    size = spec.size_for()
    return cache_key(ds.fingerprint, split, spec.name, spec.weights_id(weights, 0, size), size, POOLING)


def features_cached(ds: Dataset, backbone: Any, weights: Any = "imagenet",
                    splits: Sequence[str] = ("train", "validation")) -> bool:
    """Whether the pooled features of every split of ``ds`` that has photos are in the feature cache
    (``backbone``: a name or its ``BackboneSpec``)."""

    spec = resolve(backbone)
    root = layout.cache("features")
    return all((root / _entry_key(ds, spec, s, weights) / "meta.json").is_file()
               for s in splits if ds.split(s))


def cached_extract(ds: Dataset, backbone: Any, *, split: str, weights: Any = "imagenet", progress=None,
                   should_stop=None):
    """``core.features.cache.extract_features`` (pooling ``avg``) that loads the backbone only on a
    cache miss, through the process-wide backbone cache. ``backbone``: a name or its ``BackboneSpec``
    (resolved once here and passed on)."""

    spec = resolve(backbone)
    hit = features_cached(ds, spec, weights, splits=(split,))
    # by name: on a miss the loaded backbone carries the spec (extract_features takes it from there)
    return extract_features(ds, spec.name, split=split, weights=weights, pooling=POOLING, progress=progress,
                            should_stop=should_stop, loaded=None if hit else loaded_backbone(spec, weights))


@dataclass
class DatasetFeatures:
    """Pooled features of every usable photo of a dataset, train split then validation."""

    X: np.ndarray
    y: np.ndarray
    paths: list[str]
    splits: list[str]
    keys: list[str]  # the feature-cache entries they came from
    images: int  # photos whose forward pass the speed below was measured on
    seconds: float  # how long those forward passes took
    speed_inherited: bool = False  # measured by earlier entries these rows were reused from

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.images and self.seconds > 0 else float("nan")


def dataset_features(ds: Dataset, backbone: Any, weights: Any = "imagenet", progress: StageProgress | None = None,
                     should_stop=None, splits: Sequence[str] = ("train", "validation")) -> DatasetFeatures:
    """Features of every usable photo of ``ds`` from the feature cache (extracted once, then reused);
    ``backbone``: a name or its ``BackboneSpec``."""

    backbone = resolve(backbone)
    Xs, ys, paths, split_of, keys = [], [], [], [], []
    images, seconds, inherited = 0, 0.0, False
    for split in splits:
        if not ds.split(split):
            continue
        fs = cached_extract(ds, backbone, split=split, weights=weights,
                            progress=(lambda p, s=split: progress(s, p)) if progress else None,
                            should_stop=should_stop)
        X, y = fs.usable()
        Xs.append(X)
        ys.append(y)
        kept = [p for p, ok in zip(fs.paths, fs.valid) if ok]
        paths += kept
        split_of += [split] * len(kept)
        keys.append(fs.key)
        speed = measured_speed(fs.meta)
        if speed:
            images += int(speed["images"])
            seconds += float(speed["seconds"])
            inherited = inherited or bool(speed.get("inherited"))
    if not Xs:
        raise TransferLabError(f"Dataset '{ds.name}' has no photos.")
    return DatasetFeatures(np.concatenate(Xs), np.concatenate(ys), paths, split_of, keys, images, seconds, inherited)
