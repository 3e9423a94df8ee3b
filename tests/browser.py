"""Load a page in Debian's headless Chromium and report what actually rendered."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


def require_browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("DREAMGEN_REQUIRE_BROWSER"):
            pytest.fail("chromium/chromedriver missing (apt install chromium chromium-driver)")
        pytest.skip("chromium/chromedriver not installed")
    return chromium, driver


def _videos(drv, wait_s: float = 15.0) -> list[tuple[str, int, float]]:
    """(src, decoded width, duration in s) of every <video>, once each has loaded its metadata (or timed out)."""
    import time

    script = ("return Array.from(document.querySelectorAll('video'))"
              ".map(v => [v.getAttribute('src'), v.readyState >= 1 ? v.videoWidth : 0, v.duration || 0]);")
    end = time.time() + wait_s
    videos = drv.execute_script(script)
    while any(w == 0 for _, w, _ in videos) and time.time() < end:
        time.sleep(0.25)
        videos = drv.execute_script(script)
    return [tuple(x) for x in videos]


def inspect_page(page: Path) -> dict:
    """{'images': [(src, naturalWidth)], 'tables': [id], 'title': str, 'videos': [(src, videoWidth, duration)]}
    after the page fully loaded."""
    chromium, driver_path = require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--allow-file-access-from-files"):
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        drv.set_page_load_timeout(60)
        drv.get(page.resolve().as_uri())
        images = drv.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete ? i.naturalWidth : 0]);")
        tables = drv.execute_script("return Array.from(document.querySelectorAll('table')).map(t => t.id);")
        return {"images": [tuple(x) for x in images], "tables": tables, "title": drv.title,
                "videos": _videos(drv)}
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
