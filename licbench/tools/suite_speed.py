"""Time to benchmark the classic codecs from the command line (figures, not a test):
``python -m licbench.tools.suite_speed --images DIR/kodak --out FILE``.

Like for like (issue 18, item 4): wall-clock time of ``licbench benchmark codecs=[jpeg]`` against
CompressAI's ``python -m compressai.utils.bench jpeg`` at the same 19 qualities, and of
``codecs=[jpeg2000]`` against ``compressai.utils.bench jpeg2000`` at the same 10 rates (ours asks OpenJPEG
for a bpp, CompressAI's ffmpeg for the compression ratio 24 / bpp of 8-bit RGB), on the same images. Both
compute PSNR and MS-SSIM per image and time encode and decode in their loop (ours: ``timing=off``, no
separate timing pass); ours also writes its tables, plots, crops and leaderboard, which are in the time.
Each pair runs one after the other, ours first, on the threads the command was given. Last, the JPEG 2000
run again with ``metrics=ctc``: what JPEG AI's metrics cost a benchmark, against the default pair.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from licbench.tools.figures import publish

LICBENCH = str(Path(sys.executable).parent / "licbench")
RGB_BITS = 24  # bits per pixel of the 8-bit RGB images both suites read


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def ours(images: Path, codec: str, out: Path, metrics: str = "default") -> list[str]:
    return [LICBENCH, "benchmark", "data=folder", f"data.root={images}", f"codecs=[{codec}]", f"metrics={metrics}",
            f"out_dir={out}", "logger=none", "timing=off", f"hydra.run.dir={out / 'hydra'}"]


def compressai(images: Path, codec: str, qualities: list) -> list[str]:
    return [sys.executable, "-m", "compressai.utils.bench", codec, str(images), "-q", ",".join(map(str, qualities))]


def grid(codec: str) -> list:
    with initialize_config_module("licbench.conf", version_base=None):
        return list(compose("benchmark", overrides=[f"+codec={codec}"]).codec.grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="the Kodak directory (24 PNGs)")
    parser.add_argument("--out",
                        help="also write the table, with this command and the git revision, to a Markdown file")
    args = parser.parse_args()
    images = Path(args.images).resolve()
    jpeg = grid("jpeg")
    bpps = grid("jpeg2000")
    ratios = [round(RGB_BITS / bpp) for bpp in bpps]  # OpenJPEG's compression ratio for the same bpp
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        times = {"jpeg": (wall_time(ours(images, "jpeg", Path(tmp) / "jpeg")),
                          wall_time(compressai(images, "jpeg", jpeg))),
                 "jpeg2000": (wall_time(ours(images, "jpeg2000", Path(tmp) / "jpeg2000")),
                              wall_time(compressai(images, "jpeg2000", ratios)))}
        ctc = wall_time(ours(images, "jpeg2000", Path(tmp) / "ctc", "ctc"))
    load = max(load_before, os.getloadavg()[0])
    count = len(list(images.glob("*.png")))
    rows = {"jpeg": (f"{len(jpeg)} qualities {min(jpeg)}–{max(jpeg)}", f"-q {','.join(map(str, jpeg))}`"),
            "jpeg2000": (f"{len(bpps)} rates {min(bpps)}–{max(bpps)} bpp",
                         f"-q {','.join(map(str, ratios))}`, the ratio 24 / bpp")}
    lines = [f"| {count} images, {torch.get_num_threads()} threads, wall clock | licbench | compressai.utils.bench "
             "| licbench / compressai |", "|---|---|---|---|"]
    for codec, (mine, theirs) in times.items():
        points, flags = rows[codec]
        lines.append(f"| {codec}, {points} (compressai: `{codec} {flags}) | {mine:.1f} s | {theirs:.1f} s "
                     f"| {mine / theirs:.2f} |")
    lines += ["", "| the same JPEG 2000 run, by metrics | licbench | ratio to `metrics=default` |", "|---|---|---|",
              f"| `metrics=default` (PSNR, MS-SSIM) | {times['jpeg2000'][0]:.1f} s | 1.00 |",
              f"| `metrics=ctc` (JPEG AI's 13) | {ctc:.1f} s | {ctc / times['jpeg2000'][0]:.2f} |"]
    notes = [f"load average {load:.2f} on {os.cpu_count()} cores (the higher of before and after)",
             "both compute PSNR and MS-SSIM per image; licbench runs with timing=off (no separate timing pass)"]
    publish("\n".join(lines), args.out, "Benchmark-stage speed", "licbench.tools.suite_speed", notes)


if __name__ == "__main__":
    main()
