"""A dataset far from ImageNet for the tests: scikit-learn's bundled handwritten digits.

``load_digits`` ships with scikit-learn (no download): 1,797 grayscale 8x8 digits, 16
grey levels. ``write_digits`` writes them as 64 px PNGs (dark ink on white paper,
bilinear upscale) in class folders ``0`` .. ``9``, so a scan splits them like any
user's folder. ``per_class`` keeps the first n of each class for the fast tier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64


def digit_images(per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, 8, 8) dark ink on white, labels)``; the first ``per_class`` of each."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images, labels = data.images, data.target
    if per_class:
        keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
        images, labels = images[np.sort(keep)], labels[np.sort(keep)]
    ink = np.clip(255.0 - images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    return ink, labels


def write_digits(root: Path, per_class: int | None = None, size: int = SIZE) -> Path:
    """Write the digits as ``root/<digit>/<i>.png`` grayscale PNGs of ``size`` px; returns ``root``."""
    images, labels = digit_images(per_class)
    for c in range(10):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, labels)):
        Image.fromarray(img, "L").resize((size, size), Image.Resampling.BILINEAR).save(root / str(label) / f"{i:04d}.png")
    return root
