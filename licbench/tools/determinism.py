"""Determinism check: ``python -m licbench.tools.determinism --images DIR --codecs jpeg,balle2017 [--threads 1,2]
--out OUT.md``.

For each codec (a codec name as in ``codecs=[...]``, at its lowest and highest rate points, loaded as
``licbench benchmark`` loads them) and each image of DIR: encode twice in this process — the
bytes must be identical — and decode; then decode the same streams in a fresh process per thread
count of ``--threads`` and compare the decoded float tensors bit for bit. Each fresh process also
times its decodes as licbench decodes (on the process's threads, thread-invariant convolutions) against
decodes pinned to one thread (``LearnedCodec.decode_threads = 1``, licbench's earlier mechanism) and against
decodes on the backends PyTorch picks (what the thread invariance costs; their pixels are not compared). Prints
and writes a Markdown table (command and git revision on top); the exit status is 1 if anything differs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import torch

from licbench.core.codec import CodecError
from licbench.core.images import IMAGE_SUFFIXES, load_image
from licbench.core.zoo import extreme_points, named_rate_points
from licbench.lightning_modules.base import LearnedCodec, ThreadInvariantConvolutions
from licbench.tools.figures import write_figures

FRESH_SECONDS = 3600  # a fresh process decoding every stream
#: decode modes timed in the fresh process: LearnedCodec.decode_threads (None: as licbench decodes) and
#: whether ThreadInvariantConvolutions keeps convolutions off oneDNN
MODES = {"pinned": (1, True), "licbench": (LearnedCodec.decode_threads, True),
         "torch": (LearnedCodec.decode_threads, False)}


@dataclass
class Row:
    codec: str
    rates: list[str]
    images: int
    streams: list[tuple[int, str, str]] = field(default_factory=list)  # rate point, stream file, label
    byte_mismatches: list[str] = field(default_factory=list)
    pixel_mismatches: dict[int, list[str]] = field(default_factory=dict)  # thread count: streams
    decode_ms: dict[int, list[str]] = field(default_factory=dict)  # thread count: decode_cost of each mode of MODES


def image_files(directory: str | Path) -> list[Path]:
    files = (sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
             if Path(directory).is_dir() else [])
    if not files:
        raise CodecError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {directory}")
    return files


def code_here(name: str, images: list[Path], work: Path) -> Row:
    """Encode every image twice at each extreme rate point, write the stream and this process's decoding."""
    points = extreme_points(named_rate_points([name])[name])
    row = Row(name, [str(point.rate) for point in points], len(images))
    with torch.inference_mode():
        for i, point in enumerate(points):
            for path in images:
                x, _ = load_image(path)
                label, stream = f"{path.name} @ {point.rate}", work / f"{name}-{i}-{path.stem}.bin"
                data = point.encode(x)
                if point.encode(x) != data:
                    row.byte_mismatches.append(label)
                stream.write_bytes(data)
                torch.save(point.decode(data).clone(), stream.with_suffix(".here.pt"))
                row.streams.append((i, str(stream), label))
    return row


def decode_fresh(rows: list[Row], work: Path, threads: int) -> None:
    """Decode every stream again in a fresh process with ``threads`` CPU threads; record the pixel
    mismatches and the decode times."""
    manifest = work / "manifest.json"
    manifest.write_text(json.dumps({row.codec: row.streams for row in rows}))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "licbench.tools.determinism", "--decode", str(manifest),
                           "--threads", str(threads)], capture_output=True, text=True, timeout=FRESH_SECONDS, env=env)
    if proc.returncode != 0:
        raise CodecError(f"the fresh decoding process failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    cells = json.loads((work / f"decode-ms-{threads}.json").read_text())
    for row in rows:
        row.decode_ms[threads] = cells[row.codec]
        row.pixel_mismatches[threads] = []
        for _, stream, label in row.streams:
            here, fresh = (torch.load(Path(stream).with_suffix(end), weights_only=True)
                           for end in (".here.pt", f".fresh{threads}.pt"))
            if not torch.equal(here, fresh):
                row.pixel_mismatches[threads].append(label)


def torch_backends(invariant: bool):
    """Within the block, :class:`ThreadInvariantConvolutions` as it is, or (``invariant=False``) a pass-through
    that leaves every convolution on the backend PyTorch picks."""
    if invariant:
        return nullcontext()
    return mock.patch.object(ThreadInvariantConvolutions, "__torch_function__",
                             lambda self, func, types, args=(), kwargs=None: func(*args, **(kwargs or {})))


def decode_cost(times: list[float | None]) -> str:
    """A mode's cell: the median decode ms, or how many of its streams failed to decode."""
    failed = times.count(None)
    return f"fails on {failed} of {len(times)}" if failed else f"{1000 * statistics.median(times):.0f}"


def decode_manifest(manifest: str, threads: int) -> None:
    """The fresh process: decode each listed stream with its codec's rate point and save the tensor
    decoded as licbench decodes; time each decode in every mode of :data:`MODES`."""
    torch.set_num_threads(threads)
    codecs, cells = json.loads(Path(manifest).read_text()), {}
    with torch.inference_mode():
        for name, streams in codecs.items():
            points, times = extreme_points(named_rate_points([name])[name]), {mode: [] for mode in MODES}
            for point, stream, _ in streams:
                data = Path(stream).read_bytes()
                for mode, (decode_threads, invariant) in MODES.items():
                    with mock.patch.object(LearnedCodec, "decode_threads", decode_threads), torch_backends(invariant):
                        start = time.perf_counter()
                        try:
                            x_hat = points[point].decode(data)
                        except CodecError:  # on torch's backends: entropy decoding from other scales than the encoder's
                            if invariant:
                                raise
                            times[mode].append(None)
                            continue
                        times[mode].append(time.perf_counter() - start)
                    if mode == "licbench":
                        torch.save(x_hat.clone(), Path(stream).with_suffix(f".fresh{threads}.pt"))
            cells[name] = [decode_cost(times[mode]) for mode in MODES]
    (Path(manifest).parent / f"decode-ms-{threads}.json").write_text(json.dumps(cells))


def markdown(rows: list[Row], threads: list[int]) -> str:
    counts = " | ".join(f"pixel mismatches, {n} thread{'s' * (n > 1)}" for n in threads)
    times = " | ".join(f"decode ms, {n} thr.: pinned to 1 / licbench / torch's backends" for n in threads)
    lines = [f"| codec | rate points | images | streams | byte mismatches | {counts} | {times} |",
             "|---|---|---|---|---|" + "---|" * 2 * len(threads)]
    for r in rows:
        cost = " | ".join(" / ".join(r.decode_ms[n]) for n in threads)
        lines.append(f"| {r.codec} | {', '.join(r.rates)} | {r.images} | {len(r.streams)} | {len(r.byte_mismatches)} "
                     f"| {' | '.join(str(len(r.pixel_mismatches[n])) for n in threads)} | {cost} |")
    for r in rows:
        problems = [("encodes to other bytes the second time", r.byte_mismatches)]
        problems += [(f"decodes to other pixels in a fresh process with {n} threads", r.pixel_mismatches[n])
                     for n in threads]
        lines += [f"\n- {r.codec} {what}: {', '.join(labels)}" for what, labels in problems if labels]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", help="a directory of images (e.g. Kodak)")
    parser.add_argument("--limit", type=int, help="only the first N images, in name order (for slow codecs)")
    parser.add_argument("--codecs", help="comma-separated codec names (conf/codec/ or conf/model/)")
    parser.add_argument("--out", help="also write the table, with the command and the git revision, to a Markdown file")
    parser.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts of the fresh decoders")
    parser.add_argument("--decode", metavar="MANIFEST", help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args(argv)
    threads = [int(n) for n in args.threads.split(",") if n.strip()]
    if not threads or min(threads) < 1:
        parser.error("--threads must list thread counts of at least 1")
    if args.decode:
        decode_manifest(args.decode, threads[0])
        return 0
    if not (args.images and args.codecs):
        parser.error("--images and --codecs are required")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    images = image_files(args.images)[:args.limit]
    with tempfile.TemporaryDirectory() as work:
        rows = []
        for name in (name for name in args.codecs.split(",") if name):
            rows.append(code_here(name, images, Path(work)))
            print(f"{name}: {len(rows[-1].streams)} streams, {len(rows[-1].byte_mismatches)} byte mismatches",
                  flush=True)
        for count in threads:
            decode_fresh(rows, Path(work), count)
    table = markdown(rows, threads)
    print(table)
    if args.out:
        write_figures(args.out, "Determinism", "licbench.tools.determinism", table, argv, [
            f"each image encoded twice in one process with {torch.get_num_threads()} threads (byte mismatches), "
            "decoded there and again in a fresh process per thread count (pixel mismatches: decoded float tensors "
            "compared bit for bit); lowest and highest rate point of each codec",
            "decode ms: median per stream in the fresh process, 'licbench' as licbench decodes (on the "
            "process's threads, thread-invariant convolutions), 'pinned to 1' with learned codecs' decoding on "
            "one thread (LearnedCodec.decode_threads = 1, the earlier mechanism), 'torch's backends' on the process's "
            "threads with every convolution on the backend PyTorch picks (what the thread invariance costs; the "
            "pixels of that mode are not compared; 'fails': its entropy decoding, driven by other scales than the "
            "encoder's, found the stream corrupt)"])
    return int(any(r.byte_mismatches or any(r.pixel_mismatches.values()) for r in rows))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CodecError as err:
        sys.exit(f"licbench.tools.determinism: error: {err}")
