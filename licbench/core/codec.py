"""The codec contract shared by baselines, rate-point views and learned methods.

A codec *instance* is one rate point (JPEG q=50, one trained checkpoint, Toderici at k
iterations). ``encode`` maps a float image ``[3, H, W]`` in ``[0, 1]`` to bytes; ``decode``
maps those bytes back to an image of the same size, needing nothing but the bytes and the
codec's own weights.

:class:`Codec` is everything the pipeline asks of a codec: the two required methods, and the
optional parts with their defaults — an entropy estimate, a model id, provenance, the rate
points one set of weights offers and picking one of them by label. Baselines, learned codecs
(``lightning_modules.base.LearnedCodec``) and :class:`RatePoint` views all inherit it.
"""
from __future__ import annotations

import abc
import hashlib
import math

import torch


class CodecError(ValueError):
    """The single error type for bad input: a bad image, bad or hostile bytes, a bad configuration."""


class UnknownFormat(CodecError):
    """The bytes are not in this decoder's format at all (as opposed to a damaged stream)."""


class Codec(abc.ABC):
    name: str = "codec"  # stable id used in tables: jpeg, jpeg2000, balle2017, ...
    rate: float | int | str  # the rate-point label (JPEG quality, λ, iterations, ...)
    model_id: str | None = None  # a hash of the weights (learned codecs); keys resumed benchmark rows
    provenance: dict = {}  # where the weights came from: a checkpoint's data, budget and command
    network: torch.nn.Module | None = None  # the network whose parameters and MACs the leaderboard counts

    @classmethod
    def codec_name(cls, config: dict) -> str:
        """The ``name`` of ``cls(**config)``, before it is built: the class's own, unless the class takes
        its name from its config (``compressai_models.CompressAIModel``: one class, a name per YAML)."""
        return cls.name

    @classmethod
    def from_checkpoint(cls, config: dict, state_dict: dict, provenance: dict, model_id: str) -> Codec:
        """The codec a checkpoint describes: ``cls(**config)`` with its weights, provenance and id.
        A class whose parameter names changed maps the old names in ``renamed_weights``."""
        codec = cls(**config)
        codec.load_state_dict(cls.renamed_weights(state_dict))
        codec.eval()
        codec.provenance, codec.model_id = provenance, model_id
        return codec

    @staticmethod
    def renamed_weights(state_dict: dict) -> dict:
        """Old checkpoints' weights under today's parameter names (unchanged by default)."""
        return state_dict

    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> bytes:
        """The image ``[3, H, W]`` in [0, 1] as bytes."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> torch.Tensor:
        """The image ``[3, H, W]`` in [0, 1] that ``data`` codes."""

    def estimate_bits(self, x: torch.Tensor, data: bytes | None = None) -> float:
        """The codec's own estimate of its payload in bits (an entropy model's); NaN without one.
        ``data``, ``x``'s stream when the caller has just coded it, lets a codec read its estimate off it."""
        return math.nan

    def decoder_bytes(self) -> int | None:
        """Bytes of the weights a receiver must hold to decode this codec's streams; None without a
        network at the decoder (baselines: their decoders are native code)."""
        return None

    def rate_points(self, **points) -> list[Codec]:
        """The codecs this one offers (``points``: the codec config's ``points:``); itself by default."""
        if points:
            raise CodecError(f"{self.name} has one rate point; it takes no points {sorted(points)}")
        return [self]

    def at_rate(self, rate, **points) -> Codec:
        """The rate point labelled ``rate`` (``licbench encode codec.rate=...``)."""
        offered = self.rate_points(**points)
        found = [codec for codec in offered if str(codec.rate) == str(rate)]
        if not found:
            raise CodecError(f"{self.name} has no rate point {rate!r}; it offers "
                             + ", ".join(str(codec.rate) for codec in offered))
        return found[0]


class RatePoint(Codec):
    """One rate point of a multi-rate model: shares its weights, codes with ``setting``
    (keyword arguments of the model's ``encode`` and ``estimate_bits``)."""

    def __init__(self, model: Codec, rate, **setting):
        self.model, self.rate, self.setting = model, rate, setting

    name = property(lambda self: self.model.name)
    model_id = property(lambda self: self.model.model_id)
    provenance = property(lambda self: self.model.provenance)
    network = property(lambda self: self.model.network)

    def encode(self, x: torch.Tensor) -> bytes:
        return self.model.encode(x, **self.setting)

    def decode(self, data: bytes) -> torch.Tensor:
        return self.model.decode(data)

    def estimate_bits(self, x: torch.Tensor, data: bytes | None = None) -> float:
        return self.model.estimate_bits(x, data, **self.setting)

    def decoder_bytes(self) -> int | None:
        return self.model.decoder_bytes()  # the weights' receiver decodes every rate point

    def __repr__(self) -> str:
        return f"RatePoint({self.name} @ {self.rate})"


def weights_id(name: str, state_dict: dict) -> str:
    """``name-<16 hex digits>``: a hash of a state dict's names and tensors (entropy tables included)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(state_dict.items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{name}-{digest.hexdigest()[:16]}"


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
