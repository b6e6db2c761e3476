"""The ``licbench benchmark`` stage: every codec × rate point × image → one row each.

Rows carry real bytes: ``bpp = 8 · len(bytes) / (H · W)``, and a column per configured metric
(``metrics=``, :mod:`licbench.core.quality`; PSNR and MS-SSIM by default). Outputs in ``out_dir``:
``per_image.csv``, ``rd.csv`` (means over images per codec and rate point),
``<codec>.json`` (CompressAI's results schema; the only ``*.json`` there), ``codecs.yaml`` (the
dataset, and parameters, decoder weight bytes, kMAC/pixel, training budget and data of each codec), ``rd_psnr.png``,
``rd_msssim.png`` (published curves dashed), ``crops/``, ``summary.md``, ``leaderboard.{md,html,csv}``,
``published.csv`` (with ``references=`` or a codec's ``paper:``), ``aggregations.csv``, ``command.txt``
and ``failures.csv`` (a codec that raises on an image is recorded there and the run goes on). Tables
are written atomically; rows are logged as they are measured (``licbench/bench/rowlog.py``), so
rerunning an interrupted benchmark with the same ``out_dir`` computes only the missing ones. The
leaderboard is built in the same pass, from the tables in memory (``report.Results``), against the
configured comparisons (``report.comparisons``: ``anchors``, ``references``, each codec config's
``paper:``/``claim:``, ``bootstrap``); ``licbench report`` builds it again from the files.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from licbench.bench import complexity, crops, leaderboard, report, shards, timing
from licbench.bench.rowlog import RowLog, key
from licbench.cli import explain
from licbench.core import metrics, quality
from licbench.core.atomic import lock
from licbench.core.checkpoint import Limits
from licbench.core.codec import Codec, CodecError
from licbench.core.provenance import git_revision, hydra_command
from licbench.core.zoo import codec_device, configured_codecs, rate_points
from licbench.train import tracking


def columns(names=quality.DEFAULT) -> list[str]:
    """The per-image table's columns with the metrics ``names`` (registry names, in their order)."""
    return ["codec", "rate", "image", "height", "width", "bytes", "bpp", *names, "enc_s", "dec_s", "bpp_estimate"]


def rd_columns(names=quality.DEFAULT) -> list[str]:
    """The columns rd.csv averages over images."""
    return ["bpp", *names, "enc_s", "dec_s", "bpp_estimate"]


COLUMNS = columns()  # with the default metrics
RD_COLUMNS = rd_columns()
FAILURE_COLUMNS = ["codec", "rate", "image", "error"]
LOCK = ".benchmark.lock"  # in out_dir: held by the run writing it


def measure(label: str, codec: Codec, name: str, x: torch.Tensor, names=quality.DEFAULT) -> dict:
    """Encode and decode one image; the row of the per-image table, with the metrics ``names``
    (:mod:`licbench.core.quality`). ``bpp_estimate`` is the learned codecs' own entropy estimate (NaN
    for baselines), kept to check the coder — the ``bpp`` column always comes from the bytes."""
    start = time.perf_counter()
    data = codec.encode(x)
    encoded = time.perf_counter()
    x_hat = codec.decode(data)
    decoded = time.perf_counter()
    height, width = x.shape[1:]
    if x_hat.shape != x.shape:
        raise RuntimeError(f"{codec.name} decoded {list(x_hat.shape)} for an image of {list(x.shape)}")
    return {"codec": label, "rate": codec.rate, "image": name, "height": height, "width": width,
            "bytes": len(data), "bpp": metrics.bpp(len(data), height, width), **metrics.evaluate(names, x, x_hat),
            "enc_s": encoded - start, "dec_s": decoded - encoded,
            "bpp_estimate": metrics.bpp(codec.estimate_bits(x, data) / 8, height, width)}


def run_codecs(codecs: dict[str, list[Codec]], images: list[tuple[str, torch.Tensor, str]],
               log: RowLog, names=quality.DEFAULT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows for every rate point of every codec (keyed by its config name) on every image, with the
    metrics ``names``, and the failures. Rows in ``log`` are reused (measured again when they lack one
    of ``names``), new ones added to it; a codec that raises on an image is a failure row and the run
    goes on (an interrupt stops it, the log keeps what was measured)."""
    total = sum(len(points) for points in codecs.values()) * len(images)
    rows, failures = [], []
    with tqdm(total=total, desc="benchmark", unit="img") as progress, torch.inference_mode():
        for label, points in codecs.items():
            for codec in points:
                progress.set_postfix_str(f"{label} @ {codec.rate}")
                for name, x, _ in images:
                    row = log.get(key(label, codec, name))
                    if row is None or any(metric not in row for metric in names):
                        try:
                            row = measure(label, codec, name, x, names)
                        except Exception as err:  # any crash on one image is a result, not the end of the run
                            failures.append([label, codec.rate, name, f"{type(err).__name__}: {explain(err)}"])
                            progress.update()
                            continue
                        log.add(key(label, codec, name), row)
                    rows.append(row)
                    progress.update()
    return pd.DataFrame(rows, columns=columns(names)), pd.DataFrame(failures, columns=FAILURE_COLUMNS)


def aggregate(per_image: pd.DataFrame) -> pd.DataFrame:
    """Dataset figures: arithmetic means of the per-image values (CompressAI's convention), for every
    metric the rows carry."""
    grouped = per_image.groupby(["codec", "rate"], sort=False)
    rd = grouped[rd_columns(quality.columns(per_image.columns))].mean().reset_index()
    rd.insert(2, "images", grouped.size().values)
    return rd.sort_values(["codec", "bpp"], kind="stable").reset_index(drop=True)


def check_distinct_rates(codecs: dict[str, list[Codec]]) -> None:
    """Rows are keyed by (codec, rate): two rate points with one label would be averaged together."""
    for label, points in codecs.items():
        rates = [str(codec.rate) for codec in points]
        clashes = sorted({rate for rate in rates if rates.count(rate) > 1})
        if clashes:
            raise CodecError(f"codec {label} has several rate points labelled {', '.join(clashes)} (e.g. two "
                             "checkpoints with one lambda): benchmark them under separate codec names or runs")


def provenance(codecs: dict[str, list[Codec]]) -> list[dict]:
    """Where each learned rate point came from: its checkpoint's model id, budget and command."""
    return [{"codec": label, "rate": codec.rate, "model_id": codec.model_id, **codec.provenance}
            for label, points in codecs.items() for codec in points if codec.model_id is not None]


def budget_text(budget: dict) -> str:
    """One checkpoint's training: CPU time where it was recorded, else wall time × threads."""
    if budget.get("cpu_seconds"):
        return f"{budget['steps']} steps, {budget['cpu_seconds'] / 60:.0f} CPU-min"
    return f"{budget['steps']} steps, {budget['train_seconds'] / 60:.0f} min × {budget['threads']} threads"


def codec_facts(points: list[Codec]) -> dict:
    """Size, cost, device and training provenance of one configured codec (its first rate point's network;
    the bytes of the weights its decoder reads, :meth:`licbench.core.codec.Codec.decoder_bytes`)."""
    meta = [codec.provenance for codec in points]
    budgets = list({c.model_id: c.provenance["budget"] for c in points  # one per checkpoint
                    if c.provenance and "budget" in c.provenance}.values())
    data = sorted({m["data"].get("_target_", "?").rsplit(".", 1)[-1]
                   + (f" {Path(m['data']['root']).name}" if m["data"].get("root") else "")
                   for m in meta if m and m.get("data")})
    training = "; ".join(sorted({budget_text(b) for b in budgets})) or "—"
    cpu = [b["cpu_seconds"] for b in budgets if b.get("cpu_seconds")]
    if len(cpu) > 1:
        training += f" (curve: {sum(cpu) / 3600:.2f} CPU-h)"
    return {"params": complexity.parameters(points[0]), "decoder_bytes": points[0].decoder_bytes(),
            "kmac_per_pixel": complexity.kmac_per_pixel(points[0]), "training": training,
            "data": "; ".join(data) or "—", "device": device_of(points[0])}


def device_of(codec: Codec) -> str:
    """Where a codec's transforms run: its network's device, the CPU for a codec without one."""
    parameter = next(codec.network.parameters(), None) if codec.network is not None else None
    return str(parameter.device) if parameter is not None else "cpu"


def run_benchmark(cfg: DictConfig) -> Path:
    """The benchmark of ``cfg`` into ``out_dir``, which it locks (``LOCK``): a second run on the same
    ``out_dir`` while one is writing it refuses to start, so no row is measured twice or lost. A run
    refused before it wrote anything leaves no ``out_dir`` it created."""
    out_dir = Path(cfg.out_dir)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:  # a shard: out_dir is the sweep
        out_dir = Path(HydraConfig.get().runtime.output_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        held = lock(out_dir / LOCK)
    except BlockingIOError:
        raise CodecError(f"another licbench benchmark is writing {out_dir} (it holds {out_dir / LOCK}): wait for "
                         "it to finish, or give this one another out_dir=") from None
    with held:
        try:
            return _run_benchmark(cfg, out_dir)
        finally:
            if created and [path.name for path in out_dir.iterdir()] == [LOCK]:
                (out_dir / LOCK).unlink()
                out_dir.rmdir()


def _run_benchmark(cfg: DictConfig, out_dir: Path) -> Path:
    leaderboard.check_anchors(cfg.anchors)
    names = quality.resolve(cfg.get("metrics", quality.DEFAULT))
    quality.check_available(names)  # a missing package fails before anything is measured
    command = hydra_command("benchmark")
    revision = git_revision()  # before anything is written
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
    shard = data_cfg.pop("shard", None)
    shards.parse(shard)  # a malformed shard fails before anything is loaded
    device = codec_device(cfg.get("device"))  # a missing GPU fails before anything is loaded
    if device.type != "cpu":
        print(f"note: device={device}: the learned codecs' transforms run on {device}; that their streams decode "
              "to the same pixels on the CPU is not measured here, so this run does not promise it (hyperprior "
              "and context models index their entropy tables from float outputs)")
    data = instantiate(data_cfg)
    with tracking.run(cfg.logger, cfg, job_type="benchmark") as wb:
        configs = configured_codecs(cfg)
        compare = report.comparisons(cfg, data.name, configs)  # a bad reference or claim fails before measuring
        dataset = list(data.images())
        crop = crops.crop_image(dataset, cfg.get("crop_image"))  # every shard crops the same image, or none
        images = shards.select(dataset, shard)
        notes = sorted({f"{name}: {note}" for name, _, note in images if note})
        codecs = {name: rate_points(name, codec_cfg, Limits.from_config(cfg), device)
                  for name, codec_cfg in configs.items()}
        check_distinct_rates(codecs)
        for note in leaderboard.anchor_notes(compare.anchors, codecs):
            print(f"note: {note}")
        log = RowLog(out_dir)
        if len(log):
            print(f"resuming: {len(log)} rows already measured in {log.path}")
        per_image, failures = run_codecs(codecs, images, log, names)
        rd = aggregate(per_image)
        report.write_tables(out_dir, per_image, rd, failures, data.name, command, revision, notes,
                            provenance(codecs), compare.anchors[0])
        if per_image.empty:
            raise CodecError(f"every codec failed on every image: see {out_dir / 'failures.csv'}")
        timed = timing.time_codecs(codecs, images, cfg.get("timing") or {})
        facts = {label: {**codec_facts(points), "timing": timed.get(label)} for label, points in codecs.items()}
        report.write_index(out_dir, data.name, facts, shard)
        index = crops.write_crops(codecs, images, per_image, out_dir, crop)
        results = report.Results(per_image, rd, facts, report.command_text(command, revision), index, data.name)
        board, paths = report.write_leaderboard(results, out_dir, compare)
        plots = {name: paths[name] for name in ("rd_psnr", "rd_msssim")}
        tracking.log_tables(wb, {"per_image": per_image, "rd": rd, "leaderboard": board},
                            {**plots, **crop_images(out_dir)})
    print(f"benchmark results in {out_dir.resolve()}: leaderboard.md/.html, summary.md, rd.csv, per_image.csv, "
          "plots, crops/")
    if not failures.empty:  # the log stays: a rerun retries just these
        raise CodecError(f"{len(failures)} codec × image runs failed, the rest is in the tables: see "
                         f"{out_dir / 'failures.csv'} (rerun the same command to retry only those)")
    log.remove()
    return out_dir


def crop_images(out_dir: Path) -> dict[str, Path]:
    return {f"crops/{path.stem}": path for path in sorted((out_dir / "crops").glob("*.png"))}
