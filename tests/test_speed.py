"""Backbone speed: a real forward-pass measurement, stored under bench/ and read back."""

from __future__ import annotations

import json

import pytest

from core.analysis import speed


def test_measure_stores_and_reads_back(tl_home):
    calls = []
    result = speed.measure("mobilenet", size=32, batch_size=2, batches=2, progress=lambda d, t: calls.append((d, t)))
    assert result.backbone == "mobilenet" and result.size == 32
    assert result.images_per_s > 0
    assert calls[-1] == (3, 3)  # one warm-up + two timed batches
    path = tl_home / "bench" / "mobilenet-32.json"
    assert json.loads(path.read_text())["images_per_s"] == pytest.approx(result.images_per_s)
    assert speed.read("mobilenet", 32) == result
    assert speed.read("mobilenet") is None  # the default size (224) was never measured
    assert result in speed.read_all()
    assert "mobilenet" not in speed.latest_by_backbone()  # 32 px is not the default size


def test_latest_by_backbone_uses_default_size(tl_home):
    result = speed.measure("mobilenet", batch_size=1, batches=1, warmup=1)
    assert result.size == 224
    assert speed.latest_by_backbone()["mobilenet"] == result


def test_corrupt_or_foreign_bench_file_is_ignored(tl_home):
    path = speed.bench_path("vgg16", 224)
    path.write_text("{not json")
    assert speed.read("vgg16") is None
    path.write_text(json.dumps({"version": speed.BENCH_VERSION, "backbone": "vgg16"}))
    assert speed.read("vgg16") is None
    assert speed.read_all() == []


def test_unknown_backbone_is_a_friendly_error():
    from core.errors import UnknownBackbone

    with pytest.raises(UnknownBackbone, match="Unknown backbone"):
        speed.measure("no_such_net")


def test_backbone_table_joins_registry_weights_and_speed(tl_home, tmp_path, monkeypatch):
    from dataclasses import replace

    from core import atomic
    from core.nets import backbones

    table = speed.backbone_table().set_index("name")
    assert {"vgg16", "mobilenet_v2", "efficientnet_b0"} <= set(table.index)
    assert table.loc["vgg16", "params (M)"] == pytest.approx(138.4)
    assert table.loc["vgg16", "top-1 %"] == 71.3
    assert (table["weights"] == "download needed").all()
    assert table["images/s"].isna().all()

    # a weights file under its official name makes it local; a stored measurement shows up
    spec = backbones.get_spec("vgg16")
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / spec.weights_filename()).write_bytes(b"x")
    fake = speed.SpeedResult("vgg16", 224, 8, 3, 12.5, 0.64, "CPU: test", "host", 2, "2.x", "2030-01-01T00:00:00+00:00")
    atomic.write_json(speed.bench_path("vgg16", 224), fake.__dict__)
    atomic.write_json(speed.bench_path("vgg16", 150), replace(fake, size=150, images_per_s=99.0).__dict__)
    table = speed.backbone_table().set_index("name")
    assert table.loc["vgg16", "weights"] == "local"
    assert table.loc["vgg16", "images/s"] == 12.5  # the default size, not 150 px
    assert table.loc["vgg19", "weights"] == "download needed"
