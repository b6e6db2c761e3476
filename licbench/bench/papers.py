"""Each learned row beside its paper: the gap to the paper's published curve, or the paper's claim
checked against the run.

A codec config may name its paper's curve, ``paper: paper-balle2017`` (a reference licbench ships
for the benchmark's dataset, or a path: :func:`licbench.bench.references.paper_curve`): the
leaderboard then gives the BD-rate (with its interval) and BD-PSNR against it, and the PSNR gap at
each measured point inside the paper's range, blank with the reason when there is no overlap. Where
the paper published no curve, the config states the paper's claim as one of ``KINDS``, e.g.

    claim:
      says: 13.7 % BD-rate saving against JPEG 2000 on Kodak (Cheng et al. 2018, PCS)
      kind: bd_rate
      vs: jpeg2000
      metric: psnr
      at_most: -13.7

and the leaderboard prints "claim: … — measured: … — holds / does not hold / cannot be checked (why)",
computed from the run's tables. ``says`` quotes the paper; what is checked is written from the other keys.
"""
from __future__ import annotations

import math

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from licbench.bench.leaderboard import LABELS, METRICS, bd, bd_columns, curve_at, interval, quality
from licbench.core.codec import CodecError

# kind -> (required keys besides says, kind, metric; optional keys): what each kind checks, see :func:`check`
KINDS = {
    "bd_rate": (("vs", "at_most"), ()),  # BD-rate against vs ≤ at_most %
    "above": (("vs",), ("bpp",)),  # metric above vs's at bpp, or at most of the codec's points within vs's rates
    "gain_at_same_rate": (("vs", "at_least"), ()),  # metric gain over vs ≥ at_least dB at every shared rate label
    "quality_at": (("bpp", "at_least"), ()),  # metric at bpp ≥ at_least (dB for PSNR)
}
GAP = "PSNR vs its paper at its points dB"


def paper_and_claim(name: str, cfg: DictConfig) -> tuple[str | None, dict | None]:
    """A codec config's ``paper:`` and validated ``claim:``; a one-line CodecError for a malformed claim."""
    paper, claim = cfg.get("paper"), cfg.get("claim")
    if claim is None:
        return (str(paper) if paper else None), None
    claim = OmegaConf.to_container(claim, resolve=True) if OmegaConf.is_config(claim) else claim
    if not isinstance(claim, dict) or claim.get("kind") not in KINDS:
        raise CodecError(f"codec {name}: claim needs a kind, one of {', '.join(KINDS)}; got {claim}")
    required, optional = KINDS[claim["kind"]]
    allowed = {"says", "kind", "metric", *required, *optional}
    missing = sorted({"says", "metric", *required} - set(claim))
    if missing or set(claim) - allowed or claim["metric"] not in METRICS:
        raise CodecError(f"codec {name}: a {claim['kind']} claim takes says, metric ({' or '.join(METRICS)}), "
                         f"{', '.join(required + optional)}; got {sorted(claim)}"
                         + (f", missing {', '.join(missing)}" if missing else ""))
    return (str(paper) if paper else None), claim


def gap_columns(spec: str, paper, missing: str, curve: pd.DataFrame, rows: pd.DataFrame,
                bootstrap: dict | None) -> dict:
    """The paper columns of one measured codec (its rd ``curve`` and per-image ``rows``) against the
    published curve its config names (``spec``): ``paper``, a Reference, or None with ``missing``, the
    reason there is none."""
    row = {"paper": spec}
    if paper is None:
        key = "BD-rate vs its paper (PSNR) %"
        row.update({key: math.nan, f"{key} CI low": math.nan, f"{key} CI high": math.nan,
                    "BD-PSNR vs its paper dB": math.nan, GAP: None, "paper notes": missing})
        return row
    why = bd_columns(row, "vs its paper", (paper.curve, paper.curve), (curve, rows), "psnr", bootstrap)
    gaps = [point.psnr - curve_at(paper.curve, point.bpp, "psnr") for point in curve.itertuples()]
    gaps = [gap for gap in gaps if not math.isnan(gap)]
    if gaps:
        row[GAP] = (f"{min(gaps):+.2f} to {max(gaps):+.2f} ({len(gaps)} points)" if len(gaps) > 1
                    else f"{gaps[0]:+.2f} (1 point)")
    else:
        row[GAP] = None
        why = "; ".join(filter(None, [why, "no point inside the paper's bpp range"]))
    row["paper notes"] = why
    return row


def _span(curve: pd.DataFrame) -> str:
    return f"{curve.bpp.min():.3f}–{curve.bpp.max():.3f} bpp"


def _value(metric: str, value: float) -> str:
    return f"{value:.4f}" if metric == "ms_ssim" else f"{value:.2f} dB"


def check(codec: str, claim: dict, rd: pd.DataFrame, per_image: pd.DataFrame, bootstrap: dict | None) -> str:
    """The claim line of ``codec``'s ``claim`` (:func:`paper_and_claim`), measured on the run's tables."""
    kind, metric, vs = claim["kind"], claim["metric"], claim.get("vs")
    label, mine = LABELS[metric], rd[rd.codec == codec]
    theirs = rd[rd.codec == vs] if vs else None
    tested = {"bd_rate": f"BD-rate vs {vs} ({label}) ≤ {claim.get('at_most')} %",
              "above": f"{label} above {vs} " + (f"at {claim['bpp']} bpp" if "bpp" in claim
                                                   else f"at most of its points within {vs}'s rates"),
              "gain_at_same_rate": f"{label} over {vs} ≥ {claim.get('at_least')} dB at every rate label both have",
              "quality_at": f"{label} at {claim.get('bpp')} bpp ≥ {claim.get('at_least')}"}[kind]
    head = f"claim: {claim['says']} (checked: {tested})"
    if vs and theirs.empty:
        return f"{head} — cannot be checked ({vs} is not in this run)"
    measured, holds = _measure(kind, claim, metric, mine, theirs, codec, per_image, bootstrap)
    if holds is None:
        return f"{head} — cannot be checked ({measured})"
    return f"{head} — measured: {measured} — {'holds' if holds else 'does not hold'}"


def _measure(kind, claim, metric, mine, theirs, codec, per_image, bootstrap) -> tuple[str, bool | None]:
    """(what was measured, whether the claim holds); holds is None when it cannot be checked, and
    then the text says why."""
    vs = claim.get("vs")
    if kind == "bd_rate":
        rate, _, why = bd(theirs, mine, metric)
        if math.isnan(rate):
            return why or "no BD-rate", None
        low, high, _ = interval(per_image[per_image.codec == vs], per_image[per_image.codec == codec], metric,
                                bootstrap)
        ci = "" if math.isnan(low) else f" [{low:+.1f}, {high:+.1f}]"
        return f"{rate:+.1f} %{ci}", rate <= claim["at_most"]
    if kind == "quality_at":
        value = curve_at(mine, claim["bpp"], metric)
        if math.isnan(value):
            return f"{codec}'s curve spans {_span(mine)}, not {claim['bpp']} bpp", None
        return f"{_value(metric, value)} at {claim['bpp']} bpp", value >= claim["at_least"]
    if kind == "gain_at_same_rate":
        shared = mine.assign(key=mine.rate.astype(str)).merge(theirs.assign(key=theirs.rate.astype(str)), on="key")
        if shared.empty:
            return f"{codec} and {vs} share no rate label", None
        gains = quality(shared[f"{metric}_x"], metric) - quality(shared[f"{metric}_y"], metric)
        labels = ", ".join(shared.key)
        return (f"{gains.min():+.2f} to {gains.max():+.2f} dB at rate labels {labels}",
                bool(gains.min() >= claim["at_least"]))
    if "bpp" in claim:  # above, at one rate
        bpp = claim["bpp"]
        ours, other = curve_at(mine, bpp, metric), curve_at(theirs, bpp, metric)
        if math.isnan(ours) or math.isnan(other):
            return (f"{codec}'s curve spans {_span(mine)}, {vs}'s {_span(theirs)}: "
                    f"{' and '.join(n for n, v in ((codec, ours), (vs, other)) if math.isnan(v))} not at {bpp} bpp",
                    None)
        return f"{_value(metric, ours)} vs {vs}'s {_value(metric, other)} at {bpp} bpp", ours > other
    inside = [(point[metric], curve_at(theirs, point.bpp, metric)) for _, point in mine.iterrows()]
    inside = [(ours, other) for ours, other in inside if not math.isnan(other)]
    if not inside:
        return f"no point of {codec} ({_span(mine)}) within {vs}'s {_span(theirs)}", None
    above = sum(ours > other for ours, other in inside)
    points = f"{len(inside)} point" + ("s" if len(inside) > 1 else "")
    return f"above {vs} at {above} of its {points} within {vs}'s {_span(theirs)}", above > len(inside) / 2
