"""A second dataset far from ImageNet, drawn on the spot: letters rendered with Pillow.

Each image is one of ``LETTERS`` in a random font face (Pillow's bundled scalable font and
any DejaVu faces installed), size, stroke, small rotation and shift, grey ink on grey paper,
with noise: shapes whose position varies, so raw pixels are a weak model and a network that
learns the strokes is a strong one. No download; seeded, so every run draws the same images.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 64
LETTERS = "ACEFHKLPTX"  # no letter is another one mirrored or turned


def _faces() -> list[str | None]:
    """Font files to draw with: ``None`` is Pillow's bundled font (present on every machine)."""
    return [None, *sorted(glob.glob("/usr/share/fonts/truetype/dejavu/DejaVu*.ttf"))[:6]]


def glyph(letter: str, rng: np.random.Generator, faces: list) -> Image.Image:
    """One grayscale ``SIZE`` px image of ``letter``."""
    face = faces[rng.integers(len(faces))]
    points = int(rng.integers(26, 44))
    font = ImageFont.load_default(points) if face is None else ImageFont.truetype(face, points)
    paper, ink = int(rng.integers(170, 256)), int(rng.integers(0, 90))
    canvas = Image.new("L", (SIZE * 2, SIZE * 2), paper)
    ImageDraw.Draw(canvas).text((SIZE, SIZE), letter, fill=ink, font=font, anchor="mm",
                                stroke_width=int(rng.integers(0, 2)), stroke_fill=ink)
    canvas = canvas.rotate(float(rng.uniform(-15, 15)), fillcolor=paper,
                           translate=tuple(int(t) for t in rng.integers(-12, 13, 2)))
    img = np.asarray(canvas.crop((SIZE // 2, SIZE // 2, SIZE * 3 // 2, SIZE * 3 // 2)), np.float32)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "L")


def write_glyphs(root: Path, per_class: int, seed: int = 0) -> Path:
    """Write ``per_class`` images of each letter as ``root/<letter>/<i>.png``; returns ``root``."""
    rng, faces = np.random.default_rng(seed), _faces()
    for letter in LETTERS:
        (root / letter).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            glyph(letter, rng, faces).save(root / letter / f"{i:04d}.png")
    return root
