"""What a codec costs: parameters and multiply-accumulates per pixel (torch.utils.flop_counter).

MACs are counted on the network ops torch dispatches (convolutions, matmuls) while encoding
and decoding one synthetic image; the entropy coder (C++ rANS) and baselines' native code
are not counted, so baselines report none.
"""
from __future__ import annotations

from torch.utils.flop_counter import FlopCounterMode

from licbench.datamodules.synthetic import synthetic_image


def parameters(codec) -> int | None:
    model = codec.network
    return None if model is None else sum(p.numel() for p in model.parameters())


def kmac_per_pixel(codec, size: int = 256) -> dict[str, float] | None:
    """Encoder and decoder kMAC per pixel on a ``size``² image (one MAC = two FLOPs)."""
    model = codec.network
    if model is None:
        return None
    x = synthetic_image(size, size, seed=0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # the counter's module tracker hooks autograd, which frozen weights skip
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False) as encoder:
            data = codec.encode(x)
        with FlopCounterMode(display=False) as decoder:
            codec.decode(data)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return {side: counter.get_total_flops() / 2 / size**2 / 1e3 for side, counter in
            (("encode", encoder), ("decode", decoder))}
