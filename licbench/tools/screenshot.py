"""The README's picture of a leaderboard page: its interactive RD and per-image plots, shot in headless
Chromium (Debian's ``chromium``, driven by Playwright) once Plotly has drawn them.

    python -m licbench.tools.screenshot results/kodak/leaderboard.html --out results/kodak/report.png
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

TIMEOUT = 300_000  # ms: a loaded 2-core machine parses the page's 5 MB of script slowly
WIDTH = 1400


def shoot(page_file: Path, out: Path) -> None:
    """The page's ``#interactive`` section from its top to the per-image plot's bottom, as a PNG at ``out``."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("screenshot: no Chromium installed (Debian: apt-get install chromium, or make install)")
    if not page_file.is_file():
        raise SystemExit(f"screenshot: {page_file} does not exist: give a benchmark's leaderboard.html")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        page.goto(page_file.resolve().as_uri(), timeout=TIMEOUT)
        page.wait_for_function("document.getElementById('static-rd').hidden && "
                               "document.getElementById('image-plot').data", timeout=TIMEOUT)
        top = page.locator("#interactive").bounding_box()
        bottom = page.locator("#image-plot").bounding_box()
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True, clip={
            "x": top["x"], "y": top["y"], "width": top["width"], "height": bottom["y"] + bottom["height"] - top["y"]})
        browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a benchmark's leaderboard.html")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    shoot(args.page, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
