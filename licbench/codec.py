"""The codec contract shared by baselines and learned methods.

A codec *instance* is one rate point (JPEG q=50, one trained checkpoint, Toderici at k
iterations). ``encode`` maps a float image ``[3, H, W]`` in ``[0, 1]`` to bytes; ``decode``
maps those bytes back to an image of the same size, needing nothing but the bytes and the
codec's own weights.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


class CodecError(ValueError):
    """The single error type for bad input to a codec: bad image, bad or hostile bytes."""


class UnknownFormat(CodecError):
    """The bytes are not in this decoder's format at all (as opposed to a damaged stream)."""


@runtime_checkable
class Codec(Protocol):
    name: str  # stable id used in tables: jpeg, jpeg2000, balle2017, ...
    rate: float | int | str  # the rate-point label (JPEG quality, target bpp, lambda, ...)

    def encode(self, x: torch.Tensor) -> bytes: ...

    def decode(self, data: bytes) -> torch.Tensor: ...


def check_image(x: torch.Tensor) -> torch.Tensor:
    """Validate a codec input: a float tensor [3, H, W] with values in [0, 1] and H, W >= 1."""
    if not isinstance(x, torch.Tensor):
        raise CodecError(f"expected a torch.Tensor image, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[0] != 3 or x.shape[1] < 1 or x.shape[2] < 1:
        raise CodecError(f"expected an image tensor of shape [3, H, W] with H, W >= 1, got {list(x.shape)}")
    if not x.is_floating_point():
        raise CodecError(f"expected a float image in [0, 1], got dtype {x.dtype}")
    low, high = torch.aminmax(x)
    if not (low >= 0 and high <= 1):  # also false for NaN
        raise CodecError("image values must be finite and within [0, 1]")
    return x


def to_uint8_hwc(x: torch.Tensor):
    """[3, H, W] float in [0, 1] -> numpy uint8 [H, W, 3] (round to nearest)."""
    return (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def from_uint8_hwc(a) -> torch.Tensor:
    """numpy uint8 [H, W, 3] -> [3, H, W] float in [0, 1]."""
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255)


def explain(err: BaseException) -> str:
    """The message of the innermost cause (Hydra wraps a class's own error when it instantiates it)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
