"""Distillation from a teacher whose STFT differs from the student's (e.g. a 512/256 teacher, a 256/128 student).

Both models read the same waveform and each computes its own STFT, so the teacher's taps
lie on another grid: other frames (``1 + N // hop``) and, for the spectra, other bins. The
methods compare taps frame by frame (Gram matrices over frames, pointwise distances), so
:class:`STFTBridge` puts the teacher's taps on the student's frames before any method sees
them; this module is the one place that does so.

- Time: student frame j is centred on sample ``j·hop_s``, teacher frame k on ``k·hop_t``.
  Each feature tap is read at the student's frame centres, i.e. at the fractional teacher
  frame ``j·hop_s / hop_t``, by linear interpolation between the two nearest teacher frames
  (the last one held past the end). With hops 256 and 128 every second student frame is a
  teacher frame exactly and the ones between are the mean of their neighbours.
- Frequency: a feature tap's bins are left as they are; the methods already compare taps of
  different widths (:func:`sekd.distill.base.resize_bins`, projections, pooling), as they do
  between architectures.
- The response (``out``, the enhanced spectrum that output KD compares): the teacher's
  enhanced *waveform* through the student's STFT, so both spectra have the same frames,
  bins and window scale (a 512-sample window's spectrum is twice a 256-sample one's).

A teacher with the same n_fft, hop and window needs no bridge (a different compression
exponent changes only its own input features) and its taps pass untouched.
"""

from __future__ import annotations

import dataclasses

import torch

from .. import signal as sig
from .base import Taps, TapInfo


def same_grid(teacher: sig.SignalConfig, student: sig.SignalConfig) -> bool:
    """True when the teacher's taps and spectra already lie on the student's (T, F) grid."""
    return (teacher.n_fft, teacher.hop, teacher.window) == (student.n_fft, student.hop, student.window)


def frames_at(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, D]`` read at fractional frames ``positions [T']`` by linear interpolation -> ``[B, C, T', D]``.

    Positions past the last frame hold it.
    """
    last = x.shape[2] - 1
    positions = positions.clamp(0, last)
    low = positions.floor().long()
    high = (low + 1).clamp_max(last)
    weight = (positions - low).to(x.dtype)[:, None]                       # (T', 1)
    return x.index_select(2, low) * (1 - weight) + x.index_select(2, high) * weight


class STFTBridge:
    """The teacher's taps on the student's STFT grid (see the module docstring). Holds no parameters."""

    def __init__(self, teacher: sig.SignalConfig, student: sig.SignalConfig):
        self.teacher, self.student = teacher, student

    def __repr__(self) -> str:
        t, s = self.teacher, self.student
        return f"STFTBridge(teacher {t.n_fft}/{t.hop} {t.window}, student {s.n_fft}/{s.hop} {s.window})"

    def tap_info(self, teacher: TapInfo, student: TapInfo) -> TapInfo:
        """What the methods are built from: the teacher's taps as :meth:`__call__` returns them."""
        shapes = {**teacher.shapes, "out": (2, self.student.bins)}
        return dataclasses.replace(teacher, frames=student.frames, shapes=shapes)

    def __call__(self, taps: Taps, enhanced: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's ``taps`` and enhanced waveform ``[B, N]`` -> its taps on the student's grid."""
        samples = enhanced.shape[-1]
        frames = 1 + samples // self.student.hop                           # as sig.stft gives the student
        positions = torch.arange(frames, device=enhanced.device, dtype=torch.float64) * (self.student.hop /
                                                                                         self.teacher.hop)
        bridged = {name: frames_at(x, positions) for name, x in taps.items() if name != "out"}
        spec = sig.stft(enhanced, self.student)                             # (B, T_s, F_s) complex
        bridged["out"] = torch.stack([spec.real, spec.imag], dim=1)
        return bridged
