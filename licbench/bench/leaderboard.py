"""The leaderboard: one row per measured codec with Bjøntegaard deltas against the anchors (configured
codecs), and, in a section of their own, one row per published curve against the same anchors.

BD-rate (average bitrate change at equal quality, %) and BD-PSNR (average quality change at equal
rate, dB) follow Bjøntegaard (VCEG-M33) with the ``bjontegaard`` package's PCHIP interpolation,
integrated over the range where both curves overlap. MS-SSIM deltas are in CompressAI's dB scale,
−10·log10(1 − MS-SSIM). Every other configured metric (``metrics=``) gets a BD-rate on the scale JPEG
AI's reporting template takes it (PSNRs in dB, the others as they are, NLPD as 1 − NLPD) and, with all
seven of JPEG AI's (MS-SSIM-Y, IW-SSIM, VIFp, FSIM, NLPD, PSNR-HVS, VMAF), their mean "JPEG AI avg",
blank unless all seven are figures (JPEG AI averages per-image BD-rates; here, as in every column, the
curves are the means over images). Curves are first reduced to their monotone upper envelope (a point
that does not improve quality over a cheaper one is dropped). The overlap is judged against the tested curve's
own range — in quality for BD-rate, in log-rate for BD-PSNR — so a curve that lies inside the anchor's
range always gets a figure; a delta is left empty, with the reason, when a curve has fewer than two
points or the anchor covers under ``MIN_OVERLAP`` of the tested curve's range. Each BD-rate has a
bootstrap confidence interval over images (``scipy.stats.bootstrap``, percentile method; the images
are resampled jointly for both curves, a published curve stays as published). PSNR is aggregated the
two ways the field uses: the mean of per-image PSNR and bpp (CompressAI: every column not marked
pooled) and the PSNR of the MSE pooled over all pixels of all images, with bits pooled likewise
(CLIC: "pooled PSNR"). "decoder MB" is what a receiver must hold to decode, in 10⁶ bytes: the weights a
decode reads (synthesis transforms, entropy models' tables; not the analysis transform), blank for codecs
without a network.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import bjontegaard
import numpy as np
import pandas as pd
from scipy import stats

from licbench.bench.timing import timing_text
from licbench.core.codec import CodecError
from licbench.core.quality import AVERAGE_LABEL, JPEG_AI_AVERAGE, REGISTRY, bd_quality

MIN_OVERLAP = 0.1
METRICS = {"psnr": "PSNR", "ms_ssim": "MS-SSIM"}  # the default columns of rd.csv, those a published curve may have
POOLED = "pooled_psnr"  # the PSNR of the pooled MSE, a column of :func:`pooled`
AVERAGE = "jpeg_ai_average"  # the mean of the BD-rates of quality.JPEG_AI_AVERAGE
LABELS = {**{name: metric.label for name, metric in REGISTRY.items()}, **METRICS, POOLED: "pooled PSNR",
          AVERAGE: AVERAGE_LABEL}
DECODER_MB = "decoder MB"  # the weights a receiver holds (Codec.decoder_bytes), in 10⁶ bytes; blank without a network
BD_ARGS = dict(method="pchip", require_matching_points=False, min_overlap=0)  # the overlap is judged here


def quality(values, metric: str) -> np.ndarray:
    """Quality on the scale of BD deltas (:func:`licbench.core.quality.bd_quality`): PSNR as it is,
    MS-SSIM as −10·log10(1 − MS-SSIM) dB, NLPD as 1 − NLPD, the other metrics as they are."""
    return bd_quality(values, metric)


def metric_columns(rd: pd.DataFrame) -> list[str]:
    """The metrics whose deltas a leaderboard of ``rd`` has: the default ones, pooled PSNR, then the
    other configured metrics, in rd.csv's order."""
    present = [column for column in rd.columns if column in REGISTRY]
    return [m for m in present if m in METRICS] + [POOLED] + [m for m in present if m not in METRICS]


def has_quality_delta(metric: str) -> bool:
    """Whether ``metric`` gets a BD-quality column beside its BD-rate (the default metrics do)."""
    return metric in METRICS


def envelope(rates, values) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, quality) of the points that each beat every cheaper point, in rate order."""
    order = np.argsort(rates, kind="stable")
    rates, values = np.asarray(rates, dtype=float)[order], np.asarray(values, dtype=float)[order]
    keep, best = [], -math.inf
    for i, value in enumerate(values):
        if np.isfinite(value) and value > best:
            keep.append(i)
            best = value
    return rates[keep], values[keep]


def coverage(test: np.ndarray, anchor: np.ndarray) -> float:
    """Fraction of the range [min, max] of ``test`` that ``anchor``'s range covers too."""
    span = test.max() - test.min()
    return max(min(test.max(), anchor.max()) - max(test.min(), anchor.min()), 0) / span if span > 0 else 0.0


def _bd_rate(ra, qa, rt, qt) -> float:
    """BD-rate of two envelopes; NaN unless the anchor covers ``MIN_OVERLAP`` of the test's quality range."""
    if coverage(qt, qa) < MIN_OVERLAP:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bjontegaard.bd_rate(ra, qa, rt, qt, **BD_ARGS))


def _bd_quality(ra, qa, rt, qt) -> float:
    """BD-quality of two envelopes; NaN unless the anchor covers ``MIN_OVERLAP`` of the test's log-rate range."""
    if coverage(np.log(rt), np.log(ra)) < MIN_OVERLAP:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(bjontegaard.bd_psnr(ra, qa, rt, qt, **BD_ARGS))


def bd(anchor: pd.DataFrame, test: pd.DataFrame, metric: str) -> tuple[float, float, str]:
    """(BD-rate %, BD-quality dB, reason when one is not computable) of ``test`` against ``anchor``:
    two curves with a ``bpp`` column and a ``metric`` column."""
    qa, qt = quality(anchor[metric], metric), quality(test[metric], metric)
    if not (np.isfinite(qa).any() and np.isfinite(qt).any()):
        small = REGISTRY[metric].too_small if metric in REGISTRY and REGISTRY[metric].min_side > 1 else ""
        return math.nan, math.nan, f"no {LABELS[metric]} values" + (f" ({small})" if small else "")
    (ra, qa), (rt, qt) = envelope(anchor.bpp, qa), envelope(test.bpp, qt)
    if len(ra) < 2 or len(rt) < 2:
        return math.nan, math.nan, "needs ≥ 2 rate points"
    rate, gain = _bd_rate(ra, qa, rt, qt), _bd_quality(ra, qa, rt, qt)
    blank = (math.isnan(rate), math.isnan(gain))
    why = {(True, True): "curves overlap too little",
           (True, False): "curves overlap too little in quality for a BD-rate",
           (False, True): "curves overlap too little in rate for a BD-quality"}.get(blank, "")
    return rate, gain, why


def squared_error(psnr, pixels):
    """An image's sum of squared errors (8-bit levels) from its PSNR: pixels · 255² · 10^(−PSNR/10)."""
    return pixels * 255**2 * 10 ** (-np.asarray(psnr, dtype=float) / 10)


def pooled_psnr(pixels, squared_errors):
    """The PSNR of the MSE pooled over images: 10·log10(255² · Σ pixels / Σ squared errors)."""
    return 10 * np.log10(255**2 * pixels / squared_errors)


def pooled(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per codec and rate point, CLIC's aggregation: bpp = 8·Σ bytes / Σ pixels and the PSNR of the MSE
    pooled over all pixels (:func:`pooled_psnr`), each image's MSE weighted by its pixels."""
    pixels = per_image.height * per_image.width
    rows = per_image.assign(pixels=pixels, bits=8 * per_image.bytes, sse=squared_error(per_image.psnr, pixels))
    sums = rows.groupby(["codec", "rate"], sort=False)[["bits", "pixels", "sse"]].sum().reset_index()
    return pd.DataFrame({"codec": sums.codec, "rate": sums.rate, "bpp": sums.bits / sums.pixels,
                         POOLED: pooled_psnr(sums.pixels, sums.sse)})


def _resampled(side: pd.DataFrame, images: list[str], metric: str):
    """The curve of one side of a delta for a resample of ``images`` (given as indices): a measured
    codec's per-image rows (a frame with an ``image`` column) aggregated over the resample, or a
    published curve as it is."""
    if "image" not in side:
        curve = envelope(side.bpp, quality(side[metric], metric))
        return lambda idx: curve

    def grid(column: str) -> np.ndarray:
        return side.set_index(["rate", "image"])[column].unstack("image")[images].to_numpy(dtype=float)

    if metric == POOLED:
        bits, pixels = 8 * grid("bytes"), grid("height") * grid("width")
        sse = squared_error(grid("psnr"), pixels)
        return lambda idx: envelope(bits[:, idx].sum(1) / pixels[:, idx].sum(1),
                                    pooled_psnr(pixels[:, idx].sum(1), sse[:, idx].sum(1)))
    bpp, values = grid("bpp"), grid(metric)
    return lambda idx: envelope(bpp[:, idx].mean(1), quality(values[:, idx].mean(1), metric))


def interval(anchor: pd.DataFrame, test: pd.DataFrame, metric,
             bootstrap: dict | None) -> tuple[float, float, str]:
    """(low, high, why not) of the bootstrap confidence interval of the BD-rate of ``test`` against
    ``anchor`` over images (``metric`` a list: of the mean of their BD-rates): ``scipy.stats.bootstrap``
    with ``bootstrap``'s ``n_resamples``, ``confidence_level``, ``method`` and a generator seeded with its
    ``seed``, so a table is reproducible. Each side is a measured codec's per-image rows or a published curve
    (:func:`_resampled`); the images are those every measured side has at each of its rate points.
    NaN without a measured side, with ``n_resamples`` 0 or without ≥ 2 such images (no reason: the
    footnote says so for the whole table), and, with the reason, when some resample has no BD-rate."""
    measured = [side for side in (anchor, test) if "image" in side]
    if not bootstrap or not bootstrap.get("n_resamples") or not measured:
        return math.nan, math.nan, ""
    counts = [(side.groupby("image").size(), side.rate.nunique()) for side in measured]
    images = sorted(set.intersection(*(set(count.index[count == points]) for count, points in counts)))
    if len(images) < 2:
        return math.nan, math.nan, ""
    names = list(metric) if isinstance(metric, (list, tuple)) else [metric]
    curves = [[_resampled(side, images, name) for name in names] for side in (anchor, test)]

    def statistic(idx):
        rates = []
        for anchor_curve, test_curve in zip(*curves):
            (ra, qa), (rt, qt) = anchor_curve(idx), test_curve(idx)
            rates.append(_bd_rate(ra, qa, rt, qt) if len(ra) > 1 and len(rt) > 1 else math.nan)
        return float(np.mean(rates))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate distribution (identical images) is a zero-width interval
        result = stats.bootstrap((np.arange(len(images)),), statistic, vectorized=False,
                                 n_resamples=int(bootstrap["n_resamples"]),
                                 confidence_level=float(bootstrap.get("confidence_level", 0.95)),
                                 method=str(bootstrap.get("method", "percentile")),
                                 rng=np.random.default_rng(int(bootstrap.get("seed", 0))))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):
        return math.nan, math.nan, "no interval: in some resamples of the images the curves overlap too little"
    return low, high, ""


def curve_at(curve: pd.DataFrame, bpp: float, metric: str) -> float:
    """``metric`` of a curve at ``bpp``, linear in log-bpp between its points; NaN outside its range."""
    curve = curve.dropna(subset=[metric]).sort_values("bpp")
    if curve.empty or not curve.bpp.min() <= bpp <= curve.bpp.max():
        return math.nan
    return float(np.interp(math.log(bpp), np.log(curve.bpp), curve[metric]))


def check_anchors(anchors) -> list[str]:
    """The configured ``anchors`` as codec names; a CodecError unless they are a non-empty list."""
    if isinstance(anchors, str) or not isinstance(anchors, Sequence) or not anchors:
        raise CodecError(f"anchors must list the codecs to compare against, e.g. anchors=[jpeg,jpeg2000]; "
                         f"got {anchors}")
    return [str(anchor) for anchor in anchors]


def anchor_notes(anchors: list[str], codecs: Iterable[str]) -> list[str]:
    """A note for each anchor that is not among ``codecs``: its columns stay empty."""
    codecs = sorted(set(codecs))
    return [f"anchor {anchor} is not among the benchmarked codecs ({', '.join(codecs)}): its columns are empty"
            for anchor in anchors if anchor not in codecs]


def bd_columns(row: dict, label: str, anchor, test, metric: str, bootstrap: dict | None) -> str:
    """Add the BD-rate (with its interval) and, but for pooled PSNR, the BD-quality of ``test`` against
    ``anchor`` to ``row`` under ``label`` ("vs jpeg", "vs its paper"); returns the reason of a blank.
    ``anchor``/``test``: (curve, per-image rows or the curve itself when published)."""
    (anchor_curve, anchor_rows), (test_curve, test_rows) = anchor, test
    rate, gain, why = bd(anchor_curve, test_curve, metric)
    if metric == POOLED and not math.isnan(rate):
        why = ""  # only its BD-rate is a column
    low = high = math.nan
    if not math.isnan(rate):
        low, high, no_interval = interval(anchor_rows, test_rows, metric, bootstrap)
        why = "; ".join(filter(None, [why, no_interval]))
    key = f"BD-rate {label} ({LABELS[metric]}) %"
    row[key], row[f"{key} CI low"], row[f"{key} CI high"] = rate, low, high
    if has_quality_delta(metric):
        row[f"BD-{LABELS[metric]} {label} dB"] = gain
    elif metric != POOLED and not math.isnan(rate):
        why = "; ".join(part for part in why.split("; ") if "for a BD-quality" not in part)  # it has no column
    return why


def blank(row: dict, anchor: str, metric: str) -> None:
    """The BD columns of ``metric`` against ``anchor``, empty."""
    key = f"BD-rate vs {anchor} ({LABELS[metric]}) %"
    row.update({key: math.nan, f"{key} CI low": math.nan, f"{key} CI high": math.nan})
    if has_quality_delta(metric):
        row[f"BD-{LABELS[metric]} vs {anchor} dB"] = math.nan


def average_columns(row: dict, anchor: str, anchor_sides: dict, tests: dict, bootstrap: dict | None) -> str:
    """JPEG AI's average of ``row``'s BD-rates against ``anchor`` (:data:`JPEG_AI_AVERAGE`) with its
    bootstrap interval (the seven resampled together); returns why it is blank."""
    key = f"BD-rate vs {anchor} ({AVERAGE_LABEL}) %"
    rates = {name: row.get(f"BD-rate vs {anchor} ({LABELS[name]}) %", math.nan) for name in JPEG_AI_AVERAGE}
    row[key] = row[f"{key} CI low"] = row[f"{key} CI high"] = math.nan
    missing = [LABELS[name] for name, rate in rates.items() if math.isnan(rate)]
    if missing:
        return f"vs {anchor} ({AVERAGE_LABEL}): no {', '.join(missing)} BD-rate"
    row[key] = float(np.mean(list(rates.values())))
    first = JPEG_AI_AVERAGE[0]  # a codec's per-image rows carry every metric
    low, high, why = interval(anchor_sides[first][1], tests[first][1], JPEG_AI_AVERAGE, bootstrap)
    row[f"{key} CI low"], row[f"{key} CI high"] = low, high
    return f"vs {anchor} ({AVERAGE_LABEL}): {why}" if why else ""


def anchor_columns(tests: dict[str, tuple], measured: dict[str, dict[str, tuple]], anchors: list[str],
                   bootstrap: dict | None, itself: str | None = None) -> tuple[dict, set[str]]:
    """The BD columns of one curve against each anchor, and the reasons of the blank ones. ``tests``:
    by metric, the tested curve's (curve, rows) (:func:`bd_columns`), None for a metric a published
    curve lacks; ``measured``: the same of every measured codec (:func:`measured_curves`); ``itself``:
    the tested codec, blank against itself."""
    row, notes = {}, set()
    average = all(tests.get(name) is not None for name in JPEG_AI_AVERAGE)
    for anchor in anchors:
        for metric, test in tests.items():
            anchor_side = measured[metric].get(anchor)
            if test is None:
                notes.add(f"publishes no {LABELS[metric]}")
            if anchor == itself or anchor_side is None or test is None:
                blank(row, anchor, metric)
                continue
            why = bd_columns(row, f"vs {anchor}", anchor_side, test, metric, bootstrap)
            notes.add(f"vs {anchor} ({LABELS[metric]}): {why}" if why.startswith(("curves", "no interval:")) else why)
        if average:
            key = f"BD-rate vs {anchor} ({AVERAGE_LABEL}) %"
            if anchor == itself or any(measured[name].get(anchor) is None for name in JPEG_AI_AVERAGE):
                row[key] = row[f"{key} CI low"] = row[f"{key} CI high"] = math.nan
                continue
            anchor_sides = {name: measured[name][anchor] for name in JPEG_AI_AVERAGE}
            notes.add(average_columns(row, anchor, anchor_sides, tests, bootstrap))
    return row, notes


def measured_curves(rd: pd.DataFrame, per_image: pd.DataFrame) -> dict[str, dict[str, tuple]]:
    """For each metric of rd.csv (:func:`metric_columns`, pooled PSNR included), each codec's (curve,
    per-image rows)."""
    table = pooled(per_image)
    rows = {codec: group for codec, group in per_image.groupby("codec", sort=False)}
    return {metric: {codec: (curve, rows.get(codec, curve))
                     for codec, curve in (table if metric == POOLED else rd).groupby("codec", sort=False)}
            for metric in metric_columns(rd)}


def leaderboard(rd: pd.DataFrame, per_image: pd.DataFrame, facts: dict[str, dict], anchors: list[str],
                bootstrap: dict | None = None, beside: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per measured codec, sorted by BD-rate (PSNR) against the first anchor; best first,
    uncomputable last. ``beside``: more columns by codec (its paper's, :mod:`licbench.bench.papers`),
    placed before the cost columns."""
    curves, rows = measured_curves(rd, per_image), []
    for codec, curve in rd.groupby("codec", sort=False):
        row = {"codec": codec, "points": len(curve), "bpp range": f"{curve.bpp.min():.3f}–{curve.bpp.max():.3f}"}
        tests = {metric: sides[codec] for metric, sides in curves.items()}
        columns, notes = anchor_columns(tests, curves, anchors, bootstrap, itself=codec)
        row.update(columns)
        row.update((beside or {}).get(codec, {}))
        info = facts.get(codec, {})
        images = per_image[per_image.codec == codec]
        megapixels = images.height * images.width / 1e6
        timed = info.get("timing")
        row["enc ms/MP"] = timed["enc ms/MP"] if timed else float((images.enc_s / megapixels).mean() * 1e3)
        row["dec ms/MP"] = timed["dec ms/MP"] if timed else float((images.dec_s / megapixels).mean() * 1e3)
        row["timed by"] = timing_text(timed)
        row["params"] = info.get("params")
        row[DECODER_MB] = None if info.get("decoder_bytes") is None else info["decoder_bytes"] / 1e6
        macs = info.get("kmac_per_pixel") or {}
        row["kMAC/px enc"], row["kMAC/px dec"] = macs.get("encode"), macs.get("decode")
        row["training"], row["data"] = info.get("training", "—"), info.get("data", "—")
        row["device"] = info.get("device", "cpu")
        row["notes"] = "; ".join(sorted(n for n in notes if n))
        rows.append(row)
    table = pd.DataFrame(rows)
    key = f"BD-rate vs {anchors[0]} (PSNR) %"
    return table.sort_values(key, na_position="last", kind="stable").reset_index(drop=True) if key in table else table


def published(references: list, rd: pd.DataFrame, per_image: pd.DataFrame, anchors: list[str],
              bootstrap: dict | None) -> pd.DataFrame:
    """One row per published curve (:class:`licbench.bench.references.Reference`): its BD deltas
    against the measured anchors, in the metrics it publishes; never among the measured rows."""
    measured, rows = measured_curves(rd, per_image), []
    for reference in references:
        curve = reference.curve
        row = {"reference": reference.name, "points": len(curve),
               "bpp range": f"{curve.bpp.min():.3f}–{curve.bpp.max():.3f}"}
        tests = {metric: (curve, curve) if curve[metric].notna().any() else None for metric in METRICS}
        columns, notes = anchor_columns(tests, measured, anchors, bootstrap)
        row.update(columns)
        row["notes"] = "; ".join(sorted(n for n in notes if n))
        row["source"] = reference.description
        rows.append(row)
    return pd.DataFrame(rows)


def aggregations(rd: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """Each codec's rate points with PSNR aggregated both ways: mean of per-image PSNR (CompressAI,
    rd.csv) beside the PSNR of the pooled MSE (CLIC, :func:`pooled`)."""
    both = rd[["codec", "rate", "images", "bpp", "psnr"]].merge(pooled(per_image), on=["codec", "rate"],
                                                               suffixes=("", " pooled"))
    return pd.DataFrame({"codec": both.codec, "rate": both.rate, "images": both.images, "bpp": both.bpp,
                         "PSNR mean of images dB": both.psnr, "bpp pooled": both["bpp pooled"],
                         "PSNR of pooled MSE dB": both[POOLED], "pooled − mean dB": both[POOLED] - both.psnr})
