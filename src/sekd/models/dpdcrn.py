"""DPDCRN: dual-path dilated convolutional recurrent network (method.md §2).

The network maps features ``[B, 2M, T, F]`` to a polar complex mask ``[B, 2, T, F]``.
Every intermediate output that distillation compares (the *taps* enc1..enc3, mid1..midL,
dec1..dec3) is returned only when asked for with ``return_taps=True``; otherwise nothing
extra is kept.

With ``causal=True`` the whole network is causal (method.md §2, last paragraph): the
time-path attention sees past frames only (optionally a bounded look-back window) and
every normalisation that pools over frames (InstanceNorm, GroupNorm) becomes
:class:`FrameNorm`, which pools over channels and bins of one frame.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ..audio import SAMPLE_RATE
from .base import EnhancementNetwork, start_as_pass_through
from .dpdcrn_step import DPDCRNStep


PATH_NORM_EPS = 1e-8
# The mask head's start: real bias 1 (gain tanh(1) ≈ 0.76, phase 0), its drawn weights × 0.1. From
# PyTorch's default, a mask of random phase per bin, the wide study's no-KD student lost its first few
# hundred steps and one of its first three seeds stayed about 0.2 PESQ-WB behind on valid for the whole
# schedule, whatever the method; from this start that seed passed the others (results/schedule-probes/README.md).
# The paper does not say how its mask starts.
MASK_START_BIAS, MASK_START_SCALE = 1.0, 0.1


class FrameNorm(nn.Module):
    """Normalise each frame over (channels, bins); per-channel affine. Causal stand-in for IN/GN."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, F)
        if x.shape[2] == 1:
            # One frame (streaming, sekd.streaming): the same statistics as a layer norm over
            # (C, 1, F), which exports to ONNX as one fused LayerNormalization node.
            affine = x.shape[1:]
            return F.layer_norm(x, affine, self.weight[:, None, None].expand(affine),
                                self.bias[:, None, None].expand(affine), self.eps)
        mean = x.mean(dim=(1, 3), keepdim=True)
        var = x.var(dim=(1, 3), keepdim=True, unbiased=False)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def feature_norm(channels: int, causal: bool) -> nn.Module:
    """Norm after a convolution: InstanceNorm2d(affine) offline, FrameNorm when causal."""
    return FrameNorm(channels) if causal else nn.InstanceNorm2d(channels, affine=True)


def path_norm(channels: int, causal: bool) -> nn.Module:
    """Norm after a dual-path branch: GroupNorm(1, d) offline, FrameNorm when causal.

    eps 1e-8 as in the released model (PyTorch's default 1e-5 shifts outputs by a few parts
    per million, more as activations shrink).
    """
    return FrameNorm(channels, eps=PATH_NORM_EPS) if causal else nn.GroupNorm(1, channels, eps=PATH_NORM_EPS)


class DilatedDenseNet(nn.Module):
    """Dense block of ``depth`` causal dilated (2, 3) convolutions; returns the last layer's output."""

    def __init__(self, channels: int, depth: int = 4, causal: bool = False):
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(depth):
            dil = 2 ** i
            self.layers.append(nn.Sequential(
                nn.ConstantPad2d((1, 1, dil, 0), 0.0),  # (F left, F right, T before, T after): causal in time
                nn.Conv2d(channels * (i + 1), channels, kernel_size=(2, 3), dilation=(dil, 1)),
                feature_norm(channels, causal),
                nn.PReLU(channels),
            ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, D) -> (B, C, T, D)
        skip = x
        for layer in self.layers:
            out = layer(skip)
            skip = torch.cat([out, skip], dim=1)
        return out


class TransformerGRU(nn.Module):
    """Attention then GRU over one axis of the dual-path grid (method.md §2)."""

    def __init__(self, dim: int, heads: int, bidirectional: bool):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm_attn = nn.LayerNorm(dim)
        self.gru = nn.GRU(dim, 2 * dim, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Linear(2 * dim * (2 if bidirectional else 1), dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:  # (N, S, d)
        y = self.norm_in(x)
        x = self.norm_attn(x + self.attn(y, y, y, attn_mask=attn_mask, need_weights=False)[0])
        h, _ = self.gru(x)
        return self.norm_out(x + self.proj(F.relu(h)))


def causal_attention_mask(frames: int, lookback: int | None, device) -> torch.Tensor:
    """Boolean ``[T, T]`` mask, True where attention is *not* allowed (future, or beyond the look-back)."""
    t = torch.arange(frames, device=device)
    delta = t[:, None] - t[None, :]  # query minus key
    blocked = delta < 0
    if lookback is not None:
        blocked |= delta >= lookback
    return blocked


class DualPathBlock(nn.Module):
    """L dual-path layers; returns the taps mid1..midL (``[B, C, T, D]`` each)."""

    def __init__(self, channels: int, layers: int, heads: int = 4, causal: bool = False,
                 lookback: int | None = None):
        super().__init__()
        d = channels // 2
        self.causal, self.lookback = causal, lookback
        self.proj_in = nn.Sequential(nn.Conv2d(channels, d, 1), nn.PReLU())
        self.row = nn.ModuleList(TransformerGRU(d, heads, bidirectional=True) for _ in range(layers))
        self.row_norm = nn.ModuleList(path_norm(d, causal) for _ in range(layers))
        self.col = nn.ModuleList(TransformerGRU(d, heads, bidirectional=False) for _ in range(layers))
        self.col_norm = nn.ModuleList(path_norm(d, causal) for _ in range(layers))
        # k1, k2 are shared by all layers, as in the released model.
        self.k1 = nn.Parameter(torch.ones(1))
        self.k2 = nn.Parameter(torch.ones(1))
        self.head = nn.Sequential(nn.PReLU(), nn.Conv2d(d, channels, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.proj_in(x)  # (B, d, T, D)
        b, d, t, f = x.shape
        mask = causal_attention_mask(t, self.lookback, x.device) if self.causal else None
        taps = []
        for row, row_norm, col, col_norm in zip(self.row, self.row_norm, self.col, self.col_norm):
            r = row(x.permute(0, 2, 3, 1).reshape(b * t, f, d))          # along frequency
            r = row_norm(r.reshape(b, t, f, d).permute(0, 3, 1, 2))
            c = col(x.permute(0, 3, 2, 1).reshape(b * f, t, d), mask)    # along time
            c = col_norm(c.reshape(b, f, t, d).permute(0, 3, 2, 1))
            x = x + self.k1 * r + self.k2 * c
            taps.append(self.head(x))
        return taps


class DPDCRN(EnhancementNetwork):
    """DPDCRN of width ``channels`` (C) with ``layers`` (L) dual-path layers.

    ``in_channels`` is the number of microphone channels M; the network reads 2M feature
    maps (real and imaginary parts).
    """

    def __init__(self, channels: int = 128, layers: int = 4, in_channels: int = 1, heads: int = 4,
                 causal: bool = False, lookback: int | None = None):
        super().__init__()
        if channels % 2 or (channels // 2) % heads:
            raise ValueError(f"width {channels} must be even and half of it divisible by heads={heads}")
        if layers < 1:
            raise ValueError(f"DPDCRN needs at least one dual-path layer, got layers={layers}")
        self.args = dict(channels=channels, layers=layers, in_channels=in_channels, heads=heads,
                         causal=causal, lookback=lookback)
        self.in_channels, self.causal, self.lookback = in_channels, causal, lookback
        c = channels
        self.enc1 = nn.Sequential(nn.Conv2d(2 * in_channels, c, (1, 3), (1, 2), padding=(0, 1)),
                                  feature_norm(c, causal), nn.PReLU(c))
        self.enc2 = nn.Sequential(nn.Conv2d(c, c, (1, 3), (1, 2)), feature_norm(c, causal), nn.PReLU(c))
        self.enc3 = DilatedDenseNet(c, 4, causal)
        self.dual_path = DualPathBlock(c, layers, heads, causal, lookback)
        self.dec1 = DilatedDenseNet(c, 4, causal)
        self.dec2 = nn.Sequential(nn.ConvTranspose2d(c, c, (1, 3), (1, 2)), feature_norm(c, causal), nn.PReLU(c))
        self.dec3 = nn.ConvTranspose2d(c, 2, (1, 3), (1, 2))
        start_as_pass_through(self.dec3, MASK_START_BIAS, MASK_START_SCALE)

    def get_model_args(self) -> dict:
        """Constructor arguments: ``DPDCRN(**get_model_args())`` rebuilds the architecture."""
        return dict(self.args)

    def describe(self) -> str:
        kind = "causal" if self.causal else "offline"
        if self.causal and self.lookback is not None:
            kind += f", look-back {self.lookback} frames"
        a = self.args
        return (f"DPDCRN width {a['channels']}, {a['layers']} dual-path layer(s), {a['heads']} heads, "
                f"{a['in_channels']} input channel(s), {kind}")

    def attention_cache_frames(self, hop: int, cache_seconds: float) -> int:
        """The look-back, or ``cache_seconds`` of frames for a model trained without one."""
        if self.lookback is None:
            return max(1, math.ceil(cache_seconds * SAMPLE_RATE / hop))
        return self.lookback

    def streaming_step(self, cache_frames: int) -> DPDCRNStep:
        return DPDCRNStep(self, cache_frames)

    @property
    def tap_sets(self) -> dict[str, list[str]]:
        """The correlated sets of method.md §3.1; the one place that groups the taps."""
        return {
            "encoder": ["enc1", "enc2", "enc3"],
            "middle": [f"mid{i + 1}" for i in range(self.args["layers"])],
            "decoder": ["dec1", "dec2", "dec3"],
        }

    def tap_channels_bins(self, bins: int = 257) -> "OrderedDict[str, tuple[int, int]]":
        """(channels, bins) of every tap for an input of ``bins`` frequency bins; frames and batch pass through."""
        c = self.args["channels"]
        f1 = (bins - 1) // 2 + 1          # enc1: stride 2, pad 1
        f2 = (f1 - 3) // 2 + 1            # enc2: stride 2, no pad
        shapes = OrderedDict(enc1=(c, f1), enc2=(c, f2), enc3=(c, f2))
        for name in self.tap_sets["middle"]:
            shapes[name] = (c, f2)
        shapes.update(dec1=(c, f2), dec2=(c, f1), dec3=(2, bins))
        return shapes

    def forward(self, feats: torch.Tensor, return_taps: bool = False):
        """``feats [B, 2M, T, F]`` -> mask ``[B, 2, T, F]`` (and the taps when asked)."""
        bins = feats.shape[-1]
        e1 = self.enc1(feats)          # (B, C, T, F1)
        e2 = self.enc2(e1)             # (B, C, T, F2)
        e3 = self.enc3(e2)             # (B, C, T, F2)
        mids = self.dual_path(e3)      # L x (B, C, T, F2)
        d1 = self.dec1(mids[-1])       # (B, C, T, F2)
        d2 = self.dec2(d1)             # (B, C, T, F1)
        mask = self.dec3(d2)[..., :bins]  # (B, 2, T, F); crops the 2 extra bins of the last transpose
        if not return_taps:
            return mask
        taps = OrderedDict(enc1=e1, enc2=e2, enc3=e3)
        taps.update((f"mid{i + 1}", m) for i, m in enumerate(mids))
        taps.update(dec1=d1, dec2=d2, dec3=mask)
        return mask, taps
