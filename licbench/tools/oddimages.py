"""Odd input files through every codec's command-line path: tiny and huge sizes, gray, alpha,
palette, 16-bit, CMYK and EXIF-rotated files.

Each codec × image runs ``licbench encode`` then ``licbench decode`` (the CLI's own ``main``)
in one child process: its peak RSS comes from ``wait4``, and an address-space limit makes a
codec that would exhaust memory fail instead of the machine. A cell says ``ok`` (decoded at
the loaded input's size), ``refused`` (a one-line ``licbench: error``) or ``CRASH`` (anything
else)::

    python -m licbench.tools.oddimages --codecs jpeg,balle2017 --out results/robustness/odd_images.md
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import licbench.core.coding  # noqa: F401  (imported once here, not in every forked cell)
from licbench.core import resolvers
from licbench.core.images import load_image
from licbench.core.zoo import codec_names
from licbench.tools.figures import write_figures

CODECS = codec_names()  # the default: every codec
BIG, BIG_MEGAPIXELS = "4000x3000", 12.0
BASE = (75, 100)  # height, width of the images whose oddity is not their size


def _rgb(height: int, width: int) -> Image.Image:
    """Smooth colour ramps with ripples (numpy: this process must run no torch op, see ``run_cell``)."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width, 2)
    ramps = np.stack([xx, yy, 0.5 + 0.4 * np.sin(20 * (xx + yy))], axis=-1)
    return Image.fromarray(np.round(255 * ramps.clip(0, 1)).astype(np.uint8))


def _save(img: Image.Image, path: Path, **params) -> Path:
    img.save(path, **params)
    return path


def _sixteen_bit(path: Path) -> Path:
    gray = np.asarray(_rgb(*BASE).convert("L"), dtype=np.uint16) * 257  # the full 16-bit range
    return _save(Image.fromarray(gray), path)


def _rgba(path: Path) -> Path:
    img = _rgb(*BASE)
    img.putalpha(Image.linear_gradient("L").resize(img.size))  # transparent to opaque, top to bottom
    return _save(img, path)


def _exif_rotated(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return _save(_rgb(*BASE), path, exif=exif, quality=95)


# kind -> writer of that file (sizes are width × height, as image viewers say)
KINDS = {
    "1x1": lambda p: _save(_rgb(1, 1), p.with_suffix(".png")),
    "7x5": lambda p: _save(_rgb(5, 7), p.with_suffix(".png")),
    "135x240": lambda p: _save(_rgb(240, 135), p.with_suffix(".png")),
    BIG: lambda p: _save(_rgb(3000, 4000), p.with_suffix(".png")),
    "gray (L)": lambda p: _save(_rgb(*BASE).convert("L"), p.with_suffix(".png")),
    "RGBA": lambda p: _rgba(p.with_suffix(".png")),
    "palette (P)": lambda p: _save(_rgb(*BASE).quantize(64), p.with_suffix(".png")),
    "16-bit (I;16)": lambda p: _sixteen_bit(p.with_suffix(".png")),
    "CMYK JPEG": lambda p: _save(_rgb(*BASE).convert("CMYK"), p.with_suffix(".jpg"), quality=95),
    "EXIF-rotated JPEG": lambda p: _exif_rotated(p.with_suffix(".jpg")),
}


def write_images(folder: Path, kinds: list[str]) -> dict[str, Path]:
    """One file per odd kind in ``folder``."""
    return {kind: KINDS[kind](folder / f"odd{i}") for i, kind in enumerate(kinds)}


@dataclass
class Cell:
    verdict: str  # ok, refused: reason, CRASH ...
    peak_mb: float  # peak RSS of the child process
    seconds: dict[str, float]  # wall seconds of each stage that finished, model loading included


def run_cell(encode_args: list[str], decode_args: list[str], work: Path,
             memory_gb: float) -> tuple[int, str, str, float]:
    """``child`` in a process forked from this one (which has imported the CLI, so each cell does
    not pay for importing torch again, and has run no torch op, so no thread pool is forked),
    under an address-space limit; its exit code, stdout, stderr and peak RSS in MB."""
    out, err = work / "stdout.txt", work / "stderr.txt"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            limit = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            os.environ["HYDRA_FULL_ERROR"] = "0"
            code = child(encode_args, decode_args)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), out.read_text(), err.read_text(), usage.ru_maxrss / 1024


def child(encode_args: list[str], decode_args: list[str]) -> int:
    """Each stage through the CLI's own ``main``, printing ``STAGE <name> <seconds>`` after each
    that succeeded, then ``SIZE <file> <height> <width>`` of the input and the decoded file."""
    from licbench.cli import main

    for stage, args in (("encode", encode_args), ("decode", decode_args)):
        sys.argv = ["licbench", stage, *args]
        start = time.perf_counter()
        main()  # a failure exits
        print(f"STAGE {stage} {time.perf_counter() - start:.3f}")
    for file in (encode_args[-2], decode_args[-1]):  # input=..., output=...
        print(f"SIZE {file.split('=', 1)[0]} " + " ".join(map(str, load_image(file.split("=", 1)[1])[0].shape[1:])))
    return 0


def problem(returncode: int, stderr: str, memory_gb: float) -> str | None:
    """None if the child succeeded; else ``refused: reason`` or ``CRASH ...``."""
    if returncode == 0:
        return None
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line]
    errors = [line for line in lines if line.startswith("licbench: error: ")]
    if returncode == 1 and errors and "Traceback" not in stderr:
        return "refused: " + errors[-1].removeprefix("licbench: error: ")
    if any("can't allocate memory" in line or "MemoryError" in line for line in lines):
        return f"CRASH: out of memory (address-space limit {memory_gb:g} GB)"
    how = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    return f"CRASH ({how}): {lines[-1] if lines else 'no message'}"


def try_codec(codec_args: list[str], weights: list[str], image: Path, work: Path, memory_gb: float) -> Cell:
    """Encode then decode ``image``; ok only if the decoded file has the loaded input's size."""
    stream, decoded = work / "stream.bin", work / "decoded.png"
    returncode, stdout, stderr, peak_mb = run_cell(
        [*codec_args, *weights, f"input={image}", f"output={stream}"],
        [*weights, f"input={stream}", f"output={decoded}"], work, memory_gb)
    report = [line.split() for line in stdout.splitlines() if line.startswith(("STAGE ", "SIZE "))]
    seconds = {words[1]: float(words[2]) for words in report if words[0] == "STAGE"}
    if (reason := problem(returncode, stderr, memory_gb)) is not None:
        return Cell(reason, peak_mb, seconds)
    sizes = {words[1]: f"{words[3]}x{words[2]}" for words in report if words[0] == "SIZE"}
    if sizes["output"] != sizes["input"]:
        return Cell(f"CRASH: decoded {sizes['output']} for a {sizes['input']} input", peak_mb, seconds)
    return Cell("ok", peak_mb, seconds)


def codec_weights(name: str) -> tuple[list[str], str | None]:
    """``weights=`` for a learned codec (its config's first checkpoint), or why it cannot run."""
    from hydra import compose, initialize_config_module

    from licbench.core.zoo import checkpoint_paths, codec_config

    resolvers.register()
    with initialize_config_module("licbench.conf", version_base=None):
        codec = codec_config(name, compose("benchmark"))
    if "checkpoints" not in codec:
        return [], None
    paths = checkpoint_paths(codec.checkpoints)
    if not paths:
        return [], f"no checkpoint matches {codec.checkpoints}"
    return [f"weights={paths[0]}"], None


def markdown(results: dict[str, dict[str, Cell]], kinds: list[str]) -> str:
    lines = ["| codec | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for codec, cells in results.items():
        lines.append(f"| {codec} | " + " | ".join(cells[kind].verdict.replace("|", "/") for kind in kinds) + " |")
    if BIG in kinds and results:
        lines += ["", f"## {BIG}: memory and time", "",
                  "Peak RSS of the child process that encoded and decoded the image; seconds of each stage, "
                  "model loading included (the 1x1 columns are those fixed costs).", "",
                  "| codec | peak RSS (MB) | MB per megapixel over 1x1 | encode s | decode s | RSS at 1x1 (MB) "
                  "| encode + decode s at 1x1 |",
                  "|---|---|---|---|---|---|---|"]
        for codec, cells in results.items():
            big, small = cells[BIG], cells.get("1x1", Cell("", math.nan, {}))
            stages = " | ".join(f"{big.seconds[s]:.1f}" if s in big.seconds else "—" for s in ("encode", "decode"))
            lines.append(f"| {codec} | {big.peak_mb:.0f} | {(big.peak_mb - small.peak_mb) / BIG_MEGAPIXELS:.0f} "
                         f"| {stages} | {small.peak_mb:.0f} | {sum(small.seconds.values()):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m licbench.tools.oddimages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", default=",".join(CODECS),
                        help="comma-separated codec names (conf/codec/ or conf/model/)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of: {', '.join(KINDS)}")
    parser.add_argument("--out", type=Path, default=Path("results/robustness/odd_images.md"))
    parser.add_argument("--memory-gb", type=float, default=16.0, help="address-space limit of each child process")
    args = parser.parse_args(argv)
    codecs, kinds = args.codecs.split(","), args.kinds.split(",")
    if unknown := [kind for kind in kinds if kind not in KINDS]:
        parser.error(f"unknown image kinds {unknown}; choose from {list(KINDS)}")
    known = codec_names()
    if unknown := [codec for codec in codecs if codec not in known]:
        parser.error(f"unknown codecs {unknown}; choose from {known}")
    weights = {codec: codec_weights(codec) for codec in codecs}
    notes = [f"each cell: `licbench encode` then `licbench decode` (the CLI's own main) in one child process "
             f"under a {args.memory_gb:g} GB address-space limit; ok = decoded at the loaded input's size, "
             "refused = a one-line `licbench: error`, CRASH = anything else",
             f"sizes are width x height; the other kinds are {BASE[1]}x{BASE[0]} (the EXIF one is stored "
             f"{BASE[1]}x{BASE[0]} with orientation 6: {BASE[0]}x{BASE[1]} once rotated)",
             f"{os.cpu_count()} CPU cores, shared with whatever else the machine was running"]
    notes += [f"{codec}: {found[0].removeprefix('weights=')} at the config's default rate"
              for codec, (found, _) in weights.items() if found]
    notes += [f"{codec}: not run, {why}" for codec, (_, why) in weights.items() if why]
    results = {}
    with tempfile.TemporaryDirectory(prefix="oddimages-") as tmp:
        images = write_images(Path(tmp), kinds)
        for codec, (found, why) in weights.items():
            if why:
                continue
            results[codec] = {}
            for kind, image in images.items():
                results[codec][kind] = try_codec([f"codec={codec}"], found, image, Path(tmp), args.memory_gb)
                print(f"{codec:>12} {kind:>18}: {results[codec][kind].verdict}", flush=True)
    table = markdown(results, kinds)
    write_figures(args.out, "Odd images through every codec", "licbench.tools.oddimages", table, argv, notes)
    print(table)


if __name__ == "__main__":
    main()
