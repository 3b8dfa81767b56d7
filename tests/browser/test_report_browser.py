"""The shareable report opened as a file in headless Chromium, as a colleague would open a mailed
copy: every chart drawn (plotly.js inlined, no network), every section's heading there, the
names that look like markup shown as text and never run. Screenshot saved."""

from __future__ import annotations

import pytest

from core import report
from core.data.dataset import scan_folder
from core.runs.store import RunStore
from tests.browser.conftest import chromium, require_chromium
from tests.browser.ui import css, screenshot, screenshot_on_failure, wait_for
from tests.test_report import EVIL_CLASS, EVIL_RUN, evil_dataset, finished  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

DRAW_TIMEOUT_S = 60


def test_report_opens_offline_with_every_chart_drawn(evil_dataset, tmp_path, screenshots):
    require_chromium()
    from selenium.common.exceptions import NoAlertPresentException

    ds = scan_folder(evil_dataset)
    store = RunStore()
    finished(store, ds, "fine_tune", 2, 60.0, name=EVIL_RUN, epochs=6)
    finished(store, ds, "feature_extraction", 4, 10.0, epochs=8)
    finished(store, ds, "linear_probe", 18, 5.0, epochs=5)
    out = tmp_path / "report.html"
    report.write_report(out, ds, store.list())
    with chromium() as driver, screenshot_on_failure(driver, screenshots, "report-failed"):
        driver.get(out.as_uri())
        divs = len(css(driver, ".plotly-graph-div"))
        assert divs == 6  # counts, accuracy, curves and a confusion matrix for each of the 3 runs
        wait_for(driver, lambda d: len(css(d, ".js-plotly-plot .main-svg")) >= divs, DRAW_TIMEOUT_S,
                 "every Plotly chart to draw its svg")
        headings = [h.text for h in css(driver, "h2")]
        assert headings == list(report.SECTIONS)
        body = driver.find_element("css selector", "body").text
        assert EVIL_RUN in body and EVIL_CLASS in body  # shown as the characters they hold
        assert not css(driver, "main img") and not css(driver, "main b[onmouseover]")  # never as markup
        try:
            text = driver.switch_to.alert.text
            pytest.fail(f"a name ran as script: alert({text})")
        except NoAlertPresentException:
            pass
        labels = " ".join(t.get_attribute("textContent") for t in css(driver, ".js-plotly-plot text"))
        assert EVIL_RUN in labels and "★" in labels  # the chart labels read as text, best marked
        screenshot(driver, screenshots, "report")
