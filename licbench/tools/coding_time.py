"""Encode+decode time of each codec on one image (figures, not a test):
``python -m licbench.tools.coding_time --image kodim01.png --codecs jpeg,theis2017,cheng2018 --out FILE``.

Codecs are named and loaded (with the committed zoo) as in ``licbench benchmark codecs=[...]``; each
is timed at the middle of its rate grid, best of ``--repeats`` runs (the first run is a warm-up).
"""
from __future__ import annotations

import argparse
import time

import torch

from licbench.bench import complexity
from licbench.core.images import load_image
from licbench.core.zoo import named_rate_points
from licbench.tools.figures import write_figures


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def time_codec(codec, x: torch.Tensor, repeats: int) -> dict:
    data = codec.encode(x)
    with torch.inference_mode():
        encode = best_time(lambda: codec.encode(x), repeats)
        decode = best_time(lambda: codec.decode(data), repeats)
    return {"rate": codec.rate, "bpp": 8 * len(data) / (x.shape[1] * x.shape[2]), "encode": encode, "decode": decode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="an image file, e.g. Kodak's kodim01.png")
    parser.add_argument("--codecs", required=True, help="comma-separated codec names (conf/codec/ or conf/model/)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out",
                        help="also write the table, with this command and the git revision, to a Markdown file")
    args = parser.parse_args()
    x, _ = load_image(args.image)
    codecs = named_rate_points(args.codecs.split(","))
    lines = [f"| codec ({torch.get_num_threads()} threads, {x.shape[2]}x{x.shape[1]}, best of {args.repeats}) "
             "| rate point | bpp | parameters | encode | decode | encode+decode |", "|---|---|---|---|---|---|---|"]
    for name, points in codecs.items():
        codec = points[len(points) // 2]
        t, params = time_codec(codec, x, args.repeats), complexity.parameters(codec)
        lines.append(f"| {name} | {t['rate']} | {t['bpp']:.3f} | {'–' if params is None else f'{params:,}'} "
                     f"| {t['encode'] * 1e3:.0f} ms | {t['decode'] * 1e3:.0f} ms "
                     f"| {(t['encode'] + t['decode']):.2f} s |")
        print(lines[-1], flush=True)
    if args.out:
        write_figures(args.out, "Encode+decode time per image", "licbench.tools.coding_time", "\n".join(lines))


if __name__ == "__main__":
    main()
