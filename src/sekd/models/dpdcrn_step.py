"""Hop-by-hop inference of a causal DPDCRN (:class:`DPDCRNStep`), for :mod:`sekd.streaming` and :mod:`sekd.export`.

``DPDCRN.streaming_step`` builds it; this module reads the network's submodules by their
attribute names and imports nothing from ``dpdcrn.py``, so imports go one way (dpdcrn ->
dpdcrn_step).

The state, per frame:
- every convolution with a time kernel > 1 (the (2, 3) convolutions of the two dilated
  dense blocks) keeps its last ``dilation`` input frames;
- every time-path attention keeps the keys and values of the look-back window (a model
  without a look-back keeps ``cache_seconds`` of them) in a ring buffer, with one shared
  additive mask that blocks the slots not yet filled and the index of the slot the next
  frame overwrites;
- every time-path GRU keeps its hidden state.
Everything else in the causal network works on one frame alone (1-frame convolutions,
FrameNorm, the frequency path). The step owns no weights: it calls the DPDCRN's modules.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SekdError
from .base import StreamingStep


def _attend(attn: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention of ``q [N, h, S, dh]`` over ``k, v [N, h, K, dh]`` with ``attn``'s output projection.

    Written out (rather than calling ``attn``) so that cached keys can be passed in and the
    graph exports to ONNX without the fused fast path.
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if bias is not None:
        scores = scores + bias
    out = torch.matmul(torch.softmax(scores, dim=-1), v)            # (N, h, S, dh)
    n, h, s, dh = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(n, s, h * dh))  # (N, S, d)


def _heads(x: torch.Tensor, attn: nn.MultiheadAttention) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input projection of ``x [N, S, d]`` into q, k, v ``[N, h, S, dh]``."""
    n, s, d = x.shape
    h = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).reshape(n, s, 3, h, d // h)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


class DPDCRNStep(StreamingStep):
    """One hop of a causal DPDCRN: ``(feats [B, 2M, 1, F], *state) -> (mask [B, 2, 1, F], *new_state)``.

    ``state_names()`` and ``initial_state(batch)`` describe the flat state tuple; the order
    is enc3 conv histories, then per dual-path layer (keys, values, GRU state), the shared
    attention mask and slot pointer, then dec1 conv histories.
    """

    def __init__(self, net: nn.Module, cache_frames: int):
        """``net``: a causal :class:`sekd.models.DPDCRN`."""
        super().__init__()
        if not net.causal:
            raise SekdError("DPDCRN: only a causal model (causal=True) runs hop by hop")
        self.net = net
        self.cache = cache_frames
        self.layers = net.args["layers"]

    # -- state description ----------------------------------------------------------------
    def _dense_shapes(self, block: nn.Module, batch: int, bins: int) -> list[tuple[int, ...]]:
        return [(batch, layer[1].in_channels, layer[1].dilation[0], bins) for layer in block.layers]

    def state_names(self) -> list[str]:
        names = [f"enc3_conv{i}" for i in range(len(self.net.enc3.layers))]
        for i in range(self.layers):
            names += [f"mid{i + 1}_keys", f"mid{i + 1}_values", f"mid{i + 1}_gru"]
        names += ["attention_mask", "attention_slot"]
        names += [f"dec1_conv{i}" for i in range(len(self.net.dec1.layers))]
        return names

    def initial_state(self, batch: int = 1, bins: int = 257) -> tuple[torch.Tensor, ...]:
        """Zeros (the offline model's zero padding in time); the mask blocks every cache slot; slot index 0."""
        c = self.net.args["channels"]
        d, heads = c // 2, self.net.args["heads"]
        f2 = self.net.tap_channels_bins(bins)["enc3"][1]
        p = next(self.net.parameters())
        zeros = lambda *shape: torch.zeros(shape, dtype=p.dtype, device=p.device)  # noqa: E731
        state = [zeros(*s) for s in self._dense_shapes(self.net.enc3, batch, f2)]
        for _ in range(self.layers):
            cache = (batch * f2, heads, self.cache, d // heads)
            state += [zeros(*cache), zeros(*cache), zeros(1, batch * f2, 2 * d)]
        state += [torch.full((self.cache,), float("-inf"), dtype=p.dtype, device=p.device),
                  torch.zeros(1, dtype=torch.long, device=p.device)]
        state += [zeros(*s) for s in self._dense_shapes(self.net.dec1, batch, f2)]
        return tuple(state)

    # -- the step ---------------------------------------------------------------------------
    @staticmethod
    def _dense_step(block: nn.Module, x: torch.Tensor, history: list[torch.Tensor]):
        """A ``DilatedDenseNet`` on one frame; ``history[i]`` holds layer i's last ``dilation`` input frames."""
        new_history = []
        skip = x
        for layer, past in zip(block.layers, history):
            _, conv, norm, act = layer
            # Frames t - dil and t side by side: the dilated kernel becomes an undilated one.
            pair = torch.cat([past[:, :, :1], skip], dim=2)                # (B, Cin, 2, D)
            out = act(norm(F.conv2d(pair, conv.weight, conv.bias, padding=(0, 1))))
            new_history.append(torch.cat([past[:, :, 1:], skip], dim=2) if past.shape[2] > 1 else skip)
            skip = torch.cat([out, skip], dim=1)
        return out, new_history

    @staticmethod
    def _column_step(layer: nn.Module, x: torch.Tensor, keys, values, gru_state, mask, slot):
        """Time-path transformer-GRU on one frame (``x [N, 1, d]``) with cached keys/values and GRU state.

        The cache is a ring: the new key and value overwrite the oldest slot (index ``slot``).
        Attention has no positional encoding, so the slots' order does not matter, and a
        write replaces shifting the whole cache every hop.
        """
        q, k, v = _heads(layer.norm_in(x), layer.attn)                     # (N, h, 1, dh)
        keys, values = keys.index_copy(2, slot, k), values.index_copy(2, slot, v)
        x = layer.norm_attn(x + _attend(layer.attn, q, keys, values, mask))
        h, gru_state = layer.gru(x, gru_state)
        return layer.norm_out(x + layer.proj(F.relu(h))), keys, values, gru_state

    @staticmethod
    def _row(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Frequency-path transformer-GRU (unmasked, bidirectional) on ``x [N, D, d]``."""
        x = layer.norm_attn(x + _attend(layer.attn, *_heads(layer.norm_in(x), layer.attn)))
        h, _ = layer.gru(x)
        return layer.norm_out(x + layer.proj(F.relu(h)))

    def forward(self, feats: torch.Tensor, *state: torch.Tensor):
        net, dp = self.net, self.net.dual_path
        n_dense = len(net.enc3.layers)
        enc_hist, rest = list(state[:n_dense]), state[n_dense:]
        mids, (mask, slot), dec_hist = rest[:3 * self.layers], rest[3 * self.layers:3 * self.layers + 2], \
            list(rest[3 * self.layers + 2:])
        bins = feats.shape[-1]

        x, enc_hist = self._dense_step(net.enc3, net.enc2(net.enc1(feats)), enc_hist)   # (B, C, 1, D)
        x = dp.proj_in(x)                                                                # (B, d, 1, D)
        b, d, _, f = x.shape
        mask = mask.index_copy(0, slot, mask.new_zeros(1))          # the current frame's slot opens
        new_mids = []
        for i in range(self.layers):
            keys, values, gru_state = mids[3 * i:3 * i + 3]
            r = self._row(dp.row[i], x.permute(0, 2, 3, 1).reshape(b, f, d))            # along frequency
            r = dp.row_norm[i](r.reshape(b, 1, f, d).permute(0, 3, 1, 2))
            c, keys, values, gru_state = self._column_step(dp.col[i], x.permute(0, 3, 2, 1).reshape(b * f, 1, d),
                                                           keys, values, gru_state, mask, slot)
            c = dp.col_norm[i](c.reshape(b, f, 1, d).permute(0, 3, 2, 1))
            x = x + dp.k1 * r + dp.k2 * c
            new_mids += [keys, values, gru_state]
        x, dec_hist = self._dense_step(net.dec1, dp.head(x), dec_hist)
        out = net.dec3(net.dec2(x))[..., :bins]
        slot = (slot + 1) % self.cache
        return (out, *enc_hist, *new_mids, mask, slot, *dec_hist)


