"""A user's own enhancement network, written without any sekd import.

sekd needs only the contract of ``forward``: features ``[B, 2M, T, 257]`` (real and imaginary
parts of M microphone spectra, STFT n_fft 512) in, a mask ``[B, 2, T, 257]`` out (sekd
applies it as a polar mask: gain tanh(|M|), phase shift ∠M). The taps the distillation
methods compare are named in the config (``model.taps``) and captured with forward hooks;
each named submodule must return a ``[B, C, T, D]`` map. See ``examples/my_net.yaml``.
"""

from __future__ import annotations

import torch
from torch import nn


class FrameGRU(nn.Module):
    """A GRU over time on each frame's flattened ``C·D`` features, with a residual; ``[B, C, T, D]`` in and out."""

    def __init__(self, channels: int, bins: int, hidden: int):
        super().__init__()
        self.gru = nn.GRU(channels * bins, hidden, batch_first=True)
        self.out = nn.Linear(hidden, channels * bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, d = x.shape
        h, _ = self.gru(x.permute(0, 2, 1, 3).reshape(b, t, c * d))
        return x + self.out(h).reshape(b, t, c, d).permute(0, 2, 1, 3)


class MyNet(nn.Module):
    """Convolutional recurrent network: two strided convolutions along frequency (257 -> 65 -> 17
    bins), a GRU over time, two transposed convolutions back to 257 bins. Causal: nothing looks
    at future frames (the convolutions span one frame, the GRU runs forward)."""

    def __init__(self, in_channels: int = 1, channels: int = 16, hidden: int = 64):
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(2 * in_channels, channels, (1, 5), (1, 4), padding=(0, 2)), nn.ELU())
        self.down2 = nn.Sequential(nn.Conv2d(channels, channels, (1, 5), (1, 4), padding=(0, 2)), nn.ELU())
        self.rnn = FrameGRU(channels, 17, hidden)
        self.up1 = nn.Sequential(nn.ConvTranspose2d(channels, channels, (1, 5), (1, 4), padding=(0, 2)), nn.ELU())
        self.up2 = nn.ConvTranspose2d(channels, 2, (1, 5), (1, 4), padding=(0, 2))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        e1 = self.down1(feats)                 # (B, C, T, 65)
        e2 = self.down2(e1)                    # (B, C, T, 17)
        d1 = self.up1(self.rnn(e2)) + e1       # (B, C, T, 65)
        return self.up2(d1)                    # (B, 2, T, 257)
