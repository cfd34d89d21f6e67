"""report.html in a real browser: headless Chromium renders it and takes a screenshot.

Skipped where no Chromium is installed (`make test` installs Debian's `chromium` when it can).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from irpo.report import write_report

from .test_report import FINAL, SEED, embedded_pngs, fake_run, parse_page

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER = next((b for b in BROWSERS if shutil.which(b)), None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BROWSER is None,
        reason="no Chromium to render report.html (install Debian's `chromium`; make test "
        "does when apt-get can)",
    ),
]

WIDTH, HEIGHT = 1200, 2000
MATPLOTLIB_BLUE = (31, 119, 180)  # C0: the first line of every plot; nothing else on the page


def screenshot(page: Path, out: Path, profile: Path) -> None:
    assert BROWSER is not None
    subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={WIDTH},{HEIGHT}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def test_report_page_renders_with_its_plots_and_pairs(tmp_path: Path) -> None:
    from PIL import Image

    run = fake_run(tmp_path / "irpo", [0.30, 0.45, 0.52], correct=[SEED, SEED, FINAL], questions=3)
    write_report(run.root)
    html_path = run.report_dir / "report.html"
    page = parse_page(html_path)
    assert len(embedded_pngs(page.images)) == 3
    assert page.pair_rows == [3, 3]

    shot = tmp_path / "report.png"
    screenshot(html_path, shot, tmp_path / "profile")
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
    assert rgb.size == (WIDTH, HEIGHT)
    colours = rgb.getcolors(maxcolors=WIDTH * HEIGHT)
    assert colours is not None and len(colours) > 200  # text, tables and plots, not a flat page
    # the plots were decoded and drawn: matplotlib's first line colour covers a visible area
    blue = sum(
        n
        for n, c in colours
        if all(abs(a - b) <= 12 for a, b in zip(c, MATPLOTLIB_BLUE, strict=True))
    )
    assert blue > 500
    # the page fills the width it was given, rather than one narrow column or an empty half
    left, right = rgb.crop((0, 0, WIDTH // 2, HEIGHT)), rgb.crop((WIDTH // 2, 0, WIDTH, HEIGHT))
    for half in (left, right):
        assert len(half.getcolors(maxcolors=WIDTH * HEIGHT) or []) > 50
