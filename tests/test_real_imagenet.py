"""Real tier: the shared EfficientNet-Lite0 recognises real cats and dogs through
core.nets.backbones + core.data.images, and random weights do not."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from core.nets import backbones
from core.data.images import load_rgb

pytestmark = pytest.mark.real

CAT_CLASSES = set(range(281, 286))   # tabby, tiger cat, Persian, Siamese, Egyptian cat
DOG_CLASSES = set(range(151, 269))   # Chihuahua .. Mexican hairless
CAT_THRESHOLD, DOG_THRESHOLD = 40, 45  # of 50; SOURCES.md measured 46 and 50


def _first_50(folder: Path) -> list[Path]:
    def number(p: Path) -> int:
        return int(re.search(r"\.(\d+)\.", p.name).group(1))

    files = sorted(folder.glob("*.jpg"), key=number)[:50]
    assert len(files) == 50
    return files


def _batch(files: list[Path], size: int) -> np.ndarray:
    return np.stack([load_rgb(f, (size, size)) for f in files]).astype(np.float32)


def _hits(model, size: int, files: list[Path], classes: set[int]) -> int:
    probs = model.predict(_batch(files, size), batch_size=50, verbose=0)  # one call per 50 images
    assert probs.shape == (50, 1000)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return sum(bool(classes & set(row.tolist())) for row in top5)


@pytest.fixture
def photos(cats_vs_dogs) -> tuple[list[Path], list[Path]]:
    cats = _first_50(cats_vs_dogs / "validation" / "cats")
    dogs = _first_50(cats_vs_dogs / "validation" / "dogs")
    assert cats[0].name == "cat.2000.jpg" and cats[-1].name == "cat.2049.jpg"
    assert dogs[0].name == "dog.2000.jpg" and dogs[-1].name == "dog.2049.jpg"
    return cats, dogs


def test_imagenet_classes(shared_assets):
    names = backbones.imagenet_classes()
    assert len(names) == 1000
    assert "tabby" in names[281].lower()
    assert names[0] == "tench"
    spec = backbones.get_spec("efficientnet_lite0")
    assert backbones.imagenet_classes(spec) == names


def test_pretrained_lite0_recognises_cats_and_dogs(photos):
    cats, dogs = photos
    model, size = backbones.load_classifier("efficientnet_lite0")
    assert size == 224
    cat_hits = _hits(model, size, cats, CAT_CLASSES)
    dog_hits = _hits(model, size, dogs, DOG_CLASSES)
    print(f"pretrained EfficientNet-Lite0: cats {cat_hits}/50, dogs {dog_hits}/50")
    assert cat_hits >= CAT_THRESHOLD, cat_hits
    assert dog_hits >= DOG_THRESHOLD, dog_hits


def test_random_lite0_fails_the_same_thresholds(photos):
    cats, dogs = photos
    model, size = backbones.load_classifier("efficientnet_lite0", weights=None)
    cat_hits = _hits(model, size, cats, CAT_CLASSES)
    dog_hits = _hits(model, size, dogs, DOG_CLASSES)
    print(f"random EfficientNet-Lite0: cats {cat_hits}/50, dogs {dog_hits}/50")
    assert not (cat_hits >= CAT_THRESHOLD and dog_hits >= DOG_THRESHOLD)
    assert cat_hits < CAT_THRESHOLD  # SOURCES.md: 0/50 with random weights
