"""Real tier on data far from ImageNet (all 1,797 scikit-learn digits as 64 px PNGs; letters
drawn in several fonts, sizes and positions) and on cats_vs_dogs, with the real EfficientNet-Lite
weights: the advisor measures and picks from the figures, the pixel baseline is the floor, flips
are decided from the data; ``slow``: the from-scratch CNN beats the pixel baseline on the digits."""

from __future__ import annotations

import pytest

from core.data.dataset import scan_folder
from tests.digits import write_digits

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits_all"))


def test_advisor_on_digits_measures_the_pixels_and_does_not_pick_frozen_augmentation(digits, shared_assets):
    from core.analysis.advisor import advise

    advice = advise(scan_folder(digits, val_fraction=0.2, seed=1337), backbone="efficientnet_lite0", compare=[])
    by = {c["strategy"]: c["accuracy"] for c in advice.candidates}
    assert set(by) == {"pixel_baseline", "linear_probe", "feature_extraction"}  # the pixels decided: no trial
    assert by["pixel_baseline"] >= 0.88 and advice.strategy != "frozen_augment"
    assert advice.strategy == "scratch" and "far from ImageNet" in " ".join(advice.reasons)


def test_advisor_on_cats_vs_dogs_still_transfers(cats_vs_dogs):
    from core.analysis.advisor import advise

    advice = advise(scan_folder(cats_vs_dogs), backbone="efficientnet_lite0")
    by = {(c["strategy"], c["backbone"]): c["accuracy"] for c in advice.candidates}
    assert advice.strategy in ("feature_extraction", "fine_tune")
    probes = {b: acc for (s, b), acc in by.items() if s == "linear_probe"}
    assert set(probes) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}  # every backbone here
    assert min(probes.values()) >= 0.95 and probes["efficientnet_lite0"] > by[("pixel_baseline", "")] + 0.2
    assert ("scratch", "") not in by  # the features leave no room above them: no from-scratch trial


def test_advisor_tries_a_network_from_scratch_where_the_features_leave_room(tmp_path, shared_assets):
    """Letters in many fonts and places: the raw pixels fail (position varies), ImageNet features
    do well but not perfectly, so the advisor runs a short from-scratch trial, which learns the
    strokes far beyond the pixels even in a few epochs on the sample."""
    from core.analysis.advisor import advise
    from tests.glyphs import write_glyphs

    ds = scan_folder(write_glyphs(tmp_path / "letters", per_class=100), val_fraction=0.2, seed=1337)
    advice = advise(ds, backbone="efficientnet_lite0", compare=[])
    by = {c["strategy"]: c["accuracy"] for c in advice.candidates}
    assert by["pixel_baseline"] < 0.5 < by["linear_probe"] < 0.99
    assert by["scratch"] > by["pixel_baseline"] + 0.3 and advice.figures["scratch_epochs"] >= 3
    assert advice.strategy in ("scratch", "feature_extraction")


def test_flips_and_fill_are_decided_from_the_data(digits, cats_vs_dogs):
    from core.train.flips import resolve_augment
    from core.train.strategies import Augment

    flips_only = Augment(rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0)  # the flips and the fill
    d = resolve_augment(flips_only, scan_folder(digits, val_fraction=0.2, seed=1337))
    assert d.augment.flip == "" and d.augment.fill == "constant" and d.augment.fill_value > 240
    photos = resolve_augment(flips_only, scan_folder(cats_vs_dogs))
    assert photos.augment.fill == "reflect" and photos.augment.flip == "horizontal"  # judged on the features
    assert all(c.space == "features" for c in d.flips + photos.flips)


_PIXELS: dict = {}  # the pixel baseline's fit on all the digits, made once a module (inside a test, so
# under that test's own data directory) for both the test of its floor and the CNN that must beat it


def pixel_baseline_on(digits):
    from core.train import registry
    from core.train.fit import fit

    if str(digits) not in _PIXELS:
        _PIXELS[str(digits)] = fit(registry.make_config("pixel_baseline", dataset=str(digits)))
    return _PIXELS[str(digits)]


def test_pixel_baseline_on_all_digits(digits):
    result = pixel_baseline_on(digits)
    assert result.metrics["strategy"] == "pixel_baseline" and result.metrics["train_images"] > 1400
    assert result.metrics["val_accuracy"] >= 0.93


@pytest.mark.slow
def test_scratch_cnn_beats_the_pixel_baseline_on_digits(digits):
    from core.train import registry
    from core.train.fit import fit

    pixel = pixel_baseline_on(digits).metrics["val_accuracy"]  # the same fit as the test above
    # 8 epochs (the cosine schedule spans them): 0.986 against the pixels' 0.961 when measured, above
    # them from the third epoch on; 12 reached 0.989 in 94 s (6: 0.989 too), the default 30 with early
    # stopping 0.992 in about twice that
    scratch = fit(registry.make_config("scratch", dataset=str(digits), epochs=8))
    assert scratch.metrics["input_size"] == 64
    assert scratch.metrics["val_accuracy"] > pixel
