"""SemCKD (Chen et al., AAAI 2021, "Cross-layer distillation with semantic calibration"; method.md §4.8).

Taps: every feature tap of each model (:attr:`TapInfo.feature_taps`; DPDCRN: enc1..enc3,
mid1..midL, dec1, dec2; dec3, the mask, is left out); every student tap i is paired with
every teacher tap j.

- Attention (the "semantic calibration"): per tap, the batch Gram matrix G = V Vᵀ
  (``[B, B]``, V the tap flattened per item) goes row by row through its own embedding
  Linear(B → 2B) → ReLU → Linear(2B → B) → L2 norm; student taps give queries, teacher taps
  keys; α[b, i, j] = softmax over j of ⟨q_i, k_j⟩. The embeddings read rows of length B, so
  the method needs the fixed batch size it was built with.
- Values: a projection of student tap i to teacher tap j's width C_j; the pair cost is the
  per-item mean squared error to teacher tap j after adaptive average pooling of the finer
  one to the coarser D (T always matches).
- Loss: Σ_{b,i,j} α[b,i,j] · MSE_b(i, j) / (B · S), S the number of student taps.

Released code vs here: the code embeds to B/4 dimensions (batch 64 there; with SE batches
of 8 that leaves 2), here B. Its projection is a three-convolution bottleneck per
(student, teacher) pair because teacher layers differ in width; here one 1×1 convolution
per student tap and distinct teacher width serves all pairs of that width (identity when
C_s = C_t; every DPDCRN teacher tap has width C_t, so one per student tap, keyed by the
tap's name; with several widths keyed ``<tap>_to_<width>``), which keeps memory and time
near the other baselines at [B, C, T, 64..129].

``last_calibration["layers"]`` and ``last_pair_losses["layers"]`` hold α and the unweighted
pair costs of the last call, averaged over the batch, ``[S, S_t]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..base import DistillMethod, resize_bins
from ..registry import register


def batch_gram(x: torch.Tensor) -> torch.Tensor:
    v = x.flatten(1)                  # (B, C·T·D)
    return v @ v.T                    # (B, B)


def embedding(batch: int) -> nn.Module:
    return nn.Sequential(nn.Linear(batch, 2 * batch), nn.ReLU(), nn.Linear(2 * batch, batch))


@register
class SemCKD(DistillMethod):
    description = "SemCKD: all student x teacher tap pairs, attention-weighted MSE through projections"

    def __init__(self, student, teacher, **options):
        super().__init__(student, teacher, **options)
        self.fixed_sizes = {"batch"}
        self.queries = nn.ModuleDict({n: embedding(student.batch) for n in student.feature_taps})
        self.keys = nn.ModuleDict({n: embedding(student.batch) for n in teacher.feature_taps})
        self.widths = sorted({teacher.channels(n) for n in teacher.feature_taps})
        self.projections = nn.ModuleDict()
        for name in student.feature_taps:
            for width in self.widths:
                conv = nn.Conv2d(student.channels(name), width, 1, bias=False)
                if conv.in_channels == conv.out_channels:
                    with torch.no_grad():
                        conv.weight.copy_(torch.eye(width)[:, :, None, None])
                self.projections[self._projection_key(name, width)] = conv
        self.last_calibration: dict[str, torch.Tensor] = {}
        self.last_pair_losses: dict[str, torch.Tensor] = {}

    def _projection_key(self, tap: str, width: int) -> str:
        return tap if len(self.widths) == 1 else f"{tap}_to_{width}"

    def compute(self, student_taps, teacher_taps):
        s_names, t_names = self.student_info.feature_taps, self.teacher_info.feature_taps
        q = torch.stack([F.normalize(self.queries[n](batch_gram(student_taps[n])), dim=-1) for n in s_names], 1)
        k = torch.stack([F.normalize(self.keys[n](batch_gram(teacher_taps[n])), dim=-1) for n in t_names], 1)
        alpha = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # (B, S, S_t)

        pooled: dict[tuple[str, int], torch.Tensor] = {}

        def at_bins(key: str, x: torch.Tensor, bins: int) -> torch.Tensor:
            if (key, bins) not in pooled:  # each tap pooled once per resolution, shared by its pairs
                pooled[key, bins] = resize_bins(x, bins)
            return pooled[key, bins]

        costs = []
        for s_name in s_names:
            values = {w: self.projections[self._projection_key(s_name, w)](student_taps[s_name])
                      for w in self.widths}                         # C_j -> (B, C_j, T, D_i)
            row = []
            for t_name in t_names:
                target = teacher_taps[t_name]                       # (B, C_j, T, D_j)
                value = values[target.shape[1]]
                bins = min(value.shape[-1], target.shape[-1])
                # mse_loss keeps its two (cached) inputs for backward, not a difference per pair
                cost = F.mse_loss(at_bins(f"s/{s_name}/{target.shape[1]}", value, bins),
                                  at_bins(f"t/{t_name}", target, bins), reduction="none")
                row.append(cost.mean(dim=(1, 2, 3)))                # (B,)
            costs.append(torch.stack(row, 1))
        costs = torch.stack(costs, 1)                               # (B, S, S_t)

        weighted = (alpha * costs).sum(dim=(0, 2)) / (costs.shape[0] * len(s_names))  # (S,)
        self.last_calibration = {"layers": alpha.detach().mean(0)}
        self.last_pair_losses = {"layers": costs.detach().mean(0)}
        return weighted.sum(), dict(zip(s_names, weighted))
