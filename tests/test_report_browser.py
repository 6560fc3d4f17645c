"""A search's and a final-eight's report.html opened in headless Chromium: the page renders, every image loads,
and nothing scrolls sideways in a 1,400 px window. Skipped, with a message, where no Chromium is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_report import write_final_eight, write_search  # tests/test_report.py

from tune_digits import report

WIDTH = 1400
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Run after load: the counts land on <body> as data- attributes, which --dump-dom prints.
PROBE = (
    "<script>addEventListener('load', () => { const b = document.body, imgs = [...document.images];"
    "b.dataset.images = imgs.length;"
    "b.dataset.broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;"
    "b.dataset.scrollwidth = document.documentElement.scrollWidth; b.dataset.width = innerWidth; });</script>"
)


def browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip("no Chromium found (apt-get install chromium): the report is not checked in a browser")
    return found


def open_pages(exe: str, pages: list[Path], tmp: Path) -> list[dict[str, str]]:
    """Each page (with the probe added to a copy) loaded at 1400x900; its <body> data- attributes."""
    procs = []
    for i, page in enumerate(pages):
        probed = tmp / f"probe-{i}.html"
        probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
        args += [f"--user-data-dir={tmp / f'profile-{i}'}", f"--window-size={WIDTH},900", "--virtual-time-budget=5000"]
        cmd = [*args, "--dump-dom", probed.as_uri()]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    found = []
    for proc in procs:
        dom, _ = proc.communicate(timeout=120)
        body = re.search(r"<body([^>]*)>", dom)
        assert body is not None, dom[:500]
        attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
        found.append(attrs | {"dom": dom})
    return found


def test_search_and_final_eight_reports_render_in_chromium(tmp_path: Path) -> None:
    exe = browser()
    df = write_search(tmp_path / "search")
    wide = {f"augment.knob_{i}": np.linspace(0, 1, len(df)) for i in range(8)}  # a leaderboard wider than the page
    df.assign(**wide).to_csv(tmp_path / "search" / "results.csv", index=False)
    search = report.write_report(tmp_path / "search")[-1]
    write_final_eight(tmp_path / "eight", seeds=(0,))
    eight = report.write_report(tmp_path / "eight")[-1]
    broken = tmp_path / "broken.html"  # the control: a page whose image cannot load must be caught
    broken.write_text(eight.read_text(encoding="utf-8").replace("base64,", "base64,AAAA", 1), encoding="utf-8")
    results = open_pages(exe, [search, eight, broken], tmp_path)
    for page, found, images in zip((search, eight), results, (5, 3), strict=False):
        assert found.get("images") == str(images), (page, found.keys())
        assert found["broken"] == "0", page
        assert found["width"] == str(WIDTH)
        assert int(found["scrollwidth"]) <= WIDTH, (page, found["scrollwidth"])  # no sideways scroll
    assert "<h1>Search search</h1>" in results[0]["dom"] and "<h1>Final eight eight</h1>" in results[1]["dom"]
    assert "Leaderboard" in results[0]["dom"] and "best configuration (by val macro-F1)" in results[1]["dom"]
    assert results[2]["broken"] == "1"
