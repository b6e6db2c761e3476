"""RD plots and the benchmark's summary.md."""
from __future__ import annotations

import io
import math
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from licbench.atomic import write_atomic  # noqa: E402

LABELS = {"psnr": "PSNR-RGB (dB)", "ms_ssim": "MS-SSIM (dB) = -10 log10(1 - MS-SSIM)"}


def plot_rd(rd: pd.DataFrame, metric: str, path: Path, dataset: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 5))
    for codec, curve in rd.groupby("codec", sort=False):
        curve = curve.sort_values("bpp")
        values = curve[metric] if metric == "psnr" else -10 * np.log10(1 - curve[metric])
        ax.plot(curve.bpp, values, marker="o", markersize=3, label=codec)
    ax.set(xlabel="bits per pixel (from real bytes)", ylabel=LABELS[metric], title=f"{dataset}: rate-distortion")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return write_atomic(path, png.getvalue())


def psnr_at(curve: pd.DataFrame, bpp: float) -> float:
    """PSNR of a codec's curve at ``bpp``, linear in log-bpp; NaN outside its range."""
    curve = curve.sort_values("bpp")
    if curve.empty or not curve.bpp.min() <= bpp <= curve.bpp.max():
        return math.nan
    return float(np.interp(math.log(bpp), np.log(curve.bpp), curve.psnr))


def summary(rd: pd.DataFrame, dataset: str, command: str, revision: str, notes: list[str],
            checkpoints: list[dict], failures: pd.DataFrame) -> str:
    lines = [f"# Benchmark on {dataset}", "",
             f"- command: `{command}`", f"- git revision: {revision}",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
             "- bpp from real bitstream bytes (headers included); PSNR/MS-SSIM on 8-bit RGB; means over images", ""]
    if notes:
        lines += ["Input conversions: " + "; ".join(notes), ""]
    if not failures.empty:
        lines += [f"## Failures ({len(failures)}: not in the means below; failures.csv)", ""]
        lines += [f"- {f.codec} @ {f.rate} on {f.image}: {f.error}" for f in failures.itertuples()] + [""]
    jpeg = rd[rd.codec == "jpeg"]
    lines += ["| codec | rate | images | bpp | bpp estimate | PSNR (dB) | MS-SSIM | JPEG PSNR at same bpp (Δ) | enc s | dec s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rd.itertuples():
        at = psnr_at(jpeg, row.bpp) if row.codec != "jpeg" else math.nan
        vs = "" if math.isnan(at) else f"{at:.2f} ({row.psnr - at:+.2f})"
        estimate = "" if math.isnan(row.bpp_estimate) else f"{row.bpp_estimate:.4f}"
        lines.append(f"| {row.codec} | {row.rate} | {row.images} | {row.bpp:.4f} | {estimate} | {row.psnr:.2f} | {row.ms_ssim:.4f} "
                     f"| {vs} | {row.enc_s:.3f} | {row.dec_s:.3f} |")
    if rd.ms_ssim.isna().any():
        lines += ["", "MS-SSIM is NaN where an image's shorter side is under 161 pixels: too small for 5 scales."]
    if checkpoints:
        lines += ["", "## Checkpoints of the learned codecs", "",
                  "| codec | rate | model id | steps | train s | budget | warm start | training command |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in checkpoints:
            budget = c.get("budget", {})
            lines.append(f"| {c['codec']} | {c['rate']} | {c['model_id']} | {budget.get('steps')} | "
                         f"{budget.get('train_seconds')} | {budget.get('max_time')} on {budget.get('threads')} threads | "
                         f"{c.get('init_from') or ''} | `{c.get('command', '')}` |")
    lines += ["", "Plots: rd_psnr.png, rd_msssim.png. Per-image rows: per_image.csv.", ""]
    return "\n".join(lines)
