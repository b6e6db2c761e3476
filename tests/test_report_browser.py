"""The interactive leaderboard page of a real small benchmark (JPEG and WebP on the embedded photos, with a
published curve beside them): self-contained, and, in headless Chromium (Debian's ``chromium``, driven by
Playwright), drawn without console errors, one trace per codec, its metric selector, hover, per-image view
and A/B slider working. Every wait is the driver's, on a condition, with a generous timeout: no timing."""
import json
import math
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from playwright.sync_api import sync_playwright
from plotly.offline import get_plotlyjs

from conftest import REPO, run_cli
from licbench.bench import interactive, leaderboard, report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT = 180_000  # ms: a loaded 2-core machine parses 5 MB of script slowly
CODECS = ["jpeg", "webp"]
PUBLISHED = "paper-x"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The benchmark's output directory; its published curve: JPEG's PSNR at 0.8 × its bpp, no MS-SSIM."""
    root = tmp_path_factory.mktemp("browser")
    reference = root / "samples" / f"{PUBLISHED}.json"  # its folder names its dataset
    reference.parent.mkdir()
    reference.write_text(json.dumps({"name": "x", "results": {"bpp": [0.3, 0.6, 0.9], "psnr-rgb": [29, 32, 34]}}))
    out = root / "out"
    run_cli("benchmark", "logger=none", "timing=off", f"codecs=[{','.join(CODECS)}]", "anchors=[jpeg]",
            "+codec_overrides.jpeg.grid=[20,60]", "+codec_overrides.webp.grid=[20,60]", f"references=[{reference}]",
            f"out_dir={out}", f"hydra.run.dir={root / 'hydra'}", cwd=root)
    return out


def embedded(page: str) -> dict:
    return json.loads(re.search(r"<script type='application/json' id='licbench-data'>(.*?)</script>", page).group(1))


def test_the_page_is_self_contained_and_readable_without_javascript(bench):
    page = (bench / "leaderboard.html").read_text()
    markup = re.sub(r"(?s)(<script[^>]*>).*?</script>", r"\1", page)  # the tags, without the scripts' text
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=(?!['\"]?data:)", markup) and "<link" not in markup
    assert page.count(get_plotlyjs()[:400]) == 1  # Plotly, embedded once
    crops = json.loads((bench / "crops" / "crops.json").read_text())
    assert markup.count("data:image/png") == 2 + sum(map(len, crops["targets"].values()))  # plots and crops, once
    assert "<section id='interactive' hidden>" in page and page.count("<table>") >= 3  # tables stay HTML
    data = embedded(page)
    assert [c["name"] for c in data["codecs"]] == CODECS and [m["key"] for m in data["metrics"]] == ["psnr", "ms_ssim"]
    assert [r["name"] for r in data["references"]] == [PUBLISHED] and len(data["images"]) == 4
    board = pd.read_csv(bench / "leaderboard.csv")
    assert board[leaderboard.DECODER_MB].isna().all()  # no network at these decoders


@pytest.fixture(scope="module")
def browser_page(bench):
    """The page open in headless Chromium once it has drawn, and the console errors it has logged so far."""
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium): the page is not opened in a browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT)
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((bench / "leaderboard.html").as_uri(), timeout=TIMEOUT)
        page.wait_for_function("document.getElementById('static-rd').hidden", timeout=TIMEOUT)  # drawn
        yield page, errors
        browser.close()


def plotted(page, plot: str) -> list[dict]:
    return page.evaluate(f"document.getElementById('{plot}').data.map(t => ({{name: t.name, meta: t.meta, y: t.y}}))")


def choose(page, select: str, value: str, plot: str = "rd-plot") -> None:
    """Pick ``value`` in ``select`` and wait until ``plot`` shows it (its axis title or its title changed)."""
    before = page.evaluate(f"document.getElementById('{plot}').layout.yaxis.title.text + "
                           f"document.getElementById('{plot}').layout.title.text")
    page.select_option(select, value)
    page.wait_for_function(f"(b) => document.getElementById('{plot}').layout.yaxis.title.text + "
                           f"document.getElementById('{plot}').layout.title.text !== b", arg=before)


def test_one_trace_per_codec_and_the_published_curve_dashed(browser_page, bench):
    page, errors = browser_page
    page.select_option("#rd-metric", "psnr")
    page.wait_for_function("document.getElementById('rd-plot').layout.yaxis.title.text.startsWith('PSNR')")
    assert page.is_visible("#interactive") and page.is_hidden("#static-rd")  # the script has taken over
    traces = plotted(page, "rd-plot")
    assert [t["name"] for t in traces if t["meta"] == "measured"] == CODECS
    assert [t["name"] for t in traces if t["meta"] == "published"] == [f"{PUBLISHED} (published)"]
    assert page.locator("#rd-plot .scatterlayer .trace").count() == len(traces)  # each drawn
    assert page.evaluate("document.getElementById('rd-plot')._fullData.map(t => t.line.dash)") == ["solid"] * 2 + [
        "dash"]
    rd = pd.read_csv(bench / "rd.csv")
    for trace in traces[:2]:
        assert trace["y"] == pytest.approx(list(rd[rd.codec == trace["name"]].sort_values("bpp").psnr), rel=1e-5)
    assert errors == []


def test_the_metric_selector_changes_the_plotted_values(browser_page, bench):
    page, errors = browser_page
    if page.input_value("#rd-metric") != "psnr":
        choose(page, "#rd-metric", "psnr")
    psnr = plotted(page, "rd-plot")
    choose(page, "#rd-metric", "ms_ssim")
    ms_ssim = plotted(page, "rd-plot")
    assert page.evaluate("document.getElementById('rd-plot').layout.yaxis.title.text").startswith("MS-SSIM (dB)")
    rd = pd.read_csv(bench / "rd.csv")
    for before, after in zip(psnr[:2], ms_ssim):
        expected = [-10 * math.log10(1 - v) for v in rd[rd.codec == after["name"]].sort_values("bpp").ms_ssim]
        assert after["y"] == pytest.approx(expected, rel=1e-5) and after["y"] != before["y"]
    assert [t["meta"] for t in ms_ssim] == ["measured"] * 2  # the published curve has no MS-SSIM
    page.check("#rd-log")
    page.wait_for_function("document.getElementById('rd-plot').layout.xaxis.type === 'log'")
    page.uncheck("#rd-log")
    page.wait_for_function("document.getElementById('rd-plot').layout.xaxis.type === 'linear'")
    assert errors == []


def test_hover_names_the_rate_point_and_the_spread_over_images(browser_page):
    page, errors = browser_page
    page.wait_for_function("Plotly.Fx.hover('rd-plot', [{curveNumber: 0, pointNumber: 0}]) || "  # again till drawn
                           "document.querySelector('#rd-plot .hoverlayer .hovertext') !== null", polling=500)
    text = page.text_content("#rd-plot .hoverlayer .hovertext")  # SVG: its lines run together
    assert "jpeg @ 20" in text and "bpp" in text and "over 4 images:" in text and "std" in text
    assert errors == []


def test_the_per_image_view_shows_an_images_curves_and_its_crops(browser_page, bench):
    page, errors = browser_page
    crops = json.loads((bench / "crops" / "crops.json").read_text())
    assert page.input_value("#image-select") == crops["image"]  # the crops' image first
    assert page.locator("#image-crops figure").count() == sum(map(len, crops["targets"].values()))
    page.select_option("#rd-metric", "psnr")
    page.wait_for_function("document.getElementById('image-plot').layout.yaxis.title.text.startsWith('PSNR')")
    choose(page, "#image-select", "coffee", plot="image-plot")
    rows = pd.read_csv(bench / "per_image.csv")
    for trace in plotted(page, "image-plot"):
        mine = rows[(rows.image == "coffee") & (rows.codec == trace["name"])].sort_values("bpp")
        assert trace["y"] == pytest.approx(list(mine.psnr), rel=1e-5)
    assert page.inner_text("#image-crops").startswith(f"Crops: of {crops['image']} only")
    assert errors == []


def test_the_ab_slider_moves_the_split_and_zoom_magnifies(browser_page):
    page, errors = browser_page
    top = "getComputedStyle(document.getElementById('ab-top')).clipPath"
    assert page.evaluate("document.getElementById('ab-top').src").startswith("data:image/png")
    page.focus("#ab-slider")
    page.keyboard.press("Home")  # all B
    page.wait_for_function(f"{top}.includes('100%')")
    page.keyboard.press("End")  # all A
    page.wait_for_function(f"!{top}.includes('100%') && document.getElementById('ab-slider').value === '100'")
    view = page.locator("#ab-view").bounding_box()
    page.mouse.move(view["x"] + 0.75 * view["width"], view["y"] + view["height"] / 2)
    page.mouse.down()
    page.mouse.move(view["x"] + 0.25 * view["width"], view["y"] + view["height"] / 2, steps=5)
    page.mouse.up()  # dragged to a quarter: A left of it
    page.wait_for_function("Math.abs(document.getElementById('ab-slider').value - 25) <= 2")
    assert re.fullmatch(r"inset\(0px 7[3-7](\.\d+)?% 0px 0px\)", page.evaluate(top))
    page.select_option("#ab-zoom", "3")
    page.wait_for_function("document.getElementById('ab-view').getBoundingClientRect().width === "
                           "3 * document.getElementById('ab-bottom').naturalWidth")
    assert errors == []


def test_every_codec_of_the_kodak_leaderboard_has_its_own_colour():
    """The committed Kodak page has 14 codecs: its colours must not repeat after 10, as the default cycle does."""
    results = report.read(REPO / "results" / "kodak")
    drawn = interactive.data(results, report.Comparisons(anchors=["jpeg"]), {"psnr": "PSNR"})["codecs"]
    assert len(drawn) == results.rd.codec.nunique() > 10
    assert len({codec["colour"] for codec in drawn}) == len(drawn)


def test_the_readme_screenshot_is_the_drawn_rd_and_per_image_plots(bench, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium): the page is not opened in a browser")
    from PIL import Image

    # its own process: the module's browser_page fixture may hold Playwright's event loop in this one
    subprocess.run([sys.executable, "-m", "licbench.tools.screenshot", str(bench / "leaderboard.html"), "--out",
                    str(tmp_path / "shot.png")], check=True, capture_output=True, timeout=600)
    shot = Image.open(tmp_path / "shot.png").convert("L")
    width, height = shot.size
    assert width > 1000 and height > 900  # two plots of 480 px, one above the other
    assert shot.getextrema()[0] < 100  # the curves and axes are drawn, not a blank page
