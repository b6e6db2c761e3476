"""Stock, Joulin, Gribonval, Graham, Jégou: And the Bit Goes Down — revisiting the quantization of
neural networks (ICLR 2020; arXiv:1907.05686). Product quantization of a network's weights that
preserves the layers' outputs on in-domain inputs rather than the weights themselves.

- Sub-vectors (§3.1, §3.2): a fully connected layer's weight (the paper's C_in × C_out matrix, torch's
  ``[out, in]``) is cut along its input dimension into sub-vectors of d = ``block`` consecutive input
  weights of one output (d = the largest divisor of C_in that divides ``block``, e.g. 2 for CocoNet's 6
  inputs at block 4); a transposed convolution's sub-vectors are its K × K kernels, d = K² (§3.2 does
  the same for convolutions). Each layer has its own codebook of k = min(``codewords``, sub-vectors)
  codewords, and each sub-vector is stored as the index of one.
- Objective (§3.1): the error of the layer's outputs y = xW on in-domain inputs x, ‖x(W − Ŵ)‖², not the
  weights' ‖W − Ŵ‖² that k-means minimizes. As in the authors' code (``PQ.unroll_activations`` in
  facebookresearch/kill-the-bits) the input blocks matching the sub-vectors are stacked into one x̃ of
  d columns, so one d × d matrix H = x̃ᵀx̃ weighs every sub-vector: ‖x̃(v − c)‖² = (v − c)ᵀH(v − c).
  A transposed convolution's x̃ holds K × K patches of its zero-dilated input (a transposed convolution
  is a convolution of that input with the flipped kernels), sampled at ``rows`` output positions.
- EM (§3.1): the E-step gives each sub-vector the codeword of least (v − c)ᵀH(v − c); the M-step makes
  each codeword the least-squares solution of argmin_c Σ_v ‖x̃(c − v)‖² over its sub-vectors, which for
  an x̃ of full column rank is their mean. The codebook starts from k-means in weight space (scipy's
  ``kmeans2``, k-means++ seeding), and an empty cluster is re-seeded with the sub-vector of largest
  error (the authors' code splits the most populated cluster instead).
- Bottom-up (§3.3): layers are quantized in order, each on the activations of the network whose lower
  layers are already quantized, so that each layer's codebook makes up for the error below it.
- Global fine-tuning (§3.4): the codewords and the network's other parameters (biases, GDN's) are
  then trained on a loss of the network's output with the assignments fixed; a codeword's gradient is
  the sum of its sub-vectors' (the paper averages them: with Adam, the same update).
- Bytes (:func:`pack`; beyond the paper, which stores ⌈log₂ k⌉ bits per index): the codebooks in
  float16, and the assignments, relabelled per layer from the most used codeword down, coded with
  compressai's rANS under one histogram for the whole network (sent as side information).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from compressai.ans import RansDecoder, RansEncoder
from scipy.cluster.vq import kmeans2
from torch import nn
from torch.func import functional_call

from licbench.core.codec import CodecError
from licbench.lightning_modules.entropy import (
    check_length,
    check_recoded,
    fewest_bits,
    frequency_tables,
    histogram_tables,
    zero_padded,
)

QUANTIZABLE = (nn.Linear, nn.ConvTranspose2d)


@dataclass
class Quantized:
    """One layer's product quantization: ``codebook`` [k, d], an index into it per sub-vector."""
    codebook: torch.Tensor
    assignments: torch.Tensor
    shape: tuple[int, ...]

    def weight(self, codebook: torch.Tensor | None = None) -> torch.Tensor:
        return (self.codebook if codebook is None else codebook)[self.assignments].reshape(self.shape)


def block_size(layer: nn.Module, block: int) -> int:
    if isinstance(layer, nn.ConvTranspose2d):
        return layer.kernel_size[0] * layer.kernel_size[1]
    return math.gcd(block, layer.in_features)


def layout(layer: nn.Module, block: int, codewords: int) -> tuple[int, int, int]:
    """(k, d, number of sub-vectors) of ``layer``: what its bytes hold, known from its shape alone."""
    d = block_size(layer, block)
    n = layer.weight.numel() // d
    return min(codewords, n), d, n


def subvectors(layer: nn.Module, d: int) -> torch.Tensor:
    """[n, d]: a linear layer's consecutive input weights of each output, a transposed convolution's kernels."""
    return layer.weight.detach().reshape(-1, d)


def gram(layer: nn.Module, x: torch.Tensor, d: int, rows: int, generator: torch.Generator) -> torch.Tensor:
    """H = x̃ᵀx̃ (float64, d × d) of the layer's inputs ``x`` (§3.1; x̃: every input block of d values stacked)."""
    if isinstance(layer, nn.Linear):
        blocks = x.reshape(-1, d)
    else:
        blocks = dilated_patches(layer, x, rows, generator)
    blocks = blocks.double()
    return blocks.T @ blocks


def dilated_patches(layer: nn.ConvTranspose2d, x: torch.Tensor, rows: int, generator: torch.Generator) -> torch.Tensor:
    """K × K patches of the zero-dilated input that ``rows`` random output positions of the transposed
    convolution see, per input channel, flattened in the order of the layer's own kernels (flipped)."""
    (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
    batch, channels, height, width = x.shape
    out_h, out_w = ((size - 1) * s - 2 * p + k + layer.output_padding[0] for size in (height, width))
    b, i, j = (torch.randint(n, (rows,), generator=generator) for n in (batch, out_h, out_w))
    taps = torch.arange(k)

    def source(position, size):  # input row of each tap of the dilated input (valid where on a sample)
        u = position[:, None] + taps - (k - 1 - p)
        return (u // s).clamp(0, size - 1), (u >= 0) & (u % s == 0) & (u // s < size)

    (ri, rv), (ci, cv) = source(i, height), source(j, width)
    patches = x[b[:, None, None], :, ri[:, :, None], ci[:, None, :]] * (rv[:, :, None] & cv[:, None, :])[..., None]
    return patches.permute(0, 3, 1, 2).flip(2, 3).reshape(-1, k * k)  # [rows·C, K²], the kernel's tap order


def distances(v: torch.Tensor, codebook: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """(v − c)ᵀH(v − c) for every sub-vector (rows of ``v``) and codeword: [n, k]."""
    vh, ch = v @ h, codebook @ h
    return (vh * v).sum(1, keepdim=True) - 2 * vh @ codebook.T + (ch * codebook).sum(1)


def kmeans(v: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of the sub-vectors in weight space (scipy, k-means++): the initial codebook, and the
    baseline the output objective is measured against."""
    with warnings.catch_warnings():  # empty clusters are re-seeded by em()
        warnings.simplefilter("ignore")
        codebook, labels = kmeans2(v.double().numpy(), k, minit="++", seed=np.random.default_rng(seed))
    return torch.from_numpy(codebook), torch.from_numpy(labels).long()


def em(v: torch.Tensor, h: torch.Tensor, k: int, iterations: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook [k, d] and assignments minimizing Σ (v − c)ᵀH(v − c) (§3.1), from k-means in weight space."""
    v, h = v.double(), h.double()
    codebook = kmeans(v, k, seed)[0]
    for _ in range(iterations):
        error, assignments = distances(v, codebook, h).min(1)  # E-step
        for empty in torch.nonzero(torch.bincount(assignments, minlength=k) == 0).flatten():
            worst = error.argmax()
            codebook[empty], error[worst] = v[worst], -math.inf
        assignments = distances(v, codebook, h).argmin(1)
        counts = torch.bincount(assignments, minlength=k)
        sums = torch.zeros_like(codebook).index_add_(0, assignments, v)  # M-step: each cluster's mean
        codebook = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], codebook)
    return codebook.float(), distances(v, codebook, h).argmin(1)


@torch.no_grad()
def quantize(network: nn.Sequential, inputs: torch.Tensor, block: int, codewords: int, iterations: int,
             rows: int, seed: int) -> dict[str, Quantized]:
    """Product-quantize every linear and transposed-convolution layer of ``network`` in place, bottom-up
    (§3.3): each on the activations ``inputs`` reach through the layers below, already quantized."""
    generator, quantized, x = torch.Generator().manual_seed(seed), {}, inputs
    for name, layer in network.named_children():
        if isinstance(layer, QUANTIZABLE):
            k, d, _ = layout(layer, block, codewords)
            v = subvectors(layer, d)
            codebook, assignments = em(v, gram(layer, x, d, rows, generator), k, iterations, seed)
            quantized[name] = Quantized(codebook, assignments, tuple(layer.weight.shape))
            layer.weight.copy_(quantized[name].weight())
        x = layer(x)
    return quantized


def finetune(network: nn.Sequential, quantized: dict[str, Quantized], loss: Callable, steps: int, lr: float) -> None:
    """Global fine-tuning (§3.4): the codewords and the unquantized parameters trained for ``steps`` on
    ``loss(forward)`` (``forward``: the quantized network as a function), the assignments fixed."""
    codebooks = {name: nn.Parameter(q.codebook.clone()) for name, q in quantized.items()}
    others = [p for n, p in network.named_parameters() if n.removesuffix(".weight") not in quantized]
    optimizer = torch.optim.Adam([*codebooks.values(), *others], lr=lr)

    def forward(x: torch.Tensor) -> torch.Tensor:
        weights = {f"{name}.weight": q.weight(codebooks[name]) for name, q in quantized.items()}
        return functional_call(network, weights, (x,))

    for _ in range(steps):
        optimizer.zero_grad()
        loss(forward).backward()
        optimizer.step()
    with torch.no_grad():
        for name, q in quantized.items():
            q.codebook = codebooks[name].detach().clone()
            getattr(network, name).weight.copy_(q.weight())


# --- bytes --------------------------------------------------------------------------------
def pack(quantized: list[Quantized]) -> list[bytes]:
    """Three sections: the codebooks (float16, layer after layer), the rank histogram (u16 per rank), the
    rANS-coded assignments, each layer's relabelled by frequency (rank 0: its most used codeword)."""
    codebooks, ranks = [], []
    for q in quantized:
        counts = torch.bincount(q.assignments, minlength=len(q.codebook))
        order = torch.argsort(counts, descending=True, stable=True)
        codebooks.append(q.codebook[order].half().numpy().astype(">f2").tobytes())
        ranks.append(torch.argsort(order)[q.assignments])
    ranks = torch.cat(ranks).numpy()
    table, cdfs = histogram_tables(np.bincount(ranks, minlength=max(len(q.codebook) for q in quantized))[None])
    return [b"".join(codebooks), table, _rans(ranks.tolist(), cdfs)]


def unpack(sections: list[bytes], layouts: list[tuple[int, int, int]],
           name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(codebook, assignments) per layer of ``layouts`` ((k, d, sub-vectors), see :func:`layout`) from the
    sections of :func:`pack`, every length checked against the layouts before anything is decoded."""
    if len(sections) != 3:
        raise CodecError(f"corrupt {name} stream: product quantization needs 3 sections, got {len(sections)}")
    size = sum(k * d for k, d, _ in layouts)
    if len(sections[0]) != 2 * size:
        raise CodecError(f"corrupt {name} stream: the codebooks are {len(sections[0])} bytes, the layers need "
                         f"{2 * size}")
    values = torch.from_numpy(np.frombuffer(sections[0], ">f2").astype(np.float32))
    if not torch.isfinite(values).all():
        raise CodecError(f"corrupt {name} stream: non-finite codewords")
    cdfs, _ = frequency_tables(sections[1], 1, max(k for k, _, _ in layouts), name)
    total = sum(n for _, _, n in layouts)
    check_length(sections[2], total * float(fewest_bits(cdfs)[0]), total, name)
    ranks = torch.tensor(RansDecoder().decode_with_indexes(zero_padded(sections[2], total), [0] * total, cdfs,
                                                          [len(cdfs[0])], [0]))
    out, codebooks = [], values.split([k * d for k, d, _ in layouts])
    for (k, d, _), codebook, assignments in zip(layouts, codebooks, ranks.split([n for _, _, n in layouts])):
        if assignments.min() < 0 or assignments.max() >= k:  # before re-coding: escaped garbage can be huge
            raise CodecError(f"corrupt {name} stream: an assignment beyond its layer's {k} codewords")
        out.append((codebook.reshape(k, d), assignments))
    check_recoded(sections[2], _rans(ranks.tolist(), cdfs), name)
    return out


def _rans(symbols: list[int], cdfs: list[list[int]]) -> bytes:
    return RansEncoder().encode_with_indexes(symbols, [0] * len(symbols), cdfs, [len(cdfs[0])], [0])
