"""Similarity helpers shared by the relational methods (PKT, CLSKD, I²S-TFCKD; method.md §3.2–3.4)."""

from __future__ import annotations

import torch


def frame_vectors(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, D]`` -> ``[B, T, C·D]``: x_{b,t}, one vector per frame (method.md §3.1)."""
    return x.permute(0, 2, 1, 3).flatten(2)


def bin_vectors(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, D]`` -> ``[B, D, C·T]``: one vector per frequency bin."""
    return x.permute(0, 3, 1, 2).flatten(2)


def cosine_distribution(gram: torch.Tensor, norm_outer: torch.Tensor) -> torch.Tensor:
    """(1 + cos)/2 from a Gram matrix, normalised to sum to one along the last axis (PKT recipe).

    ``norm_outer`` is the product (‖x‖ + eps)(‖x'‖ + eps) of the two vectors' norms,
    broadcastable to ``gram``, so that cos = ⟨x/(‖x‖ + eps), x'/(‖x'‖ + eps)⟩.
    """
    cos = gram / norm_outer
    p = (cos + 1) / 2
    return p / p.sum(-1, keepdim=True)


def jeffreys(p: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
    """Symmetric KL, elementwise: (P − Q)·(log P − log Q), clamped before the log (method.md §3.4)."""
    return (p - q) * (p.clamp_min(eps).log() - q.clamp_min(eps).log())
