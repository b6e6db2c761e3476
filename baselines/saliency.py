"""Region-of-interest maps for :mod:`licbench.baselines.prakash2017`: uint8 ``[H, W, 3]`` RGB -> float ``[H, W]``,
larger where the content matters.

- ``spectral_residual`` (default, tag ``sr``): OpenCV's static spectral-residual saliency (Hou & Zhang, CVPR 2007),
  from opencv-contrib; no weights. *Not* the paper's map.
- ``fine_grained`` (tag ``fg``): OpenCV's static fine-grained saliency (Montabone & Soto, 2010); no weights.
  *Not* the paper's map either.
- ``msroi`` (tag ``msroi``): the paper's multi-structure region of interest (Prakash et al., DCC 2017, its MS-ROI
  section), a VGG-16 trunk with global average pooling over a last convolution and class activation maps (Zhou et
  al., CVPR 2016) of the top classes, summed. The authors' weights (a TensorFlow checkpoint of a multi-label
  Caltech-256 training) cannot be downloaded here nor loaded as they are, so it runs only on weights the user gives
  (``map_weights``: a state dict of :class:`MSROI`, read with ``torch.load(weights_only=True)``; torchvision's
  VGG-16 ``features.N`` tensors are its ``trunk.N``, a start for training one).
"""
from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from licbench.core.codec import CodecError


def _opencv_saliency(create: str):
    try:
        import cv2

        cv2.saliency  # noqa: B018 (opencv-python without contrib has no saliency module)
    except (ImportError, AttributeError):
        raise CodecError("this map needs OpenCV's contrib saliency module: pip install opencv-contrib-python-headless"
                         " (and no other opencv-python wheel beside it)") from None

    def saliency(pixels: np.ndarray) -> np.ndarray:
        ok, found = getattr(cv2.saliency, create)().computeSaliency(np.ascontiguousarray(pixels[..., ::-1]))  # BGR
        if not ok:
            raise CodecError(f"OpenCV's {create} failed on a {pixels.shape[0]}x{pixels.shape[1]} image")
        return found.astype(np.float32)

    return saliency


class MSROI(nn.Module):
    """The paper's map network (MS-ROI section): VGG-16's thirteen 3×3 convolutions (no fifth pooling), a linear 3×3
    convolution to ``features`` maps, global average pooling and a bias-free linear layer to ``classes``
    (Caltech-256 and its clutter class). The map sums the min–max normalised class activation maps of the
    ``top_k`` highest-scoring classes, halving the weight at each rank, and is upsampled to the image."""

    SIZE = 224  # the network's input side (the public code's image_h, image_w)
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's VGG-16 input normalisation

    def __init__(self, features: int = 1024, classes: int = 257, top_k: int = 2):
        super().__init__()
        self.trunk = make_layers(cfgs["D"][:-1])
        self.conv6 = nn.Conv2d(512, features, 3, padding=1)
        self.classifier = nn.Linear(features, classes, bias=False)
        self.top_k = top_k
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores ``[N, classes]`` and last feature maps ``[N, features, h, w]`` of ``x`` in [0, 1]."""
        maps = self.conv6(self.trunk((x - self.mean) / self.std))
        return self.classifier(maps.mean((2, 3))), maps

    @torch.inference_mode()
    def roi(self, pixels: np.ndarray) -> np.ndarray:
        """The map of uint8 RGB ``pixels`` ``[H, W, 3]``, float ``[H, W]`` in [0, 1]."""
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float().div(255)
        scores, maps = self(F.interpolate(x, size=(self.SIZE, self.SIZE), mode="bilinear", align_corners=False,
                                          antialias=True))
        top = scores[0].topk(min(self.top_k, scores.shape[1])).indices
        cams = torch.einsum("kc,chw->khw", self.classifier.weight[top], maps[0])
        cams = _normalised(cams.flatten(1)).view_as(cams)
        roi = (cams * 0.5 ** torch.arange(len(top), dtype=cams.dtype)[:, None, None]).sum(0)
        roi = _normalised(roi.flatten()[None]).view(1, 1, *roi.shape)
        return F.interpolate(roi, size=pixels.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()


def _normalised(rows: torch.Tensor) -> torch.Tensor:
    low, high = rows.aminmax(dim=1, keepdim=True)
    return (rows - low) / (high - low).clamp_min(1e-12)


def load_msroi(path: str | Path | None, top_k: int) -> MSROI:
    """:class:`MSROI` with the weights at ``path``; a one-line CodecError without them or for a wrong file."""
    if path is None:
        raise CodecError("the msroi map (the paper's CNN) needs trained weights: set codec.map_weights=PATH "
                         "(a state dict of licbench.baselines.saliency.MSROI), or use map=spectral_residual")
    if not Path(path).is_file():
        raise CodecError(f"no such msroi weights file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise CodecError(f"cannot read msroi weights {path}: {str(err).splitlines()[0]}") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or "conv6.weight" not in state or "classifier.weight" not in state:
        raise CodecError(f"{path} is not a state dict of licbench.baselines.saliency.MSROI")
    model = MSROI(state["conv6.weight"].shape[0], state["classifier.weight"].shape[0], top_k)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CodecError(f"{path}: not MSROI weights ({str(err).splitlines()[-1].strip()})") from None
    return model.eval()


MAPS = {"spectral_residual": "sr", "fine_grained": "fg", "msroi": "msroi"}  # name -> tag in rate labels


def roi_map(name: str, weights: str | Path | None = None, top_k: int = 2) -> tuple[Callable, MSROI | None]:
    """The map called ``name`` (one of :data:`MAPS`) as a function of uint8 RGB pixels, and its network if any."""
    if name == "msroi":
        model = load_msroi(weights, top_k)
        return model.roi, model
    opencv = {"spectral_residual": "StaticSaliencySpectralResidual_create",
              "fine_grained": "StaticSaliencyFineGrained_create"}
    if name not in opencv:
        raise CodecError(f"unknown region-of-interest map {name!r}; choose one of {', '.join(MAPS)}")
    return _opencv_saliency(opencv[name]), None
