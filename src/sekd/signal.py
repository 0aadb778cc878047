"""The signal path of method.md §1, as small pure functions.

``stft -> compress -> features -> network -> apply_polar_mask -> istft``

Shapes: waveforms ``[B, M, N]`` (M microphones/channels) or ``[B, N]``; complex spectra
``[B, M, T, F]``; network features ``[B, 2M, T, F]`` (real parts of all channels, then
imaginary parts); the mask ``[B, 2, T, F]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class SignalConfig:
    """STFT and compression settings. The defaults are method.md §1."""

    n_fft: int = 512          # 257 bins at 16 kHz
    hop: int = 256            # 62.5 frames per second; 128 is also common for this family
    window: str = "hann"      # any torch.<name>_window, e.g. hann, hamming, blackman
    compress: float | None = 0.3  # power-law exponent on the input magnitude (phase kept); None = off

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)


def _window(cfg: SignalConfig, device, dtype=torch.float32) -> torch.Tensor:
    fn = getattr(torch, f"{cfg.window}_window", None)
    if fn is None:
        raise ValueError(f"unknown STFT window {cfg.window!r}")
    return fn(cfg.n_fft, periodic=True, device=device, dtype=dtype)


def stft(wave: torch.Tensor, cfg: SignalConfig) -> torch.Tensor:
    """``[..., N]`` real -> ``[..., T, F]`` complex, with T = 1 + N // hop (centred frames)."""
    lead = wave.shape[:-1]
    spec = torch.stft(wave.reshape(-1, wave.shape[-1]), cfg.n_fft, cfg.hop, window=_window(cfg, wave.device),
                      center=True, return_complex=True)  # (B*, F, T)
    return spec.transpose(-1, -2).reshape(*lead, spec.shape[-1], spec.shape[-2])


def istft(spec: torch.Tensor, cfg: SignalConfig, length: int) -> torch.Tensor:
    """``[..., T, F]`` complex -> ``[..., length]`` real."""
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, *spec.shape[-2:]).transpose(-1, -2)  # (B*, F, T)
    wave = torch.istft(flat, cfg.n_fft, cfg.hop, window=_window(cfg, spec.device), center=True, length=length)
    return wave.reshape(*lead, length)


def compress(spec: torch.Tensor, exponent: float | None, eps: float = 1e-8) -> torch.Tensor:
    """Power-law compression of the magnitude, phase kept: |Y|^p · e^{j∠Y}."""
    if exponent is None or exponent == 1.0:
        return spec
    mag = spec.abs().clamp_min(eps)
    return spec * (mag ** (exponent - 1.0))


def features(spec: torch.Tensor, cfg: SignalConfig) -> torch.Tensor:
    """Network input from ``[B, M, T, F]`` complex: ``[B, 2M, T, F]`` real (all real parts, then imaginary)."""
    spec = compress(spec, cfg.compress)
    return torch.cat([spec.real, spec.imag], dim=1)


def apply_polar_mask(mask: torch.Tensor, ref_spec: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Polar complex mask of method.md §1.

    ``mask [B, 2, T, F]`` holds (M_r, M_i); ``ref_spec [B, T, F]`` is the reference channel's
    uncompressed spectrum Y. Returns Ŝ = tanh(|M|)·|Y|·exp(j(∠Y + ∠M)), ``[B, T, F]`` complex.
    """
    mask = mask.float()  # under bf16 autocast the network's mask is bf16; the signal path stays fp32
    m_r, m_i = mask[:, 0], mask[:, 1]
    gain = torch.tanh(torch.sqrt(m_r ** 2 + m_i ** 2 + eps))
    # Rotating Y by the unit phasor of M equals multiplying by exp(j∠M) without atan2's
    # undefined gradient at M = 0.
    phasor = torch.complex(m_r, m_i) / torch.sqrt(m_r ** 2 + m_i ** 2 + eps)
    return gain * ref_spec * phasor
