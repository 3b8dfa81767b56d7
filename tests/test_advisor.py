"""The 2x2 strategy advisor on constructed cases: each cell (small/large x similar/different)
reached with measured figures in the reasons (the measure itself: tests/test_separability.py)."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest

from core.analysis import advisor
from core.data.dataset import Dataset, ImageRecord

DIM = 32


# ---------------------------------------------------------------- advise() on constructed datasets

def fake_dataset(per_class: int, classes=("cats", "dogs")) -> Dataset:
    records = [ImageRecord(f"/nowhere/{c}/{i}.jpg", c, "train", 64, 64, "RGB", "JPEG", 1000)
               for c in classes for i in range(per_class)]
    records += [ImageRecord(f"/nowhere/val/{c}/{i}.jpg", c, "validation", 64, 64, "RGB", "JPEG", 1000)
                for c in classes for i in range(10)]
    return Dataset("constructed", "/nowhere", list(classes), records, fingerprint=f"fp-{per_class}")


@pytest.fixture
def fake_features(monkeypatch):
    """Replace feature extraction (and the backbone's depth) with synthetic features:
    class blobs ``shift`` apart; records the calls."""
    state = {"shift": 8.0, "calls": []}

    def extract_features(ds, backbone, *, split="train", **kwargs):
        state["calls"].append({"n": len(ds.split(split)), "backbone": backbone, "split": split, **kwargs})
        y = ds.labels(split)
        rng = np.random.default_rng(len(y))
        X = rng.normal(size=(len(y), DIM)) + 1.0
        X[np.arange(len(y)), y] += state["shift"]
        return SimpleNamespace(usable=lambda: (X.astype("float32"), y))

    def load_backbone(name, weights="imagenet", input_size=None, seed=0):
        return SimpleNamespace(base=SimpleNamespace(layers=[object()] * 150))

    monkeypatch.setattr("core.features.dataset.extract_features", extract_features)
    monkeypatch.setattr("core.nets.backbones.load_backbone", load_backbone)
    monkeypatch.setattr("core.nets.loaded._HELD", OrderedDict())  # the fake backbone stays in this test
    return state


CASES = [
    # per class, blob shift, size, similarity, strategy, unfreeze (of 150 layers)
    (200, 8.0, "small", "similar", "feature_extraction", 0),
    (1200, 8.0, "large", "similar", "fine_tune", 15),
    (200, 0.0, "small", "different", "frozen_augment", 0),
    (1200, 0.0, "large", "different", "fine_tune", 60),
]


@pytest.mark.parametrize("per_class, shift, size, similarity, strategy, unfreeze", CASES)
def test_advise_each_cell(fake_features, per_class, shift, size, similarity, strategy, unfreeze):
    fake_features["shift"] = shift
    advice = advisor.advise(fake_dataset(per_class), backbone="mobilenet_v2", seed=0)
    assert (advice.size, advice.similarity, advice.strategy) == (size, similarity, strategy)
    assert advice.unfreeze_layers == unfreeze

    f = advice.figures
    assert f["smallest_class"] == per_class and f["train_images"] == 2 * per_class
    assert f["sample_size"] == 2 * advisor.SAMPLE_PER_CLASS  # a seeded sample, not the whole dataset
    assert fake_features["calls"][-1]["n"] == 2 * advisor.SAMPLE_PER_CLASS
    assert f["chance"] == pytest.approx(0.5)
    assert f["skill"] == pytest.approx((f["probe_cv_accuracy"] - 0.5) / 0.5)
    if similarity == "similar":
        assert f["probe_cv_accuracy"] >= 0.95 and f["skill"] >= advisor.SIMILAR_SKILL
    else:
        assert f["probe_cv_accuracy"] <= 0.7 and f["skill"] < advisor.SIMILAR_SKILL

    text = "\n".join(advice.reasons)
    assert f"{per_class:,} training images" in text
    assert f"counts as {size}" in text
    assert f"{f['probe_cv_accuracy']:.1%}" in text and f"leave-one-out: {f['knn_loo_accuracy']:.1%}" in text
    assert f["probe_folds"] == 5 and "5-fold" in text
    assert f"chance: {f['chance']:.1%}" in text and f"skill of {f['skill']:.2f}" in text
    assert ("similar to ImageNet" if similarity == "similar" else "different from ImageNet") in text
    assert "MobileNetV2" in text
    if unfreeze:
        assert f"top {unfreeze} of 150 layers" in text
    else:
        assert "Unfreeze" not in text

    table = advice.table()
    assert list(table.index) == ["small", "large"] and list(table.columns) == ["similar", "different"]
    marked = [(r, c) for r in table.index for c in table.columns if "◀ this dataset" in table.loc[r, c]]
    assert marked == [(size, similarity)]
    from core.train import registry

    assert table.loc[size, similarity].startswith(registry.label(strategy))
    assert advice.to_dict()["strategy"] == strategy


def test_size_threshold_is_the_smallest_class(fake_features):
    ds = fake_dataset(1200)
    # drop most dogs: the smallest class decides
    ds.records = [r for r in ds.records if not (r.label == "dogs" and r.split == "train"
                                                and int(r.path.rsplit("/", 1)[1].split(".")[0]) >= 999)]
    advice = advisor.advise(ds, backbone="mobilenet_v2")
    assert advice.figures["smallest_class"] == 999 and advice.size == "small"
    assert "999 training images" in advice.reasons[0] and "under 1,000" in advice.reasons[0]
