"""Published rate–distortion curves ("references"), drawn and tabled beside measured ones, never
mixed with them.

A reference is a file in CompressAI's results schema, ``{"name", "description", "results": {"bpp":
[...], "psnr-rgb": [...], "ms-ssim-rgb": [...]}}``: one shipped with licbench (``licbench/references/
<dataset>/<stem>.json``, named by its stem, e.g. ``paper-balle2017``) or any path a user gives. Its
dataset is the file's ``"dataset"`` key, else the name of the folder it is in; a reference on another
dataset than the benchmark's is refused, and so is a malformed file, each in one line naming the file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from licbench.core.codec import CodecError

SHIPPED = Path(__file__).resolve().parents[1] / "references"
METRICS = {"psnr-rgb": "psnr", "ms-ssim-rgb": "ms_ssim"}  # CompressAI's keys -> RD table columns


@dataclass(frozen=True)
class Reference:
    name: str  # the label in tables and plots: the file's stem
    dataset: str
    description: str
    curve: pd.DataFrame  # bpp and the RD table's metric columns, NaN where the source publishes none


def shipped(dataset: str) -> list[str]:
    """The stems of the references licbench ships for ``dataset``."""
    return sorted(path.stem for path in (SHIPPED / dataset).glob("*.json"))


def locate(spec: str, dataset: str) -> Path:
    """A path as given, or a shipped reference's stem for ``dataset``."""
    path = Path(spec).expanduser()
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise CodecError(f"reference {spec}: no such file")
        return path
    if not (SHIPPED / dataset / f"{spec}.json").is_file():
        raise CodecError(f"unknown reference {spec!r} for {dataset}: give a .json path or one of "
                         + (", ".join(shipped(dataset)) or "none (licbench ships none for this dataset)"))
    return SHIPPED / dataset / f"{spec}.json"


def read_reference(path: Path) -> Reference:
    """The curve in the CompressAI-schema file at ``path``, on the dataset the file states; a one-line
    CodecError naming the file when it is malformed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CodecError(f"reference {path}: not a readable JSON file ({err})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or "bpp" not in results:
        raise CodecError(f"reference {path}: no results.bpp (expected CompressAI's schema "
                         '{"name", "results": {"bpp": [...], "psnr-rgb": [...]}})')
    curve = {"bpp": _numbers(path, "bpp", results["bpp"])}
    for key, column in METRICS.items():
        if key in results:
            curve[column] = _numbers(path, key, results[key])
            if len(curve[column]) != len(curve["bpp"]):
                raise CodecError(f"reference {path}: {len(curve['bpp'])} bpp values but {len(curve[column])} {key}")
    if len(curve) == 1:
        raise CodecError(f"reference {path}: no quality metric (expected one of {', '.join(METRICS)})")
    frame = pd.DataFrame(curve).reindex(columns=["bpp", *METRICS.values()]).sort_values("bpp", ignore_index=True)
    return Reference(path.stem, str(data.get("dataset") or path.parent.name),
                     str(data.get("description") or data.get("name") or ""), frame)


def load_reference(spec: str, dataset: str) -> Reference:
    """A reference named on the command line: refused unless it is on ``dataset``."""
    reference = read_reference(locate(spec, dataset))
    if reference.dataset != dataset:
        raise CodecError(f"reference {locate(spec, dataset)} is on {reference.dataset!r}, the benchmark on "
                         f"{dataset!r}: compare curves on one dataset (the file's \"dataset\" key, else its folder, "
                         "names it)")
    return reference


def paper_curve(spec: str, dataset: str) -> tuple[Reference | None, str]:
    """A codec's published curve (its config's ``paper:``) on ``dataset``, or why there is none: a
    paper that published no curve on this dataset is a blank with its reason, not an error."""
    path = Path(spec).expanduser()
    if not (path.suffix == ".json" or path.is_file()) and not (SHIPPED / dataset / f"{spec}.json").is_file():
        return None, f"no published {spec} curve on {dataset}"
    reference = read_reference(locate(spec, dataset))
    if reference.dataset != dataset:
        return None, f"{spec} is on {reference.dataset}, not {dataset}"
    return reference, ""


def load_references(specs, dataset: str) -> list[Reference]:
    references = [load_reference(str(spec), dataset) for spec in specs or []]
    names = [reference.name for reference in references]
    if len(set(names)) != len(names):
        raise CodecError(f"references {names}: two files share a name; rename one")
    return references


def _numbers(path: Path, key: str, values) -> list[float]:
    if not isinstance(values, list) or not values:
        raise CodecError(f"reference {path}: results.{key} must be a non-empty list of numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise CodecError(f"reference {path}: results.{key} holds values that are not finite numbers")
    return [float(v) for v in values]
