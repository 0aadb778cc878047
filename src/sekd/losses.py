"""The speech-enhancement training loss (L_SE of method.md §3.6).

Default: 0.7·MSE(|S|^c, |Ŝ|^c) + 0.3·MSE(S^c, Ŝ^c) + 0.01·(−SI-SDR), with c = 0.3 and S^c
the complex spectrum with compressed magnitude. The compressed spectral terms are the usual
recipe for mask-based T-F models of this family: compression lifts the low-energy
bins that carry much of the intelligibility, the complex term trains the phase the polar
mask can rotate, and the magnitude term keeps the gain from collapsing towards zero. The
small SI-SDR term ties the waveform after iSTFT to the target (the overlap-add is not
inverted exactly by per-bin spectral losses); it is scale-invariant, so the spectral
terms still fix the level. Weights are set in the ``loss`` config section.
"""

from __future__ import annotations

import torch
from torch import nn

from . import signal as sig
from .config import LossConfig
from .metrics import si_sdr_torch


class SELoss(nn.Module):
    def __init__(self, cfg: LossConfig, signal: sig.SignalConfig):
        super().__init__()
        self.cfg, self.signal = cfg, signal

    def forward(self, estimate: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``estimate``, ``clean``: ``[B, N]`` waveforms. Returns the loss and its named terms."""
        est = sig.compress(sig.stft(estimate, self.signal), self.cfg.compress)  # (B, T, F)
        ref = sig.compress(sig.stft(clean, self.signal), self.cfg.compress)
        terms = {
            "magnitude": (est.abs() - ref.abs()).pow(2).mean(),
            "complex": (est - ref).abs().pow(2).mean(),
            "si_sdr": -si_sdr_torch(estimate, clean).mean(),
        }
        loss = (self.cfg.magnitude * terms["magnitude"] + self.cfg.complex * terms["complex"]
                + self.cfg.si_sdr * terms["si_sdr"])
        return loss, terms
