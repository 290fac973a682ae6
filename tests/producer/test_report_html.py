"""``batch-router report --html``: a self-contained page, rendered in headless Chromium with
the network cut off, draws every chart (plotly SVG with real marks)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import clean_env, run_cli

pytestmark = pytest.mark.e2e

TITLES = (
    "Cost by tier over time",
    "Cost vs the all-expert baseline",
    "Cost by model over time",
    "Cost by tenant over time",
    "Saved by calls never made (list prices)",
    "Routing mix",
    "Latency (ms) of provider calls",
    "Latency percentiles by tier (estimated)",
)
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no chromium binary on the PATH (Debian: apt-get install chromium)")


def _browse(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=10000", *OFFLINE, *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("html")
    for tenant, n in (("acme", 150), ("globex", 100)):
        proc = run_cli("run", "--sample", str(n), "--output", "out", "--tenant", tenant, cwd=cwd)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("report", "out", "--html", "report.html", cwd=cwd, env=clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "html report: report.html" in proc.stderr
    assert "cost report — 2 jobs" in proc.stdout  # the terminal report is printed too
    return cwd / "report.html"


def test_html_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text  # no CDN, no external CSS
    assert "Plotly" in text and len(text) > 1_000_000  # plotly.js is inlined
    for title in TITLES:
        assert title in text


def test_html_charts_are_drawn_offline(page: Path) -> None:
    dom = _browse(page, "--dump-dom").stdout
    charts = dom.split('class="plot-container')[1:]
    assert len(charts) == len(TITLES), "every chart div holds a drawn plot"
    for title, chart in zip(TITLES, charts, strict=True):
        assert f">{title}</text>" in chart.replace("&amp;", "&"), title
        marks = re.findall(r'<g class="(?:point|slice)[^"]*"><path [^>]*d="M[^"]+"', chart)
        assert marks, f"{title}: no bars or slices drawn"
    tables = re.findall(r"<h3>by (\w+)</h3>", dom)
    assert tables == ["tier", "model", "tenant", "day"]


def test_html_screenshot(page: Path) -> None:
    shot = page.with_suffix(".png")
    _browse(page, f"--screenshot={shot}", "--window-size=1400,2400")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a page of charts, not blank
