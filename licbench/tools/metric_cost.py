"""What each quality metric costs, in ms per image (figures, not a test):
``python -m licbench.tools.metric_cost --images DIR --limit N --out FILE``.

The first N images of DIR (sorted names; PNG, JPEG, …) are each decoded once by JPEG at quality 50
(Pillow). Every registered metric (:mod:`licbench.core.quality`) is timed on each pair: one warm-up
call excluded (imports, model set-up), then the best of ``--repeats`` calls, each on a fresh pair whose
BT.709 planes are computed beforehand (that conversion, which the luma and chroma metrics share, is a
row of its own). The rows of the sets time what the benchmark runs per image and rate point:
``quality.evaluate`` of the set on a fresh pair, conversion included. torch's CPU threads are those
of ``--threads`` (default: torch's); the load average before and after is recorded, since a timing
taken while other jobs share the cores is slower than the metric is.
"""
from __future__ import annotations

import argparse
import functools
import io
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from licbench.core import metrics, quality
from licbench.core.images import load_image
from licbench.tools.figures import publish

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp"}


def decoded_pairs(images: Path, limit: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, reference, its JPEG q=50 decoding) of the first ``limit`` images of ``images``."""
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in SUFFIXES)[:limit]
    if not paths:
        raise SystemExit(f"no images in {images}")
    pairs = []
    for path in paths:
        reference = metrics.to_uint8(load_image(path)[0])
        buffer = io.BytesIO()
        Image.fromarray(reference).save(buffer, "JPEG", quality=50)
        pairs.append((path.name, reference, np.asarray(Image.open(buffer).convert("RGB"))))
    return pairs


def best_ms(function, repeats: int) -> float:
    """The best of ``repeats`` timings of ``function()`` (a fresh argument each call), in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def primed(reference: np.ndarray, decoded: np.ndarray) -> quality.Pair:
    pair = quality.Pair(reference, decoded)
    _ = pair.ycbcr
    return pair


def costs(pairs, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """By row (each metric, the conversion, each set): ms per image; and each metric's values."""
    rows = {name: [] for name in ["BT.709 conversion", *quality.REGISTRY, *(f"set {s}" for s in quality.SETS)]}
    values = {name: [] for name in quality.REGISTRY}
    for _, reference, decoded in pairs:
        images = (reference, decoded)
        quality.evaluate(quality.REGISTRY, *images)  # warm-up: imports, models, the first call's set-up
        rows["BT.709 conversion"].append(best_ms(lambda images=images: quality.Pair(*images).ycbcr, repeats))
        for name, metric in quality.REGISTRY.items():
            fresh = [primed(*images) for _ in range(repeats)]
            rows[name].append(best_ms(lambda fresh=fresh, metric=metric: metric(fresh.pop()), repeats))
            values[name].append(metric(primed(*images)))
        for name, members in quality.SETS.items():
            run = functools.partial(quality.evaluate, members, *images)
            rows[f"set {name}"].append(best_ms(run, repeats))
    return rows, values


def table(rows: dict[str, list[float]], values: dict[str, list[float]], pairs) -> str:
    height, width = pairs[0][1].shape[:2]
    lines = [f"| metric (on {len(pairs)} images, {width}×{height} first, JPEG q=50) | package | ms per image "
             "| min–max ms | mean value | in sets |", "|---|---|---|---|---|---|"]
    for name, times in rows.items():
        if name in quality.REGISTRY:
            metric = quality.REGISTRY[name]
            sets = ", ".join(s for s, members in quality.SETS.items() if name in members)
            label, package, value = f"{metric.label} (`{name}`)", metric.package, f"{np.mean(values[name]):.4f}"
        elif name.startswith("set "):
            label, package, value, sets = f"**`metrics={name[4:]}`** (all, as the benchmark runs them)", "", "", ""
        else:
            label, package, value, sets = "BT.709 Y'CbCr of both images (shared by the luma/chroma metrics)", \
                "colour-science", "", ""
        lines.append(f"| {label} | {package} | {np.mean(times):.0f} | {min(times):.0f}–{max(times):.0f} | {value} "
                     f"| {sets} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="a directory of images, e.g. Kodak's 24 PNGs")
    parser.add_argument("--limit", type=int, default=24, help="time on the first N images (default 24)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per metric and image; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", help="also write the table, with the command and the git revision, to a Markdown file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quality.check_available(quality.REGISTRY)
    pairs = decoded_pairs(Path(args.images), args.limit)
    load_before = os.getloadavg()[0]
    rows, values = costs(pairs, args.repeats)
    load = max(load_before, os.getloadavg()[0])
    cores = os.cpu_count()
    ctc, default = np.mean(rows["set ctc"]) / 1e3, np.mean(rows["set default"]) / 1e3
    notes = [f"torch threads: {torch.get_num_threads()}; load average {load:.2f} on {cores} cores"
             + (" — above the cores: other jobs shared them, so these times overstate the metrics' cost"
                if load > (cores or 1) else ""),
             f"a benchmark measures its metrics once per image and rate point: on 24 such images one rate point "
             f"costs ≈ {24 * default:.0f} s of metrics with `metrics=default` and ≈ {24 * ctc:.0f} s with "
             "`metrics=ctc`"]
    publish(table(rows, values, pairs), args.out, "Cost of the quality metrics", "licbench.tools.metric_cost",
            notes)


if __name__ == "__main__":
    main()
