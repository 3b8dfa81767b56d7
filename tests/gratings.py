"""Oriented gratings: a set whose classes are defined by orientation alone, far from ImageNet.

Class ``d45`` holds sine gratings at 45 degrees, ``d135`` at 135 (each jittered by a few
degrees), with random spatial frequency, phase, contrast and noise: a horizontal (or
vertical) flip turns one class into the other, while the photo-like transformations
(small rotations, zoom, shift) keep it. ``write_gratings`` writes 64 px PNGs in class
folders, ``train/`` and ``validation/`` when ``val_per_class`` is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
ANGLES = {"d45": 45.0, "d135": 135.0}


def grating(angle: float, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """One uint8 grey grating at ``angle`` degrees (jittered by up to 6), as RGB."""
    theta = np.deg2rad(angle + rng.uniform(-6, 6))
    cycles = rng.uniform(3.0, 7.0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = np.sin(2 * np.pi * cycles * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
    img = 128 + 127 * rng.uniform(0.3, 1.0) * wave + rng.normal(0, 25, (size, size))
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def write_gratings(root: Path, per_class: int, val_per_class: int = 0, seed: int = 0,
                   counts: dict[str, int] | None = None) -> Path:
    """Write ``per_class`` gratings a class (``counts`` overrides it per class, for an uneven set),
    and ``val_per_class`` more under ``validation/`` when given; returns ``root``."""
    rng = np.random.default_rng(seed)
    splits = {"train": counts or {c: per_class for c in ANGLES}}
    if val_per_class:
        splits["validation"] = {c: val_per_class for c in ANGLES}
    for split, wanted in splits.items():
        for cls, n in wanted.items():
            folder = root / split / cls if val_per_class else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(grating(ANGLES[cls], rng)).save(folder / f"{i:04d}.png")
    return root
