"""The leaderboard page's interactive part: RD plots with a metric selector and hover, a per-image view
and an A/B comparison of two codecs' crops, drawn in the browser by Plotly from data embedded in the page.

The page stays self-contained and readable without JavaScript: Plotly's bundled, minified JS (the
``plotly`` package's ``get_plotlyjs``) is embedded once, the data as one JSON script element, and the script
(``interactive.js``) reveals the section, which starts hidden, and hides the static PNG plots
(``#static-rd``) once it has drawn; the tables and the crops' figures stay plain HTML. The crops are not
embedded twice: the A/B and per-image views take their pictures from the figures' ``<img data-file=...>``.

Values are on the scale of the leaderboard's BD deltas (:func:`licbench.bench.leaderboard.quality`:
MS-SSIM in dB, NLPD as 1 − NLPD), each point the mean over images as in rd.csv, with the spread over
images (min–max and standard deviation of the per-image values on that scale) in its hover; published
curves (``references=``, a codec's ``paper:``) are dashed, in their codec's colour where they have one
(a paper's codec, or the measured codec of the curve's name), as in the static plots.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import to_hex
from plotly.offline import get_plotlyjs

from licbench.bench.crops import ORIGINAL, crop_file
from licbench.bench.leaderboard import quality as on_scale

if TYPE_CHECKING:
    from licbench.bench.report import Comparisons, Results

SCRIPT = Path(__file__).with_name("interactive.js")
ZOOMS = (1, 2, 3, 4)
MARKUP = """<section id='interactive' hidden>
<h2>Rate–distortion, interactive</h2>
<p><label>Metric <select id='rd-metric'></select></label> <label><input type='checkbox' id='rd-log'> log bpp</label>
 — hover a point for its rate point and the spread over images; dashed: as published</p>
<div id='rd-plot' class='plot'></div>
<h2>One image</h2>
<p><label>Image <select id='image-select'></select></label></p>
<div id='image-plot' class='plot'></div>
<div id='image-crops'></div>
<h2>A/B at matched bpp</h2>
<div id='ab'>
<p><label>A <select id='ab-a'></select></label> <label>B <select id='ab-b'></select></label>
 <label>at ≈ <select id='ab-target'></select> bpp</label> <label>zoom <select id='ab-zoom'>{zooms}</select></label></p>
<div id='ab-view'><img id='ab-bottom' alt='B' draggable='false'><img id='ab-top' alt='A' draggable='false'>
<div id='ab-split'></div></div>
<p><input type='range' id='ab-slider' min='0' max='100' value='50' aria-label='A | B split'></p>
<p id='ab-caption'></p>
</div>
</section>"""
STYLE = ("#interactive .plot{width:100%;max-width:900px;height:480px}#ab-view{position:relative;overflow:hidden;"
         "cursor:ew-resize;touch-action:none;max-width:100%}#ab-view img{display:block;width:100%;"
         "image-rendering:pixelated}#ab-top,#ab-split{position:absolute;top:0;left:0}#ab-split{bottom:0;width:2px;"
         "margin-left:-1px;background:#fff;box-shadow:0 0 2px #000}#ab-slider{width:300px}")


def numbers(values) -> list:
    """Floats for JSON, to 6 significant digits; NaN and infinities as null."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _points(rows: pd.DataFrame, names: list[str]) -> dict:
    """Rate labels, bpp and each metric (on its scale) of ``rows``, in rate order."""
    rows = rows.sort_values("bpp", kind="stable")
    return {"rate": [str(rate) for rate in rows.rate], "bpp": numbers(rows.bpp),
            "values": {name: numbers(on_scale(rows[name], name)) for name in names}}


#: The RD plots' colours, static and interactive: tab20's dark shades, then its light ones, so that 20 codecs get
#: 20 colours (the default cycle repeats after 10, and the Kodak leaderboard has 14).
_TAB20 = matplotlib.colormaps["tab20"].colors
PALETTE = [to_hex(c) for c in (*_TAB20[0::2], *_TAB20[1::2])]


def data(results: Results, compare: Comparisons, labels: dict[str, str]) -> dict:
    """What the script draws: the metrics (``labels``: their axis titles) and, per codec, its mean curve with
    the spread over images; the published curves; each image's curves; the crops by target."""
    rd, rows, names = results.rd, results.per_image, list(labels)
    cycle = PALETTE
    order = list(rd.codec.unique())
    colours = {codec: cycle[i % len(cycle)] for i, codec in enumerate(order)}
    scaled = rows.assign(**{name: on_scale(rows[name], name) for name in names})
    by_point = scaled.groupby(["codec", "rate"], sort=False)[names]
    spread = {"min": by_point.min(), "max": by_point.max(), "std": by_point.std(ddof=0)}
    codecs = []
    for codec, curve in rd.groupby("codec", sort=False):
        curve = curve.sort_values("bpp", kind="stable")
        keys = pd.MultiIndex.from_arrays([curve.codec, curve.rate])
        points = _points(curve, names)
        points["values"] = {name: {"mean": mean, **{stat: numbers(table[name].reindex(keys))
                                                    for stat, table in spread.items()}}
                            for name, mean in points["values"].items()}
        codecs.append({"name": codec, "colour": colours[codec], "images": curve.images.astype(int).tolist(),
                       **points})
    owners, spare = compare.owners, (cycle[i % len(cycle)] for i in itertools.count(len(order)))
    references = [{"name": ref.name, "colour": colours.get(owners.get(ref.name, ref.name)) or next(spare),
                   "bpp": numbers(ref.curve.bpp),
                   "values": {name: numbers(on_scale(ref.curve[name], name)) for name in names
                              if name in ref.curve and ref.curve[name].notna().any()}}
                  for ref in compare.references]
    images = [{"name": image, "codecs": {codec: _points(points, names) for codec, points in group.groupby(
               "codec", sort=False)}} for image, group in rows.groupby("image", sort=False)]
    crops = None
    if results.crops:
        targets = []
        for target, entries in results.crops["targets"].items():
            files = {ORIGINAL: "original", **{crop_file(codec, target): codec for codec in order}}
            targets.append({"target": target, "entries": [{"file": e["file"], "codec": files.get(e["file"], e["file"]),
                                                           "caption": e["caption"]} for e in entries]})
        crops = {"image": results.crops["image"], "targets": targets}
    return {"metrics": [{"key": name, "label": labels[name]} for name in names], "codecs": codecs,
            "references": references, "images": images, "crops": crops}


def section(results: Results, compare: Comparisons, labels: dict[str, str]) -> str:
    """The interactive section (hidden until its script runs), its data and the scripts, for the page's body."""
    payload = json.dumps(data(results, compare, labels), separators=(",", ":"), allow_nan=False)
    payload = payload.replace("<", "\\u003c")  # no "</script>" inside the element
    zooms = "".join(f"<option value='{z}'>{z}×</option>" for z in ZOOMS)
    return "\n".join([MARKUP.format(zooms=zooms),
                      f"<script type='application/json' id='licbench-data'>{payload}</script>",
                      f"<script>{get_plotlyjs()}</script>", f"<script>{SCRIPT.read_text()}</script>"])
