"""The image-quality metrics by name: one small registered function per metric, each on a pair of
8-bit RGB images (:class:`Pair`: the reference and its decoded image, ``uint8`` arrays ``[H, W, 3]``)
and each computed by the package its docstring names; none is written here.

``metrics=`` on ``licbench benchmark`` lists their names, or names a set (:data:`SETS`):

- ``default`` — ``psnr`` and ``ms_ssim``, CompressAI's pair (what the benchmark measured before metrics
  were configurable, at the same cost);
- ``ctc`` — JPEG AI's common test conditions: PSNR-RGB; PSNR-Y, -U, -V; MS-SSIM on RGB and on Y;
  IW-SSIM; VIF (pixel domain, VIFp); FSIM; NLPD; PSNR-HVS and PSNR-HVS-M; VMAF.

A set may stand inside a list (``metrics=[default,vmaf]``); PSNR and MS-SSIM are measured whatever the
list (the tables, plots and leaderboard rest on them). Each metric is a column of ``per_image.csv``
and ``rd.csv`` and a key of the CompressAI-schema JSON (:attr:`Metric.key`).

Colour: the ``_y``/``_u``/``_v`` metrics and every metric JPEG AI computes on luma (MS-SSIM-Y, IW-SSIM,
VIF, NLPD, PSNR-HVS(-M), VMAF) take the 8-bit full-range ITU-R BT.709 Y'CbCr planes of the RGB images
(colour-science's ``RGB_to_YCbCr``: Kr = 0.2126, Kb = 0.0722, codes rounded to 0..255, chroma offset 128),
as JPEG AI's quality assessment framework does (its chroma offset is 127.5, ours ITU's 128: PSNR-U/-V
may differ by rounding); FSIM is FSIMc on RGB, as there. Images too small for a metric get NaN
(:attr:`Metric.min_side`, the reason in :attr:`Metric.too_small`) instead of an error.

BD deltas take each metric on the scale its ``bd`` names (:func:`bd_quality`): PSNRs and PSNR-HVS(-M)
in dB and the other metrics as they are, as JPEG AI's reporting template does; NLPD, a distance, as
1 − NLPD (JPEG AI's convention, so higher is better); MS-SSIM-RGB in CompressAI's dB,
−10·log10(1 − MS-SSIM), as the leaderboard always had it. :data:`JPEG_AI_AVERAGE` are the seven
metrics whose BD-rates JPEG AI averages into its headline figure.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from licbench.core.codec import CodecError


class Pair:
    """A reference image and its decoded image, ``uint8`` RGB arrays ``[H, W, 3]``, with what several
    metrics share (the BT.709 planes, the PSNR-HVS pair) computed once."""

    def __init__(self, reference: np.ndarray, decoded: np.ndarray):
        if reference.shape != decoded.shape or reference.ndim != 3 or reference.shape[2] != 3:
            raise ValueError(f"a pair of [H, W, 3] images is needed, got {reference.shape} and {decoded.shape}")
        if reference.dtype != np.uint8 or decoded.dtype != np.uint8:
            raise ValueError(f"8-bit images are needed, got {reference.dtype} and {decoded.dtype}")
        self.reference, self.decoded = reference, decoded
        self._shared: dict[str, object] = {}

    @property
    def height(self) -> int:
        return self.reference.shape[0]

    @property
    def width(self) -> int:
        return self.reference.shape[1]

    @cached_property
    def ycbcr(self) -> tuple[np.ndarray, np.ndarray]:
        """Both images as 8-bit full-range BT.709 Y'CbCr, ``uint8 [H, W, 3]`` (colour-science)."""
        return ycbcr709(self.reference), ycbcr709(self.decoded)

    def plane(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Plane ``index`` (0 Y, 1 Cb, 2 Cr) of both images."""
        reference, decoded = self.ycbcr
        return reference[..., index], decoded[..., index]

    def luma_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Both Y planes as float tensors ``[1, 1, H, W]`` of code values 0..255."""
        return tuple(torch.from_numpy(y.astype(np.float32))[None, None] for y in self.plane(0))

    def rgb_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Both images as float tensors ``[1, 3, H, W]`` of code values 0..255 (NHWC memory)."""
        return tuple(torch.from_numpy(image.astype(np.float32)).unsqueeze(0).permute(0, 3, 1, 2)
                     for image in (self.reference, self.decoded))

    def shared(self, key: str, compute: Callable[[], object]):
        """``compute()`` once for this pair (what two metrics share)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]


@dataclass(frozen=True)
class Metric:
    """A registered metric: its column ``name``, table ``label``, function, package and conventions."""
    name: str
    label: str
    function: Callable[[Pair], float]
    package: str  # the pip package (and module) that computes it
    key: str  # its key in CompressAI-schema JSON results
    bd: str = "value"  # how it enters BD deltas: "value", "db" (−10·log10(1 − v)) or "one_minus" (1 − v)
    min_side: int = 1  # images whose shorter side is smaller get NaN
    needs: tuple[str, ...] = ()  # modules it imports
    install: str = ""  # how to install what it needs

    @property
    def too_small(self) -> str:
        """Why an image under :attr:`min_side` gets NaN."""
        return f"{self.label} needs images ≥ {self.min_side} px on the shorter side"

    def __call__(self, pair: Pair) -> float:
        if min(pair.height, pair.width) < self.min_side:
            return math.nan
        with torch.inference_mode():
            return float(self.function(pair))


REGISTRY: dict[str, Metric] = {}
SETS = {
    "default": ["psnr", "ms_ssim"],
    "ctc": ["psnr", "psnr_y", "psnr_u", "psnr_v", "ms_ssim", "ms_ssim_y", "iw_ssim", "vif", "fsim", "nlpd",
            "psnr_hvs", "psnr_hvs_m", "vmaf"],
}
DEFAULT = SETS["default"]
#: JPEG AI's headline figure: the mean of these BD-rates (NLPD entering as 1 − NLPD). They are the
#: metrics JPEG AI's training framework averages (``msssim_Torch``, i.e. pytorch-msssim on Y; ``vif``;
#: ``fsim``; ``nlpd``; ``iw_ssim``; ``vmaf``; ``psnrHVS``, i.e. PSNR-HVS, not -M).
JPEG_AI_AVERAGE = ["ms_ssim_y", "iw_ssim", "vif", "fsim", "nlpd", "psnr_hvs", "vmaf"]
AVERAGE_LABEL = "JPEG AI avg"


def register(name: str, label: str, package: str, key: str, **options):
    """Register the decorated function ``f(pair) -> float`` as metric ``name``."""
    def add(function: Callable[[Pair], float]) -> Callable[[Pair], float]:
        REGISTRY[name] = Metric(name, label, function, package, key, **options)
        return function
    return add


def resolve(spec) -> list[str]:
    """The metric names of a ``metrics=`` value: a set's name (:data:`SETS`), a metric's, or a list
    of both, in order, each once, the default pair first where the list lacks it (the tables, plots
    and leaderboard rest on PSNR and MS-SSIM); a CodecError naming what is unknown."""
    items = [spec] if isinstance(spec, str) else list(spec or [])
    names: list[str] = []
    for item in map(str, items):
        for name in SETS.get(item, [item]):
            if name not in REGISTRY:
                raise CodecError(f"metrics: unknown metric {item!r}; known: {', '.join(REGISTRY)} "
                                 f"and the sets {', '.join(SETS)}")
            if name not in names:
                names.append(name)
    return [name for name in DEFAULT if name not in names] + names


def check_available(names: Iterable[str]) -> None:
    """A CodecError, before anything is measured, for a metric whose package is not installed."""
    missing = []
    for name in names:
        metric = REGISTRY[name]
        lacking = [module for module in metric.needs if importlib.util.find_spec(module) is None]
        if lacking:
            how = metric.install or f"pip install {metric.package}"
            missing.append(f"{metric.label} needs {', '.join(lacking)} ({how})")
        elif name == "vmaf" and not _libvmaf()[0]:
            missing.append(f"VMAF: {_libvmaf()[1]}")
    if missing:
        raise CodecError("metrics not available here: " + "; ".join(missing))


def columns(names: Iterable[str]) -> list[str]:
    """The registered metrics among ``names`` (column names), in their order."""
    return [name for name in names if name in REGISTRY]


def evaluate(names: Iterable[str], reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """Every metric of ``names`` on one pair of ``uint8 [H, W, 3]`` images."""
    pair = Pair(reference, decoded)
    return {name: REGISTRY[name](pair) for name in names}


def bd_quality(values, name: str) -> np.ndarray:
    """``values`` of metric ``name`` on the scale its BD deltas use (:attr:`Metric.bd`)."""
    values = np.asarray(values, dtype=float)
    scale = REGISTRY[name].bd if name in REGISTRY else "value"
    if scale == "db":
        return -10 * np.log10(1 - values)
    return 1 - values if scale == "one_minus" else values


def ycbcr709(rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB as 8-bit full-range ITU-R BT.709 Y'CbCr codes (colour-science)."""
    from colour.models import WEIGHTS_YCBCR, RGB_to_YCbCr

    codes = RGB_to_YCbCr(rgb, K=WEIGHTS_YCBCR["ITU-R BT.709"], in_bits=8, in_legal=False, in_int=True,
                         out_bits=8, out_legal=False, out_int=True)
    return np.clip(codes, 0, 255).astype(np.uint8)


def psnr_of(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two 8-bit arrays, the MSE pooled over all their values: ``10 log10(255² / MSE)``;
    inf for identical arrays (CompressAI's PSNR, which the benchmark always used)."""
    mse = np.mean(np.square(reference.astype(np.float64) - decoded.astype(np.float64)))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


MS_SSIM_MIN_SIDE = 161  # pytorch_msssim: the shorter side must exceed (win_size - 1) * 2**4 = 160


@register("psnr", "PSNR", "numpy", "psnr-rgb")
def psnr_rgb(pair: Pair) -> float:
    """PSNR-RGB: the MSE pooled over the three 8-bit channels (numpy; CompressAI's definition)."""
    return psnr_of(pair.reference, pair.decoded)


@register("psnr_y", "PSNR-Y", "colour-science", "psnr-y", needs=("colour",))
def psnr_y(pair: Pair) -> float:
    """PSNR of the BT.709 Y plane (colour-science for the conversion)."""
    return psnr_of(*pair.plane(0))


@register("psnr_u", "PSNR-U", "colour-science", "psnr-u", needs=("colour",))
def psnr_u(pair: Pair) -> float:
    """PSNR of the BT.709 Cb plane (colour-science for the conversion)."""
    return psnr_of(*pair.plane(1))


@register("psnr_v", "PSNR-V", "colour-science", "psnr-v", needs=("colour",))
def psnr_v(pair: Pair) -> float:
    """PSNR of the BT.709 Cr plane (colour-science for the conversion)."""
    return psnr_of(*pair.plane(2))


@register("ms_ssim", "MS-SSIM", "pytorch-msssim", "ms-ssim-rgb", bd="db", min_side=MS_SSIM_MIN_SIDE,
          needs=("pytorch_msssim",))
def ms_ssim_rgb(pair: Pair) -> float:
    """MS-SSIM on RGB: pytorch-msssim's ``ms_ssim(data_range=255)`` (CompressAI's). The images' NHWC memory
    seen as NCHW: its depthwise convolutions run ~3x faster on CPU than on NCHW memory (see
    ``python -m licbench.tools.suite_speed``)."""
    from pytorch_msssim import ms_ssim

    reference, decoded = pair.rgb_tensors()
    return ms_ssim(reference, decoded, data_range=255).item()


@register("ms_ssim_y", "MS-SSIM-Y", "pytorch-msssim", "ms-ssim-y", min_side=MS_SSIM_MIN_SIDE,
          needs=("pytorch_msssim", "colour"))
def ms_ssim_y(pair: Pair) -> float:
    """MS-SSIM of the BT.709 Y plane: pytorch-msssim's ``ms_ssim(data_range=255)``, as JPEG AI's framework."""
    from pytorch_msssim import ms_ssim

    return ms_ssim(*pair.luma_tensors(), data_range=255).item()


@register("iw_ssim", "IW-SSIM", "piq", "iw-ssim", min_side=161, needs=("piq", "colour"))
def iw_ssim(pair: Pair) -> float:
    """IW-SSIM of the BT.709 Y plane: ``piq.information_weighted_ssim`` (5 scales of an 11-px window)."""
    import piq

    reference, decoded = pair.luma_tensors()
    return piq.information_weighted_ssim(decoded, reference, data_range=255.0).item()


@register("vif", "VIFp", "piq", "vif", min_side=41, needs=("piq", "colour"))
def vif(pair: Pair) -> float:
    """VIF in the pixel domain (VIFp) of the BT.709 Y plane: ``piq.vif_p`` (σ²_n = 2 on 0..255 codes)."""
    import piq

    reference, decoded = pair.luma_tensors()
    return piq.vif_p(decoded, reference, data_range=255.0).item()


@register("fsim", "FSIM", "piq", "fsim", min_side=2, needs=("piq",))
def fsim(pair: Pair) -> float:
    """FSIMc (chromatic FSIM) on RGB: ``piq.fsim(chromatic=True)``, as JPEG AI's framework."""
    import piq

    reference, decoded = pair.rgb_tensors()
    return piq.fsim(decoded, reference, data_range=255.0, chromatic=True).item()


PYIQA_INSTALL = ("pip install --no-deps pyiqa==0.1.16 'huggingface_hub>=0.20,<1' (its declared dependencies "
                 "would replace numpy and torch; make install does this)")


@functools.cache
def _nlpd_model():
    from pyiqa.archs.nlpd_arch import NLPD

    return NLPD(channels=1, test_y_channel=True).eval()


@register("nlpd", "NLPD", "pyiqa", "nlpd", bd="one_minus", needs=("pyiqa", "colour"), install=PYIQA_INSTALL)
def nlpd(pair: Pair) -> float:
    """NLPD of the BT.709 Y plane: pyiqa's ``NLPD`` (Laparra et al. 2016, the MATLAB code's symmetric
    padding). Its single-channel model takes luma from RGB (0.299, 0.587, 0.114, summing to 1): the Y
    plane given as three equal channels is that luma unchanged."""
    reference, decoded = (y.expand(1, 3, -1, -1) / 255 for y in pair.luma_tensors())
    return _nlpd_model()(decoded, reference).item()


def _pad8(plane: np.ndarray) -> np.ndarray:
    """A plane in [0, 1], replicate-padded to a multiple of 8 each way (psnr-hvsm's 8x8 DCT blocks;
    as JPEG AI's framework pads)."""
    height, width = plane.shape
    return np.pad(plane.astype(np.float64) / 255, ((0, -height % 8), (0, -width % 8)), mode="edge")


def _hvs(pair: Pair) -> tuple[float, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # its import prints that its optional torch backend is absent
        from psnr_hvsm import psnr_hvs_hvsm_cpp

    def compute():
        hvs, hvs_m = psnr_hvs_hvsm_cpp(*(_pad8(y) for y in pair.plane(0)))
        return float(hvs), float(hvs_m)
    return pair.shared("psnr_hvs_hvsm", compute)


@register("psnr_hvs", "PSNR-HVS", "psnr-hvsm", "psnr-hvs", needs=("psnr_hvsm", "colour"))
def psnr_hvs(pair: Pair) -> float:
    """PSNR-HVS of the BT.709 Y plane: psnr-hvsm's ``psnr_hvs_hvsm_cpp`` (its C++ backend; 100 for identical)."""
    return _hvs(pair)[0]


@register("psnr_hvs_m", "PSNR-HVS-M", "psnr-hvsm", "psnr-hvs-m", needs=("psnr_hvsm", "colour"))
def psnr_hvs_m(pair: Pair) -> float:
    """PSNR-HVS-M of the BT.709 Y plane: psnr-hvsm's ``psnr_hvs_hvsm_cpp`` (C++ backend; 100 for identical)."""
    return _hvs(pair)[1]


VMAF_MODEL = "vmaf_v0.6.1"
VMAF_MIN_SIDE = 17  # libvmaf refuses smaller frames


@functools.cache
def _libvmaf() -> tuple[str | None, str]:
    """(the ffmpeg executable with libvmaf, or None; why not)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None, "needs imageio-ffmpeg (pip install imageio-ffmpeg), whose ffmpeg build has libvmaf"
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    filters = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    if " libvmaf " not in filters:
        return None, (f"the ffmpeg at {exe} has no libvmaf filter (unset IMAGEIO_FFMPEG_EXE to use "
                      "imageio-ffmpeg's own build)")
    return exe, ""


@register("vmaf", "VMAF", "imageio-ffmpeg", "vmaf", min_side=VMAF_MIN_SIDE, needs=("imageio_ffmpeg", "colour"))
def vmaf(pair: Pair) -> float:
    """VMAF (model vmaf_v0.6.1, one frame, so no motion) of the BT.709 8-bit Y'CbCr images: Netflix's
    libvmaf through the ``libvmaf`` filter of the ffmpeg build that imageio-ffmpeg ships (VMAF reads
    luma only)."""
    exe, why = _libvmaf()
    if exe is None:
        raise CodecError(f"VMAF: {why}")
    reference, decoded = pair.ycbcr
    size = f"{pair.width}x{pair.height}"
    with tempfile.TemporaryDirectory(prefix="licbench-vmaf-") as tmp:
        paths = [Path(tmp) / name for name in ("decoded.yuv", "reference.yuv", "log.json")]
        for path, image in zip(paths, (decoded, reference)):
            np.ascontiguousarray(image.transpose(2, 0, 1)).tofile(path)  # planar 4:4:4
        raw = ["-f", "rawvideo", "-pix_fmt", "yuv444p", "-s", size, "-i"]
        filtergraph = (f"[0:v][1:v]libvmaf=model=version={VMAF_MODEL}:log_fmt=json:log_path={paths[2]}:"
                       f"n_threads={torch.get_num_threads()}")
        proc = subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-nostdin", *raw, str(paths[0]),
                               *raw, str(paths[1]), "-lavfi", filtergraph, "-f", "null", "-"],
                              capture_output=True, text=True, env={**os.environ, "AV_LOG_FORCE_NOCOLOR": "1"})
        if proc.returncode != 0:
            raise RuntimeError(f"libvmaf failed on a {size} image: {proc.stderr.strip()[-300:]}")
        return float(json.loads(paths[2].read_text())["pooled_metrics"]["vmaf"]["mean"])
