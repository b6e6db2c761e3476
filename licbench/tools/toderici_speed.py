"""Toderici 2017's coding time and memory, as licbench codes it now and as it did before (figures, not a
test): ``python -m licbench.tools.toderici_speed --image kodim01.png --out results/toderici_speed.md``.

"Before" is the same codec with the earlier behaviour restored by its knobs: decoding pinned to one
thread (``LearnedCodec.decode_threads = 1``), the recurrent units over the whole image at once
(``band_rows: null``) and the benchmark's estimate as a second run of the networks. "Now" decodes on the
process's threads (thread-invariant convolutions), in bands, and reads the estimate off the stream.
Both are timed in the same run, alternating, best of ``--repeats``, at each ``--iterations`` k, so the
ratio holds on a noisy machine. With ``--large``, each variant codes a 4000×3000 image at k = 2 in a
fresh process and the peak RSS (the whole process's) is recorded, beside that of the process before coding.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from licbench.core.images import load_image
from licbench.core.zoo import named_rate_points
from licbench.lightning_modules.base import LearnedCodec
from licbench.tools.figures import write_figures

VARIANTS = {"before": dict(decode_threads=1, band_rows=None, estimate_from_stream=False),
            "now": dict(decode_threads=None, band_rows=64, estimate_from_stream=True)}


def codec_for(variant: str) -> LearnedCodec:
    model = named_rate_points(["toderici2017"])["toderici2017"][0].model
    model.decode_threads, model.hparams.band_rows = VARIANTS[variant]["decode_threads"], VARIANTS[variant]["band_rows"]
    return model


def point_seconds(model: LearnedCodec, variant: str, x: torch.Tensor, k: int) -> dict[str, float]:
    """Seconds to encode, decode and estimate ``x`` at ``k`` iterations, as the benchmark does."""
    start = time.perf_counter()
    data = model.encode(x, iterations=k)
    encoded = time.perf_counter()
    model.decode(data)
    decoded = time.perf_counter()
    model.estimate_bits(x, data if VARIANTS[variant]["estimate_from_stream"] else None, iterations=k)
    return {"encode": encoded - start, "decode": decoded - encoded, "estimate": time.perf_counter() - decoded}


def ratio(best: dict, parts: list[str]) -> float:
    return sum(best["before"][p] for p in parts) / sum(best["now"][p] for p in parts)


def peak_rss(variant: str) -> tuple[float, float]:
    """GiB of peak RSS of a fresh process before and after coding a 4000×3000 image at k = 2."""
    out = subprocess.run([sys.executable, "-m", "licbench.tools.toderici_speed", "--rss", variant],
                         capture_output=True, text=True, check=True).stdout
    return tuple(json.loads(out.splitlines()[-1]))


def rss_child(variant: str) -> None:
    model = codec_for(variant)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    x = torch.rand(3, 3000, 4000, generator=torch.Generator().manual_seed(0))
    model.decode(model.encode(x, iterations=2))
    print(json.dumps([before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="an image file, e.g. Kodak's kodim01.png")
    parser.add_argument("--iterations", default="4,16", help="comma-separated rate points k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="also the peak RSS at 4000x3000 (minutes)")
    parser.add_argument("--out", help="also write the table, with the command and the git revision, to a Markdown file")
    parser.add_argument("--rss", choices=VARIANTS, help=argparse.SUPPRESS)  # the fresh process of --large
    args = parser.parse_args(argv)
    if args.rss:
        return rss_child(args.rss)
    if not args.image:
        parser.error("--image is required")
    x, _ = load_image(args.image)
    models = {variant: codec_for(variant) for variant in VARIANTS}
    lines = ["| k | variant | encode s | decode s | estimate s | encode+decode s | benchmark point s |",
             "|---|---|---|---|---|---|---|"]
    for k in (int(n) for n in args.iterations.split(",")):
        best = {variant: {} for variant in VARIANTS}
        for _ in range(args.repeats):
            for variant, model in models.items():
                for part, seconds in point_seconds(model, variant, x, k).items():
                    best[variant][part] = min(best[variant].get(part, seconds), seconds)
        for variant, t in best.items():
            lines.append(f"| {k} | {variant} | {t['encode']:.2f} | {t['decode']:.2f} | {t['estimate']:.2f} "
                         f"| {t['encode'] + t['decode']:.2f} | {sum(t.values()):.2f} |")
        lines.append(f"| {k} | before / now | | | | {ratio(best, ['encode', 'decode']):.2f}x "
                     f"| {ratio(best, ['encode', 'decode', 'estimate']):.2f}x |")
        print("\n".join(lines[-3:]), flush=True)
    if args.large:
        lines += ["", "| variant | peak RSS before coding GiB | peak RSS coding 4000x3000, k = 2 GiB |",
                  "|---|---|---|"]
        lines += [f"| {variant} | {before:.2f} | {after:.2f} |"
                  for variant in VARIANTS for before, after in [peak_rss(variant)]]
        print("\n".join(lines[-2:]))
    if args.out:
        write_figures(args.out, "Toderici 2017: coding time and memory, before and now",
                      "licbench.tools.toderici_speed", "\n".join(lines), argv, [
                          f"{torch.get_num_threads()} threads, {x.shape[2]}x{x.shape[1]}, best of {args.repeats}, "
                          "the committed zoo's toderici2017; 'benchmark point': encode + decode + estimate"])


if __name__ == "__main__":
    main()
