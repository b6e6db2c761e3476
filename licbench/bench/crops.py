"""Side-by-side crops of one benchmark image, every codec at ≈ 0.25 and ≈ 0.5 bpp — for the
leaderboard page, since people would rather look than read. Each codec shows its rate point
whose bpp on that image is nearest the target (in log bpp); captions give the real figures."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import torch

from licbench.core.atomic import write_atomic
from licbench.core.codec import Codec, CodecError
from licbench.core.images import save_image

TARGETS = (0.25, 0.5)
ORIGINAL = "original.png"  # the uncoded crop


def crop_file(label: str, target) -> str:
    """The file, under ``crops/``, of codec ``label``'s crop at ``target`` bpp."""
    return f"{label}_{target}.png"


def nearest(rows: pd.DataFrame, target: float) -> int:
    """Position of the row whose bpp is nearest ``target`` in log scale."""
    return int((rows.bpp.map(math.log) - math.log(target)).abs().to_numpy().argmin())


def crop_image(images: list[tuple[str, torch.Tensor, str]], name: str | None) -> str | None:
    """The crops' image: ``name``, or the first of the dataset's ``images`` (all of them, before a shard takes
    its slice, so that every shard agrees on it); a name the dataset lacks is refused before anything is
    measured."""
    names = [n for n, _, _ in images]
    if name is not None and name not in names:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise CodecError(f"crop_image={name} is not among the dataset's images ({shown}): name one of them, or "
                         "crop_image=null for the first")
    return name if name is not None else next(iter(names), None)


def write_crops(codecs: dict[str, list[Codec]], images: list[tuple[str, torch.Tensor, str]], per_image: pd.DataFrame,
                out_dir: Path, image: str | None, size: int = 192) -> dict | None:
    """PNG crops (centre ``size``²) of ``image`` under ``out_dir/crops`` and their index ``crops.json``; returns
    the index, or None where ``image`` is not among ``images`` (an image shard that does not hold it)."""
    x = next((x for n, x, _ in images if n == image), None)
    if x is None:
        shutil.rmtree(out_dir / "crops", ignore_errors=True)  # an earlier run's crops of another image
        return None
    folder = out_dir / "crops"
    folder.mkdir(parents=True, exist_ok=True)
    height, width = x.shape[1:]
    top, left = max((height - size) // 2, 0), max((width - size) // 2, 0)
    window = (slice(None), slice(top, top + size), slice(left, left + size))
    save_image(x[window], folder / ORIGINAL)
    index = {"image": image, "window": [top, left, size], "targets": {}}
    rows = per_image[per_image.image == image]
    for target in TARGETS:
        entries = [{"file": ORIGINAL, "caption": "original"}]
        for label, points in codecs.items():
            curve = rows[rows.codec == label]  # one row per rate point that did not fail on this image
            if curve.empty:
                continue
            row = curve.iloc[nearest(curve, target)]
            codec = next(codec for codec in points if codec.rate == row.rate)
            file = crop_file(label, target)
            save_image(codec.decode(codec.encode(x))[window], folder / file)
            entries.append({"file": file, "caption": f"{label} @ {row.rate}: {row.bpp:.3f} bpp, {row.psnr:.2f} dB"})
        index["targets"][str(target)] = entries
    return write_index(folder, index)


def write_index(folder: Path, index: dict) -> dict:
    """``index`` as ``folder/crops.json``, and the crops it does not name removed from ``folder`` (an earlier
    run's crops of codecs this one does not have); returns the index."""
    write_atomic(folder / "crops.json", json.dumps(index, indent=2))
    kept = {entry["file"] for entries in index["targets"].values() for entry in entries}
    for stale in folder.glob("*.png"):
        if stale.name not in kept:
            stale.unlink()
    return index
