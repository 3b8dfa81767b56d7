"""The shareable report (core.report and `python -m core report`): every section there, the
figures with their intervals and verdicts from the same functions the pages use, every name
from disk escaped (text and chart labels alike), nothing fetched from the network, the file
written atomically by the CLI. Runs are made in the run store with real evaluation
(core.train.evaluation.summarize) on chosen answers, without training."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core import report
from core.__main__ import main
from core.analysis.advisor import Advice
from core.data.dataset import scan_folder
from core.runs.store import RunStore
from core.train.evaluation import summarize
from tests.helpers import write_images

EVIL_RUN = "<img src=x onerror=alert(1)>"
EVIL_CLASS = "<b onmouseover=alert(3)>dog"
EVIL_REASON = "<script>alert(2)</script> out of memory"
CLASSES = sorted(["cat", EVIL_CLASS])


@pytest.fixture
def evil_dataset(tmp_path) -> Path:
    """train 12 + validation 20 images a class; one class named like markup; one training image
    copied into validation (a leak)."""
    root = tmp_path / "pets"
    for i, cls in enumerate(CLASSES):
        write_images(root / "train" / cls, i, 12, seed=1)
        write_images(root / "validation" / cls, i, 20, seed=2)
    first = sorted((root / "train" / "cat").iterdir())[0]
    shutil.copy(first, root / "validation" / "cat" / "leaked.png")
    return root


def finished(store, ds, strategy: str, wrong: int, seconds: float, name: str | None = None, epochs: int = 4,
             weights: str = "imagenet"):
    """A finished run whose first ``wrong`` validation images are answered wrongly, evaluated by the
    real evaluation code, with a per-epoch history."""
    paths, y = ds.paths("validation"), ds.labels("validation")
    pred = y.copy()
    pred[:wrong] = 1 - pred[:wrong]
    probs = np.full((len(y), 2), 0.1)
    probs[np.arange(len(y)), pred] = 0.9
    metrics, predictions = summarize(probs, y, ds.classes, paths)
    run = store.create({"strategy": strategy, "dataset": ds.root, "backbone": "efficientnet_lite0", "seed": 1,
                        "weights": weights}, name=name)
    run.set_status("running")
    final = 1 - wrong / len(y)  # the curves climb towards the run's own accuracy
    for e in range(1, epochs + 1):
        run.append_history({"epoch": e, "accuracy": min(1.0, final * (1.02 - 0.4 / e)),
                            "val_accuracy": final * (1 - 0.4 / e), "loss": 0.2 + 0.8 / e, "val_loss": 0.3 + 0.9 / e})
    run.write_metrics({**metrics, "train_seconds": seconds, "trainable_params": 1281, "input_size": 224})
    run.write_predictions(predictions)
    run.set_status("done")
    return run


@pytest.fixture
def runs(evil_dataset):
    ds = scan_folder(evil_dataset)
    store = RunStore()
    leader = finished(store, ds, "fine_tune", 2, 60.0, name=EVIL_RUN)
    close = finished(store, ds, "feature_extraction", 4, 10.0)  # not resolved from the leader, cheaper
    far = finished(store, ds, "linear_probe", 18, 5.0)  # resolved below
    failed = store.create({"strategy": "scratch", "dataset": ds.root}, name="scratch try")
    failed.set_status("running")
    failed.set_status("failed", reason=EVIL_REASON)
    store.create({"strategy": "linear_probe", "dataset": "/elsewhere"}, name="another dataset's run")
    return ds, store, {"leader": leader, "close": close, "far": far}


def figures(text: str) -> list[list[dict]]:
    """The traces of every Plotly figure in the page, parsed from its ``Plotly.newPlot`` call."""
    decoder, found = json.JSONDecoder(), []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', text):
        found.append(decoder.raw_decode(text, match.end())[0])
    return found


def sources(text: str) -> list[str]:
    """Every src/href attribute and CSS url() in the page's markup and styles (the inlined library's
    own strings, such as map attributions it never draws here, are code, not sources)."""
    text = re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", text, flags=re.S)
    return (re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", text)
            + re.findall(r"""url\(\s*["']?([^"')]+)""", text) + re.findall(r"@import\s+['\"]?([^'\";]+)", text))


def test_report_has_every_section_with_intervals_and_verdicts(runs):
    ds, store, made = runs
    text = report.build_report(ds, store.list())
    for heading in report.SECTIONS:
        assert f"<h2>{heading}</h2>" in text
    # the dataset card: counts per class and split, the leak found by the duplicate check
    assert "Counts per class and split" in text and "train/validation leaks" in text
    assert "picture(s) in both train and validation" in text and "leaked.png" in text
    # every run on this dataset, none from another
    assert "another dataset&#x27;s run" not in text and "another dataset's run" not in text
    assert text.count("Linear probe") >= 1 and "scratch try" in text
    # intervals as `show` prints them: 38 of 41 right for the leader
    n = len(ds.paths("validation"))
    assert n == 41
    assert re.search(r"95\.1% \(95% CI \d+\.\d–\d+\.\d%\)", text)  # in the verdicts and the card
    assert re.search(r"95\.1%<br><small>95% CI \d+\.\d–\d+\.\d%</small>", text)  # in the table
    assert re.search(r"95\.0%<br><small>95% CI \d+\.\d–100\.0%</small>", text)  # balanced: (18/20 + 21/21) / 2
    # the paired verdicts: the leader against each, Holm over the pairs; the cheaper unresolved one is best
    assert "McNemar exact" in text and "Holm-adjusted" in text
    assert "resolved on 41 validation images" in text and "not resolved on 41 validation images" in text
    # the model card is the cheaper of the unresolved two, not the leader
    card = text.split('id="model-card"')[1]
    assert "Feature extraction" in card and "Known limits" in card and "Validation size: 41 images" in card
    assert "Intended use" in card and "ImageNet-like" in card
    assert "Feature extraction on efficientnet_lite0 (imagenet weights), 224 px input" in card
    assert "kept no model file" not in card
    made["close"].write_metrics({**made["close"].metrics(), "model_kept": False})  # a fold that keeps no model
    card = report.build_report(ds, store.list()).split('id="model-card"')[1]
    assert "one fold of a repeated split and kept no model file" in card
    # curves and confusion matrices: one figure for the curves, one heatmap a finished run
    drawn = figures(text)
    kinds = [{trace["type"] for trace in traces} for traces in drawn]
    assert len(drawn) == 6 and kinds.count({"heatmap"}) == 3  # counts, accuracy, curves + 3 matrices
    curves = next(traces for traces in drawn if {t["type"] for t in traces} == {"scatter"})
    assert len(curves) == 3 * 4  # 3 runs x accuracy/loss x train/validation
    # no advice given: the section says why
    assert "advisor was not asked" in text


def test_every_name_from_disk_is_escaped(runs):
    ds, store, _ = runs
    text = report.build_report(ds, store.list())
    assert EVIL_RUN not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert EVIL_CLASS not in text and "&lt;b onmouseover=alert(3)&gt;dog" in text
    assert "<script>alert(2)</script>" not in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "onerror=alert(1)>" not in text.replace("&gt;", "")  # not even inside a chart's JSON
    drawn = json.dumps(figures(text))
    assert "&lt;img src=x onerror=alert(1)&gt;" in drawn and "&lt;b onmouseover=alert(3)&gt;dog" in drawn
    assert "<img" not in drawn and "<b " not in drawn


def test_nothing_is_fetched_from_the_network(runs):
    ds, store, _ = runs
    text = report.build_report(ds, store.list())
    assert sources('<img src="https://x/a.png"><link href=//y/f.css><style>@import "http://z/c.css"</style>') == [
        "https://x/a.png", "//y/f.css", "http://z/c.css"]  # the check sees what it must
    external = [s for s in sources(text) if re.match(r"(https?:)?//", s)]
    assert not external, external
    assert not re.search(r"<script[^>]*\bsrc=", text) and not re.search(r"<link\b", text)
    assert text.count("<script") >= 2 and "plotly.js v" in text  # the library inlined, once
    assert text.count("plotly.js v") == 1


def test_advice_shown_and_checked_against_the_runs(runs):
    ds, store, _ = runs
    advice = Advice("small", "different", "frozen_augment", 0, reasons=["Size: the smallest class has 12 images."],
                    figures={"skill": 0.42}, textbook="frozen_augment",
                    candidates=[{"candidate": "linear probe on EfficientNet-Lite0 top features", "accuracy": 0.8,
                                 "ci_low": 0.7, "ci_high": 0.88, "best": True, "predicted_seconds": 30.0}],
                    backbone="efficientnet_lite0")
    text = report.build_report(ds, store.list(), advice=advice)
    section = text.split('id="advisor"')[1].split("</section>")[0]
    assert "Recommended: <b>Frozen base + augmentation on efficientnet_lite0</b>" in section
    assert "80.0% (95% CI 70.0–88.0%)" in section and "Checked against the runs" in section
    assert "has not been measured yet" in section  # no frozen + augmentation run
    assert "different to ImageNet" in section
    assert "advisor measured the data as different to ImageNet (probe skill 0.42" in text


def test_no_runs_yet_still_makes_a_report(evil_dataset):
    ds = scan_folder(evil_dataset)
    text = report.build_report(ds, [])
    assert "No run on this dataset yet" in text and "no model to describe" in text
    assert all(f"<h2>{h}</h2>" in text for h in report.SECTIONS)


def test_cli_writes_the_report(runs, tmp_path, capsys):
    ds, _, _ = runs
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--dataset", str(ds.root), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<h2>Model card</h2>" in text and EVIL_RUN not in text
    assert not list(out.parent.glob(".report.html.*"))  # the temporary file went away
    said = capsys.readouterr().out
    assert str(out) in said and "4 run(s)" in said
    assert main(["report", "--dataset", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert out.read_text(encoding="utf-8") == text  # a failure leaves the old file whole


def test_strategies_page_offers_the_report_with_the_advice_asked(runs, monkeypatch):
    """The download button on the Strategies page builds the report when clicked (deferred: AppTest
    has no media manager to hold it, so the test keeps what the page hands the button and calls it),
    for the dataset in use, with the advice the session asked for."""
    import streamlit
    from streamlit.testing.v1 import AppTest

    from core.runs import jobs

    ds, _, _ = runs
    handed = {}
    original = streamlit.download_button

    def keep(label, data, *args, **kwargs):
        handed[label] = data
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", keep)
    monkeypatch.setattr(jobs, "pump", lambda store: None)  # no worker starts
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "streamlit_app.py"), default_timeout=180)
    at.session_state["tl_dataset"] = ds
    at.run()
    picked = at.session_state["tl_backbone"]  # the sidebar's: one with weights here, or the small default
    advice = Advice("small", "similar", "linear_probe", 0, reasons=["measured for this test"],
                    textbook="feature_extraction", backbone=picked)
    at.session_state["tl_advice"] = {(ds.fingerprint, picked): advice}  # as "Ask the advisor" keeps it
    at.switch_page("app_pages/strategies.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [b for b in at.get("download_button") if b.proto.label == "Download the report (HTML)"]
    build = handed["Download the report (HTML)"]
    assert callable(build)  # nothing built until clicked
    text = build().decode("utf-8")
    assert "<h2>Model card</h2>" in text and EVIL_RUN not in text and "4 run(s) on this dataset" in text
    assert f"Recommended: <b>Linear probe on {picked}</b>" in text  # the session's advice
