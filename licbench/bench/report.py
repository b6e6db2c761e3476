"""The benchmark's outputs, rendered and written: tables, CompressAI JSON, the codec index, RD plots,
summary.md and the leaderboard pages. The benchmark builds the leaderboard from the ``Results`` it holds
in memory; ``licbench report`` reads a benchmark directory back into the same ``Results`` (``read``) and
takes the same path from there. What a leaderboard compares against is config (``Comparisons``): the
anchors, the published curves (``references=`` and each codec config's ``paper:``), the codecs'
claims and the bootstrap settings. Every ``*.json`` of an output directory is a CompressAI-schema
curve, so ``python -m compressai.utils.plot -f OUT/*.json`` reads them all; the codec index is
``codecs.yaml`` (``codecs.json`` in directories written before, which ``licbench report`` renames)."""
from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from licbench.bench import interactive, leaderboard, papers, shards  # noqa: E402
from licbench.bench.references import Reference, load_references, paper_curve  # noqa: E402
from licbench.bench.timing import overload_warning  # noqa: E402
from licbench.core import quality, zoo  # noqa: E402
from licbench.core.atomic import write_atomic  # noqa: E402
from licbench.core.codec import CodecError  # noqa: E402
from licbench.core.provenance import git_revision, hydra_command  # noqa: E402

LABELS = {"psnr": "PSNR-RGB (dB)", "ms_ssim": "MS-SSIM (dB) = -10 log10(1 - MS-SSIM)"}
INDEX, OLD_INDEX = "codecs.yaml", "codecs.json"


@dataclass
class Results:
    """What a leaderboard is built from: a benchmark's tables as it measured them, or as ``read`` loads them."""
    per_image: pd.DataFrame  # per_image.csv
    rd: pd.DataFrame  # rd.csv: means over images per codec and rate point
    facts: dict[str, dict]  # codecs.yaml: size, cost and training of each codec
    command: str  # command.txt: the command and its git revision
    crops: dict | None  # crops/crops.json: the index of the crops
    dataset: str | None = None  # codecs.yaml: the data's name (None in directories written before it was recorded)


@dataclass(frozen=True)
class Comparisons:
    """What a leaderboard compares its measured rows against (:func:`comparisons`)."""
    anchors: list[str]
    references: list[Reference] = field(default_factory=list)  # drawn dashed, tabled as published
    papers: dict[str, tuple] = field(default_factory=dict)  # codec -> (its paper:, Reference or None, why none)
    claims: dict[str, dict] = field(default_factory=dict)  # codec -> its claim:
    bootstrap: dict | None = None  # scipy.stats.bootstrap settings of the BD-rate intervals

    @property
    def owners(self) -> dict[str, str]:
        """The codec each paper's published curve belongs to, by the curve's name."""
        return {ref.name: codec for codec, (_, ref, _) in self.papers.items() if ref is not None}


def command_text(command: str, revision: str) -> str:
    return f"{command}\n# git {revision}\n"


def read(in_dir: Path) -> Results:
    """A benchmark's output directory, back in memory. Floats are parsed exactly as they were
    written, so the leaderboard is the one the benchmark built."""
    in_dir = Path(in_dir)
    missing = [name for name in ("rd.csv", "per_image.csv") if not (in_dir / name).is_file()]
    if missing:
        raise CodecError(f"{in_dir} is not a benchmark output directory (missing {', '.join(missing)})")
    codecs, old, command, index = (in_dir / INDEX, in_dir / OLD_INDEX, in_dir / "command.txt",
                                   in_dir / "crops" / "crops.json")
    record = (OmegaConf.to_container(OmegaConf.load(codecs)) if codecs.is_file()
              else {"codecs": json.loads(old.read_text())} if old.is_file() else {})
    return Results(per_image=pd.read_csv(in_dir / "per_image.csv", float_precision="round_trip"),
                   rd=pd.read_csv(in_dir / "rd.csv", float_precision="round_trip"),
                   facts=record.get("codecs") or {},
                   command=command.read_text() if command.is_file() else "",
                   crops=json.loads(index.read_text()) if index.is_file() else None,
                   dataset=record.get("dataset"))


def write_index(out_dir: Path, dataset: str | None, facts: dict[str, dict], shard: str | None = None) -> Path:
    """codecs.yaml: the dataset (and the image shard, for a shard's folder) and each codec's size, cost and
    training (YAML, so that every *.json of the directory is a curve)."""
    record = {"dataset": dataset, **({"shard": shard} if shard else {}), "codecs": facts}
    return write_atomic(out_dir / INDEX, OmegaConf.to_yaml(OmegaConf.create(record)))


def comparisons(cfg: DictConfig, dataset: str | None, configs: dict[str, DictConfig]) -> Comparisons:
    """The ``anchors``, ``references`` and ``bootstrap`` of ``cfg`` and the ``paper:``/``claim:`` of
    each codec config in ``configs``; one-line CodecErrors for what is malformed, a reference on
    another dataset, or references without a known dataset."""
    anchors = leaderboard.check_anchors(cfg.anchors)
    specs = list(cfg.get("references") or [])
    if specs and not dataset:
        raise CodecError("references need the benchmark's dataset, which this directory does not record "
                         "(written before licbench recorded it): give dataset=NAME")
    references, named, claims = load_references(specs, dataset), {}, {}
    for name, node in configs.items():
        paper, claim = papers.paper_and_claim(name, node)
        if paper:
            named[name] = (paper, *(paper_curve(paper, dataset) if dataset
                                    else (None, "the benchmark directory does not record its dataset")))
        if claim:
            claims[name] = claim
    for _, reference, _ in named.values():
        if reference is not None and reference.name not in {r.name for r in references}:
            references.append(reference)
    bootstrap = OmegaConf.to_container(cfg.bootstrap, resolve=True) if cfg.get("bootstrap") else None
    return Comparisons(anchors, references, named, claims, bootstrap)


def axis_label(metric: str) -> str:
    """The quality axis of ``metric``'s RD plots, on the scale of its BD deltas."""
    label, scale = quality.REGISTRY[metric].label, quality.REGISTRY[metric].bd
    return LABELS.get(metric) or {"db": f"{label} (dB) = -10 log10(1 - {label})", "one_minus": f"1 − {label}"}.get(
        scale, label)


def plot_rd(rd: pd.DataFrame, metric: str, path: Path, dataset: str | None, compare: Comparisons) -> Path:
    """The measured curves, solid, and the published ones dashed (a paper's, or one named as a measured
    codec, in that codec's colour)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    colours = {}
    for i, (codec, curve) in enumerate(rd.groupby("codec", sort=False)):
        curve = curve.sort_values("bpp")
        colours[codec] = interactive.PALETTE[i % len(interactive.PALETTE)]
        ax.plot(curve.bpp, leaderboard.quality(curve[metric], metric), marker="o", markersize=3, label=codec,
                color=colours[codec])
    owners = compare.owners
    for reference in compare.references:
        curve = reference.curve.dropna(subset=[metric])
        if not curve.empty:
            ax.plot(curve.bpp, leaderboard.quality(curve[metric], metric), linestyle="--", linewidth=1,
                    color=colours.get(owners.get(reference.name, reference.name)),
                    label=f"{reference.name} (published)")
    dashed = ", dashed: as published" if compare.references else ""
    ax.set(xlabel="bits per pixel (from real bytes)", ylabel=axis_label(metric),
           title=f"{dataset or 'benchmark'}: rate-distortion{dashed}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    return write_atomic(path, png.getvalue())


def declared_budget(budget: dict) -> str:
    """What a checkpoint's training was told to stop at, first reached first: CPU time, wall time, steps."""
    limits = [f"{budget[key]} {unit}" for key, unit in (("cpu_budget", "of CPU"), ("max_time", "wall"))
              if budget.get(key) not in (None, "None")]
    limits += [f"{budget['max_steps']} steps"] if (budget.get("max_steps") or -1) > 0 else []
    return " or ".join(limits) or "no limit"


def summary(rd: pd.DataFrame, dataset: str, command: str, revision: str, notes: list[str],
            checkpoints: list[dict], failures: pd.DataFrame, anchor: str) -> str:
    """summary.md: the RD table, each point beside the PSNR of ``anchor`` at its bpp."""
    lines = [f"# Benchmark on {dataset}", "",
             f"- command: `{command}`", f"- git revision: {revision}",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
             "- bpp from real bitstream bytes (headers included); PSNR/MS-SSIM on 8-bit RGB; means over images", ""]
    if notes:
        lines += ["Input conversions: " + "; ".join(notes), ""]
    if not failures.empty:
        lines += [f"## Failures ({len(failures)}: not in the means below; failures.csv)", ""]
        lines += [f"- {f.codec} @ {f.rate} on {f.image}: {f.error}" for f in failures.itertuples()] + [""]
    reference = rd[rd.codec == anchor]
    lines += [f"| codec | rate | images | bpp | bpp estimate | PSNR (dB) | MS-SSIM | {anchor} PSNR at same bpp (Δ) "
              "| enc s | dec s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rd.itertuples():
        at = leaderboard.curve_at(reference, row.bpp, "psnr") if row.codec != anchor else math.nan
        vs = "" if math.isnan(at) else f"{at:.2f} ({row.psnr - at:+.2f})"
        estimate = "" if math.isnan(row.bpp_estimate) else f"{row.bpp_estimate:.4f}"
        lines.append(f"| {row.codec} | {row.rate} | {row.images} | {row.bpp:.4f} | {estimate} | {row.psnr:.2f} "
                     f"| {row.ms_ssim:.4f} | {vs} | {row.enc_s:.3f} | {row.dec_s:.3f} |")
    names = quality.columns(rd.columns)
    extra = [name for name in names if name not in leaderboard.METRICS]
    if extra:
        lines += ["", f"Also measured (means in rd.csv, per image in per_image.csv): "
                  f"{', '.join(quality.REGISTRY[name].label for name in extra)}."]
    small = [quality.REGISTRY[name] for name in names if rd[name].isna().any() and quality.REGISTRY[name].min_side > 1]
    if small:
        lines += ["", "NaN where an image is too small: " + "; ".join(m.too_small for m in small) + "."]
    if checkpoints:
        lines += ["", "## Checkpoints of the learned codecs", "",
                  "| codec | rate | model id | steps | CPU s | wall s | budget | warm start | training command |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in checkpoints:
            budget = c.get("budget", {})
            lines.append(f"| {c['codec']} | {c['rate']} | {c['model_id']} | {budget.get('steps')} | "
                         f"{budget.get('cpu_seconds', '')} | {budget.get('train_seconds')} | "
                         f"{declared_budget(budget)} on {budget.get('threads')} threads | "
                         f"{c.get('init_from') or ''} | `{c.get('command', '')}` |")
    lines += ["", "Plots: rd_psnr.png, rd_msssim.png. Per-image rows: per_image.csv.", ""]
    return "\n".join(lines)


def compressai_json(rd: pd.DataFrame, codec: str, description: str, dataset: str) -> dict:
    """A codec's curve in CompressAI's results schema, with the ``dataset`` key a reference may carry
    (so a run's curve can be another run's reference)."""
    curve = rd[rd.codec == codec].sort_values("bpp")
    measured = {quality.REGISTRY[name].key: curve[name].tolist() for name in quality.columns(curve.columns)}
    return {"name": codec, "description": description, "dataset": dataset,
            "results": {"bpp": curve.bpp.tolist(), **measured, "encoding_time": curve.enc_s.tolist(),
                        "decoding_time": curve.dec_s.tolist()}}


def _licbench_curve(path: Path) -> bool:
    """Whether ``path`` is a curve a licbench benchmark wrote (:func:`compressai_json`)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and str(record.get("description", "")).startswith(
        f"licbench {record.get('name')} on ")


def write_tables(out_dir: Path, per_image: pd.DataFrame, rd: pd.DataFrame, failures: pd.DataFrame, dataset: str,
                 command: str, revision: str, notes: list[str], checkpoints: list[dict],
                 anchor: str) -> None:
    """The tables, CompressAI JSON (and no earlier run's JSON of a codec not in this one: every *.json of the
    folder is a curve of this run), command and summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "per_image.csv", per_image.to_csv(index=False))
    write_atomic(out_dir / "rd.csv", rd.to_csv(index=False))
    write_atomic(out_dir / "failures.csv", failures.to_csv(index=False))
    curves = {codec: out_dir / f"{codec}.json" for codec in rd.codec.unique()}
    for codec, path in curves.items():
        description = f"licbench {codec} on {dataset}; {command}"
        write_atomic(path, json.dumps(compressai_json(rd, codec, description, dataset), indent=2))
    for stale in set(out_dir.glob("*.json")) - set(curves.values()):
        if _licbench_curve(stale):  # an earlier run's curve of a codec this run does not have
            stale.unlink()
    write_atomic(out_dir / "command.txt", command_text(command, revision))
    write_atomic(out_dir / "summary.md", summary(rd, dataset, command, revision, notes, checkpoints, failures, anchor))


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if column.startswith("BD-") or column.endswith("− mean dB"):
        return f"{value:+.2f}"
    if column == "params":
        return f"{int(value):,}"
    if column == "rate":  # a rate point's label (λ 0.0018, quality 50, B4K16), never rounded
        return f"{value:g}" if isinstance(value, float) else str(value)
    if column == leaderboard.DECODER_MB:
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.4f}" if "bpp" in column else f"{value:.2f}" if "PSNR" in column else f"{value:.1f}"
    return str(value)


def rendered(table: pd.DataFrame) -> pd.DataFrame:
    """The cells of ``table`` as text; a BD-rate's interval columns folded into it as "[low, high]"."""
    shown = [c for c in table.columns if not c.endswith((" CI low", " CI high"))]
    cells = {}
    for column in shown:
        cells[column] = [_cell(column, value) for value in table[column]]
        if f"{column} CI low" in table:
            cells[column] = [cell if math.isnan(low) else f"{cell} [{low:+.1f}, {high:+.1f}]" for cell, low, high
                             in zip(cells[column], table[f"{column} CI low"], table[f"{column} CI high"])]
    return pd.DataFrame(cells, columns=shown)


@dataclass
class Section:
    """A part of the leaderboard page: a heading, a table and lines (list items) after it."""
    heading: str
    table: pd.DataFrame | None = None
    items: list[str] = field(default_factory=list)


def per_metric(table: pd.DataFrame, anchor: str) -> pd.DataFrame | None:
    """The BD-rates against ``anchor`` of every metric but the default ones, JPEG AI's average first,
    columns named ``BD-rate (METRIC) %``; None when there are none."""
    prefix = f"BD-rate vs {anchor} ("
    default = {leaderboard.LABELS[m] for m in (*leaderboard.METRICS, leaderboard.POOLED)}
    keys = [c for c in table.columns if c.startswith(prefix) and c.endswith(") %")
            and c[len(prefix):-3] not in default]
    if not keys:
        return None
    keys.sort(key=lambda c: c[len(prefix):-3] != quality.AVERAGE_LABEL)  # stable: the average first
    columns = {}
    for key in keys:
        label = f"BD-rate ({key[len(prefix):-3]}) %"
        columns.update({key: label, f"{key} CI low": f"{label} CI low", f"{key} CI high": f"{label} CI high"})
    return table[["codec", *columns]].rename(columns=columns)


def sections(table: pd.DataFrame, published: pd.DataFrame, both: pd.DataFrame,
             anchors: list[str] = ()) -> list[Section]:
    """The measured rows (against the anchors in the default metrics; in every other configured metric,
    one section per anchor; beside their papers; size and cost), the published curves in a section of
    their own, and the two PSNR aggregations."""
    default = tuple(f"({leaderboard.LABELS[m]}) %" for m in (*leaderboard.METRICS, leaderboard.POOLED))
    bd = [c for c in table.columns if c.startswith("BD-") and "its paper" not in c
          and (not c.startswith("BD-rate ") or c.replace(" CI low", "").replace(" CI high", "").endswith(default))]
    cost = ["enc ms/MP", "dec ms/MP", "timed by", "params", leaderboard.DECODER_MB, "kMAC/px enc", "kMAC/px dec",
            "training", "data", "device"]
    parts = [Section("Measured, against the anchors", table[["codec", "points", "bpp range", *bd, "notes"]])]
    averaged = ", ".join(leaderboard.LABELS[m] + (" (as 1 − NLPD)" if m == "nlpd" else "")
                         for m in quality.JPEG_AI_AVERAGE)
    for anchor in anchors:
        metrics = per_metric(table, anchor)
        if metrics is not None:
            items = [f"{quality.AVERAGE_LABEL}: the mean of the BD-rates in {averaged} (JPEG AI's headline figure)"]
            parts.append(Section(f"Measured, against {anchor} in every configured metric (BD-rate %)",
                                 metrics, items if f"BD-rate ({quality.AVERAGE_LABEL}) %" in metrics else []))
    gap = [c for c in table.columns if c == "paper" or "its paper" in c or c in (papers.GAP, "paper notes")]
    claims = [f"{row.codec}: {row.claim}" for row in table.itertuples() if isinstance(getattr(row, "claim", None), str)]
    if gap or claims:
        rows = table[table.paper.notna()][["codec", *gap]] if gap else None
        parts.append(Section("Measured, beside its paper", rows if rows is not None and len(rows) else None, claims))
    parts.append(Section("Measured: size and cost", table[["codec", *cost]]))
    if not published.empty:
        parts.append(Section("Published curves (as published by their sources, not measured here)", published))
    parts.append(Section("PSNR aggregated two ways: mean over images (CompressAI) and of the pooled MSE (CLIC)", both))
    return parts


def footnote(compare: Comparisons, images: int) -> str:
    text = leaderboard.__doc__.split("\n\n", 1)[1].replace("\n", " ").replace("``", "`").strip()
    settings = compare.bootstrap or {}
    if settings.get("n_resamples") and images < 2:
        text += " No intervals: one image."
    elif settings.get("n_resamples"):
        text += (f" Intervals: {float(settings.get('confidence_level', 0.95)):.0%} "
                 f"{settings.get('method', 'percentile')} bootstrap over the {images} images, "
                 f"{settings['n_resamples']} resamples, seed {settings.get('seed', 0)}.")
    return text


def markdown(title: str, provenance: list[str], parts: list[Section], note: str) -> str:
    lines = [f"# {title}", "", *provenance, ""]
    for part in parts:
        lines += [f"## {part.heading}", ""]
        if part.table is not None:
            cells = rendered(part.table)
            lines += ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
            lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)] + [""]
        lines += [f"- {item}" for item in part.items] + ([""] if part.items else [])
    return "\n".join([*lines, note, ""])


def _embed(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


def _html_table(table: pd.DataFrame) -> str:
    cells = rendered(table)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in cells.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title: str, provenance: list[str], parts: list[Section], note: str, in_dir: Path, results: Results,
              compare: Comparisons) -> str:
    """A self-contained page: the sections, the interactive RD plots, per-image view and A/B comparison
    (:mod:`licbench.bench.interactive`), and, for a reader without JavaScript, the static RD plots and the
    crops (``results.crops``: their index), images embedded."""
    crops = results.crops
    page = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}figure{display:inline-block;margin:4px}"
            f"figcaption{{font-size:12px;text-align:center}}{interactive.STYLE}</style>",
            f"<h1>{html.escape(title)}</h1>"]
    page += [f"<p>{html.escape(line)}</p>" for line in provenance]
    for part in parts:
        page.append(f"<h2>{html.escape(part.heading)}</h2>")
        if part.table is not None:
            page.append(_html_table(part.table))
        if part.items:
            page.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in part.items) + "</ul>")
    page.append(interactive.section(results, compare, {m: axis_label(m) for m in quality.columns(results.rd.columns)}))
    plots = [p for p in (in_dir / "rd_psnr.png", in_dir / "rd_msssim.png") if p.is_file()]
    page += ["<div id='static-rd'><h2>Rate–distortion</h2>"] + [f"<img src='{_embed(p)}' width='560'>"
                                                                for p in plots] + ["</div>"]
    if crops:
        page.append(f"<h2>Crops of {html.escape(crops['image'])}</h2>")
        for target, entries in crops["targets"].items():
            page.append(f"<h3>≈ {target} bpp</h3>")
            page += [f"<figure><img src='{_embed(in_dir / 'crops' / e['file'])}' data-file='{html.escape(e['file'])}' "
                     f"width='192'><figcaption>{html.escape(e['caption'])}</figcaption></figure>" for e in entries]
    page.append(f"<p>{html.escape(note)}</p>")
    return "\n".join(page)


def beside_papers(results: Results, compare: Comparisons) -> dict[str, dict]:
    """By codec, its paper's columns and its claim line (:mod:`licbench.bench.papers`)."""
    rd, rows, beside = results.rd, results.per_image, {}
    for codec, curve in rd.groupby("codec", sort=False):
        extra = {}
        if codec in compare.papers:
            spec, reference, missing = compare.papers[codec]
            extra.update(papers.gap_columns(spec, reference, missing, curve, rows[rows.codec == codec],
                                            compare.bootstrap))
        if codec in compare.claims:
            extra["claim"] = papers.check(codec, compare.claims[codec], rd, rows, compare.bootstrap)
        beside[codec] = extra
    return beside


def write_leaderboard(results: Results, out_dir: Path, compare: Comparisons,
                      made_by: str | None = None) -> tuple[pd.DataFrame, dict[str, Path]]:
    """leaderboard.{md,html,csv}, published.csv, aggregations.csv and the RD plots in ``out_dir``, built
    from ``results`` against ``compare``; ``made_by``: the report's own command, when it rebuilds
    them. Returns the measured table and the paths."""
    rd, per_image, anchors = results.rd, results.per_image, compare.anchors
    table = leaderboard.leaderboard(rd, per_image, results.facts, anchors, compare.bootstrap,
                                    beside_papers(results, compare))
    published = leaderboard.published(compare.references, rd, per_image, anchors, compare.bootstrap)
    both = leaderboard.aggregations(rd, per_image)
    images = per_image.image.nunique()
    provenance = [f"From {out_dir.name}/rd.csv and per_image.csv ({images} images"
                  + (f" of {results.dataset}" if results.dataset else "") + "). Measured by: "
                  + results.command.strip().replace("\n", " ")]
    if made_by:
        provenance.append("Leaderboard rebuilt by: " + made_by.strip().replace("\n", " "))
    provenance += [f"Note: {note}." for note in leaderboard.anchor_notes(anchors, rd.codec)]
    warning = overload_warning(results.facts)
    provenance += [f"Warning: {warning}."] if warning else []
    paths = {"rd_psnr": plot_rd(rd, "psnr", out_dir / "rd_psnr.png", results.dataset, compare),
             "rd_msssim": plot_rd(rd, "ms_ssim", out_dir / "rd_msssim.png", results.dataset, compare),
             "md": out_dir / "leaderboard.md", "html": out_dir / "leaderboard.html",
             "csv": out_dir / "leaderboard.csv", "aggregations": out_dir / "aggregations.csv"}
    title, note = f"Leaderboard: {out_dir.name}", footnote(compare, images)
    parts = sections(table, published, both, anchors)
    write_atomic(paths["md"], markdown(title, provenance, parts, note))
    write_atomic(paths["html"], html_page(title, provenance, parts, note, out_dir, results, compare))
    write_atomic(paths["csv"], table.to_csv(index=False))
    write_atomic(paths["aggregations"], both.to_csv(index=False))
    if published.empty:
        (out_dir / "published.csv").unlink(missing_ok=True)  # from an earlier report with references
    else:
        paths["published"] = write_atomic(out_dir / "published.csv", published.to_csv(index=False))
    return table, paths


def codec_configs(cfg: DictConfig, names) -> dict[str, DictConfig]:
    """The codec configs of ``names`` (:func:`licbench.core.zoo.codec_config`) for their ``paper:`` and
    ``claim:``; a codec with no config here (another config tree's, or renamed) has none."""
    configs = {}
    for name in names:
        try:
            configs[name] = zoo.codec_config(str(name), cfg)
        except CodecError:
            continue
    return configs


def run_report(cfg: DictConfig) -> dict[str, Path]:
    """``licbench report in_dir=OUT``: the leaderboard of a benchmark directory, rebuilt from its files
    against the configured comparisons, with this command and its git revision beside the benchmark's;
    OUT a sweep of benchmark shards (:mod:`licbench.bench.shards`): their merge first, into OUT or into
    ``out_dir``. A directory from before the index was ``codecs.yaml`` gets its ``codecs.json`` renamed
    (with ``dataset=``, when given, recorded)."""
    sweep = Path(cfg.in_dir)
    in_dir = Path(cfg.get("out_dir") or sweep)
    command, revision = hydra_command("report"), git_revision()
    made_by = command_text(command, revision)
    if shards.shard_dirs(sweep):  # a sweep of benchmark shards: merged first
        shards.write_merge(sweep, in_dir, command, revision, leaderboard.check_anchors(cfg.anchors)[0])
    elif in_dir != sweep:
        raise CodecError(f"out_dir= is where a sweep of benchmark shards is merged, and {sweep} holds no shards: "
                         "drop out_dir= to rebuild its leaderboard in place")
    results = read(in_dir)
    if cfg.get("dataset") and results.dataset and cfg.dataset != results.dataset:
        raise CodecError(f"{in_dir} is a benchmark on {results.dataset}, not dataset={cfg.dataset}")
    results.dataset = results.dataset or cfg.get("dataset")
    compare = comparisons(cfg, results.dataset, codec_configs(cfg, results.rd.codec.unique()))
    if (in_dir / OLD_INDEX).is_file() and not (in_dir / INDEX).is_file():
        write_index(in_dir, results.dataset, results.facts)
        (in_dir / OLD_INDEX).unlink()
        print(f"renamed {in_dir / OLD_INDEX} to {INDEX} (every *.json here is now a curve CompressAI's plot reads)")
    return write_leaderboard(results, in_dir, compare, made_by)[1]
