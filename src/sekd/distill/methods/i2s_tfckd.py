"""I²S-TFCKD: intra-inter set KD with time-frequency calibration (Cheng, Liang et al., arXiv 2506.13127).

Implements method.md §3 (the released demo's reading unless an option says otherwise):

- Sets (§3.1): encoder (enc1..3), middle (mid1..midL), decoder (dec1..3) of each model;
  inside a set every student tap is paired with every teacher tap.
- Values (§3.2): per tap, two row-stochastic (1 + cos)/2 distributions: the time stream
  ``[B, T, T]`` (frames of one item) and the second stream, ``second_stream: batch``
  ``[B, T, B]`` (items at one frame; the demo's "frequency" stream) or
  ``second_stream: freq`` ``[B, D, D]`` (bins of one item, the paper's wording; every tap
  is first average-pooled over bins to the bottleneck's D, the smallest D of either model:
  64 for DPDCRN).
- Calibration (§3.3): each tap has its own embedding per stream, applied to the rows of
  its unnormalised Gram matrix: time Linear(T → 2T) → ReLU → Linear(2T → T), second stream
  Linear(n → k·n) → ReLU → Linear(k·n → k·n) (n = B, or D in ``freq``), then L2
  normalisation over the frame axis (``normalise: reference``, the demo's quirk) or over
  the embedding (``last-axis``). α[b, r, i, j] = softmax over teacher taps j of
  ⟨q_i, k_j⟩, no temperature. The learned embeddings fix T (and B for the batch stream):
  :meth:`forward` rejects other sizes.
- Pair and set loss (§3.4): Jeffreys divergence J = (P − Q)(log P − log Q), clamped;
  L_s[i, j] = Σ_{b,r} α[b, r, i, j] Σ_{r'} J[b, r, r'] / (B·R'), i.e. the mean over
  (b, r') of Σ_r α·J; L_set = Σ_{i,j} (L_time + L_second)[i, j] / S.
- Representatives (§3.5): per set and side a chain of fusion units
  (:class:`sekd.distill.fusion.FusionUnit`, InstanceNorm + PReLU, m = ``fusion_channels``)
  from the tap farthest from the bottleneck towards it (enc1→enc2→enc3, mid1→…→midL,
  dec3→dec2→dec1); the last unit's output ``[B, C, T, 64]`` is the representative. The
  demo gives every unit an output convolution but reads only the last; the unread ones
  would never train and are not built.
- Total (§3.6): L_KD = L_set(encoder) + L_set(middle) + L_set(decoder) + L_set(inter),
  the inter set being the 3 × 3 representatives with its own calibration; teacher
  representatives feed the keys with gradient (so the teacher fusion units learn) and the
  values detached.

Efficiency: each tap's Gram matrices and distributions are computed once per call and
shared by all its pairs (the demo recomputes them per pair). The fusion chains compute each
unit only at the positions the representative depends on (:class:`FusionChain`; same values
and gradients, no full-resolution activations, but about 9 % more FLOPs for the InstanceNorm
statistics: see docs/training.md). With ``checkpoint`` they are also recomputed during the backward
pass instead of keeping their activations (one more chain forward, less memory).

Ablations: ``intra``/``inter`` switch either loss off; ``calibration: uniform`` sets
α = 1/(teacher taps) (the teacher fusion units, whose only gradient comes through the keys,
then stay at their random initialisation and are frozen); ``streams: time|second`` keeps
one stream; ``fusion: false`` takes as representative the set's tap nearest the bottleneck
(enc3, midL, dec1), with no fusion units; ``teacher_fusion: frozen`` keeps the teacher's
fusion units at their initialisation (the released code trains them through the keys:
``learned``, the default), so the inter-set targets cannot move. With learned teacher units
the method logs every ``drift_every`` training steps how far the targets have moved from
those a frozen copy of the initial units gives (``drift/target``, a Jeffreys divergence of
the time-stream distributions; ``drift/feature``, relative L2 of the representatives).
``fusion_prelu: channel`` gives the fusion units one PReLU slope per channel instead of the
released single slope.

After each call: ``last_alpha[f"{set}/{stream}"]`` holds α ``[B, R, S, S_t]`` (sums to one
over the last axis), :attr:`last_calibration` its mean over items and rows ``[S, S_t]``
(heat maps), and ``last_pair_losses[set]`` the pair losses L_time + L_second ``[S, S_t]``;
sets are ``encoder``, ``middle``, ``decoder`` and ``inter``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...errors import SekdError
from ..base import DistillMethod, TapInfo
from ..fusion import FusionChain
from ..registry import register
from ..similarity import bin_vectors, cosine_distribution, frame_vectors, jeffreys

SETS = ("encoder", "middle", "decoder")


@dataclass
class I2STFCKDOptions:
    second_stream: Literal["batch", "freq"] = "batch"           # §3.2: demo (across items) or paper (across bins)
    normalise: Literal["reference", "last-axis"] = "reference"  # §3.3: demo's L2 over the frame axis, or the usual
    fusion_channels: int = 128                                  # m of the fusion units (§3.5)
    expansion: int = 2                                          # k of the second-stream embedding (§3.3)
    eps: float = 1e-6                                           # in the norms and the clamp before the log
    intra: bool = True                                          # ablation: intra-set loss
    inter: bool = True                                          # ablation: inter-set loss
    calibration: Literal["learned", "uniform"] = "learned"      # ablation: uniform α
    streams: Literal["both", "time", "second"] = "both"         # ablation: one stream only
    fusion: bool = True                                         # ablation: representatives without fusion units
    checkpoint: bool = True                                     # recompute the fusion chains in backward (memory)
    fusion_prelu: Literal["shared", "channel"] = "shared"       # §3.5: one PReLU slope per unit (released) or per channel
    teacher_fusion: Literal["learned", "frozen"] = "learned"    # teacher fusion units: trained via the keys, or frozen
    drift_every: int = 10                                       # log the inter-set targets' drift every N steps (0: never)

    def __post_init__(self):
        if not (self.intra or self.inter):
            raise SekdError("distillation method 'i2s_tfckd' needs intra or inter (or both) switched on")
        if self.fusion_channels < 1 or self.expansion < 1:
            raise SekdError(f"options 'fusion_channels' and 'expansion' of distillation method 'i2s_tfckd' "
                            f"must be ≥ 1; got {self.fusion_channels} and {self.expansion}")


class Embedding(nn.Module):
    """Rows of a Gram matrix -> unit calibration vectors (§3.3)."""

    def __init__(self, size_in: int, hidden: int, size_out: int, normalise: str):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(size_in, hidden), nn.ReLU(), nn.Linear(hidden, size_out))
        self.axis = 1 if normalise == "reference" else -1  # reference: the demo's norm over the row (frame) axis

    def forward(self, gram: torch.Tensor) -> torch.Tensor:  # (B, R, size_in) -> (B, R, size_out)
        return F.normalize(self.net(gram), dim=self.axis)


class SetCalibration(nn.Module):
    """One set's embeddings, per stream and side; α = softmax_j ⟨q_i, k_j⟩ (§3.3)."""

    def __init__(self, student_names: list[str], teacher_names: list[str],
                 sizes: dict[str, tuple[int, int, int]], normalise: str):
        super().__init__()
        self.student_names, self.teacher_names = student_names, teacher_names
        self.embed = nn.ModuleDict({
            stream: nn.ModuleDict({f"{side}_{name}": Embedding(*size, normalise)
                                   for side, names in (("s", student_names), ("t", teacher_names))
                                   for name in names})
            for stream, size in sizes.items()})

    def forward(self, stream: str, student_grams: list[torch.Tensor], teacher_grams: list[torch.Tensor]
                ) -> torch.Tensor:
        nets = self.embed[stream]
        q = torch.stack([nets[f"s_{n}"](g) for n, g in zip(self.student_names, student_grams)], 2)  # (B, R, S, E)
        k = torch.stack([nets[f"t_{n}"](g) for n, g in zip(self.teacher_names, teacher_grams)], 2)  # (B, R, S_t, E)
        return torch.softmax(q @ k.transpose(-1, -2), dim=-1)                                      # (B, R, S, S_t)


def time_gram(v: torch.Tensor, norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame vectors ``[B, T, N]`` and their norms + eps ``[B, T]`` -> the time stream's Gram matrix
    ``[B, T, T]`` and the norms' outer product."""
    return v @ v.transpose(1, 2), norm[:, :, None] * norm[:, None, :]


def chain_order(info: TapInfo, set_name: str) -> list[str]:
    """The set's taps from the farthest from the bottleneck to the nearest (§3.5)."""
    names = info.sets[set_name]
    return names[::-1] if set_name == "decoder" else list(names)


@register
class I2STFCKD(DistillMethod):
    description = "I2S-TFCKD: intra/inter-set KD with dual-stream time-frequency calibration"
    Options = I2STFCKDOptions

    def __init__(self, student, teacher, **options):
        super().__init__(student, teacher, **options)
        o = self.options
        self.streams = {"both": ["time", "second"], "time": ["time"], "second": ["second"]}[o.streams]
        # freq stream resolution: the bottleneck's D (the smallest D of either model; 64 for DPDCRN)
        self.bins = min(info.bins(n) for info in (student, teacher) for s in SETS for n in info.sets[s])
        groups = {s: (student.sets[s], teacher.sets[s]) for s in SETS} if o.intra else {}
        if o.inter:
            groups["inter"] = (self._rep_names(student), self._rep_names(teacher))
        if o.calibration == "learned":
            t, k = student.frames, o.expansion
            n = student.batch if o.second_stream == "batch" else self.bins
            sizes = {"time": (t, 2 * t, t), "second": (n, k * n, k * n)}
            sizes = {stream: sizes[stream] for stream in self.streams}
            self.calibration = nn.ModuleDict({key: SetCalibration(*names, sizes, o.normalise)
                                              for key, names in groups.items()})
            self.fixed_sizes = {"frames"} if "time" in self.streams else set()
            if "second" in self.streams and o.second_stream == "batch":
                self.fixed_sizes.add("batch")
        if o.inter and o.fusion:
            self.fusion = nn.ModuleDict({
                side: nn.ModuleDict({s: FusionChain([info.channels(n) for n in chain_order(info, s)],
                                                    o.fusion_channels, info.width, norm="instance",
                                                    every_output=False, prelu=o.fusion_prelu) for s in SETS})
                for side, info in (("s", student), ("t", teacher))})
            if o.calibration == "uniform" or o.teacher_fusion == "frozen":
                # frozen by choice, or with uniform α no keys that could train them
                self.fusion["t"].requires_grad_(False)
            elif o.drift_every:
                # A frozen copy of the teacher units at initialisation: the inter-set targets they would give,
                # against which the learned units' targets are compared (how far the targets move).
                # Not a submodule: neither trained, nor saved, nor counted (rebuilt from the same seed on resume).
                object.__setattr__(self, "teacher_fusion_init", copy.deepcopy(self.fusion["t"]).requires_grad_(False))
        self.calls = 0
        self.last_alpha: dict[str, torch.Tensor] = {}
        self.last_pair_losses: dict[str, torch.Tensor] = {}

    @property
    def last_calibration(self) -> dict[str, torch.Tensor]:
        """α of the last call averaged over items and rows: ``[S, S_t]`` per ``set/stream``."""
        return {key: alpha.mean(dim=(0, 1)) for key, alpha in self.last_alpha.items()}

    def _rep_names(self, info: TapInfo) -> list[str]:
        return list(SETS) if self.options.fusion else [chain_order(info, s)[-1] for s in SETS]

    def compute(self, student_taps, teacher_taps):
        cache: dict[tuple[str, str], dict] = {}

        def stats(side: str, name: str, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
            if (side, name) not in cache:  # once per tap: shared by every pair and by the inter set
                cache[side, name] = self._stats(x, detach_values=side == "t")
            return cache[side, name]

        self.last_alpha, self.last_pair_losses = {}, {}
        terms = {}
        if self.options.intra:
            for s in SETS:
                terms[s] = self._set_loss(s, [stats("s", n, student_taps[n]) for n in self.student_info.sets[s]],
                                          [stats("t", n, teacher_taps[n]) for n in self.teacher_info.sets[s]])
        if self.options.inter:
            student_reps = self._representatives("s", self.student_info, student_taps)
            teacher_reps = self._representatives("t", self.teacher_info, teacher_taps)
            terms["inter"] = self._set_loss("inter", [stats("s", n, x) for n, x in student_reps],
                                            [stats("t", n, x) for n, x in teacher_reps])
        self.calls += self.training
        self.diagnostics = {}
        if self.training and hasattr(self, "teacher_fusion_init") and (self.calls - 1) % self.options.drift_every == 0:
            self.diagnostics = self._teacher_drift(teacher_taps, teacher_reps)
        return sum(terms.values()), terms

    @torch.no_grad()
    def _teacher_drift(self, teacher_taps, teacher_reps) -> dict[str, torch.Tensor]:
        """How far the learned teacher fusion units moved the inter-set targets from their initial ones.

        ``drift/target``: mean over sets of Σ_{t'} Jeffreys(P_now, P_init) of the time-stream
        distributions (the values the student chases), per item and frame; ``drift/feature``:
        relative L2 distance of the representative features.
        """
        initial = self.teacher_fusion_init.to(teacher_reps[0][1].device)
        target = feature = 0.0
        for (name, now), s in zip(teacher_reps, SETS):
            then = initial[s]([teacher_taps[n] for n in chain_order(self.teacher_info, s)])[-1]
            vectors = [frame_vectors(x) for x in (now, then)]
            p_now, p_then = (cosine_distribution(*time_gram(v, v.norm(dim=-1) + self.options.eps)) for v in vectors)
            target = target + jeffreys(p_now, p_then, self.options.eps).sum(-1).mean()
            feature = feature + (now - then).norm() / then.norm().clamp_min(self.options.eps)
        return {"drift/target": target / len(SETS), "drift/feature": feature / len(SETS)}

    def _representatives(self, side: str, info: TapInfo, taps) -> list[tuple[str, torch.Tensor]]:
        """(name, ``[B, C, T, 64]``) per set; the tap itself without fusion, so its statistics are reused."""
        if not self.options.fusion:
            return [(name, taps[name]) for name in self._rep_names(info)]
        reps = []
        for s in SETS:
            chain, feats = self.fusion[side][s], [taps[n] for n in chain_order(info, s)]
            out = checkpoint(chain, feats, use_reentrant=False) if self.options.checkpoint else chain(feats)
            reps.append((s, out[-1]))
        return reps

    def _stats(self, x: torch.Tensor, detach_values: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per stream: (Gram matrix for the embeddings, row-stochastic distribution as the value)."""
        eps, out = self.options.eps, {}
        v = frame_vectors(x)                                    # (B, T, C·D)
        norm = v.norm(dim=-1) + eps                             # (B, T)
        grams = {}
        if "time" in self.streams:
            grams["time"] = time_gram(v, norm)                  # (B, T, T)
        if "second" in self.streams and self.options.second_stream == "batch":
            gram = torch.einsum("btn,ctn->btc", v, v)           # (B, T, B): ⟨x_{b,t}, x_{b',t}⟩
            grams["second"] = (gram, norm[:, :, None] * norm.T[None, :, :])
        elif "second" in self.streams:
            if x.shape[-1] != self.bins:
                x = F.adaptive_avg_pool2d(x, (x.shape[2], self.bins))
            u = bin_vectors(x)                                  # (B, D, C·T)
            bin_norm = u.norm(dim=-1) + eps                     # (B, D)
            grams["second"] = (u @ u.transpose(1, 2), bin_norm[:, :, None] * bin_norm[:, None, :])  # (B, D, D)
        for stream, (gram, norm_outer) in grams.items():
            values = (gram.detach(), norm_outer.detach()) if detach_values else (gram, norm_outer)
            out[stream] = (gram, cosine_distribution(*values))
        return out

    def _set_loss(self, key: str, student: list[dict], teacher: list[dict]) -> torch.Tensor:
        """L_set of §3.4 for one set, from the per-tap statistics of both sides."""
        pairs = 0
        for stream in self.streams:
            q = torch.stack([st[stream][1] for st in student])   # (S, B, R, R')  student distributions
            p = torch.stack([st[stream][1] for st in teacher])   # (S_t, B, R, R') teacher distributions
            div = jeffreys(p[None], q[:, None], self.options.eps).sum(-1)  # (S, S_t, B, R)
            if self.options.calibration == "learned":
                alpha = self.calibration[key](stream, [st[stream][0] for st in student],
                                              [st[stream][0] for st in teacher])  # (B, R, S, S_t)
            else:
                alpha = div.new_full((*div.shape[2:], *div.shape[:2]), 1 / len(teacher))
            batch, other = q.shape[1], q.shape[-1]
            pairs = pairs + torch.einsum("brij,ijbr->ij", alpha, div) / (batch * other)  # (S, S_t)
            self.last_alpha[f"{key}/{stream}"] = alpha.detach()
        self.last_pair_losses[key] = pairs.detach()
        return pairs.sum() / len(student)
