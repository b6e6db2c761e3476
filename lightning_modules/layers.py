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


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``x``'s layout, channels-last or not: oneDNN sums a convolution in an order of its own for each."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def banded_conv(conv: nn.Conv2d, x: torch.Tensor, top: int, bottom: int,
                above: torch.Tensor | None = None) -> torch.Tensor:
    """Output rows ``[top, bottom)`` of ``conv(x)`` (zero padding) from the band of ``x`` they read, in
    ``x``'s layout: the same values as the whole convolution's (its zero rows written out at the edges).
    ``above``: the rows of ``x`` just above the band, in place of those ``x`` holds now."""
    (stride, _), (kernel, _), (padding, side) = conv.stride, conv.kernel_size, conv.padding
    first, last = top * stride - padding, (bottom - 1) * stride - padding + kernel  # input rows [first, last)
    band = x[:, :, max(first, 0):min(last, x.shape[2])]
    if above is not None and first >= 0:
        band = torch.cat([above, band[:, :, above.shape[2]:]], dim=2)
    band = F.pad(band, (0, 0, max(-first, 0), max(last - x.shape[2], 0))).contiguous(memory_format=memory_format(x))
    return F.conv2d(band, conv.weight, conv.bias, conv.stride, (0, side))


class ConvLSTM(nn.Module):
    """A convolutional LSTM cell: gates from a (strided) 3×3 conv of the input plus a conv of h.
    The state ``(h, c)`` starts at zero (``state=None``). Without gradients, ``rows`` computes the
    gates that many output rows at a time, so that the memory they take is a band's, not the image's,
    and updates the state in place (the rows of the old h that the next band's hidden conv reads above
    it are kept aside); the state is the one the whole image gives."""

    def __init__(self, inputs: int, hidden: int, stride: int = 1, hidden_kernel: int = 1):
        super().__init__()
        self.input = nn.Conv2d(inputs, 4 * hidden, 3, stride, 1)
        self.hidden = nn.Conv2d(hidden, 4 * hidden, hidden_kernel, 1, hidden_kernel // 2, bias=False)

    def forward(self, x: torch.Tensor, state: tuple | None, rows: int | None = None) -> tuple[torch.Tensor, ...]:
        if rows is None or torch.is_grad_enabled():
            return self._cell(self.input(x), None if state is None else self.hidden(state[0]), state)
        height, width = ((size + 2 * pad - kernel) // stride + 1 for size, pad, kernel, stride in
                         zip(x.shape[2:], self.input.padding, self.input.kernel_size, self.input.stride))
        if state is None:
            h = torch.empty(x.shape[0], self.hidden.in_channels, height, width, dtype=x.dtype, device=x.device,
                            memory_format=memory_format(x))
            c = torch.empty_like(h)
        else:
            h, c = state
        reach, above = self.hidden.padding[0], None  # rows of the old h above the band
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            gates, recurrent = banded_conv(self.input, x, top, bottom), None
            if state is not None:
                recurrent = banded_conv(self.hidden, h, top, bottom, above)
                above = h[:, :, bottom - reach:bottom].clone() if reach else None
            h[:, :, top:bottom], c[:, :, top:bottom] = self._cell(
                gates, recurrent, None if state is None else (None, c[:, :, top:bottom]))
        return h, c

    @staticmethod
    def _cell(gates: torch.Tensor, recurrent: torch.Tensor | None, state: tuple | None):
        """h and c from the input's gates, h's (``recurrent``) and the previous c."""
        gates = gates if recurrent is None else gates + recurrent
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g)
        if state is not None:
            c = c + torch.sigmoid(f) * state[1]
        return torch.sigmoid(o) * torch.tanh(c), c
