"""Flips and transformations judged in the backbone's feature space (core.train.flips): a
horizontal flip is kept on photos (cats_vs_dogs) and left out where it changes the class
(gratings at 45/135 degrees); the pixel probe decides only where features cannot speak."""

from __future__ import annotations

import numpy as np
import pytest

from core.train import flips
from core.data.dataset import scan_folder
from core.train.strategies import Augment
from tests.gratings import write_gratings

ONLY_FLIPS = Augment(rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0)


def _features(pixels: np.ndarray) -> np.ndarray:
    """Stand-in features: 4 x 4 block means about mid-grey (the probe L2-normalises them, which
    would otherwise erase brightness), position-sensitive like a pixel probe."""
    x = np.asarray(pixels, np.float32).mean(-1)
    n, h, w = x.shape
    return x.reshape(n, 4, h // 4, 4, w // 4).mean((2, 4)).reshape(n, -1) - 100.0


def _halves(n: int, bright_side: bool, seed: int = 0):
    """Images bright on one half: by side (a flip swaps the class) or by level (a flip keeps it)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    img = rng.integers(0, 60, (2 * n, 16, 16, 3)).astype(np.uint8)
    for i, label in enumerate(y):
        if bright_side:
            img[i, :, :8] += 150 if label == 0 else 0
            img[i, :, 8:] += 150 if label == 1 else 0
        else:
            img[i] += 150 if label == 1 else 0
    return img, y


def test_feature_checks_leave_out_a_flip_that_swaps_the_class_and_keep_one_that_does_not():
    swapped, y = _halves(40, bright_side=True)
    checks, transforms = flips.feature_checks(swapped, y, _features, ONLY_FLIPS, seed=0)
    by = {c.direction: c for c in checks}
    assert by["horizontal"].keeps_class is False and not by["horizontal"].allowed
    assert by["vertical"].allowed and by["vertical"].space == "features" and transforms == []
    level, y = _halves(40, bright_side=False)
    decision = flips.decide(level, y, ONLY_FLIPS, seen=(level, y, _features))
    assert decision.augment.flip == "horizontal_and_vertical"
    assert any("A linear probe on the backbone's features" in r for r in decision.reasons)


def test_where_features_cannot_separate_the_classes_the_pixel_probe_decides():
    swapped, y = _halves(40, bright_side=True)
    blind = lambda pixels: np.random.default_rng(len(pixels)).normal(size=(len(pixels), 8))  # noqa: E731
    assert flips.feature_checks(swapped, y, blind, ONLY_FLIPS) is None
    decision = flips.decide(swapped, y, ONLY_FLIPS, seen=(swapped, y, blind))
    assert all(c.space == "pixels" for c in decision.flips) and "horizontal" not in decision.augment.flip
    assert any("pixel probe decides" in r for r in decision.reasons)


def test_a_transformation_that_costs_the_probe_is_left_out_and_said_to_not_pay():
    swapped, y = _halves(40, bright_side=True)
    shifted = Augment(rotation=0.0, zoom=0.0, translation=0.45, contrast=0.0, fill="constant", fill_value=0.0)
    decision = flips.decide(swapped, y, shifted, seen=(swapped, y, _features))
    assert decision.transforms[0].name == "translation" and not decision.transforms[0].allowed
    assert decision.augment.translation == 0.0 and decision.augment.flip in ("", "vertical")
    if not decision.augment.flip:  # nothing geometric left: augmentation is said not to pay, and is off
        assert not decision.augment.enabled and any("not expected to pay" in r for r in decision.reasons)


@pytest.mark.real
def test_cats_vs_dogs_keeps_the_horizontal_flip(cats_vs_dogs):
    from core.nets.loaded import loaded_backbone

    decision = flips.resolve_augment(ONLY_FLIPS, scan_folder(cats_vs_dogs), seed=0,
                                     backbone=loaded_backbone("efficientnet_lite0"))
    by = {c.direction: c for c in decision.flips}
    assert by["horizontal"].space == "features" and by["horizontal"].allowed
    assert "horizontal" in decision.augment.flip and not by["vertical"].allowed  # an upside-down photo is not the data


@pytest.mark.real
def test_gratings_leave_out_the_flips_that_turn_45_degrees_into_135(shared_assets, tmp_path):
    from core.nets.loaded import loaded_backbone

    ds = scan_folder(write_gratings(tmp_path / "gratings", 60, seed=1))
    decision = flips.resolve_augment(ONLY_FLIPS, ds, seed=0, backbone=loaded_backbone("efficientnet_lite0"))
    assert decision.augment.flip == "" and all(c.keeps_class is False for c in decision.flips)
    assert all(c.space == "features" for c in decision.flips)
    assert all(c.flipped_accuracy < 0.5 < c.accuracy for c in decision.flips)  # a flip reads as the other class
