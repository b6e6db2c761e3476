"""Determinism check: ``python -m licbench.tools.determinism --images DIR --codecs jpeg,balle2017 --out OUT.md``.

For each codec (a codec name as in ``codecs=[...]``, at its lowest and highest rate points, loaded as
``licbench benchmark`` loads them) and each image of DIR: encode twice in this process — the
bytes must be identical — and decode; then decode the same streams in a fresh process and
compare the decoded float tensors bit for bit. Prints and writes a Markdown table (command and
git revision on top); the exit status is 1 if anything differs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from licbench.core.codec import CodecError
from licbench.core.images import IMAGE_SUFFIXES, load_image
from licbench.core.zoo import extreme_points, named_rate_points
from licbench.tools.figures import write_figures

FRESH_SECONDS = 3600  # a fresh process decoding every stream


@dataclass
class Row:
    codec: str
    rates: list[str]
    images: int
    streams: list[tuple[int, str, str]] = field(default_factory=list)  # rate point, stream file, label
    byte_mismatches: list[str] = field(default_factory=list)
    pixel_mismatches: list[str] = field(default_factory=list)


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


def decode_fresh(rows: list[Row], work: Path) -> None:
    """Decode every stream again in a fresh process and record the pixel mismatches."""
    manifest = work / "manifest.json"
    manifest.write_text(json.dumps({row.codec: row.streams for row in rows}))
    proc = subprocess.run([sys.executable, "-m", "licbench.tools.determinism", "--decode", str(manifest)],
                          capture_output=True, text=True, timeout=FRESH_SECONDS)
    if proc.returncode != 0:
        raise CodecError(f"the fresh decoding process failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    for row in rows:
        for _, stream, label in row.streams:
            here, fresh = (torch.load(Path(stream).with_suffix(end), weights_only=True)
                           for end in (".here.pt", ".fresh.pt"))
            if not torch.equal(here, fresh):
                row.pixel_mismatches.append(label)


def decode_manifest(manifest: str) -> None:
    """The fresh process: decode each listed stream with its codec's rate point and save the tensor."""
    codecs = json.loads(Path(manifest).read_text())
    with torch.inference_mode():
        for name, streams in codecs.items():
            points = extreme_points(named_rate_points([name])[name])
            for point, stream, _ in streams:
                torch.save(points[point].decode(Path(stream).read_bytes()).clone(),
                           Path(stream).with_suffix(".fresh.pt"))


def markdown(rows: list[Row]) -> str:
    lines = ["| codec | rate points | images | streams | byte mismatches | pixel mismatches |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.codec} | {', '.join(r.rates)} | {r.images} | {len(r.streams)} | {len(r.byte_mismatches)} "
                     f"| {len(r.pixel_mismatches)} |")
    for r in rows:
        for what, labels in (("encodes to other bytes the second time", r.byte_mismatches),
                             ("decodes to other pixels in a fresh process", r.pixel_mismatches)):
            if labels:
                lines += ["", f"- {r.codec} {what}: {', '.join(labels)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", help="a directory of images (e.g. Kodak)")
    parser.add_argument("--limit", type=int, help="only the first N images, in name order (for slow codecs)")
    parser.add_argument("--codecs", help="comma-separated codec names (conf/codec/ or conf/model/)")
    parser.add_argument("--out", help="also write the table, with the command and the git revision, to a Markdown file")
    parser.add_argument("--decode", metavar="MANIFEST", help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args(argv)
    if args.decode:
        decode_manifest(args.decode)
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
        decode_fresh(rows, Path(work))
    table = markdown(rows)
    print(table)
    if args.out:
        write_figures(args.out, "Determinism", "licbench.tools.determinism", table, argv, [
            "each image encoded twice in one process (byte mismatches), decoded there and again in a fresh process "
            "(pixel mismatches: decoded float tensors compared bit for bit); "
            "lowest and highest rate point of each codec"])
    return int(any(r.byte_mismatches or r.pixel_mismatches for r in rows))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CodecError as err:
        sys.exit(f"licbench.tools.determinism: error: {err}")
