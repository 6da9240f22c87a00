"""Open the report in real headless Chromium: it loads from disk without console errors and
shows the per-source table and decoded charts. A screenshot is saved (path printed; set
MIXER_REPORT_SCREENSHOT to choose it). Needs Debian's chromium + chromium-driver and the
selenium package; skipped locally without them, a failure under CI."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mixer.pipeline import build
from mixer.report import write_report
from mixer.spec import load_spec

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,2400"]


def _browser():
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chrome = None
    if not (chrome and driver):
        msg = "needs chromium, chromium-driver (apt) and selenium (pip)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return chrome, driver


def test_report_in_headless_chromium(tmp_path, repo, shared_tokenizers) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chrome, driver_path = _browser()
    res = build(load_spec(repo / "mixtures" / "sample.yaml"), tmp_path / "sample")
    page = write_report(res.output, tmp_path / "report", str(shared_tokenizers / "gpt2" / "tokenizer.json"))

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-profile-', dir=tmp_path)}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(driver_path))
    try:
        drv.get(page.resolve().as_uri())
        assert drv.execute_script("return document.readyState") == "complete"
        assert drv.title == "mixer report: sample"
        rows = drv.find_elements(By.CSS_SELECTOR, "#sources-table tbody tr")
        names = [r.find_element(By.CSS_SELECTOR, "td").text for r in rows]
        assert names == ["alpaca", "sharegpt", "chat", "total"]
        assert rows[-1].find_elements(By.CSS_SELECTOR, "td")[4].text == f"{res.manifest['records']:,}"
        widths = drv.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 3 and min(widths) > 200, widths
        chart = drv.find_element(By.CSS_SELECTOR, "#lengths-chart img")
        assert chart.is_displayed() and chart.size["width"] > 200
        # removed records are shown with their text, one block per step and reason
        examples = drv.find_elements(By.CSS_SELECTOR, "#examples .example")
        assert examples and any("user:" in e.text for e in examples)
        # no table is wider than the page (nothing cut off or hidden behind a scroll bar)
        wide = drv.execute_script("return Array.from(document.querySelectorAll('.tw')).filter(d => d.scrollWidth > d.clientWidth + 1)"
                                  ".map(d => (d.querySelector('caption') || {}).textContent)")
        assert wide == [], wide
        errors = [e for e in drv.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], errors
        drv.set_window_size(1400, max(1200, drv.execute_script("return document.body.scrollHeight")))
        shot = Path(os.environ.get("MIXER_REPORT_SCREENSHOT", tmp_path / "report_screenshot.png"))
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert drv.save_screenshot(str(shot))
        print(f"report screenshot: {shot}")
        assert shot.stat().st_size > 20_000
    finally:
        drv.quit()
