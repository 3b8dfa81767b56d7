"""The decoder keeps up: JPEGs decode at a reduced DCT scale (Pillow's draft) when the model
input is small enough, and the pixels stay close to a full decode + the same resize."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data import images
from core.data.images import load_rgb, open_rgb

from tests.helpers import CATS_VS_DOGS


def _full_decode(path, size: int) -> np.ndarray:
    """The same pixels without the draft: full-size decode, then ``core.data.images.resize``."""
    with Image.open(path) as img:
        return np.asarray(images.resize(images._to_rgb(img).copy(), (size, size)), np.uint8)


def _photo_like(path, w=1600, h=1200, seed=0, fmt="JPEG"):
    """Smooth shapes plus fine texture, like a photo (no pure noise: JPEG would not keep it anyway)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(xx / (70 + 20 * c) + c) * np.cos(yy / (55 + 15 * c)) for c in range(3)], -1)
    img += 12 * np.sin(xx / 3.0)[..., None] + rng.normal(0, 4, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, fmt, quality=90)
    return path


def _mean_abs(a, b) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_a_large_jpeg_decodes_at_reduced_scale_and_stays_close(tmp_path):
    path = _photo_like(tmp_path / "big.jpg")
    drafted = open_rgb(path, min_side=150)
    assert drafted.size == (200, 150)  # 1/8 scale: the largest that keeps both sides >= 150
    assert open_rgb(path, min_side=400).size == (800, 600) and open_rgb(path).size == (1600, 1200)
    for size in (150, 224, 299):
        ours, full = load_rgb(path, (size, size)), _full_decode(path, size)
        assert ours.shape == full.shape == (size, size, 3)
        assert _mean_abs(ours, full) < 3.0, size
        assert np.percentile(np.abs(ours.astype(np.int16) - full.astype(np.int16)), 99) <= 16, size


def test_other_formats_and_small_jpegs_decode_exactly_as_before(tmp_path):
    png = _photo_like(tmp_path / "big.png", fmt="PNG")
    np.testing.assert_array_equal(load_rgb(png, (150, 150)), _full_decode(png, 150))
    small = _photo_like(tmp_path / "small.jpg", w=260, h=200)
    np.testing.assert_array_equal(load_rgb(small, (150, 150)), _full_decode(small, 150))  # no scale fits


@pytest.mark.real
def test_real_photos_keep_their_pixels_through_the_draft(cats_vs_dogs):
    paths = sorted((CATS_VS_DOGS / "train" / "cats").glob("*.jpg"))[:30]
    paths += sorted((CATS_VS_DOGS / "train" / "dogs").glob("*.jpg"))[:30]
    for size in (150, 224):
        diffs = [_mean_abs(load_rgb(p, (size, size)), _full_decode(p, size)) for p in paths]
        assert np.mean(diffs) < 1.5 and max(diffs) < 6.0, (size, np.mean(diffs), max(diffs))


@pytest.mark.real
def test_load_rgb_gives_open_rgb_resized_exactly(cats_vs_dogs, tmp_path):
    """``load_rgb`` resizes while the file is open (no copy of the full decode) and skips the
    orientation copy of an upright photo: the same pixels as opening, copying, then resizing."""
    from PIL import ImageOps

    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(_photo_like(tmp_path / "upright.jpg", w=640, h=480)).save(rotated, exif=exif.tobytes())
    paths = sorted((CATS_VS_DOGS / "train" / "dogs").glob("*.jpg"))[:20] + [rotated]
    for size in (150, 224):
        for p in paths:
            np.testing.assert_array_equal(load_rgb(p, (size, size)),
                                          np.asarray(images.resize(open_rgb(p, min_side=size), (size, size))))
    with Image.open(rotated) as img:  # the orientation still applies: Pillow's own transpose, same draft
        img.draft("RGB", (100, 100))
        upright = np.asarray(images.resize(ImageOps.exif_transpose(img).convert("RGB"), (100, 60)))
    np.testing.assert_array_equal(load_rgb(rotated, (100, 60)), upright)


def test_pixel_batches_match_the_tf_data_pipeline_in_order_with_bad_files_blank(tmp_path):
    from core.data.pipeline import image_dataset, pixel_batches

    from tests.helpers import write_images

    paths = [str(p) for p in write_images(tmp_path / "a", 0, 7, size=(40, 48), fmt="jpg")]
    paths.insert(3, str(tmp_path / "broken.jpg"))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    ours = list(pixel_batches(paths, 32, 3, workers=2, ahead=1))
    ref = list(image_dataset(paths, None, 32, 3, with_valid_mask=True))
    assert [len(x) for x, _ in ours] == [3, 3, 2]
    for (x, ok), (rx, rok) in zip(ours, ref):
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, rx.numpy())
        np.testing.assert_array_equal(ok, rok.numpy())
    assert not ours[1][1][0] and not ours[1][0][0].any()  # the broken file: blank and marked invalid


def _counting_decoder(monkeypatch) -> list:
    from core.data import pipeline

    calls = []
    real = pipeline._load_or_blank
    monkeypatch.setattr(pipeline, "_load_or_blank", lambda p, h, w: (calls.append(p), real(p, h, w))[1])
    return calls


def _epochs(ds, n: int = 2) -> list[np.ndarray]:
    return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(n)]


def test_a_split_kept_decoded_is_decoded_once_and_reshuffled_every_epoch(tmp_path, monkeypatch):
    from core.data.pipeline import image_dataset
    from tests.helpers import write_images

    paths = [str(p) for p in write_images(tmp_path, 0, 4) + write_images(tmp_path / "b", 1, 4)]
    calls = _counting_decoder(monkeypatch)
    ds = image_dataset(paths, [0] * 4 + [1] * 4, 16, 3, shuffle=True, seed=1, keep_decoded=True)
    first, second = _epochs(ds)
    assert len(calls) == len(paths)  # the second epoch read the decoded pixels
    key = lambda batch: sorted(img.tobytes() for img in batch)  # noqa: E731
    assert key(first) == key(second) and not np.array_equal(first, second)  # same images, new order
    plain = image_dataset(paths, None, 16, 3)
    assert key(np.concatenate([x.numpy() for x, _ in plain])) == key(first)  # the pixels of a plain pass
    assert not ds.options().autotune.enabled and not plain.options().autotune.enabled  # no end-of-epoch wait


def test_a_split_too_big_to_keep_is_decoded_every_epoch(tmp_path, monkeypatch):
    from core.data import pipeline
    from tests.helpers import write_images

    paths = [str(p) for p in write_images(tmp_path, 0, 5)]
    monkeypatch.setattr(pipeline, "KEEP_DECODED_MB", 0)
    calls = _counting_decoder(monkeypatch)
    _epochs(pipeline.image_dataset(paths, [0] * 5, 16, 2, shuffle=True, keep_decoded=True))
    assert len(calls) == 2 * len(paths)


@pytest.mark.parametrize("ahead", [0, 1])
def test_pixel_batches_decode_ahead_only_as_far_as_asked(tmp_path, monkeypatch, ahead):
    """``ahead=0``: nothing is decoded while the consumer holds a batch; ``ahead=1``: the next
    batch decodes meanwhile."""
    import time

    from core.data.pipeline import pixel_batches
    from tests.helpers import write_images

    paths = [str(p) for p in write_images(tmp_path, 0, 9)]
    calls = _counting_decoder(monkeypatch)
    batches = pixel_batches(paths, 16, 3, workers=3, ahead=ahead)
    first = next(batches)
    time.sleep(0.3)  # the consumer's forward pass
    assert len(first[0]) == 3 and len(calls) == 3 * (1 + ahead)
    assert sum(len(x) for x, _ in batches) == 6 and len(calls) == 9
