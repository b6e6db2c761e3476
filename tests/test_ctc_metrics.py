"""The metrics of ``metrics=ctc`` against a second implementation or a published value, on fixed inputs.

Inputs: three crops of scikit-image's shipped photos (astronaut, chelsea, coffee), each decoded three
ways: Pillow JPEG at quality 15, Gaussian noise (σ = 8 levels, seed 0) and a 3x3 box blur. Each metric of
the registry is compared with another package's implementation of it (:data:`SECOND`) within the stated
tolerance; IW-SSIM, which no second package on PyPI implements, is pinned to its values here (piq's own
suite checks it against the authors' MATLAB code) and checked for its invariants; PSNR-HVS(-M) is also
checked against the closed form that Ponomarenko's CSF table gives for a flat offset.
"""
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data

from licbench.core import quality
from licbench.core.codec import CodecError
from licbench.core.quality import REGISTRY, Pair

# psnr-hvsm's NumPy backend divides by a zero variance on flat blocks (and handles it)
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")


def _jpeg(image: np.ndarray, q: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=q)
    return np.asarray(Image.open(buffer).convert("RGB"))


def fixed_inputs() -> list[tuple[str, Pair]]:
    rng = np.random.default_rng(0)
    crops = {"astronaut": data.astronaut()[96:352, 128:384], "chelsea": data.chelsea()[:256, :256],
             "coffee": data.coffee()[100:300, 200:456]}
    pairs = []
    for name, image in crops.items():
        image = np.ascontiguousarray(image)
        noisy = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).round().astype(np.uint8)
        for how, decoded in (("jpeg15", _jpeg(image, 15)), ("noise8", noisy),
                             ("blur3", ndimage.uniform_filter(image, size=(3, 3, 1)))):
            pairs.append((f"{name}/{how}", Pair(image, decoded)))
    return pairs


@pytest.fixture(scope="module")
def inputs():
    return fixed_inputs()


def bt709_by_hand(rgb: np.ndarray) -> list[np.ndarray]:
    """ITU-R BT.709 Y'CbCr written out (Kr = 0.2126, Kb = 0.0722; Cb = (B' − Y') / 1.8556,
    Cr = (R' − Y') / 1.5748), 8-bit full range (chroma offset 128), rounded half up as BT.2100's Round()."""
    r, g, b = (rgb[..., i].astype(np.float64) / 255 for i in range(3))
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    planes = ((y, 0), ((b - y) / 1.8556, 128), ((r - y) / 1.5748, 128))
    return [np.clip(np.floor(255 * p + offset + 0.5), 0, 255).astype(np.uint8) for p, offset in planes]


def _luma(pair: Pair) -> list[torch.Tensor]:
    return list(pair.luma_tensors())


def _plane_psnr(index: int):
    def second(pair: Pair) -> float:
        from skimage.metrics import peak_signal_noise_ratio

        return peak_signal_noise_ratio(bt709_by_hand(pair.reference)[index], bt709_by_hand(pair.decoded)[index],
                                       data_range=255)
    return second


def _skimage_psnr(pair: Pair) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return peak_signal_noise_ratio(pair.reference, pair.decoded, data_range=255)


def _piq_ms_ssim_rgb(pair: Pair) -> float:
    import piq

    reference, decoded = pair.rgb_tensors()
    return piq.multi_scale_ssim(decoded, reference, data_range=255.0).item()


def _piq_ms_ssim_y(pair: Pair) -> float:
    import piq

    reference, decoded = _luma(pair)
    return piq.multi_scale_ssim(decoded, reference, data_range=255.0).item()


def _iqa_pytorch_vifs(pair: Pair) -> float:
    from IQA_pytorch import VIFs

    reference, decoded = _luma(pair)
    return VIFs(channels=1)(decoded / 255, reference / 255, as_loss=False).item()


def _piqa_fsim(pair: Pair) -> float:
    import piqa

    reference, decoded = pair.rgb_tensors()
    return piqa.FSIM(chromatic=True)(decoded / 255, reference / 255).item()


def _iqa_pytorch_nlpd(pair: Pair) -> float:
    from IQA_pytorch import NLPD

    reference, decoded = _luma(pair)
    return NLPD(channels=1)(decoded / 255, reference / 255, as_loss=False).item()


def _psnr_hvsm_numpy(index: int):
    def second(pair: Pair) -> float:
        from psnr_hvsm import psnr_hvs_hvsm_np

        return float(psnr_hvs_hvsm_np(*(quality._pad8(y) for y in pair.plane(0)))[index])
    return second


def _vmaf_torch(pair: Pair) -> float:
    from vmaf_torch import VMAF

    return VMAF(enable_motion=False)(*_luma(pair)).item()


TIES = "float error rounds some exact .5 ties the other way (≤ 1 level, ≤ 0.03 % of pixels here)"
#: metric -> (the second implementation, its function on a pair, the largest difference allowed, why)
SECOND = {
    "psnr": ("scikit-image peak_signal_noise_ratio", _skimage_psnr, 1e-9, "one formula"),
    "psnr_y": ("BT.709 written out + scikit-image PSNR", _plane_psnr(0), 1e-3, TIES),
    "psnr_u": ("BT.709 written out + scikit-image PSNR", _plane_psnr(1), 1e-3, TIES),
    "psnr_v": ("BT.709 written out + scikit-image PSNR", _plane_psnr(2), 1e-3, TIES),
    "ms_ssim": ("piq multi_scale_ssim", _piq_ms_ssim_rgb, 1e-4, "float32 sums"),
    "ms_ssim_y": ("piq multi_scale_ssim", _piq_ms_ssim_y, 1e-4, "float32 sums"),
    "vif": ("IQA_pytorch VIFs (JPEG AI's framework's)", _iqa_pytorch_vifs, 1e-4, "float32 sums"),
    "fsim": ("piqa FSIM", _piqa_fsim, 1e-4, "float32 FFTs"),
    "nlpd": ("IQA_pytorch NLPD (JPEG AI's framework's)", _iqa_pytorch_nlpd, 7.5e-3,
             "reflect padding there, the MATLAB code's symmetric padding in pyiqa"),
    "psnr_hvs": ("psnr-hvsm NumPy backend (scipy.fft)", _psnr_hvsm_numpy(0), 1e-9, "two backends, float64"),
    "psnr_hvs_m": ("psnr-hvsm NumPy backend (scipy.fft)", _psnr_hvsm_numpy(1), 1e-9, "two backends, float64"),
    "vmaf": ("vmaf-torch (float re-implementation)", _vmaf_torch, 0.05,
             "libvmaf's integer features; vmaf-torch reports ≤ 0.027 on Netflix's public set"),
}


def agreement(inputs) -> list[tuple[str, str, float, str, float]]:
    """(metric, second implementation, max |difference|, where, tolerance) of every metric of SECOND."""
    rows = []
    for name, (second, function, tolerance, _) in SECOND.items():
        differences = [(abs(REGISTRY[name](pair) - function(pair)), where) for where, pair in inputs]
        worst, where = max(differences)
        rows.append((name, second, worst, where, tolerance))
    return rows


@pytest.mark.parametrize("name", list(SECOND))
def test_each_metric_agrees_with_a_second_implementation(inputs, name):
    second, function, tolerance, why = SECOND[name]
    for where, pair in inputs:
        ours, theirs = REGISTRY[name](pair), function(pair)
        assert math.isfinite(ours) and abs(ours - theirs) <= tolerance, (
            f"{name} on {where}: {ours} here, {theirs} by {second} (tolerance {tolerance}: {why})")


def test_every_ctc_metric_has_an_independent_check():
    """A second implementation for each, but IW-SSIM: pinned below (no second package implements it)."""
    assert set(quality.SETS["ctc"]) - set(SECOND) == {"iw_ssim"}


#: piq's IW-SSIM on the fixed inputs (float32; piq's suite holds it to the authors' MATLAB within 1e-5).
IW_SSIM_PINNED = {"astronaut/jpeg15": 0.97078216, "astronaut/noise8": 0.98114508, "astronaut/blur3": 0.98313552,
                  "chelsea/jpeg15": 0.95079309, "chelsea/noise8": 0.98034823, "chelsea/blur3": 0.97784925,
                  "coffee/jpeg15": 0.96563125, "coffee/noise8": 0.97685635, "coffee/blur3": 0.98362601}


def test_iw_ssim_is_pinned_and_behaves(inputs):
    for where, pair in inputs:
        assert REGISTRY["iw_ssim"](pair) == pytest.approx(IW_SSIM_PINNED[where], abs=1e-6), where
        assert REGISTRY["iw_ssim"](Pair(pair.reference, pair.reference)) == pytest.approx(1.0, abs=1e-6)
    image = inputs[0][1].reference
    worse = [REGISTRY["iw_ssim"](Pair(image, _jpeg(image, q))) for q in (90, 50, 10)]
    assert worse == sorted(worse, reverse=True)  # lower JPEG quality, lower IW-SSIM


@pytest.mark.parametrize("offset", [1, 3, 10])
def test_psnr_hvs_of_a_flat_offset_is_the_closed_form_of_ponomarenkos_csf_table(offset):
    """A flat image shifted by d levels differs only in each 8x8 block's DC coefficient, by 8d; the CSF
    weight of DC in Ponomarenko's psnrhvsm.m is 1.608443, and masking (PSNR-HVS-M) spares DC, so both
    are 10·log10(255² / (1.608443·d)²)."""
    flat = np.full((64, 64, 3), 100, np.uint8)
    pair = Pair(flat, flat + np.uint8(offset))
    expected = 10 * math.log10(255**2 / (1.608443 * offset) ** 2)
    assert REGISTRY["psnr_hvs"](pair) == pytest.approx(expected, abs=1e-9)
    assert REGISTRY["psnr_hvs_m"](pair) == pytest.approx(expected, abs=1e-9)


def test_the_ycbcr_planes_are_bt709_full_range():
    """White, black, grey and the primaries, against ITU-R BT.709's coefficients written out."""
    colours = np.array([[[255, 255, 255], [0, 0, 0], [128, 128, 128], [255, 0, 0], [0, 255, 0], [0, 0, 255]]],
                       np.uint8)
    assert quality.ycbcr709(colours).tolist() == np.stack(bt709_by_hand(colours), -1).tolist()
    assert quality.ycbcr709(colours)[0, :4].tolist() == [[255, 128, 128], [0, 128, 128], [128, 128, 128],
                                                          [54, 99, 255]]


def test_identical_images_get_each_metrics_best_value(inputs):
    image = inputs[0][1].reference
    values = quality.evaluate(quality.SETS["ctc"], image, image)
    assert all(math.isinf(values[name]) for name in ("psnr", "psnr_y", "psnr_u", "psnr_v"))
    for name in ("ms_ssim", "ms_ssim_y", "iw_ssim", "vif", "fsim"):
        assert values[name] == pytest.approx(1.0, abs=1e-5), name
    assert values["nlpd"] == pytest.approx(0.0, abs=1e-7)
    assert values["psnr_hvs"] == values["psnr_hvs_m"] == 100.0  # psnr-hvsm's convention
    assert values["vmaf"] > 95


def test_images_too_small_for_a_metric_get_nan_and_the_reason():
    rng = np.random.default_rng(1)
    for side in (1, 16, 40, 160):
        image = rng.integers(0, 256, (side, side + 5, 3), dtype=np.uint8)
        decoded = np.clip(image.astype(int) + 3, 0, 255).astype(np.uint8)
        values = quality.evaluate(quality.SETS["ctc"], image, decoded)
        for name, value in values.items():
            metric = REGISTRY[name]
            assert math.isnan(value) == (side < metric.min_side), (name, side, value)
    assert REGISTRY["iw_ssim"].too_small == "IW-SSIM needs images ≥ 161 px on the shorter side"
    assert REGISTRY["vmaf"].min_side == 17 and REGISTRY["vif"].min_side == 41


def test_metric_sets_resolve_in_order_and_unknown_names_are_one_error():
    assert quality.resolve("ctc") == quality.SETS["ctc"]
    assert quality.resolve(["default", "vmaf", "psnr"]) == ["psnr", "ms_ssim", "vmaf"]
    assert quality.resolve("vmaf") == ["psnr", "ms_ssim", "vmaf"] and quality.resolve([]) == ["psnr", "ms_ssim"]
    with pytest.raises(CodecError, match="unknown metric 'lpips'; known: psnr, "):
        quality.resolve(["psnr", "lpips"])
    assert set(quality.JPEG_AI_AVERAGE) <= set(quality.SETS["ctc"]) and len(quality.JPEG_AI_AVERAGE) == 7


def test_every_metric_names_its_package_in_its_docstring():
    for metric in REGISTRY.values():
        assert metric.package in metric.function.__doc__, metric.name


def test_a_missing_package_is_refused_before_measuring(monkeypatch):
    real = quality.importlib.util.find_spec
    monkeypatch.setattr(quality.importlib.util, "find_spec", lambda name: None if name == "pyiqa" else real(name))
    with pytest.raises(CodecError, match=r"metrics not available here: NLPD needs pyiqa \(pip install --no-deps"):
        quality.check_available(["psnr", "nlpd"])
    quality.check_available(["psnr", "ms_ssim"])


def test_the_benchmark_measures_the_configured_metrics_into_every_table(tmp_path):
    """``metrics=[default,psnr_y,vmaf]``: a column each in per_image.csv and rd.csv, a key each in the JSON,
    a BD-rate each against the anchor; an unknown metric is a one-line error before anything runs."""
    import json

    import pandas as pd

    from conftest import run_cli

    out = tmp_path / "out"
    run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg,webp]", "anchors=[jpeg]", "timing=off",
            "+codec_overrides.jpeg.grid=[30,60,90]", "+codec_overrides.webp.grid=[30,60,90]",
            "metrics=[default,psnr_y,vmaf]", "bootstrap.n_resamples=0", f"out_dir={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}")
    rows, rd = pd.read_csv(out / "per_image.csv"), pd.read_csv(out / "rd.csv")
    assert list(rows.columns[7:11]) == ["psnr", "ms_ssim", "psnr_y", "vmaf"] and rows.vmaf.between(0, 100).all()
    assert list(rd.columns[4:8]) == ["psnr", "ms_ssim", "psnr_y", "vmaf"]
    assert list(json.loads((out / "webp.json").read_text())["results"])[1:5] == ["psnr-rgb", "ms-ssim-rgb", "psnr-y",
                                                                                  "vmaf"]
    board = pd.read_csv(out / "leaderboard.csv").set_index("codec")
    assert math.isfinite(board.loc["webp", "BD-rate vs jpeg (VMAF) %"])
    assert not any("JPEG AI avg" in column for column in board.columns)  # not all seven of its metrics
    proc = run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg]", "metrics=[psnr,lpips]",
                   f"out_dir={tmp_path / 'no'}", f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("licbench: error: metrics: unknown metric 'lpips'")
    assert not (tmp_path / "no").exists()


def test_a_resumed_row_that_lacks_a_configured_metric_is_measured_again(tmp_path):
    from licbench.baselines.pillow import PillowCodec
    from licbench.bench.benchmark import run_codecs
    from licbench.bench.rowlog import RowLog

    codec = PillowCodec("jpeg", 50)
    images = [("a", torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(0)), "")]
    first, _ = run_codecs({"jpeg": [codec]}, images, RowLog(tmp_path))
    assert "psnr_y" not in first
    again, _ = run_codecs({"jpeg": [codec]}, images, RowLog(tmp_path), ["psnr", "ms_ssim", "psnr_y"])
    assert again.psnr_y.notna().all() and again.psnr.tolist() == first.psnr.tolist()
    assert len(RowLog(tmp_path)) == 1 and "psnr_y" in RowLog(tmp_path).get(("jpeg", "50", "a", None))
