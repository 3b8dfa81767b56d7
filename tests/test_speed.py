"""Backbone speed: a real forward-pass measurement, stored under bench/ and read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.analysis import speed


@pytest.fixture
def engine_cache():
    """``engine.choose`` keeps its answer per request: cleared around a test that changes what it sees."""
    from core.nets import engine

    engine._choose.cache_clear()
    yield engine
    engine._choose.cache_clear()


def test_measure_times_every_engine_in_turn_and_reads_back(tl_home, tl_engine):
    """TensorFlow and each OpenVINO precision, whatever engine the app is forced to (the suite forces
    tensorflow); each batch runs every engine once, who goes first rotating; figures stored per label."""
    from core.nets import engine

    best = engine.choose("openvino")
    assert best.engine == "openvino", best.reason  # the suite's environment has OpenVINO on a CPU
    labels = list(dict.fromkeys([speed.TENSORFLOW, best.label, "openvino f32"]))
    calls = []
    result = speed.measure("mobilenet", size=32, batch_size=2, batches=3, progress=lambda *a: calls.append(a))
    assert result.backbone == "mobilenet" and result.size == 32 and result.note == ""
    assert list(result.rates) == labels and all(v > 0 for v in result.rates.values())
    assert result.images_per_s == result.rates[speed.TENSORFLOW]
    total = len(labels) * (1 + 3)  # one warm-up + three timed batches each
    assert calls[-1] == (total, total, "done") and [c[0] for c in calls] == list(range(total + 1))
    warm = [what for _, _, what in calls[:len(labels)]]
    assert all(w.startswith(f"warming up {label}") for w, label in zip(warm, labels))
    timed = [what.rsplit(": ", 1)[1] for _, _, what in calls[len(labels):-1]]
    rounds = [timed[i:i + len(labels)] for i in range(0, len(timed), len(labels))]
    assert [sorted(r) for r in rounds] == [sorted(labels)] * 3
    assert [r[0] for r in rounds] == [labels[b % len(labels)] for b in range(3)]
    # the OpenVINO figures went through the engine layer: its parity guard checked each (and passed)
    checked = {v["engine"]: v["passed"] for v in engine.verdicts() if v["network"].startswith("mobilenet|")}
    assert checked == dict.fromkeys(labels[1:], True)

    path = tl_home / "bench" / "mobilenet-32.json"
    stored = json.loads(path.read_text())
    assert stored["version"] == speed.BENCH_VERSION == 2
    assert stored["engines"] == pytest.approx(result.rates)
    assert speed.read("mobilenet", 32) == result
    assert speed.read("mobilenet") is None  # the default size (224) was never measured
    assert result in speed.read_all()
    assert "mobilenet" not in speed.latest_by_backbone()  # 32 px is not the default size


def test_without_openvino_tensorflow_alone_says_so(tl_home, engine_cache, monkeypatch):
    monkeypatch.setattr(engine_cache, "openvino_version", lambda: None)
    result = speed.measure("mobilenet", size=32, batch_size=1, batches=1)
    assert list(result.rates) == [speed.TENSORFLOW] and result.images_per_s > 0
    assert result.note == "TensorFlow only: OpenVINO is not installed (pip install openvino)."


def test_engine_the_guard_refuses_is_not_timed_under_its_name(tl_home, monkeypatch):
    """A refused engine would run TensorFlow: its figure would be TensorFlow's under another name."""
    from core.nets import engine

    def broken(*args, **kwargs):
        raise RuntimeError("no such op")

    monkeypatch.setattr(engine, "openvino_runner", broken)
    result = speed.measure("mobilenet", size=32, batch_size=1, batches=1)
    assert list(result.rates) == [speed.TENSORFLOW]
    assert "Not timed: parity guard refused openvino f32: conversion failed (RuntimeError: no such op)." in result.note
    assert result.note.count("Not timed") == len({engine.choose("openvino").label, "openvino f32"})


def test_version_1_file_reads_as_tensorflow_only(tl_home):
    v1 = {"backbone": "mobilenet", "size": 224, "batch_size": 8, "batches": 3, "images_per_s": 40.0,
          "seconds_per_batch": 0.2, "device": "CPU test", "host": "h", "cpu_count": 2, "tf_version": "2.x",
          "measured_at": "2030-01-01T00:00:00+00:00", "version": 1, "warmup_s": 3.0}
    speed.bench_path("mobilenet", 224).write_text(json.dumps(v1))
    old = speed.read("mobilenet")
    assert old.rates == {speed.TENSORFLOW: 40.0} and old.rate("openvino bf16") == 40.0
    row = speed.backbone_table().set_index("name").loc["mobilenet"]
    assert row[speed.rate_column(speed.TENSORFLOW)] == 40.0 and np.isnan(row["speed-up"])
    assert not any(c.startswith("img/s openvino") for c in row.index)


def test_latest_by_backbone_uses_default_size(tl_home, tiny):
    result = speed.measure(tiny, batch_size=1, batches=1, warmup=1)
    assert result.size == 32  # the tiny backbone's own size
    assert speed.latest_by_backbone()[tiny] == result


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

    tf_col, bf16_col, f32_col = (speed.rate_column(x) for x in ("tensorflow f32", "openvino bf16", "openvino f32"))
    table = speed.backbone_table().set_index("name")
    assert {"vgg16", "mobilenet_v2", "efficientnet_b0"} <= set(table.index)
    assert table.loc["vgg16", "params (M)"] == pytest.approx(138.4)
    assert table.loc["vgg16", "top-1 %"] == 71.3
    assert (table["weights"] == "download needed").all()
    assert table[tf_col].isna().all() and table["speed-up"].isna().all()

    # a weights file under its official name makes it local; stored measurements show up, one
    # column per engine side by side, and the fastest OpenVINO over TensorFlow
    spec = backbones.get_spec("vgg16")
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / spec.weights_filename()).write_bytes(b"x")
    fake = speed.SpeedResult("vgg16", 224, 8, 3, 12.5, 0.64, "CPU: test", "host", 2, "2.x", "2030-01-01T00:00:00+00:00",
                             engines={"tensorflow f32": 12.5, "openvino bf16": 50.0, "openvino f32": 20.0})
    atomic.write_json(speed.bench_path("vgg16", 224), fake.__dict__)
    atomic.write_json(speed.bench_path("vgg16", 150), replace(fake, size=150, images_per_s=99.0).__dict__)
    atomic.write_json(speed.bench_path("vgg19", 224), replace(fake, backbone="vgg19", engines={}).__dict__)
    table = speed.backbone_table().set_index("name")
    assert [c for c in table.columns if c.startswith("img/s")] == [tf_col, bf16_col, f32_col]
    assert table.loc["vgg16", "weights"] == "local"
    assert table.loc["vgg16", [tf_col, bf16_col, f32_col]].tolist() == [12.5, 50.0, 20.0]  # 224 px, not 150
    assert table.loc["vgg16", "speed-up"] == 4.0
    assert table.loc["vgg19", tf_col] == 12.5 and np.isnan(table.loc["vgg19", bf16_col])  # TensorFlow only
    assert np.isnan(table.loc["vgg19", "speed-up"])
    assert table.loc["vgg19", "weights"] == "download needed"


def test_engine_now_and_the_chart_column_follow_the_app_engine(tl_home, engine_cache, monkeypatch):
    """The forced engine is said without the setting's variable name; charts show the app's engine
    where measured, TensorFlow's otherwise."""
    import pandas as pd

    monkeypatch.setenv(engine_cache.ENGINE_ENV, "tensorflow")
    assert engine_cache.describe_for_users() == "tensorflow f32 · set on the server: tensorflow"
    both = pd.DataFrame(columns=[speed.rate_column("tensorflow f32"), speed.rate_column("openvino f32")])
    assert speed.chart_column(both) == "img/s tensorflow f32"
    monkeypatch.setattr(engine_cache, "cpu_precision", lambda: ("f32", "CPU has no native bf16"))
    monkeypatch.setenv(engine_cache.ENGINE_ENV, "auto")
    assert engine_cache.describe_for_users().startswith("openvino f32 · auto: CPU has no native bf16")
    assert speed.chart_column(both) == "img/s openvino f32"
    assert speed.chart_column(both.drop(columns="img/s openvino f32")) == "img/s tensorflow f32"
    monkeypatch.setenv(engine_cache.ENGINE_ENV, "warp")
    assert engine_cache.ENGINE_ENV not in engine_cache.describe_for_users()
    assert speed.chart_column(both) == "img/s tensorflow f32"


def test_extraction_estimate_uses_the_app_engine_figure(tl_home, engine_cache, monkeypatch):
    from dataclasses import asdict

    from core import atomic

    fake = speed.SpeedResult("mobilenet", 224, 8, 3, 10.0, 0.8, "CPU test", "host", 2, "2.x",
                             "2030-01-01T00:00:00+00:00", warmup_s=2.0,
                             engines={"tensorflow f32": 10.0, "openvino f32": 40.0})
    atomic.write_json(speed.bench_path("mobilenet", 224), asdict(fake))
    assert speed.extraction_estimate("mobilenet", 100).seconds == pytest.approx(2.0 + 100 / 10.0)
    monkeypatch.setattr(engine_cache, "cpu_precision", lambda: ("f32", "CPU has no native bf16"))
    monkeypatch.setenv(engine_cache.ENGINE_ENV, "openvino")
    est = speed.extraction_estimate("mobilenet", 100)
    assert est.seconds == pytest.approx(2.0 + 100 / 40.0) and "(40 images/s)" in est.basis
