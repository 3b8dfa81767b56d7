"""Smoke test of the benchmark suite's pure helpers: ratios, statistics, tables,
JSON results with the machine description, argument parsing. No model, no
TensorFlow, no heavy run: seconds in all."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import common
from benchmarks.__main__ import parse_args
from benchmarks.common import GroupResult, format_group, format_table, linear_fit, percentile, ratio


def test_ratio_is_none_when_a_figure_is_missing():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1, 4) == 0.25
    for bad in [(1.0, 0.0), (None, 1.0), (1.0, None), (float("nan"), 1.0), (1.0, float("inf")), ("x", 1.0)]:
        assert ratio(*bad) is None, bad


def test_percentile_and_linear_fit():
    assert percentile([1, 2, 3, 4, 5], 50) == 3.0
    assert percentile([], 50) is None
    assert percentile([0.1] * 19 + [1.0], 95) == pytest.approx(0.145)
    line = linear_fit([250, 500, 1000, 2000], [3.0 + 0.01 * n for n in (250, 500, 1000, 2000)])
    assert line["slope"] == pytest.approx(0.01) and line["intercept"] == pytest.approx(3.0)
    assert line["r2"] == pytest.approx(1.0)
    noisy = linear_fit([1, 2, 3, 4], [1, 3, 2, 4])
    assert 0 < noisy["r2"] < 1
    assert linear_fit([1], [1])["r2"] is None
    assert linear_fit([2, 2], [1, 3])["r2"] is None  # no spread in x: no line


def test_table_formatting_aligns_columns_and_formats_numbers():
    text = format_table(["item", "value"], [["a", 0.123456], ["longer name", None], ["n", 12345], ["b", True]],
                        title="T")
    lines = text.splitlines()
    assert lines[0] == "### T"
    rows = lines[2:]
    assert len({len(r) for r in rows}) == 1, "every line has the same width"
    assert "| 0.123 " in text and "| -" in text and "12,345" in text and "| yes" in text
    assert common.fmt(2.5e-5) == "2.50e-05" and common.fmt(float("nan")) == "nan"
    assert common.fmt_seconds(0.0123) == "12.3 ms" and common.fmt_seconds(300) == "5.0 min"


def test_group_format_marks_pass_fail_and_informative():
    res = GroupResult("speed", quick=True)
    res.add("1 efficiency", "ours / bare", 0.9, ">= 0.85", common.at_least(0.9, 0.85))
    res.add("3 cache", "cached / first", 0.05, "<= 0.02", common.at_most(0.05, 0.02))
    res.add("5 latency", "p50 / bare", 1.2)
    res.tables["extra"] = (["a", "b"], [[1, 2.0]])
    res.notes.append("a note")
    text = format_group(res)
    assert "speed (--quick)" in text
    assert "PASS" in text and "FAIL" in text and "### extra" in text and "- a note" in text
    assert common.at_least(None, 1) is None


def test_write_results_has_figures_and_machine(tmp_path):
    machine = common.machine_description()
    for key in ("cpu_model", "cpu_count", "ram_bytes", "python", "tensorflow", "keras", "load_average"):
        assert key in machine, key
    assert machine["python"] == sys.version.split()[0]
    assert machine["cpu_count"] >= 1 and machine["ram_bytes"] > 0
    res = GroupResult("scale", quick=False)
    res.add("r2", "fit", 0.99, ">= 0.98", True)
    res.figures = {"nan": float("nan"), "nested": {"x": [1, 2.5]}}
    path = common.write_results(res, machine, {"quick": False}, folder=tmp_path, stamp="20260101-000000")
    assert path == tmp_path / "scale-20260101-000000.json"
    doc = json.loads(path.read_text())
    assert doc["group"] == "scale" and doc["machine"]["cpu_model"] == machine["cpu_model"]
    assert doc["rows"][0]["value"] == 0.99 and doc["rows"][0]["ok"] is True
    assert doc["figures"]["nan"] is None and doc["figures"]["nested"] == {"x": [1, 2.5]}
    assert doc["settings"] == {"quick": False}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file left"


def test_peak_memory_and_free_port():
    peak = common.peak_rss_bytes()
    assert peak["ru_maxrss"] > 0
    if peak["vmhwm"] is not None:
        assert peak["vmhwm"] >= (common.current_rss_bytes() or 0) * 0.5
    port = common.free_port()
    assert 0 < port < 65536


def test_attempt_records_a_failure_and_goes_on():
    res = GroupResult("speed", quick=True)

    def boom():
        raise ValueError("bad input")

    assert common.attempt(res, "item", boom) is None
    assert res.rows[0].ok is False and "ValueError" in res.rows[0].measured
    assert "bad input" in res.figures["errors"]["item"]
    assert common.attempt(res, "fine", lambda: 7) == 7


def test_command_line_groups():
    assert parse_args([]).groups == ["speed", "accuracy", "app", "scale", "engine", "int8"]
    args = parse_args(["--quick", "--only", "speed,scale"])
    assert args.quick and args.groups == ["speed", "scale"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "speed,nope"])


def test_command_line_items():
    from pathlib import Path

    assert parse_args([]).item_numbers is None
    items = parse_args(["--items", "3, 4"]).item_numbers
    assert items == {"3", "4"}
    ctx = common.Context(dataset=Path("."), weights_dir=None, home=Path("."), quick=True, items=items)
    assert ctx.wants("4") and ctx.wants("1", "3") and not ctx.wants("6")
    assert common.Context(dataset=Path("."), weights_dir=None, home=Path("."), quick=True).wants("6")


def test_helpers_import_without_tensorflow():
    """The pure helpers (and so this test) never pull TensorFlow in."""
    import subprocess

    code = ("import sys, benchmarks.common, benchmarks.__main__, benchmarks.scale, benchmarks.app, "
            "benchmarks.speed, benchmarks.accuracy; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=common.REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
