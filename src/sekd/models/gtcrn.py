"""GTCRN: an ultra-light causal network in the style of Rong et al., ICASSP 2024 ("GTCRN: a speech
enhancement model requiring ultralow computational resources"), written from the paper's description.

Signal path (n_fft 512: 257 bins; C = ``channels``, M microphones):

| stage | operation | output |
|---|---|---|
| input | magnitude, real and imaginary parts of each microphone | `[B, 3M, T, 257]` |
| band merge | bins 0..erb_low-1 kept; the high bins averaged into ``erb_bands`` ERB bands | `[B, 3M, T, 129]` |
| subband features | each bin with its two neighbours | `[B, 9M, T, 129]` |
| enc1 | Conv(1×5, stride 2 in frequency) → BatchNorm → PReLU | `[B, C, T, 65]` |
| enc2 | the same, 2 groups | `[B, C, T, 33]` |
| enc3..enc5 | grouped temporal conv blocks, time dilation 1, 2, 5 | `[B, C, T, 33]` |
| mid1..midL | grouped dual-path GRU (frequency: bidirectional, time: forward) | `[B, C, T, 33]` |
| dec1..dec3 | temporal conv blocks, dilation 5, 2, 1, on the sum with enc5..enc3 | `[B, C, T, 33]` |
| dec4 | transposed Conv(1×5, stride 2), 2 groups → BN → PReLU, on the sum with enc2 | `[B, C, T, 65]` |
| dec5 | transposed Conv(1×5, stride 2) on the sum with enc1, then band split: the mask | `[B, 2, T, 257]` |

The band layout follows the STFT (:func:`band_layout`): the bins up to 2 kHz are kept and the
rest merged into ``n_fft/8`` ERB bands, so every frequency size above scales with n_fft. At
n_fft 256 (the low-latency option, 129 bins) the merge gives 33 + 32 = 65, enc1 33 and enc2 17
bins; at n_fft 512 it is the authors' layout above.

A temporal conv block splits its channels in two; one half goes through subband
features → 1×1 conv → depthwise (3, 3) conv dilated in time, causal → 1×1 conv →
temporal attention (a GRU over the per-channel energy gives a sigmoid weight per channel
and frame), then the halves are concatenated and their channels interleaved (shuffle).
The paper's output is a complex ratio mask; here the last layer's two maps are the polar
mask every sekd network emits (method.md §1), without an output activation, and the mask
starts as a pass-through (``PASS_THROUGH``).

Everything along time is causal (left-padded convolutions, forward GRUs); BatchNorm uses
running statistics in eval mode, so in eval mode output frame t depends on input frames ≤ t.
All memory across frames is explicit: :meth:`GTCRN.run` takes and returns the state tuple
(convolution histories and GRU states), the offline forward starts it at zeros, and the
hop-by-hop step (:class:`~sekd.models.gtcrn_step.GTCRNStep`) is the same code on one frame, so streaming equals
offline by construction.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ..audio import SAMPLE_RATE
from ..errors import SekdError
from .base import EnhancementNetwork, start_as_pass_through
from .gtcrn_step import GTCRNStep

DILATIONS = (1, 2, 5)
# The mask head's initial real bias. From the default (a near-zero mask of random phase, which
# removes the input) GTCRN fits slowly: at the end of the study's 600-step schedule its validation
# PESQ-WB (1.35) and SI-SDR (2.1 dB) were still below the noisy input's, and on one fixed batch
# it stayed 3.6 dB below the input after 100 steps, where this start passes it by step 50
# (results/schedule-probes/README.md). The paper does not say how its mask starts.
PASS_THROUGH = 2.0


def erb_scale(hz: torch.Tensor) -> torch.Tensor:
    """ERB-rate (Glasberg & Moore): number of equivalent rectangular bandwidths below ``hz``."""
    return 21.4 * torch.log10(1 + 0.00437 * hz)


def erb_weights(bins: int, low_bins: int, bands: int) -> torch.Tensor:
    """``[bands, bins - low_bins]`` triangular weights of the high bins, centres evenly spaced in ERB-rate.

    Neighbouring triangles overlap so that every bin's weights sum to one.
    """
    hz = torch.arange(low_bins, bins, dtype=torch.float64) * (SAMPLE_RATE / 2) / (bins - 1)
    rate = erb_scale(hz)
    centres = torch.linspace(float(rate[0]), float(rate[-1]), bands, dtype=torch.float64)
    spacing = centres[1] - centres[0]
    return (1 - (rate[None, :] - centres[:, None]).abs() / spacing).clamp_min(0)


def band_layout(n_fft: int, where: str = "signal.n_fft") -> dict:
    """GTCRN's frequency arguments for an STFT of ``n_fft`` at 16 kHz: ``{bins, erb_low, erb_bands}``.

    The bins up to 2 kHz (``n_fft/8 + 1``) are kept and the rest merged into ``n_fft/8`` ERB
    bands: n_fft 512 gives the authors' 257 bins, 65 + 64 (bit-identical to the defaults),
    n_fft 256 gives 129 bins, 33 + 32. The merged size ``n_fft/4 + 1`` must be 4k + 1 for the
    two stride-2 convolutions and their transposes, hence n_fft a multiple of 16.
    """
    if n_fft % 16 or n_fft < 32:
        raise SekdError(f"{where}: GTCRN needs n_fft a multiple of 16 (at least 32) for its ERB band layout; "
                        f"got {n_fft} (e.g. 256 or 512)")
    return dict(bins=n_fft // 2 + 1, erb_low=n_fft // 8 + 1, erb_bands=n_fft // 8)


GRU_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def one_frame_eager(x: torch.Tensor, time_dim: int) -> bool:
    """True for one frame outside ONNX export: the streaming step's shapes, run by PyTorch.

    There the few layers below take a shortcut that gives the same result with fewer or
    faster kernels; the exported graph keeps the plain operators, which onnxruntime runs well.
    """
    return x.shape[time_dim] == 1 and not torch.onnx.is_in_onnx_export()


def one_gru_step(x: torch.Tensor, state: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """A forward GRU over one time-major step ``x [1, N, in]`` from ``state [1, N, hidden]``: the new state.

    ``torch.gru_cell`` does the same products as the GRU layer on one step (bit-equal), without
    the layer's setup, which costs more than the step itself at these sizes.
    """
    return torch.gru_cell(x[0], state[0], *weights)[None]


class FixedBandMap(nn.Module):
    """Keep the first ``low_bins`` bins, map the rest through a fixed matrix (a buffer, not trained)."""

    def __init__(self, matrix: torch.Tensor, low_bins: int):
        super().__init__()
        self.low_bins = low_bins
        self.register_buffer("matrix", matrix.float(), persistent=False)  # (out, in) over the high part

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., low + in) -> (..., low + out)
        return torch.cat([x[..., :self.low_bins], F.linear(x[..., self.low_bins:], self.matrix)], dim=-1)

    def count_macs(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """For :mod:`sekd.profile`: ptflops does not see a product with a buffer."""
        return x[..., 0].numel() * self.matrix.numel()


def erb_band_maps(bins: int, low_bins: int, bands: int) -> tuple[FixedBandMap, FixedBandMap]:
    """(merge, split): high bins to band averages, and bands back to bins (each bin a blend of its bands)."""
    w = erb_weights(bins, low_bins, bands)
    if (w.sum(1) == 0).any():
        raise SekdError(f"GTCRN: {bands} ERB bands are too many for the {bins - low_bins} high bins")
    return FixedBandMap(w / w.sum(1, keepdim=True), low_bins), FixedBandMap((w / w.sum(0, keepdim=True)).T, low_bins)


def subband_features(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, F]`` -> ``[B, 3C, T, F]``: every bin with its lower and upper neighbour (zeros at the edges).

    Channel 3c + k holds bin f + k - 1 of channel c: one grouped (1, 3) convolution with
    one-hot kernels (exact: a product with 1 plus products with 0), a single operator where
    padding, shifting and stacking take eight in the exported graph.
    """
    c = x.shape[1]
    one_hot = torch.eye(3, dtype=x.dtype, device=x.device).repeat(c, 1)[:, None, None, :]  # (3C, 1, 1, 3)
    if one_frame_eager(x, 2):  # dense, as GroupedFrequencyConv: PyTorch's kernel instead of oneDNN's setup
        return F.conv2d(x, block_diagonal(one_hot, c), padding=(0, 1))
    return F.conv2d(x, one_hot, padding=(0, 1), groups=c)


class SubbandPointConv(nn.Conv2d):
    """1×1 convolution over :func:`subband_features` of ``channels`` channels, computed without building them.

    Subband features put bins f - 1, f, f + 1 of channel c at channels 3c, 3c + 1, 3c + 2, so
    a 1×1 convolution over them is a (1, 3) convolution of the input with the same weights
    viewed as ``[out, c, 1, 3]`` (zero padding at the edges alike): one operator instead of
    padding, shifting, stacking and a convolution over three times the channels. The
    parameters are the 1×1 convolution's, so checkpoints load unchanged.
    """

    def __init__(self, channels: int, out_channels: int):
        super().__init__(3 * channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, channels, T, F) -> (B, out, T, F)
        return F.conv2d(x, self.weight.view(self.out_channels, -1, 1, 3), self.bias, padding=(0, 1))

    def count_macs(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """For :mod:`sekd.profile`: as ptflops counts the 1×1 convolution over the subband features."""
        return y.numel() * (self.in_channels + 1)


def block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped convolution's weight as the same convolution's with ``groups=1``: zeros between the groups.

    Along the first axis each group's kernels see only their group's channels of the second.
    """
    blocks = [w.flatten(1) for w in weight.chunk(groups)]
    return torch.block_diag(*blocks).reshape(weight.shape[0], weight.shape[1] * groups, *weight.shape[2:])


class GroupedFrequencyConv(nn.Conv2d):
    """A grouped ``nn.Conv2d`` that runs one frame as a dense convolution (block-diagonal weight).

    PyTorch sends a grouped convolution to oneDNN, whose setup costs several times the
    work of one frame; the dense one runs in PyTorch's own kernel. Same parameters and result.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if one_frame_eager(x, 2):
            return F.conv2d(x, block_diagonal(self.weight, self.groups), self.bias, self.stride, self.padding)
        return super().forward(x)

    def count_macs(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """For :mod:`sekd.profile`: as ptflops counts an ``nn.Conv2d``."""
        per_position = math.prod(self.kernel_size) * self.in_channels * (self.out_channels // self.groups)
        return per_position * y.shape[0] * math.prod(y.shape[2:]) + (y.numel() if self.bias is not None else 0)


class GroupedFrequencyConvTranspose(nn.ConvTranspose2d):
    """:class:`GroupedFrequencyConv` for the transposed convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if one_frame_eager(x, 2):
            return F.conv_transpose2d(x, block_diagonal(self.weight, self.groups), self.bias, self.stride,
                                      self.padding, self.output_padding)
        return super().forward(x)

    def count_macs(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """For :mod:`sekd.profile`: as ptflops counts an ``nn.ConvTranspose2d`` (per input position)."""
        per_position = math.prod(self.kernel_size) * self.in_channels * (self.out_channels // self.groups)
        return per_position * x.shape[0] * math.prod(x.shape[2:]) + (y.numel() if self.bias is not None else 0)


def frequency_conv(c_in: int, c_out: int, groups: int = 1, transposed: bool = False) -> nn.Module:
    """Kernel 5 along frequency, stride 2: 129 -> 65 -> 33 bins, or back with ``transposed``."""
    if transposed:
        kind = GroupedFrequencyConvTranspose if groups > 1 else nn.ConvTranspose2d
        return kind(c_in, c_out, (1, 5), (1, 2), padding=(0, 2), groups=groups)
    return (GroupedFrequencyConv if groups > 1 else nn.Conv2d)(c_in, c_out, (1, 5), (1, 2), padding=(0, 2),
                                                               groups=groups)


class CausalDepthwiseConv(nn.Module):
    """Depthwise (3, 3) convolution, dilated in time, reading the last ``2·dilation`` frames from its history."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.context = 2 * dilation
        self.conv = nn.Conv2d(channels, channels, 3, padding=(0, 1), dilation=(dilation, 1), groups=channels)

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extended = torch.cat([history, x], dim=2)             # (B, C, 2d + T, F)
        if one_frame_eager(x, 2):
            return self.one_frame(extended), extended[:, :, -self.context:]
        return self.conv(extended), extended[:, :, -self.context:]

    def one_frame(self, extended: torch.Tensor) -> torch.Tensor:
        """The output frame from the three frames it reads, as one dense (1, 3) convolution.

        Channel c's kernel rows go to input channels 3c..3c + 2 (zeros elsewhere): the same
        products as the depthwise dilated convolution, where PyTorch's depthwise kernels
        spend far longer on a single frame (a frozen step folds the dense kernel once).
        """
        w = self.conv.weight                                                          # (C, 1, 3, 3)
        c = w.shape[0]
        # dense[c, c', k, j] = w[c, 0, k, j] where c' = c: from the weight alone, so a frozen trace folds it
        dense = torch.diag_embed(w[:, 0].permute(1, 2, 0)).permute(2, 3, 0, 1).reshape(c, 3 * c, 1, 3)
        frames = extended[:, :, ::self.conv.dilation[0]].flatten(1, 2).unsqueeze(2)  # channel 3c + k: frame k of c
        return F.conv2d(frames, dense, self.conv.bias, padding=(0, 1))


class TemporalAttention(nn.Module):
    """TRA: per channel and frame, a sigmoid weight from a forward GRU over the mean energy across bins."""

    def __init__(self, channels: int):
        super().__init__()
        # Time-major (the layout of ONNX's GRU: no transposes around it in the exported step).
        self.gru = nn.GRU(channels, 2 * channels)
        self.fc = nn.Linear(2 * channels, channels)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        energy = x.pow(2).mean(-1).permute(2, 0, 1)            # (T, B, C)
        if one_frame_eager(energy, 0):
            state = one_gru_step(energy, state, [getattr(self.gru, f"{n}_l0") for n in GRU_WEIGHTS])
            h = state
        else:
            h, state = self.gru(energy, state)
        weight = torch.sigmoid(self.fc(h)).permute(1, 2, 0)    # (B, C, T)
        return x * weight[..., None], state


class TemporalConvBlock(nn.Module):
    """Grouped temporal convolution block: half the channels processed, then both halves interleaved."""

    def __init__(self, channels: int, hidden: int, dilation: int):
        super().__init__()
        half = channels // 2
        # Channel shuffle: output channel 2i is processed channel i, 2i + 1 passed channel i.
        self.register_buffer("shuffle", torch.arange(channels).reshape(2, half).T.flatten(), persistent=False)
        self.point_in = nn.Sequential(SubbandPointConv(half, hidden), nn.BatchNorm2d(hidden), nn.PReLU(hidden))
        self.depthwise = CausalDepthwiseConv(hidden, dilation)
        self.depth_act = nn.Sequential(nn.BatchNorm2d(hidden), nn.PReLU(hidden))
        self.point_out = nn.Sequential(nn.Conv2d(hidden, half, 1), nn.BatchNorm2d(half))
        self.attention = TemporalAttention(half)

    def forward(self, x: torch.Tensor, history: torch.Tensor, gru_state: torch.Tensor):
        processed, passed = x.chunk(2, dim=1)
        h, history = self.depthwise(self.point_in(processed), history)                   # subband features inside
        h, gru_state = self.attention(self.point_out(self.depth_act(h)), gru_state)
        return torch.cat([h, passed], dim=1).index_select(1, self.shuffle), history, gru_state


def place_blocks(blocks: list[torch.Tensor], offsets: list[int], width: int) -> torch.Tensor:
    """Rows of ``blocks`` stacked, block i's columns at ``offsets[i]`` of ``width`` columns, zeros elsewhere.

    Zero padding and concatenation (not ``torch.block_diag``) so that it exports to ONNX,
    where it folds into a constant.
    """
    return torch.cat([F.pad(b, (o, width - o - b.shape[1])) for b, o in zip(blocks, offsets)])


class GroupedGRU(nn.Module):
    """Two GRUs, each on half of the features (half the weights of one GRU of the full width).

    The groups' GRUs (and, when bidirectional, each group's two directions) run as ONE
    forward GRU whose weight matrices are block-diagonal, built from the groups' weights at
    every call: the gates are elementwise, so each block of the hidden state sees only its
    own inputs and weights, and the result is that of the separate GRUs. A backward
    direction reads the reversed sequence and its outputs are reversed back. One
    recurrence instead of four halves the sequential steps per call (and the operators of
    the exported per-hop graph); the parameters stay those of the separate GRUs
    (``grus.<g>``), so checkpoints load unchanged.
    """

    def __init__(self, size: int, hidden: int, bidirectional: bool, groups: int = 2):
        super().__init__()
        self.groups, self.bidirectional = groups, bidirectional
        self.size, self.hidden = size, hidden
        self.grus = nn.ModuleList(nn.GRU(size // groups, hidden // groups, batch_first=True,
                                         bidirectional=bidirectional) for _ in range(groups))
        directions = 2 if bidirectional else 1
        # Blocks in hidden order: group 0 forward (, backward), group 1 forward (, backward), ...
        # Block (g, d) reads group g's features of [x, x reversed in time] (of x alone when
        # unidirectional), and ``backward`` marks the hidden channels whose outputs are reversed back.
        part, width = size // groups, hidden // groups
        self.input_offsets = [d * size + g * part for g in range(groups) for d in range(directions)]
        self.register_buffer("backward", torch.tensor(
            [d == 1 for g in range(groups) for d in range(directions) for _ in range(width)]), persistent=False)

    def _blocks(self) -> list[tuple[torch.Tensor, ...]]:
        """(w_ih, w_hh, b_ih, b_hh) of every block, in hidden order."""
        suffixes = ["", "_reverse"] if self.bidirectional else [""]
        return [tuple(getattr(gru, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                for gru in self.grus for suffix in suffixes]

    def fused_weights(self) -> list[torch.Tensor]:
        """The one GRU's (w_ih, w_hh, b_ih, b_hh): each gate's rows block-diagonal over the blocks."""
        blocks = self._blocks()
        n, h = len(blocks), self.hidden // self.groups

        def gate_major(rows: torch.Tensor, width: int) -> torch.Tensor:  # (n·3h, width) by block -> by gate
            # Python ints only in the shapes: the ONNX exporter must see the GRU's sizes as constants.
            return rows.reshape(n, 3, h, width).transpose(0, 1).reshape(3 * n * h, width)

        inputs = self.size * (2 if self.bidirectional else 1)
        w_ih = gate_major(place_blocks([b[0] for b in blocks], self.input_offsets, inputs), inputs)
        w_hh = gate_major(place_blocks([b[1] for b in blocks], [i * h for i in range(n)], n * h), n * h)
        b_ih = gate_major(torch.cat([b[2] for b in blocks])[:, None], 1)[:, 0]
        b_hh = gate_major(torch.cat([b[3] for b in blocks])[:, None], 1)[:, 0]
        return [w_ih, w_hh, b_ih, b_hh]

    def count_macs(self, x: torch.Tensor, y) -> int:
        """For :mod:`sekd.profile`: the separate GRUs' work, as ptflops counts an ``nn.GRU`` (the zeros left out)."""
        h = self.hidden // self.groups
        per_step = sum(w_ih.numel() + w_hh.numel() + 13 * h for w_ih, w_hh, _, _ in self._blocks())
        return x.shape[0] * x.shape[1] * per_step

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """Time-major ``x [S, N, size]`` -> (output ``[S, N, hidden]``, last state ``[1, N, hidden]``)."""
        if self.bidirectional:
            x = torch.cat([x, x.flip(0)], dim=-1)
        if state is None:
            state = x.new_zeros(1, x.shape[1], self.backward.numel())
        if not self.bidirectional and one_frame_eager(x, 0):
            state = out = one_gru_step(x, state, self.fused_weights())
            return out, state
        # What nn.GRU.forward calls, with the fused weights (a functional GRU with given weights).
        out, state = torch._VF.gru(x, state, self.fused_weights(), True, 1, 0.0, self.training, False, False)
        if self.bidirectional:
            out = torch.where(self.backward, out.flip(0), out)
        return out, state


class DualPathGRU(nn.Module):
    """Grouped dual-path GRU: along frequency (bidirectional), then along time (forward), each with a residual."""

    def __init__(self, channels: int, bins: int):
        super().__init__()
        self.intra = GroupedGRU(channels, channels // 2, bidirectional=True)
        self.intra_fc = nn.Linear(channels, channels)
        self.intra_norm = nn.LayerNorm((bins, channels))
        self.inter = GroupedGRU(channels, channels, bidirectional=False)
        self.inter_fc = nn.Linear(channels, channels)
        self.inter_norm = nn.LayerNorm((bins, channels))

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t, f = x.shape
        x = x.permute(2, 0, 3, 1)                                                # (T, B, F, C)
        r, _ = self.intra(x.transpose(0, 2).reshape(f, b * t, c))                # along frequency
        x = x + self.intra_norm(self.intra_fc(r).reshape(f, b, t, c).transpose(0, 2))
        s, state = self.inter(x.reshape(t, b * f, c), state)                     # along time
        x = x + self.inter_norm(self.inter_fc(s).reshape(t, b, f, c))
        return x.permute(1, 3, 0, 2), state                                      # (B, C, T, F)


class GTCRN(EnhancementNetwork):
    """GTCRN of width ``channels`` (C) with ``layers`` dual-path GRU layers; always causal (see the module docstring).

    ``bins`` is the STFT's bin count (257 for n_fft 512), ``erb_low`` the low bins kept as
    they are and ``erb_bands`` the ERB bands the rest is merged into; :meth:`stft_args` gives
    all three for an n_fft (the presets take them from the config's ``signal`` section).
    """

    causal = True

    def __init__(self, channels: int = 16, layers: int = 2, in_channels: int = 1, bins: int = 257,
                 erb_low: int = 65, erb_bands: int = 64):
        super().__init__()
        if channels % 4 or channels < 4:
            raise ValueError(f"GTCRN width {channels} must be a positive multiple of 4 (grouped GRUs of half width)")
        if layers < 1:
            raise ValueError(f"GTCRN needs at least one dual-path layer, got layers={layers}")
        if not 0 < erb_low < bins:
            raise ValueError(f"GTCRN: erb_low={erb_low} must lie between 0 and bins={bins}")
        self.args = dict(channels=channels, layers=layers, in_channels=in_channels, bins=bins, erb_low=erb_low,
                         erb_bands=erb_bands)
        self.in_channels, self.bins = in_channels, bins
        c = channels
        merged = erb_low + erb_bands
        self.f1 = (merged - 1) // 2 + 1          # after enc1 (129 -> 65)
        self.f2 = (self.f1 - 1) // 2 + 1         # after enc2 (65 -> 33)
        if (self.f2 - 1) * 2 + 1 != self.f1 or (self.f1 - 1) * 2 + 1 != merged:
            raise ValueError(f"GTCRN: erb_low + erb_bands = {merged} must be 4k + 1 so the decoder restores it")
        self.band_merge, self.band_split = erb_band_maps(bins, erb_low, erb_bands)
        self.enc1 = nn.Sequential(frequency_conv(9 * in_channels, c), nn.BatchNorm2d(c), nn.PReLU(c))
        self.enc2 = nn.Sequential(frequency_conv(c, c, groups=2), nn.BatchNorm2d(c), nn.PReLU(c))
        self.enc_blocks = nn.ModuleList(TemporalConvBlock(c, c, d) for d in DILATIONS)
        self.middle = nn.ModuleList(DualPathGRU(c, self.f2) for _ in range(layers))
        self.dec_blocks = nn.ModuleList(TemporalConvBlock(c, c, d) for d in reversed(DILATIONS))
        self.dec4 = nn.Sequential(frequency_conv(c, c, groups=2, transposed=True), nn.BatchNorm2d(c), nn.PReLU(c))
        self.dec5 = frequency_conv(c, 2, transposed=True)
        start_as_pass_through(self.dec5, PASS_THROUGH)  # gain tanh(2) ≈ 0.96, phase 0

    @staticmethod
    def stft_args(n_fft: int) -> dict:
        """The constructor arguments that follow the STFT (:func:`band_layout`)."""
        return band_layout(n_fft)

    def get_model_args(self) -> dict:
        return dict(self.args)

    def describe(self) -> str:
        a = self.args
        return (f"GTCRN width {a['channels']}, {a['layers']} dual-path GRU layer(s), {a['in_channels']} input "
                f"channel(s), {a['erb_low']} bins + {a['erb_bands']} ERB bands, causal")

    @property
    def tap_sets(self) -> dict[str, list[str]]:
        return {"encoder": [f"enc{i + 1}" for i in range(2 + len(DILATIONS))],
                "middle": [f"mid{i + 1}" for i in range(len(self.middle))],
                "decoder": [f"dec{i + 1}" for i in range(len(DILATIONS) + 2)]}

    # -- state ------------------------------------------------------------------------------
    def state_names(self) -> list[str]:
        enc = [f"enc{i + 3}_{part}" for i in range(len(DILATIONS)) for part in ("conv", "attention")]
        dec = [f"dec{i + 1}_{part}" for i in range(len(DILATIONS)) for part in ("conv", "attention")]
        return [*enc, *(f"mid{i + 1}_gru" for i in range(len(self.middle))), *dec]

    def initial_state(self, batch: int = 1, bins: int = 257) -> tuple[torch.Tensor, ...]:
        """Zeros: the offline model's zero padding in time and zero initial GRU states."""
        if bins != self.bins:
            n_fft = 2 * (bins - 1)
            layout = ", ".join(f"{k}={v}" for k, v in band_layout(n_fft, f"n_fft {n_fft}").items()) \
                if n_fft % 16 == 0 and n_fft >= 32 else f"bins={bins}"
            raise SekdError(f"GTCRN was built for {self.bins} STFT bins (model arg bins) but gets {bins}; "
                            f"build it with {layout} or use n_fft {2 * (self.bins - 1)}")
        p = next(self.parameters())
        zeros = lambda *shape: torch.zeros(shape, dtype=p.dtype, device=p.device)  # noqa: E731
        c = self.args["channels"]

        def block(b: TemporalConvBlock) -> list[torch.Tensor]:
            return [zeros(batch, c, b.depthwise.context, self.f2), zeros(1, batch, c)]

        state = [s for b in self.enc_blocks for s in block(b)]
        state += [zeros(1, batch * self.f2, c) for _ in self.middle]
        state += [s for b in self.dec_blocks for s in block(b)]
        return tuple(state)

    # -- the network ------------------------------------------------------------------------
    def run(self, feats: torch.Tensor, state: tuple[torch.Tensor, ...], return_taps: bool = False):
        """``(mask, taps or None, new_state)`` for ``feats [B, 2M, T, F]`` continuing from ``state``."""
        m = self.in_channels
        re, im = feats[:, :m], feats[:, m:]
        x = torch.cat([torch.sqrt(re ** 2 + im ** 2 + 1e-12), re, im], dim=1)   # (B, 3M, T, F)
        x = subband_features(self.band_merge(x))                                # (B, 9M, T, 129)
        state, new_state = list(state), []
        taps = OrderedDict()
        taps["enc1"] = self.enc1(x)                                             # (B, C, T, 65)
        taps["enc2"] = x = self.enc2(taps["enc1"])                              # (B, C, T, 33)
        for i, block in enumerate(self.enc_blocks):
            x, history, gru = block(x, state.pop(0), state.pop(0))
            new_state += [history, gru]
            taps[f"enc{i + 3}"] = x
        for i, layer in enumerate(self.middle):
            x, gru = layer(x, state.pop(0))
            new_state.append(gru)
            taps[f"mid{i + 1}"] = x
        skips = [taps[f"enc{i + 3}"] for i in range(len(DILATIONS))][::-1]
        for i, (block, skip) in enumerate(zip(self.dec_blocks, skips)):
            x, history, gru = block(x + skip, state.pop(0), state.pop(0))
            new_state += [history, gru]
            taps[f"dec{i + 1}"] = x
        k = len(DILATIONS)
        taps[f"dec{k + 1}"] = x = self.dec4(x + taps["enc2"])                  # (B, C, T, 65)
        mask = self.band_split(self.dec5(x + taps["enc1"]))                     # (B, 2, T, F)
        taps[f"dec{k + 2}"] = mask
        return mask, (taps if return_taps else None), tuple(new_state)

    def forward(self, feats: torch.Tensor, return_taps: bool = False):
        """``feats [B, 2M, T, F]`` -> mask ``[B, 2, T, F]`` (and the taps when asked)."""
        mask, taps, _ = self.run(feats, self.initial_state(feats.shape[0], feats.shape[-1]), return_taps)
        return (mask, taps) if return_taps else mask

    def streaming_step(self, cache_frames: int) -> GTCRNStep:
        return GTCRNStep(self)
