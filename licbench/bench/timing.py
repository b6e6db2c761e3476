"""The timing pass: the leaderboard's encode and decode ms/MP, measured apart from the RD loop.

The RD loop times every image once, interleaved with metrics and whatever else the machine runs;
those per-image times stay in ``per_image.csv``, marked as the RD loop's. This pass (``timing:``
in the benchmark config, ``timing=off`` to skip it) times each codec at its median rate point on
the first ``images`` images: one warm-up encode and decode per codec and image, excluded; then
``repeats`` rounds in which the codecs take turns (so a burst of load hits them alike), and per
image the best of the rounds. Threads are pinned for the pass, and the load average before and
after is recorded beside the machine's cores: a pass under more load than cores is flagged.
"""
from __future__ import annotations

import os
import time

import torch

from licbench.core.codec import Codec


def median_point(points: list[Codec]) -> Codec:
    """The codec's median rate point: the middle of its points in config order (the lower middle)."""
    return points[(len(points) - 1) // 2]


def seconds(codec: Codec, x: torch.Tensor) -> tuple[float, float]:
    """One encode and one decode of ``x``, in seconds."""
    start = time.perf_counter()
    data = codec.encode(x)
    encoded = time.perf_counter()
    codec.decode(data)
    return encoded - start, time.perf_counter() - encoded


def time_codecs(codecs: dict[str, list[Codec]], images: list[tuple[str, torch.Tensor, str]], settings) -> dict:
    """``{label: {"enc ms/MP", "dec ms/MP", "rate", ...}}`` from the pass ``settings`` (``images``,
    ``repeats``, ``threads``) describes; ``{}`` when it times no image."""
    subset = images[:int(settings.get("images") or 0)]
    repeats = max(1, int(settings.get("repeats") or 1))
    if not subset or not codecs:
        return {}
    threads = int(settings.get("threads") or torch.get_num_threads())
    points = {label: median_point(rate_points) for label, rate_points in codecs.items()}
    before_threads, load_before = torch.get_num_threads(), os.getloadavg()[0]
    torch.set_num_threads(threads)
    best = {label: [[float("inf")] * 2 for _ in subset] for label in points}
    try:
        with torch.inference_mode():
            for label, codec in list(points.items()):  # warm-up, excluded; a codec that fails is not timed
                try:
                    for _, x, _ in subset:
                        seconds(codec, x)
                except Exception:  # the RD loop's failures.csv says why
                    del points[label]
            for _ in range(repeats):
                for label, codec in points.items():  # the codecs take turns
                    for i, (_, x, _) in enumerate(subset):
                        best[label][i] = [min(pair) for pair in zip(best[label][i], seconds(codec, x))]
    finally:
        torch.set_num_threads(before_threads)
    load = round(max(load_before, os.getloadavg()[0]), 2)
    megapixels = sum(x.shape[1] * x.shape[2] for _, x, _ in subset) / 1e6
    pass_facts = {"images": len(subset), "repeats": repeats, "threads": threads, "load": load,
                  "cores": os.cpu_count()}
    return {label: {"rate": str(points[label].rate),
                    "enc ms/MP": round(1e3 * sum(enc for enc, _ in best[label]) / megapixels, 1),
                    "dec ms/MP": round(1e3 * sum(dec for _, dec in best[label]) / megapixels, 1), **pass_facts}
            for label in points}


def timing_text(timed: dict | None) -> str:
    """How a codec's ms/MP were measured, for the leaderboard's cost table."""
    if not timed:
        return "RD loop (each image once, not a timing pass)"
    return (f"timing pass at rate {timed['rate']}: {timed['images']} images, best of {timed['repeats']}, "
            f"{timed['threads']} threads, load {timed['load']} on {timed['cores']} cores")


def overload_warning(facts: dict[str, dict]) -> str | None:
    """A warning for the page when the load during the timing pass was above the machine's cores."""
    passes = [info["timing"] for info in facts.values() if info.get("timing")]
    loaded = [p for p in passes if p["load"] > p["cores"]]
    if not loaded:
        return None
    return (f"the machine's load average during the timing pass ({max(p['load'] for p in loaded)}) was above its "
            f"{loaded[0]['cores']} cores: the ms/MP columns are inflated by other work")
