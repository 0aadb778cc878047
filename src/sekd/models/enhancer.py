"""SpeechEnhancer: the signal path of method.md §1 around a DPDCRN network.

``waveform -> stft -> compress -> DPDCRN -> polar mask on the reference channel -> istft``.
A checkpoint needs only :meth:`SpeechEnhancer.get_config` and the state dict to rebuild it.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import signal as sig
from .dpdcrn import DPDCRN


class SpeechEnhancer(nn.Module):
    """Waveform in, waveform out.

    ``model_args`` are :class:`DPDCRN` arguments; ``signal_args`` are
    :class:`sekd.signal.SignalConfig` fields. ``ref_channel`` picks the microphone channel
    whose spectrum the mask is applied to.
    """

    def __init__(self, model_args: dict, signal_args: dict | None = None, ref_channel: int = 0):
        super().__init__()
        self.network = DPDCRN(**model_args)
        self.signal = sig.SignalConfig(**(signal_args or {}))
        self.ref_channel = ref_channel

    @property
    def in_channels(self) -> int:
        return self.network.args["in_channels"]

    def get_config(self) -> dict:
        return dict(model_args=self.network.get_model_args(), signal_args=self.signal.to_dict(),
                    ref_channel=self.ref_channel)

    def forward(self, noisy: torch.Tensor, return_taps: bool = False):
        """``noisy [B, M, N]`` -> enhanced ``[B, N]``.

        With ``return_taps`` also returns the network's taps plus ``out``, the enhanced
        spectrum as ``[B, 2, T, F]`` (real, imaginary), for output-level distillation.
        """
        if noisy.dim() == 2:
            noisy = noisy[:, None]
        if noisy.shape[1] != self.in_channels:
            raise ValueError(f"model expects {self.in_channels} input channel(s), got {noisy.shape[1]}")
        length = noisy.shape[-1]
        spec = sig.stft(noisy, self.signal)                      # (B, M, T, F) complex
        out = self.network(sig.features(spec, self.signal), return_taps=return_taps)
        mask, taps = out if return_taps else (out, None)
        enhanced_spec = sig.apply_polar_mask(mask, spec[:, self.ref_channel])  # (B, T, F)
        enhanced = sig.istft(enhanced_spec, self.signal, length)  # (B, N)
        if not return_taps:
            return enhanced
        taps["out"] = torch.stack([enhanced_spec.real, enhanced_spec.imag], dim=1)
        return enhanced, taps
