"""Core pieces behind the fixes of a new user's walk through the app (issue 20): the bomb
message, the one list of upload types, flagged photos first, the extraction estimate,
labelled ticks on a log time axis, a run label that does not repeat itself, and chart
labels that do not print over each other."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from core import atomic, layout
from core.analysis import label_issues as issues_mod, speed
from core.data import images
from core.errors import BadImage
from core.runs import display
from tests.helpers import write_images
from tests.test_images import _bilevel_png


def test_bomb_message_states_one_limit_in_one_unit(tmp_path):
    """Pillow's text quotes its hard limit (twice ours) in pixels: the user read two limits."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_bilevel_png(12_000, 12_000))  # 144 MP
    with pytest.raises(BadImage) as err:
        images.load_rgb(path)
    message = str(err.value)
    assert "144 MP" in message and f"{images.MAX_PIXELS / 1e6:.0f} MP" in message
    assert "pixels" not in message and str(2 * images.MAX_PIXELS) not in message


@pytest.mark.parametrize("ext", images.UPLOAD_TYPES)
def test_every_accepted_upload_type_decodes(tmp_path, ext):
    """The uploaders' list is what core decodes: each type in it really loads."""
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF", "tiff": "TIFF"}.get(ext, ext.upper())
    path = tmp_path / f"photo.{ext}"
    Image.fromarray(np.full((12, 16, 3), 120, np.uint8)).save(path, format=fmt)
    assert images.load_rgb(path.read_bytes()).shape == (12, 16, 3)


def test_upload_types_cover_every_decoded_extension():
    assert set(images.UPLOAD_TYPES) == {e.lstrip(".") for e in images.IMAGE_EXTENSIONS}
    assert {"tif", "tiff", "webp", "gif"} <= set(images.UPLOAD_TYPES)


def blobs(n_per_class: int, k: int, seed: int, spread: float):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 16)) * 3
    X = np.concatenate([c + rng.normal(scale=spread * 3, size=(n_per_class, 16)) for c in centres])
    return X, np.repeat(np.arange(k), n_per_class)


def test_flagged_photos_come_first():
    """The mislabelled tab says "N look mislabelled, check them first": they must be the first N."""
    X, y = blobs(n_per_class=30, k=5, seed=1, spread=0.6)
    noisy, _ = issues_mod.flip_labels(y, 3, seed=1)
    issues = issues_mod.label_issues(X, noisy, list("abcde"), [str(i) for i in range(len(y))])
    flagged = issues["flagged"].to_numpy()
    n = int(flagged.sum())
    assert 0 < n < len(issues)
    assert flagged[:n].all() and not flagged[n:].any()
    doubtful = (issues["suggested"] != issues["label"]).to_numpy()
    rest = doubtful[n:]
    assert not (np.diff(rest.astype(int)) > 0).any(), "doubtful photos come before those the probe agrees with"
    # the ranking by p_given alone (the old order) would have put a flagged photo later
    by_p = issues.sort_values("p_given", kind="stable")["flagged"].to_numpy()
    assert not by_p[:n].all()


def _bench(name: str, size: int, ips: float, warmup_s: float | None) -> None:
    result = speed.SpeedResult(name, size, 8, 3, ips, 8 / ips, "CPU test", "host", 2, "2.x",
                               "2030-01-01T00:00:00+00:00", warmup_s=warmup_s)
    atomic.write_json(speed.bench_path(name, size), asdict(result))


def test_extraction_estimate_counts_warm_up_and_decode(tmp_path):
    """The old figure was photos / benchmark images/s: the forward pass alone, no warm-up, no decode."""
    photos = write_images(tmp_path / "cats", 0, 6, size=(400, 300), fmt="jpg")
    assert speed.extraction_estimate("mobilenet_v2", 300, photos) is None  # nothing measured yet
    _bench("mobilenet_v2", 224, 50.0, warmup_s=4.0)
    est = speed.extraction_estimate("mobilenet_v2", 300, photos)
    assert est.fixed_s == 4.0
    assert est.per_image_s > 1 / 50.0  # the decode of real photos is added
    assert est.seconds == pytest.approx(4.0 + 300 * est.per_image_s)
    assert est.seconds > 300 / 50.0 + 4.0
    assert "50 images/s" in est.basis and "6 of these photos" in est.basis


def test_extraction_estimate_prefers_past_extractions_here(tmp_path):
    _bench("mobilenet_v2", 224, 50.0, warmup_s=None)
    entry = layout.cache("features") / "mobilenet_v2-224-avg-abc"
    entry.mkdir(parents=True)
    (entry / "meta.json").write_text(json.dumps({
        "backbone": "mobilenet_v2", "input_size": 224, "speed": {"images": 200, "seconds": 10.0, "inherited": False}}))
    other = layout.cache("features") / "mobilenet_v2-224-avg-def"  # rows reused, not measured: ignored
    other.mkdir()
    (other / "meta.json").write_text(json.dumps({
        "backbone": "mobilenet_v2", "input_size": 224, "speed": {"images": 200, "seconds": 0.1, "inherited": True}}))
    est = speed.extraction_estimate("mobilenet_v2", 100)
    assert est.per_image_s == pytest.approx(10.0 / 200)
    assert est.fixed_s is None and est.seconds == pytest.approx(5.0)
    assert "200 photos extracted" in est.basis


def test_benchmark_records_its_warm_up():
    """``measure`` keeps what building the network and its first batch cost, for the estimate."""
    result = speed.measure("mobilenet", size=32, batch_size=2, batches=1)
    assert result.warmup_s is not None and result.warmup_s > result.seconds_per_batch
    assert speed.read("mobilenet", 32).warmup_s == pytest.approx(result.warmup_s)


def test_log_ticks_label_a_range_inside_one_decade():
    """Runs of 3 s to 40 s: a log axis ticked once per decade showed one tick, or none."""
    values, labels = display.log_ticks([3.2, 11.0, 38.0])
    assert len(values) >= 3 and min(values) <= 5 and max(values) >= 20
    assert all(a < b for a, b in zip(values, values[1:]))
    assert labels[values.index(10.0)] == "10 s"
    values, labels = display.log_ticks([75.0])
    assert len(values) >= 2 and values[0] < 75 < values[-1]
    assert display.log_ticks([90, 400])[1][-1] == "10 min"
    assert display.log_ticks([]) == ([], [])


def test_run_choice_label_does_not_repeat_itself():
    label = display.run_choice_label("Feature extraction · efficientnet_lite0", "Feature extraction",
                                     "efficientnet_lite0", 0.95)
    assert label == "Feature extraction · efficientnet_lite0 · val acc 0.950"
    assert display.run_choice_label("first try", "Fine-tuning", "vgg16", None) == "first try · Fine-tuning · vgg16"
    assert display.run_choice_label("From scratch", "From scratch", "", float("nan")) == "From scratch"


def test_backbone_chart_labels_do_not_overlap():
    """EfficientNet-Lite0/1/2 sit beside NASNetMobile, VGG16 beside VGG19: all "top center" overlapped."""
    points = {  # params (M), ImageNet top-1 %, as in the registry and the local manifests
        "EfficientNet-Lite0": (4.7, 75.1), "EfficientNet-Lite1": (5.4, 76.7), "EfficientNet-Lite2": (6.1, 77.6),
        "NASNetMobile": (5.3, 74.4), "EfficientNetB0": (5.3, 77.1), "MobileNet": (4.3, 70.4),
        "MobileNetV2": (3.5, 71.3), "VGG16": (138.4, 71.3), "VGG19": (143.7, 71.3), "ResNet50": (25.6, 74.9),
    }
    texts = list(points)
    xs, ys = [p[0] for p in points.values()], [p[1] for p in points.values()]
    assert speed.label_collisions(xs, ys, texts, ["top center"] * len(texts)) > 0
    positions = speed.label_positions(xs, ys, texts)
    assert speed.label_collisions(xs, ys, texts, positions) == 0
    assert set(positions) <= set(speed.LABEL_POSITIONS)


def test_chip_labels_name_runs_as_the_strategies_page_and_are_unique():
    rows = [{"run_id": "20261201-aaaa", "name": "Feature extraction · efficientnet_lite0", "state": "done",
             "val_accuracy": 0.95},
            {"run_id": "20261201-bbbb", "name": "Frozen base + augmentation · efficientnet_lite2", "state": "running",
             "val_accuracy": None},
            {"run_id": "20261201-cccc", "name": "first try", "state": "queued", "val_accuracy": None},
            {"run_id": "20261201-dddd", "name": "first try", "state": "queued", "val_accuracy": None}]
    labels = display.chip_labels(rows)
    assert labels["20261201-aaaa"] == "95.0% · Feature extraction · efficientnet_lite0"  # as the Strategies table
    assert labels["20261201-bbbb"] == "running · Frozen base + augmentation · efficientnet_lite2"
    assert labels["20261201-cccc"] == "queued · first try · cccc" and labels["20261201-dddd"].endswith("dddd")
    legend = display.chip_labels(rows, tail_first=False)  # a chart's legend: the name first
    assert legend["20261201-aaaa"] == "Feature extraction · efficientnet_lite0 · 95.0%"
