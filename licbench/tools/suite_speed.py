"""Time to benchmark the classic codecs from the command line (figures, not a test):
``python -m licbench.tools.suite_speed --images DIR/kodak --out FILE``.

Wall-clock time of ``licbench benchmark`` with JPEG (19 qualities) and with JPEG + JPEG 2000,
against CompressAI's ``python -m compressai.utils.bench jpeg`` on the same images and qualities
(one process each, run one after another; both compute PSNR and MS-SSIM per image). Ours also
writes its tables, plots, crops and leaderboard; those are in the time.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from licbench.tools.figures import publish

LICBENCH = str(Path(sys.executable).parent / "licbench")


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def ours(images: Path, codecs: str, out: Path) -> list[str]:
    return [LICBENCH, "benchmark", "data=kodak", f"data.root={images}", f"codecs=[{codecs}]", f"out_dir={out}",
            "logger=none", f"hydra.run.dir={out / 'hydra'}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="the Kodak directory (24 PNGs)")
    parser.add_argument("--out",
                        help="also write the table, with this command and the git revision, to a Markdown file")
    args = parser.parse_args()
    images = Path(args.images).resolve()
    with initialize_config_module("licbench.conf", version_base=None):
        qualities = ",".join(str(q) for q in compose("benchmark", overrides=["+codec=jpeg"]).codec.grid)
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = wall_time(ours(images, "jpeg", Path(tmp) / "jpeg"))
        both = wall_time(ours(images, "jpeg,jpeg2000", Path(tmp) / "both"))
        reference = wall_time([sys.executable, "-m", "compressai.utils.bench", "jpeg", str(images), "-q", qualities])
    count = len(list(images.glob("*.png")))
    table = "\n".join([
        f"| {count} images, {torch.get_num_threads()} threads, wall clock | time "
        "| ratio to compressai.utils.bench jpeg |",
        "|---|---|---|",
        f"| `licbench benchmark codecs=[jpeg]` (19 qualities) | {jpeg:.1f} s | {jpeg / reference:.2f} |",
        f"| `licbench benchmark codecs=[jpeg,jpeg2000]` (19 + 10 rate points) "
        f"| {both:.1f} s | {both / reference:.2f} |",
        f"| `python -m compressai.utils.bench jpeg -q {qualities}` | {reference:.1f} s | 1.00 |"])
    publish(table, args.out, "Benchmark-stage speed", "licbench.tools.suite_speed")


if __name__ == "__main__":
    main()
