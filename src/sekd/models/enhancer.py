"""SpeechEnhancer: the signal path of method.md §1 around any enhancement network.

``waveform -> stft -> compress -> network -> polar mask on the reference channel -> istft``.
The network is anything :mod:`sekd.models.base` accepts. A checkpoint needs only
:meth:`SpeechEnhancer.get_config` (plain data: the model spec, STFT settings, reference
channel) and the state dict to rebuild it.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import signal as sig
from .base import EnhancementNetwork, build_network, class_path, network_spec
from .dpdcrn import DPDCRN

DPDCRN_CLASS = class_path(DPDCRN)


def as_model_spec(model: dict) -> dict:
    """A model spec (``{"class": ..., "args": ...}``); a mapping without ``class`` is DPDCRN arguments (format 1)."""
    return dict(model) if "class" in model else {"class": DPDCRN_CLASS, "args": dict(model), "taps": None}


class SpeechEnhancer(nn.Module):
    """Waveform in, waveform out.

    ``model`` is a model spec (:func:`sekd.models.base.build_network`) or, as in format-1
    checkpoints, the arguments of a :class:`DPDCRN`; ``network`` instead passes a ready
    network. ``signal_args`` are :class:`sekd.signal.SignalConfig` fields. ``ref_channel``
    picks the microphone channel whose spectrum the mask is applied to. ``where`` (a
    checkpoint or config file) prefixes errors about the model spec.
    """

    def __init__(self, model: dict | None = None, signal_args: dict | None = None, ref_channel: int = 0, *,
                 network: EnhancementNetwork | None = None, where: str = "model"):
        super().__init__()
        if (model is None) == (network is None):
            raise ValueError("SpeechEnhancer needs exactly one of model (a spec) and network")
        self.network = network if network is not None else build_network(as_model_spec(model), where)
        self.signal = sig.SignalConfig(**(signal_args or {}))
        self.ref_channel = ref_channel

    @property
    def in_channels(self) -> int:
        return self.network.in_channels

    def get_config(self) -> dict:
        return dict(model=network_spec(self.network), signal_args=self.signal.to_dict(), ref_channel=self.ref_channel)

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
