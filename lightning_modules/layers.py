"""Network layers shared by the methods (their entropy models are in ``entropy.py``).

- :func:`straight_through`: a value in the forward pass, the identity gradient in the backward
  pass — Theis et al.'s rounding and clipping (2017 §2.1), Toderici et al.'s stochastic binarizer
  (2016, binarization), Jiang et al.'s inner codec in the ComCNN step (2017 §III-C, Algorithm 1).
- :func:`mirror_conv`: CompressAI's ``conv`` with mirror (reflection) padding (Theis et al. §3).
- :func:`haar_dwt` / :func:`haar_idwt`: one level of the orthonormal 2-D Haar transform, as
  ``pywt.dwt2(x, "haar")`` but differentiable (WCAE's wavelet decomposition).
- :class:`ConvLSTM`: a convolutional LSTM cell (Toderici et al. 2017 §3, the E-RNN and D-RNN units).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` forward, identity gradient to ``x``."""
    return x + (y - x).detach()


def mirror_conv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """A convolution that pads by reflection ("same" size before the stride)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                     padding_mode="reflect")


_HAAR = 0.5 * torch.tensor([[1.0, 1, 1, 1], [1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]])  # LL, LH, HL, HH


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One orthonormal Haar level: [B, C, H, W] -> (LL [B, C, H/2, W/2], details [B, C, 3, H/2, W/2])."""
    blocks = F.pixel_unshuffle(x, 2).unflatten(1, (x.shape[1], 4))  # the 2×2 pixels of each block
    bands = torch.einsum("kj,bcjhw->bckhw", _HAAR.to(x), blocks)
    return bands[:, :, 0], bands[:, :, 1:]


def haar_idwt(ll: torch.Tensor, details: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt` (the Haar matrix is symmetric and orthogonal)."""
    bands = torch.cat([ll[:, :, None], details], dim=2)
    return F.pixel_shuffle(torch.einsum("kj,bcjhw->bckhw", _HAAR.to(ll), bands).flatten(1, 2), 2)


class ConvLSTM(nn.Module):
    """A convolutional LSTM cell: gates from a (strided) 3×3 conv of the input plus a conv of h.
    The state ``(h, c)`` starts at zero (``state=None``)."""

    def __init__(self, inputs: int, hidden: int, stride: int = 1, hidden_kernel: int = 1):
        super().__init__()
        self.input = nn.Conv2d(inputs, 4 * hidden, 3, stride, 1)
        self.hidden = nn.Conv2d(hidden, 4 * hidden, hidden_kernel, 1, hidden_kernel // 2, bias=False)

    def forward(self, x: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, torch.Tensor]:
        gates = self.input(x) if state is None else self.input(x) + self.hidden(state[0])
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g)
        if state is not None:
            c = c + torch.sigmoid(f) * state[1]
        return torch.sigmoid(o) * torch.tanh(c), c
