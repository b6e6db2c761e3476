"""The benchmark in shards, and their merge.

A shard is a slice of the work: by codec (``codecs=[a],[b]`` in a multirun) and by image
(``data.shard=I/N``: every N-th image of the dataset's images sorted by name, starting at the
I-th). ``licbench benchmark -m ... launcher=local|slurm out_dir=SWEEP`` runs each job into its own
folder ``SWEEP/<the job's overrides>``, resumable as a single run is. ``licbench report
in_dir=SWEEP`` merges them (:func:`merge`): the shards' per-image rows, refusing two shards that
measured one (codec, rate, image) differently and naming the shards that are missing or
unfinished, then writes the same tables, JSON, crops, plots and leaderboard a single benchmark writes.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from licbench.bench import crops
from licbench.core import quality
from licbench.core.codec import CodecError

#: The per-image columns that a shard measured from the bytes and the pixels, besides its metrics
#: (:func:`licbench.core.quality.columns`); the times are not among them (two shards that timed the same
#: row differently measured the same thing).
MEASURED = ["bytes", "bpp"]


def parse(spec: str | None) -> tuple[int, int] | None:
    """``"I/N"`` as ``(I, N)`` with 1 ≤ I ≤ N; None for no shard."""
    if spec in (None, "", "null"):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise CodecError(f"data.shard={spec!r}: give I/N with 1 <= I <= N, e.g. data.shard=1/4")
    return int(match[1]), int(match[2])


def select(images: list[tuple], spec: str | None) -> list[tuple]:
    """The images of shard ``spec`` (all of them for None): a stable split of the names' sorted list."""
    shard = parse(spec)
    if shard is None:
        return images
    index, count = shard
    ordered = sorted(images, key=lambda image: image[0])
    chosen = ordered[index - 1::count]
    if not chosen:
        raise CodecError(f"data.shard={spec}: the dataset has only {len(images)} images")
    return chosen


def shard_dirs(sweep: Path) -> list[Path]:
    """The benchmark folders below ``sweep`` (not ``sweep`` itself): finished or not."""
    found = {path.parent for name in ("codecs.yaml", "per_image.partial.jsonl") for path in sweep.rglob(name)}
    return sorted(path for path in found if path != sweep and ".hydra" not in path.parts)


def _record(folder: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(folder / "codecs.yaml"))


def check_complete(sweep: Path, folders: list[Path]) -> None:
    """Refuse a merge with unfinished shards or a missing image shard of some set of codecs."""
    unfinished = [f for f in folders if not (f / "per_image.csv").is_file() or not (f / "codecs.yaml").is_file()]
    if unfinished:
        raise CodecError("unfinished shards (rerun the same benchmark command to complete them): "
                         + ", ".join(str(f.relative_to(sweep)) for f in unfinished))
    groups: dict[tuple, dict[int, set]] = {}
    for folder in folders:
        record = _record(folder)
        shard = parse(record.get("shard")) or (1, 1)
        groups.setdefault(tuple(sorted(record.get("codecs") or {})), {}).setdefault(shard[1], set()).add(shard[0])
    missing = [f"codecs [{','.join(codecs)}] data.shard={i}/{count}" for codecs, counts in groups.items()
               for count, present in counts.items() for i in range(1, count + 1) if i not in present]
    if missing:
        raise CodecError(f"missing shards in {sweep}: {', '.join(missing)} (run them, then merge again)")


def merged_rows(sweep: Path, folders: list[Path], file: str) -> pd.DataFrame:
    """``file`` (per_image.csv, failures.csv) of every shard, one row per (codec, rate, image): a row
    two shards both measured is kept once if they agree, refused with their names if they do not."""
    tables = []
    for folder in folders:
        if (folder / file).is_file() and (folder / file).stat().st_size:
            tables.append(pd.read_csv(folder / file, float_precision="round_trip").assign(_shard=folder.name))
    if not tables:
        return pd.DataFrame()
    rows = pd.concat(tables, ignore_index=True)
    keys = ["codec", "rate", "image"]
    if file == "per_image.csv":
        twice = rows[rows.duplicated(keys, keep=False)]
        measured = MEASURED + quality.columns(rows.columns)
        conflicts = twice.groupby(keys).filter(lambda group: len(group[measured].drop_duplicates()) > 1)
        if len(conflicts):
            first = conflicts.groupby(keys)._shard.apply(lambda s: " and ".join(sorted(s))).head(3)
            raise CodecError(f"shards of {sweep} measured the same rows differently: "
                             + "; ".join(f"{c} @ {r} on {i} in {where}" for (c, r, i), where in first.items()))
    return rows.drop_duplicates(keys).drop(columns="_shard").reset_index(drop=True)


def merge(sweep: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict, str | None, list[str]]:
    """The per-image rows, failures, codec facts, dataset and commands of the shards below ``sweep``."""
    folders = shard_dirs(sweep)
    check_complete(sweep, folders)
    records = [_record(f) for f in folders]
    datasets = {r.get("dataset") for r in records}
    if len(datasets) > 1:
        raise CodecError(f"shards of {sweep} are of different datasets: {', '.join(sorted(map(str, datasets)))}")
    facts: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: parse(r.get("shard")) or (1, 1)):  # image shard 1's timing first
        for codec, info in (record.get("codecs") or {}).items():
            facts.setdefault(codec, info)
    commands = [(f / "command.txt").read_text().strip() for f in folders if (f / "command.txt").is_file()]
    return (merged_rows(sweep, folders, "per_image.csv"), merged_rows(sweep, folders, "failures.csv"), facts,
            datasets.pop(), commands)


def write_merge(sweep: Path, out_dir: Path, command: str, revision: str, anchor: str) -> None:
    """The merged shards of ``sweep``: their tables, JSON, summary, codec index and crops in ``out_dir``
    (``sweep`` itself, or a folder of its own), as a single benchmark writes them (the leaderboard follows
    in ``licbench report``)."""
    from licbench.bench import report
    from licbench.bench.benchmark import FAILURE_COLUMNS, aggregate, columns

    per_image, failures, facts, dataset, commands = merge(sweep)
    if per_image.empty:
        raise CodecError(f"the shards of {sweep} hold no rows")
    order = {codec: i for i, codec in enumerate(dict.fromkeys(per_image.codec))}
    per_image = per_image.reindex(columns=columns(quality.columns(per_image.columns))).sort_values(
        ["codec", "rate", "image"], key=lambda c: c.map(order) if c.name == "codec" else c, kind="stable")
    failures = failures.reindex(columns=FAILURE_COLUMNS)
    notes = [f"merged from {len(commands)} shards: " + " | ".join(c.replace("\n", " ") for c in commands)]
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_tables(out_dir, per_image.reset_index(drop=True), aggregate(per_image), failures, dataset, command,
                        revision, notes, [], anchor)
    report.write_index(out_dir, dataset, facts)
    merge_crops(sweep, out_dir)


def merge_crops(sweep: Path, out_dir: Path) -> None:
    """The crops of the shards of ``sweep`` that hold the crop image (one per codec shard) as one index in
    ``out_dir/crops``, codecs in the shards' order."""
    found = [(f, json.loads((f / "crops" / "crops.json").read_text())) for f in shard_dirs(sweep)
             if (f / "crops" / "crops.json").is_file()]
    if not found:
        return
    images = {index["image"] for _, index in found}
    if len(images) > 1:
        raise CodecError(f"shards of {sweep} cropped different images ({', '.join(sorted(images))}): rerun them "
                         "with one crop_image=")
    folder = out_dir / "crops"
    folder.mkdir(exist_ok=True)
    targets: dict[str, dict[str, dict]] = {}  # per target, each crop file's entry once, in the shards' order
    for shard, index in found:
        for target, entries in index["targets"].items():
            for entry in entries:
                if targets.setdefault(target, {}).setdefault(entry["file"], entry) is entry:
                    shutil.copyfile(shard / "crops" / entry["file"], folder / entry["file"])
    crops.write_index(folder, {**found[0][1], "targets": {t: list(e.values()) for t, e in targets.items()}})
