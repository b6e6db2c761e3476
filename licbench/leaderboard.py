"""The leaderboard: one row per codec, Bjøntegaard deltas against JPEG and JPEG 2000.

BD-rate (average bitrate change at equal quality, %) and BD-PSNR (average quality change
at equal rate, dB) follow Bjøntegaard (VCEG-M33) with the ``bjontegaard`` package's PCHIP
interpolation, integrated over the range where both curves overlap. MS-SSIM deltas are in
CompressAI's dB scale, −10·log10(1 − MS-SSIM). Curves are first reduced to their monotone
upper envelope (a point that does not improve quality over a cheaper one is dropped).
A delta is left empty, with the reason, when a curve has fewer than two points or the
overlap is under ``MIN_OVERLAP`` of the joint range.
"""
from __future__ import annotations

import base64
import html
import json
import math
import warnings
from pathlib import Path

import bjontegaard
import numpy as np
import pandas as pd

from licbench.atomic import write_atomic
from licbench.codec import CodecError

ANCHORS = ("jpeg", "jpeg2000")
MIN_OVERLAP = 0.1
METRICS = {"psnr": "PSNR", "ms_ssim": "MS-SSIM"}


def quality(curve: pd.DataFrame, metric: str) -> np.ndarray:
    values = curve[metric].to_numpy(dtype=float)
    return values if metric == "psnr" else -10 * np.log10(1 - values)


def envelope(curve: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, quality) of the points that each beat every cheaper point."""
    curve = curve.sort_values("bpp")
    rates, values = curve.bpp.to_numpy(dtype=float), quality(curve, metric)
    keep, best = [], -math.inf
    for i, value in enumerate(values):
        if np.isfinite(value) and value > best:
            keep.append(i)
            best = value
    return rates[keep], values[keep]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the joint range [min, max] of a and b that both cover."""
    joint = max(a.max(), b.max()) - min(a.min(), b.min())
    return max(min(a.max(), b.max()) - max(a.min(), b.min()), 0) / joint if joint > 0 else 0.0


def bd(anchor: pd.DataFrame, test: pd.DataFrame, metric: str) -> tuple[float, float, str]:
    """(BD-rate %, BD-quality dB, reason when not computable) of ``test`` against ``anchor``."""
    (ra, qa), (rt, qt) = envelope(anchor, metric), envelope(test, metric)
    if not (np.isfinite(quality(anchor, metric)).any() and np.isfinite(quality(test, metric)).any()):
        return math.nan, math.nan, f"no {METRICS[metric]} values (MS-SSIM needs images ≥ 161 px)"
    if len(ra) < 2 or len(rt) < 2:
        return math.nan, math.nan, "needs ≥ 2 rate points"
    if overlap(qa, qt) < MIN_OVERLAP or overlap(np.log(ra), np.log(rt)) < MIN_OVERLAP:
        return math.nan, math.nan, "curves overlap too little"
    args = dict(method="pchip", require_matching_points=False, min_overlap=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rate = bjontegaard.bd_rate(ra, qa, rt, qt, **args)
        gain = bjontegaard.bd_psnr(ra, qa, rt, qt, **args)
    return float(rate), float(gain), ""


def leaderboard(rd: pd.DataFrame, per_image: pd.DataFrame, facts: dict[str, dict]) -> pd.DataFrame:
    """One row per codec, sorted by BD-rate against JPEG (PSNR); best first, uncomputable last."""
    rows = []
    for codec, curve in rd.groupby("codec", sort=False):
        row, notes = {"codec": codec, "points": len(curve), "bpp range": f"{curve.bpp.min():.3f}–{curve.bpp.max():.3f}"}, set()
        for anchor in ANCHORS:
            for metric, label in METRICS.items():
                if codec == anchor or anchor not in set(rd.codec):
                    rate, gain, why = math.nan, math.nan, ""
                else:
                    rate, gain, why = bd(rd[rd.codec == anchor], curve, metric)
                row[f"BD-rate vs {anchor} ({label}) %"] = rate
                row[f"BD-{label} vs {anchor} dB"] = gain
                notes.add(why)
        images = per_image[per_image.codec == codec]
        megapixels = images.height * images.width / 1e6
        row["enc ms/MP"] = float((images.enc_s / megapixels).mean() * 1e3)
        row["dec ms/MP"] = float((images.dec_s / megapixels).mean() * 1e3)
        info = facts.get(codec, {})
        row["params"] = info.get("params")
        macs = info.get("kmac_per_pixel") or {}
        row["kMAC/px enc"], row["kMAC/px dec"] = macs.get("encode"), macs.get("decode")
        row["training"], row["data"] = info.get("training", "—"), info.get("data", "—")
        row["notes"] = "; ".join(sorted(n for n in notes if n))
        rows.append(row)
    table = pd.DataFrame(rows)
    key = "BD-rate vs jpeg (PSNR) %"
    return table.sort_values(key, na_position="last", kind="stable").reset_index(drop=True) if key in table else table


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if column.startswith("BD-"):
        return f"{value:+.2f}"
    if column == "params":
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def markdown(table: pd.DataFrame, title: str, provenance: str) -> str:
    columns = list(table.columns)
    lines = [f"# {title}", "", provenance, "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in columns) + " |" for _, row in table.iterrows()]
    lines += ["", __doc__.split("\n\n", 1)[1].replace("\n", " ").replace("``", "`").strip(), ""]
    return "\n".join(lines)


def _embed(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


def html_page(table: pd.DataFrame, title: str, provenance: str, in_dir: Path) -> str:
    """A self-contained page: the table, the RD plots and the crops, images embedded."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c, row[c]))}</td>" for c in table.columns) + "</tr>"
                   for _, row in table.iterrows())
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}figure{display:inline-block;margin:4px}"
             "figcaption{font-size:12px;text-align:center}</style>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(provenance)}</p>",
             f"<table><tr>{head}</tr>{body}</table>"]
    plots = [p for p in (in_dir / "rd_psnr.png", in_dir / "rd_msssim.png") if p.is_file()]
    parts += ["<h2>Rate–distortion</h2>"] + [f"<img src='{_embed(p)}' width='560'>" for p in plots]
    index = in_dir / "crops" / "crops.json"
    if index.is_file():
        crops = json.loads(index.read_text())
        parts.append(f"<h2>Crops of {html.escape(crops['image'])}</h2>")
        for target, entries in crops["targets"].items():
            parts.append(f"<h3>≈ {target} bpp</h3>")
            parts += [f"<figure><img src='{_embed(in_dir / 'crops' / e['file'])}' width='192'>"
                      f"<figcaption>{html.escape(e['caption'])}</figcaption></figure>" for e in entries]
    return "\n".join(parts)


def write(in_dir: Path) -> dict[str, Path]:
    """Build leaderboard.md and leaderboard.html from a benchmark's output directory."""
    in_dir = Path(in_dir)
    missing = [name for name in ("rd.csv", "per_image.csv") if not (in_dir / name).is_file()]
    if missing:
        raise CodecError(f"{in_dir} is not a benchmark output directory (missing {', '.join(missing)})")
    rd, per_image = pd.read_csv(in_dir / "rd.csv"), pd.read_csv(in_dir / "per_image.csv")
    facts = json.loads((in_dir / "codecs.json").read_text()) if (in_dir / "codecs.json").is_file() else {}
    command = (in_dir / "command.txt").read_text().strip().replace("\n", " ") if (in_dir / "command.txt").is_file() else ""
    table = leaderboard(rd, per_image, facts)
    title = f"Leaderboard: {in_dir.name}"
    provenance = f"From {in_dir.name}/rd.csv ({per_image.image.nunique()} images). Produced by: {command}"
    paths = {"md": in_dir / "leaderboard.md", "html": in_dir / "leaderboard.html", "csv": in_dir / "leaderboard.csv"}
    write_atomic(paths["md"], markdown(table, title, provenance))
    write_atomic(paths["html"], html_page(table, title, provenance, in_dir))
    write_atomic(paths["csv"], table.to_csv(index=False))
    return paths
