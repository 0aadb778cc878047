"""GTCRN's streaming step, and the same step written directly as a small ONNX graph.

:class:`GTCRNStep` is :meth:`GTCRN.run <sekd.models.gtcrn.GTCRN.run>` on one frame with the
state passed in and out; PyTorch runs it (as a frozen TorchScript trace, see
:meth:`sekd.step.CausalStep.frozen`).

For onnxruntime, :meth:`GTCRNStep.onnx_graph` builds the one-frame graph from the trained
weights instead of tracing the PyTorch code (:func:`one_frame_graph`). One hop of GTCRN is
about half a million multiply-adds, a few tens of microseconds of arithmetic; what costs is
onnxruntime's work per operator and per graph input. The traced graph has ~240 operators
after onnxruntime's optimisations; written for one frame it has about half as many:

- every BatchNorm is folded into the convolution before it;
- a block's split into processed and passed halves is in the weights (the 1×1 convolution
  reads only the processed channels), and the channel shuffle is one Gather;
- the temporal attention's mean over bins is a ReduceSumSquare whose 1/F is in the GRU's
  input weights, and its linear layer is a convolution that writes the per-channel weight
  in the layout the product needs;
- the grouped GRUs are onnxruntime GRU operators with block-diagonal weights (the frequency
  GRU as one forward operator over the bins and the bins reversed, both groups and both
  directions in it: a third faster than onnxruntime's bidirectional GRU), gates reordered to
  ONNX's (z, r, h);
- the ERB band merge and split are one MatMul each.

The same builder writes the graph for a time axis of any length (:func:`frames_graph`,
``sekd export --offline``): a whole file in one call. There each operator's own speed
counts, not their number, so a few parts take another form (the frequency GRU written out
bin by bin, PReLU as max(x, a·x) or from Relu, the band maps on the merged bins only, the
subband features folded into enc1's convolution).

The graph's inputs, outputs and state shapes are those of :class:`GTCRNStep` (the names
the exporter gives), so :mod:`sekd.export` writes it in place of the traced graph and the
streaming engines run it unchanged; ``tests/test_gtcrn.py`` checks it against PyTorch.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

from .base import StreamingStep

GRU_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class GTCRNStep(StreamingStep):
    """One hop of :class:`~sekd.models.gtcrn.GTCRN`: :meth:`GTCRN.run` on one frame with the state passed in and out.

    ``traceable``: the same operators every hop, whatever the values, so the eager engine
    runs it as a frozen TorchScript trace (:meth:`sekd.step.CausalStep.frozen`).
    """

    traceable = True

    def __init__(self, net):
        super().__init__()
        self.net = net

    def state_names(self) -> list[str]:
        return self.net.state_names()

    def initial_state(self, batch: int = 1, bins: int = 257) -> tuple[torch.Tensor, ...]:
        return self.net.initial_state(batch, bins)

    def forward(self, feats: torch.Tensor, *state: torch.Tensor):
        mask, _, new_state = self.net.run(feats, state)
        return (mask, *new_state)

    def onnx_graph(self, feats: str, mask: str, state_inputs: list[str], state_outputs: list[str],
                   opset: int, frames: int | None = 1) -> onnx.ModelProto:
        """The step as an ONNX model written from the weights for ``frames`` frames (None: any number;
        :func:`frames_graph`)."""
        return frames_graph(self.net, feats, mask, state_inputs, state_outputs, opset, frames)

    def one_frame_module(self) -> nn.Module:
        """What :meth:`sekd.step.CausalStep.frozen` traces: :class:`OneFrameGTCRN`, from the weights as they are now."""
        return OneFrameGTCRN(self.net)


# -- the one-frame step for eager streaming ----------------------------------------------------------
def _rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kernel: int, stride: int = 1) -> torch.Tensor:
    """A convolution along the rows of ``x [F, C_in]`` (zero padding ``kernel // 2``) as one product:
    the windows as a strided view, ``weight [C_in·kernel, C_out]`` (input channel, then tap)."""
    pad = kernel // 2
    windows = F.pad(x, (0, 0, pad, pad)).unfold(0, kernel, stride)                # (F', C_in, kernel)
    return torch.addmm(bias, windows.flatten(1), weight)


def _gru_packed(w_ih, w_hh, b_ih, b_hh, input_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """PyTorch GRU weights (gates r, z, n) in the form :func:`_gru_update` takes, as float64.

    ``x [in, 4H]``, ``x_bias``: the input's part of [W_hn·h + b_hn | r | z | n] (zero in the first
    block); ``h_rh [H, 2H]``: the state's part of the first two blocks, ``h_z [H, H]`` of z.
    """
    w_ih, w_hh, b_ih, b_hh = (_float64(t) for t in (w_ih, w_hh, b_ih, b_hh))
    h = w_hh.shape[1]
    r, z, n = slice(0, h), slice(h, 2 * h), slice(2 * h, 3 * h)
    w_x = torch.cat([torch.zeros(h, w_ih.shape[1], dtype=torch.float64), w_ih]) * input_scale
    b_x = torch.cat([b_hh[n], b_ih[r] + b_hh[r], b_ih[z] + b_hh[z], b_ih[n]])
    return {"x": w_x.T, "x_bias": b_x, "h_rh": torch.cat([w_hh[n], w_hh[r]]).T, "h_z": w_hh[z].T}


def _gru_cell_weights(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`_gru_packed`'s weights for :func:`_gru_cell`: the products with [x, h] of the first two blocks, and
    the input's product of the third."""
    w_x, b_x = packed["x"], packed["x_bias"]
    h = packed["h_z"].shape[0]
    return {"rh": torch.cat([w_x[:, :2 * h], packed["h_rh"]]), "rh_bias": b_x[:2 * h],
            "z": torch.cat([w_x[:, 2 * h:3 * h], packed["h_z"]]), "z_bias": b_x[2 * h:3 * h],
            "n": w_x[:, 3 * h:], "n_bias": b_x[3 * h:]}


def _gru_update(rh: torch.Tensor, z: torch.Tensor, input_n: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU's new state from ``h [N, H]``, rh = [W_hn·h + b_hn | r], z and the input's n term (pre-activations).

    Four operators and no slicing (a slice costs as much as the arithmetic at these sizes):
    glu gives r·(W_hn·h + b_hn), lerp (1 - z)·n + z·h.
    """
    return torch.lerp(torch.tanh(input_n + F.glu(rh)), h, torch.sigmoid(z))


def _gru_cell(x: torch.Tensor, h: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """One GRU step of input ``x [N, in]`` from ``h [N, H]`` with :func:`_gru_cell_weights`.

    The state's products go with the input's in one product over [x, h], not added to them
    after: TorchScript's BatchMM pass merges such a sum of products and fails on its shapes
    when the input and hidden sizes differ.
    """
    both = torch.cat([x, h], dim=1)
    return _gru_update(torch.addmm(w["rh_bias"], both, w["rh"]), torch.addmm(w["z_bias"], both, w["z"]),
                       torch.addmm(w["n_bias"], x, w["n"]), h)


def _dense(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """A grouped convolution's weight as the ungrouped one's (zeros between the groups; also for a transposed one)."""
    w = _float64(weight)
    if groups == 1:
        return w
    a, b = w.shape[:2]                     # (out, in / groups), transposed: (in, out / groups)
    dense = torch.zeros(a, b * groups, *w.shape[2:], dtype=torch.float64)
    per = a // groups
    for g in range(groups):
        dense[g * per:(g + 1) * per, g * b:(g + 1) * b] = w[g * per:(g + 1) * per]
    return dense


def _transposed_rows(conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [3·C_in, 2·C_out], bias) of a transposed (1, 5) convolution of stride 2 and padding 2 as a
    (1, 3) convolution (:func:`_rows`) whose two halves of output channels are the even and the odd
    output bins: output bin 2m reads input bins m+1, m, m-1 through taps 0, 2, 4, bin 2m+1 bins m+1, m
    through taps 1, 3."""
    w = _dense(conv.weight, conv.groups)[:, :, 0]            # (in, out, 5)
    c_in, c_out = w.shape[:2]
    bias = _float64(conv.bias)
    if bn is not None:
        scale, shift = _batchnorm(bn)
        w, bias = w * scale[None, :, None], bias * scale + shift
    zero = torch.zeros(c_in, c_out, dtype=torch.float64)
    even = torch.stack([w[..., 4], w[..., 2], w[..., 0]], dim=1)              # (in, window position, out)
    odd = torch.stack([zero, w[..., 3], w[..., 1]], dim=1)
    return torch.cat([even, odd], dim=2).reshape(3 * c_in, 2 * c_out), torch.cat([bias, bias])


class OneFrameGTCRN(nn.Module):
    """:class:`GTCRNStep` for one frame of batch 1, with every weight-only product done once, for tracing.

    What :meth:`sekd.step.CausalStep.frozen` traces for eager streaming. The work is that of
    :meth:`GTCRN.run <sekd.models.gtcrn.GTCRN.run>` on one frame, in fewer and cheaper
    operators (PyTorch's cost per operator, not the arithmetic, is most of a hop): the frame
    is held as ``[bins, channels]``; each convolution along frequency is one product over a
    strided view of its windows with its BatchNorm folded in (the grouped and depthwise ones
    with dense weights, the transposed ones as their even and odd output bins); each GRU step
    takes two products and four elementwise operators without slicing (:func:`_gru_update`),
    and the frequency GRU's input products for all bins and both directions are one product.
    The weights are those of the network when this is built (buffers derived from them); the
    state tuple is :class:`GTCRNStep`'s.
    """

    def __init__(self, net):
        super().__init__()
        m, c = net.in_channels, net.args["channels"]
        self.in_channels, self.channels, self.bins, self.f1 = m, c, net.bins, net.f1
        self.blocks = len(net.enc_blocks)
        weights = {}

        def put(name, tensor):
            weights[name] = tensor

        # Magnitude of each microphone: re² + im² as a product with [I I], 1e-12 as its bias.
        put("power", torch.cat([torch.eye(m, dtype=torch.float64)] * 2, dim=1))
        put("power_bias", torch.full((m, 1), 1e-12, dtype=torch.float64))
        put("merge", _band_matrix(net.band_merge).T)                             # (F0, bins)
        put("split", _band_matrix(net.band_split))                               # (F0, bins)
        conv, bn, prelu = net.enc1
        w, b = _fold(conv.weight, conv.bias, bn)
        put("enc1", w.flatten(1).T), put("enc1_bias", b), put("enc1_slope", prelu.weight)
        conv, bn, prelu = net.enc2
        w, b = _fold(_dense(conv.weight, conv.groups), conv.bias, bn)
        put("enc2", w.flatten(1).T), put("enc2_bias", b), put("enc2_slope", prelu.weight)
        for i, block in enumerate([*net.enc_blocks, *net.dec_blocks]):
            for key, value in self._block_weights(block, net.f2).items():
                put(f"block{i}_{key}", value)
        self.dilations = [b.depthwise.conv.dilation[0] for b in [*net.enc_blocks, *net.dec_blocks]]
        for i, layer in enumerate(net.middle):
            intra = _gru_packed(*layer.intra.fused_weights())
            put(f"mid{i}_intra_x", intra["x"]), put(f"mid{i}_intra_x_bias", intra["x_bias"])
            # The state's part of all four blocks [W_hn·h | r | z | n] (zero in the last): one product per step.
            put(f"mid{i}_intra_h", torch.cat([intra["h_rh"], intra["h_z"], torch.zeros_like(intra["h_z"])], dim=1))
            put(f"mid{i}_backward", layer.intra.backward)
            for key, value in _gru_cell_weights(_gru_packed(*layer.inter.fused_weights())).items():
                put(f"mid{i}_inter_{key}", value)
            self.norm_eps = layer.intra_norm.eps
            for part in ("intra", "inter"):
                fc = getattr(layer, f"{part}_fc")
                put(f"mid{i}_{part}_fc", _float64(fc.weight).T), put(f"mid{i}_{part}_fc_bias", fc.bias)
                norm = getattr(layer, f"{part}_norm")
                put(f"mid{i}_{part}_norm", norm.weight), put(f"mid{i}_{part}_norm_bias", norm.bias)
        self.layers = len(net.middle)
        put("intra_start", torch.zeros(1, net.middle[0].intra.backward.numel(), dtype=torch.float64))
        w, b = _transposed_rows(net.dec4[0], net.dec4[1])
        put("dec4", w), put("dec4_bias", b), put("dec4_slope", net.dec4[2].weight)
        w, b = _transposed_rows(net.dec5, None)
        put("dec5", w), put("dec5_bias", b)
        dtype = next(net.parameters()).dtype
        for name, value in weights.items():
            value = value.detach()
            self.register_buffer(name, value if value.dtype == torch.bool else value.to(dtype), persistent=False)

    @staticmethod
    def _block_weights(block, bins: int) -> dict:
        point_in, bn_in, prelu_in = block.point_in
        hidden, half = point_in.out_channels, point_in.in_channels // 3
        w, b = _fold(point_in.weight.reshape(hidden, half, 1, 3), point_in.bias, bn_in)
        w = torch.cat([w, torch.zeros(hidden, half, 1, 3, dtype=torch.float64)], dim=1)  # the passed half: zeros
        depth = block.depthwise.conv
        dw, db = _fold(depth.weight, depth.bias, block.depth_act[0])             # (H, 1, 3 frames, 3 bins)
        dense = torch.zeros(hidden, hidden, 3, 3, dtype=torch.float64)            # (out, in, frame, bin)
        dense[torch.arange(hidden), torch.arange(hidden)] = dw[:, 0]
        conv_out, bn_out = block.point_out
        ow, ob = _fold(conv_out.weight, conv_out.bias, bn_out)
        tra = block.attention
        gru = _gru_cell_weights(_gru_packed(*(getattr(tra.gru, f"{n}_l0") for n in GRU_PARAMETERS),
                                            input_scale=1.0 / bins))
        return {"in": w.flatten(1).T, "in_bias": b, "in_slope": prelu_in.weight,
                "depth": dense.flatten(1).T, "depth_bias": db, "depth_slope": block.depth_act[1].weight,
                "out": ow.flatten(1).T, "out_bias": ob,
                **{f"gru_{k}": v for k, v in gru.items()},
                "fc": _float64(tra.fc.weight).T, "fc_bias": tra.fc.bias}

    def _gru(self, prefix: str) -> dict[str, torch.Tensor]:
        """The :func:`_gru_cell_weights` stored under ``prefix``."""
        return {k: getattr(self, f"{prefix}_{k}") for k in ("rh", "rh_bias", "z", "z_bias", "n", "n_bias")}

    def _block(self, i: int, x: torch.Tensor, history: torch.Tensor, gru_state: torch.Tensor):
        """One temporal conv block on ``x [F, C]``: (output, new history, new attention GRU state)."""
        w = lambda name: getattr(self, f"block{i}_{name}")  # noqa: E731
        h = F.prelu(_rows(x, w("in"), w("in_bias"), 3), w("in_slope"))               # (F, H)
        extended = torch.cat([history, h.t()[None, :, None]], dim=2)                 # (1, H, 2d + 1, F)
        frames = F.pad(extended[0, :, ::self.dilations[i]], (1, 1)).unfold(2, 3, 1)  # (H, 3 frames, F, 3 bins)
        h = torch.addmm(w("depth_bias"), frames.permute(2, 0, 1, 3).flatten(1), w("depth"))
        y = torch.addmm(w("out_bias"), F.prelu(h, w("depth_slope")), w("out"))      # (F, C/2)
        # Temporal attention: the mean energy over bins (1/F in the GRU's input weights), one GRU step.
        state = _gru_cell((y * y).sum(0, keepdim=True), gru_state[0], self._gru(f"block{i}_gru"))
        y = y * torch.sigmoid(torch.addmm(w("fc_bias"), state, w("fc")))
        half = y.shape[1]
        # Channel shuffle: output channel 2i is the processed channel i, 2i + 1 the passed one.
        out = torch.stack([y, x[:, half:]], dim=2).flatten(1)
        return out, extended[:, :, 1:], state[None]

    def _dual_path(self, i: int, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One dual-path GRU layer on ``x [F, C]``: (output, new time-GRU state)."""
        w = lambda name: getattr(self, f"mid{i}_{name}")  # noqa: E731
        shape = tuple(x.shape)
        # Frequency GRU: both directions and groups as one GRU over [x, x reversed], bin by bin. Each step
        # is one product giving [W_hn·h + b_hn | r | z | n] and views of it (a view costs less than a product).
        inputs = torch.addmm(w("intra_x_bias"), torch.cat([x, x.flip(0)], dim=1), w("intra_x")).unbind(0)
        hidden = self.intra_start.shape[1]
        h, outs = self.intra_start, []
        for row in inputs:
            p = torch.addmm(row, h, w("intra_h"))
            h = _gru_update(p[:, :2 * hidden], p[:, 2 * hidden:3 * hidden], p[:, 3 * hidden:], h)
            outs.append(h)
        r = torch.cat(outs)
        r = torch.where(w("backward"), r.flip(0), r)
        r = torch.addmm(w("intra_fc_bias"), r, w("intra_fc"))
        x = x + F.layer_norm(r, shape, w("intra_norm"), w("intra_norm_bias"), self.norm_eps)
        # Time GRU: one step, bins as the batch.
        h = _gru_cell(x, state[0], self._gru(f"mid{i}_inter"))
        s = torch.addmm(w("inter_fc_bias"), h, w("inter_fc"))
        return x + F.layer_norm(s, shape, w("inter_norm"), w("inter_norm_bias"), self.norm_eps), h[None]

    def forward(self, feats: torch.Tensor, *state: torch.Tensor):
        m = self.in_channels
        spectra = feats.reshape(2 * m, self.bins)                                    # re, then im
        magnitude = torch.sqrt(torch.addmm(self.power_bias, self.power, spectra * spectra))
        x = torch.mm(self.merge, torch.cat([magnitude, spectra]).t())                # (F0, 3M)
        subband = F.pad(x, (0, 0, 1, 1)).unfold(0, 3, 1).flatten(1)                  # channel 3c + k: bin f + k - 1
        enc1 = F.prelu(_rows(subband, self.enc1, self.enc1_bias, 5, 2), self.enc1_slope)   # (F1, C)
        enc2 = x = F.prelu(_rows(enc1, self.enc2, self.enc2_bias, 5, 2), self.enc2_slope)  # (F2, C)
        state, new_state, skips = list(state), [], []
        for i in range(self.blocks):
            x, history, gru = self._block(i, x, state.pop(0), state.pop(0))
            new_state += [history, gru]
            skips.append(x)
        for i in range(self.layers):
            x, gru = self._dual_path(i, x, state.pop(0))
            new_state.append(gru)
        for i in range(self.blocks):
            x, history, gru = self._block(self.blocks + i, x + skips[-1 - i], state.pop(0), state.pop(0))
            new_state += [history, gru]
        y = _rows(x + enc2, self.dec4, self.dec4_bias, 3).reshape(-1, self.channels)[:self.f1]  # even, odd bins
        x = F.prelu(y, self.dec4_slope)
        y = _rows(x + enc1, self.dec5, self.dec5_bias, 3).reshape(-1, 2)[:2 * self.f1 - 1]     # (F0, 2)
        mask = torch.mm(y.t(), self.split)                                           # (2, bins)
        return (mask.reshape(1, 2, 1, self.bins), *new_state)


# -- the one-frame ONNX graph ------------------------------------------------------------------------
class _Graph:
    """Nodes and constant tensors of an ONNX graph under construction, with unique names.

    ``one_frame``: the graph runs one frame per call (tensors of a few hundred values, where
    the number of operators is the cost), else many (where each operator's own speed is).
    """

    def __init__(self, one_frame: bool):
        self.nodes, self.constants, self._count = [], [], 0
        self.one_frame = one_frame

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "w") -> str:
        array = np.asarray(value.detach().numpy() if isinstance(value, torch.Tensor) else value)
        name = self.name(hint)
        dtype = {"i": np.int64, "b": np.bool_}.get(array.dtype.kind, np.float32)
        self.constants.append(numpy_helper.from_array(array.astype(dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, **attrs):
        """Append a node; returns its output name (or names, when ``outputs`` asks for several)."""
        names = outputs if isinstance(outputs, list) else [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        return names[0] if len(names) == 1 else names


def _float64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def _batchnorm(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of an eval-mode BatchNorm: y = scale·x + shift."""
    scale = _float64(bn.weight) / torch.sqrt(_float64(bn.running_var) + bn.eps)
    return scale, _float64(bn.bias) - _float64(bn.running_mean) * scale


def _fold(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d | None):
    """A convolution's (weight, bias) with the BatchNorm after it folded in (output channels on axis 0)."""
    weight = _float64(weight)
    bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else _float64(bias)
    if bn is None:
        return weight, bias
    scale, shift = _batchnorm(bn)
    return weight * scale.reshape(-1, *[1] * (weight.dim() - 1)), bias * scale + shift


def _gru_onnx(w_ih, w_hh, b_ih, b_hh, input_scale: float = 1.0):
    """PyTorch GRU weights (gates r, z, n) as ONNX's W, R, B (gates z, r, h; one direction)."""
    def zrh(t):
        r, z, n = _float64(t).chunk(3)
        return torch.cat([z, r, n])
    return zrh(w_ih) * input_scale, zrh(w_hh), torch.cat([zrh(b_ih), zrh(b_hh)])


def _block_diagonal_gru(grus: list[tuple[torch.Tensor, ...]]):
    """Several GRUs (each (w_ih, w_hh, b_ih, b_hh)) on consecutive input slices as one: block-diagonal gates."""
    h = [g[1].shape[1] for g in grus]
    ins = [g[0].shape[1] for g in grus]
    hidden, inputs = sum(h), sum(ins)
    w_ih = torch.zeros(3, hidden, inputs, dtype=torch.float64)
    w_hh = torch.zeros(3, hidden, hidden, dtype=torch.float64)
    b_ih = torch.zeros(3, hidden, dtype=torch.float64)
    b_hh = torch.zeros(3, hidden, dtype=torch.float64)
    row = col = 0
    for (wi, wh, bi, bh), size, width in zip(grus, h, ins):
        w_ih[:, row:row + size, col:col + width] = _float64(wi).reshape(3, size, width)
        w_hh[:, row:row + size, row:row + size] = _float64(wh).reshape(3, size, size)
        b_ih[:, row:row + size] = _float64(bi).reshape(3, size)
        b_hh[:, row:row + size] = _float64(bh).reshape(3, size)
        row, col = row + size, col + width
    return w_ih.reshape(3 * hidden, inputs), w_hh.reshape(3 * hidden, hidden), b_ih.flatten(), b_hh.flatten()


def _gru_weights(gru: nn.GRU, suffix: str = "") -> tuple[torch.Tensor, ...]:
    return tuple(getattr(gru, f"{n}_l0{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def _band_matrix(band_map) -> np.ndarray:
    """A ``FixedBandMap`` as one ``[in, out]`` matrix: identity on the kept low bins, the map on the rest."""
    low, matrix = band_map.low_bins, _float64(band_map.matrix)
    full = torch.zeros(low + matrix.shape[1], low + matrix.shape[0], dtype=torch.float64)
    full[:low, :low] = torch.eye(low, dtype=torch.float64)
    full[low:, low:] = matrix.T
    return full


def _band_map(g: _Graph, x: str, band_map, output: str | None = None) -> str:
    """A ``FixedBandMap`` on the last axis: one MatMul for one frame (:func:`_band_matrix`); over many frames
    the kept low bins are sliced and only the rest multiplied, a third of the products."""
    if g.one_frame:
        return g.op("MatMul", [x, g.const(_band_matrix(band_map))], [output] if output else 1)
    low = band_map.low_bins
    kept = g.op("Slice", [x, g.const([0]), g.const([low]), g.const([3])])
    rest = g.op("Slice", [x, g.const([low]), g.const([np.iinfo(np.int64).max]), g.const([3])])
    mapped = g.op("MatMul", [rest, g.const(_float64(band_map.matrix).T)])
    return g.op("Concat", [kept, mapped], [output] if output else 1, axis=3)


def _conv_prelu(g: _Graph, x: str, weight, bias, prelu: nn.PReLU | None, **attrs) -> str:
    y = g.op("Conv", [x, g.const(weight), g.const(bias)], **attrs)
    if prelu is None:
        return y
    return _prelu(g, y, prelu)


def _prelu(g: _Graph, x: str, prelu: nn.PReLU) -> str:
    """PReLU with a slope per channel of ``x [1, C, T, F]``.

    Over many frames onnxruntime's PRelu with a per-channel slope is slow (about three times
    the forms below): with every slope in [0, 1] it is max(x, a·x), with every slope above 1
    min(x, a·x) (two operators, exactly PReLU's values), else relu(x) + a·(x - relu(x)) (four;
    same values too: one of the two terms is exactly zero).
    """
    weight = _float64(prelu.weight)
    slope = g.const(weight.reshape(-1, 1, 1))
    if g.one_frame:
        return g.op("PRelu", [x, slope])
    if bool(((weight >= 0) & (weight <= 1)).all()):
        return g.op("Max", [x, g.op("Mul", [x, slope])])
    if bool((weight >= 1).all()):
        return g.op("Min", [x, g.op("Mul", [x, slope])])
    positive = g.op("Relu", [x])
    return g.op("Add", [positive, g.op("Mul", [g.op("Sub", [x, positive]), slope])])


def _enc1(g: _Graph, net, x: str) -> str:
    """Subband features, then enc1's convolution with its BatchNorm, on ``x [1, 3M, T, F0]``.

    For one frame: the subband features as a (1, 3) convolution with one-hot kernels, then enc1
    (two operators). Over many frames (:func:`_composed_enc1`): one (1, 7) convolution of ``x``,
    four times faster on a whole file.
    """
    conv, bn, prelu = net.enc1
    w, b = _fold(conv.weight, conv.bias, bn)
    if not g.one_frame:
        return _prelu(g, _composed_enc1(g, x, w, b, 2 * (net.f1 - 1) + 1), prelu)
    c_in = x_channels = 3 * net.in_channels
    one_hot = torch.zeros(3 * c_in, x_channels, 1, 3, dtype=torch.float64)  # channel 3c + k: bin f + k - 1 of c
    for c in range(c_in):
        for k in range(3):
            one_hot[3 * c + k, c, 0, k] = 1.0
    sub = g.op("Conv", [x, g.const(one_hot)], pads=[0, 1, 0, 1])
    return _conv_prelu(g, sub, w, b, prelu, strides=[1, 2], pads=[0, 2, 0, 2])


def _composed_enc1(g: _Graph, x: str, w: torch.Tensor, b: torch.Tensor, bins: int) -> str:
    """enc1 (``w [C, 3·c_in, 1, 5]``, stride 2, padding 2) on the subband features of ``x [1, c_in, T, bins]``
    as one (1, 7) convolution of ``x``, its edge bins corrected.

    Output bin o reads subband position 2o + t - 2 (tap t), which is bin 2o + t - 2 + k - 1 of
    ``x`` (k: the feature's neighbour): the composed kernel's tap is t + k. enc1's zero padding
    removes whole subband positions, so where a position lies outside the bins but one of its
    neighbours inside (only the first and last output bins), the composed kernel reads a bin
    the subband path does not: that product is subtracted there.
    """
    c_out, c_in = w.shape[0], w.shape[1] // 3
    composed = torch.zeros(c_out, c_in, 1, 7, dtype=torch.float64)
    for t in range(5):
        for k in range(3):
            composed[:, :, 0, t + k] += w[:, k::3, 0, t]        # feature channel 3c + k
    y = g.op("Conv", [x, g.const(composed), g.const(b)], strides=[1, 2], pads=[0, 3, 0, 3])
    outputs = (bins - 1) // 2 + 1
    parts = []
    for lo, hi in ((0, 1), (1, outputs - 1), (outputs - 1, outputs)):
        part = g.op("Slice", [y, g.const([lo]), g.const([hi]), g.const([3])])
        if hi - lo == 1:  # an edge bin: subtract what it read of x through positions outside the bins
            for i, weight in _outside_reads(w, lo, bins).items():
                edge = g.op("Slice", [x, g.const([i]), g.const([i + 1]), g.const([3])])
                part = g.op("Sub", [part, g.op("Conv", [edge, g.const(weight[..., None, None])])])
        parts.append(part)
    return g.op("Concat", parts, axis=3)


def _outside_reads(w: torch.Tensor, o: int, bins: int) -> dict[int, torch.Tensor]:
    """Bin of x -> weight ``[C, c_in]`` that the composed kernel of :func:`_composed_enc1` applies to it at output
    bin ``o`` through subband positions outside the bins (which the subband path reads as zeros)."""
    reads = {}
    for t in range(5):
        q = 2 * o + t - 2                                    # the subband position of tap t
        for k in range(3):
            i = q + k - 1                                    # the bin of x that feature k of it holds
            if not 0 <= q < bins and 0 <= i < bins:
                reads[i] = reads.get(i, 0) + w[:, k::3, 0, t]
    return reads


def _temporal_block(g: _Graph, block, x: str, history: str, gru_state: str, new_history: str,
                    new_gru_state: str, bins: int, one_frame: bool) -> str:
    """One :class:`TemporalConvBlock` on ``x [1, C, T, F]``: 15 operators for one frame, 16 for any T."""
    point_in, bn_in, prelu_in = block.point_in
    hidden, half = point_in.out_channels, point_in.in_channels // 3
    channels = 2 * half
    # 1x1 convolution over the processed half's subband features = a (1, 3) convolution of that half;
    # the passed half gets zero weights, so no split is needed.
    w, b = _fold(point_in.weight.reshape(hidden, half, 1, 3), point_in.bias, bn_in)
    w = torch.cat([w, torch.zeros(hidden, channels - half, 1, 3, dtype=torch.float64)], dim=1)
    h = _conv_prelu(g, x, w, b, prelu_in, pads=[0, 1, 0, 1])
    # Causal depthwise (3, 3) convolution dilated in time over [history, this frame].
    depth = block.depthwise.conv
    extended = g.op("Concat", [history, h], axis=2)
    context = block.depthwise.context
    g.op("Slice", [extended, g.const([-context]), g.const([np.iinfo(np.int64).max]), g.const([2])], [new_history])
    w, b = _fold(depth.weight, depth.bias, block.depth_act[0])
    h = _conv_prelu(g, extended, w, b, block.depth_act[1], group=hidden, dilations=[depth.dilation[0], 1],
                    pads=[0, 1, 0, 1])
    conv_out, bn_out = block.point_out
    w, b = _fold(conv_out.weight, conv_out.bias, bn_out)
    y = _conv_prelu(g, h, w, b, None)                                # (1, H, 1, F)
    # Temporal attention: a GRU step over the channels' mean energy, a sigmoid weight per channel.
    tra = block.attention
    # The GRU's input (T, 1, H); the 1/F of the mean is in the GRU's input weights.
    if one_frame:
        energy = g.op("Reshape", [g.op("ReduceSumSquare", [y], axes=[2, 3], keepdims=0), g.const([1, 1, half])])
    else:
        energy = g.op("Transpose", [g.op("ReduceSumSquare", [y], axes=[3], keepdims=0)], perm=[2, 0, 1])
    w_ih, w_hh, b_gru = _gru_onnx(*_gru_weights(tra.gru), input_scale=1.0 / bins)
    out, _ = g.op("GRU", [energy, g.const(w_ih[None]), g.const(w_hh[None]), g.const(b_gru[None]), "", gru_state],
                  [g.name("gru"), new_gru_state], hidden_size=tra.gru.hidden_size, linear_before_reset=1)
    # ``out`` [T, 1, 1, 2H] read as T images of one row: the linear layer is a (1, 2H) convolution to [T, H, 1, 1],
    # which for one frame is already the [1, H, T, 1] the product needs.
    weight = g.op("Conv", [out, g.const(_float64(tra.fc.weight)[:, None, None, :]), g.const(tra.fc.bias)])
    if not one_frame:
        weight = g.op("Transpose", [weight], perm=[2, 1, 0, 3])
    y = g.op("Mul", [y, g.op("Sigmoid", [weight])])
    # Processed and passed halves interleaved: output channel 2i is y_i, 2i + 1 is x_{H + i}.
    both = g.op("Concat", [y, x], axis=1)                            # (1, H + C, 1, F)
    order = [j for i in range(half) for j in (i, 2 * half + i)]
    return g.op("Gather", [both, g.const(order)], axis=1)


def _unrolled_frequency_gru(g: _Graph, layer, x: str, bins: int) -> str:
    """The bidirectional grouped frequency GRU on ``x [T, F, C]`` written out bin by bin, then ``intra_fc``.

    Over many frames onnxruntime's GRU operator costs about half a microsecond per batch row
    and step: with the frames as its batch that was most of an offline file's time. The
    frequency GRU has only F steps, so its products are written out: the input projection
    of all steps and both directions at once, then per step ten operators over all frames
    (two Gemm for the hidden products, the gates). Both directions and groups are one GRU of
    block-diagonal weights on ``[x, x reversed]`` (:meth:`GroupedGRU.fused_weights`); the
    forward channels of step f are bin f's, the backward ones bin F-1-f's, so the linear
    layer after it reads the steps in order and reversed with its rows split between them.
    """
    intra, fc = layer.intra, layer.intra_fc
    with torch.no_grad():
        w_ih, w_hh, b_ih, b_hh = (_float64(t) for t in intra.fused_weights())
    hidden, channels = w_hh.shape[1], intra.size
    reversed_bins = g.op("Slice", [x, g.const([-1]), g.const([np.iinfo(np.int64).min]), g.const([1]),
                                   g.const([-1])])
    both = g.op("Reshape", [g.op("Concat", [x, reversed_bins], axis=2), g.const([-1, 2 * channels])])  # (T·F, 2C)
    # r and z take both biases with the input projection; n's hidden bias stays inside the reset gate.
    bias = b_ih + torch.cat([b_hh[:2 * hidden], torch.zeros(hidden, dtype=torch.float64)])
    projected = g.op("Gemm", [both, g.const(w_ih.T), g.const(bias)])            # (T·F, 3H)
    flat = g.op("Reshape", [projected, g.const([-1, bins * 3 * hidden])])
    inputs = g.op("Split", [flat, g.const([2 * hidden, hidden] * bins)], 2 * bins, axis=1)  # (T, 2H), (T, H) per bin
    w_rz, w_n, b_n = g.const(w_hh[:2 * hidden].T), g.const(w_hh[2 * hidden:].T), g.const(b_hh[2 * hidden:])
    split_rz = g.const([hidden, hidden])
    outputs, h = [], None
    for rz_in, n_in in zip(inputs[0::2], inputs[1::2]):
        if h is None:  # from the zero state: no hidden products
            r, z = g.op("Split", [g.op("Sigmoid", [rz_in]), split_rz], 2, axis=1)
            n = g.op("Tanh", [g.op("Add", [n_in, g.op("Mul", [r, b_n])])])
            h = g.op("Sub", [n, g.op("Mul", [z, n])])
        else:
            r, z = g.op("Split", [g.op("Sigmoid", [g.op("Gemm", [h, w_rz, rz_in])]), split_rz], 2, axis=1)
            n = g.op("Tanh", [g.op("Add", [n_in, g.op("Mul", [r, g.op("Gemm", [h, w_n, b_n])])])])
            h = g.op("Add", [n, g.op("Mul", [z, g.op("Sub", [h, n])])])          # (1 - z)·n + z·h
        outputs.append(h)
    shape = g.const([0, bins, hidden])
    in_order = g.op("Reshape", [g.op("Concat", outputs, axis=1), shape])          # (T, F, H): step f at bin f
    reversed_order = g.op("Reshape", [g.op("Concat", outputs[::-1], axis=1), shape])
    backward = intra.backward.numpy()
    weight = _float64(fc.weight).T                                                # (H, C)
    forward_rows = weight * torch.from_numpy(~backward)[:, None]
    backward_rows = weight * torch.from_numpy(backward)[:, None]
    y = g.op("Add", [g.op("MatMul", [in_order, g.const(forward_rows)]),
                     g.op("MatMul", [reversed_order, g.const(backward_rows)])])                # (T, F, C)
    return g.op("Add", [y, g.const(fc.bias)])


def _dual_path(g: _Graph, layer, x: str, state: str, new_state: str, bins: int, one_frame: bool) -> str:
    """One :class:`DualPathGRU` on ``x [T, F, C]``: output ``[T, F, C]``.

    For one frame (the streaming step, 14 operators) the frequency GRU is one GRU operator
    over both directions; over many frames it is written out (:func:`_unrolled_frequency_gru`).
    """
    intra, inter = layer.intra, layer.inter
    channels = intra.size
    if one_frame:
        # Frequency GRU, bins as the sequence: one forward GRU operator over [x, x reversed] with both
        # directions and groups block-diagonally (GroupedGRU.fused_weights), a third faster than
        # onnxruntime's bidirectional GRU of half the width. Hidden channel j of step f belongs to
        # bin f (forward channels) or bin F-1-f (backward ones, GroupedGRU.backward), so intra_fc reads
        # [step f, step F-1-f] at bin f with its rows split between the two; one Gather pairs them.
        pairs = g.const(np.stack([np.arange(bins), np.arange(bins)[::-1]], axis=1))   # (F, 2): f, F-1-f
        both = g.op("Reshape", [g.op("Gather", [x, pairs], axis=1), g.const([bins, 1, 2 * channels])])
        w_ih, w_hh, b = _gru_onnx(*intra.fused_weights())
        hidden = w_hh.shape[1]
        out = g.op("GRU", [both, g.const(w_ih[None]), g.const(w_hh[None]), g.const(b[None])], 2, hidden_size=hidden,
                   linear_before_reset=1)[0]                                     # (F, 1, 1, H)
        steps = g.op("Reshape", [g.op("Gather", [out, pairs], axis=0), g.const([bins, 2 * hidden])])
        backward = intra.backward[:, None]
        weight = _float64(layer.intra_fc.weight).T                               # (H, C)
        weight = torch.cat([weight * ~backward, weight * backward])
        r = g.op("Gemm", [steps, g.const(weight), g.const(layer.intra_fc.bias)])  # (F, C)
    else:
        r = _unrolled_frequency_gru(g, layer, x, bins)
    norm = layer.intra_norm  # over (F, C): axis 1 of [T, F, C], axis 0 of the one frame's [F, C]
    r = g.op("LayerNormalization", [r, g.const(norm.weight), g.const(norm.bias)], axis=0 if one_frame else 1,
             epsilon=norm.eps)
    x = g.op("Add", [x, r])                                                      # (T, F, C)
    # Time GRU: frames as the sequence, bins as the batch, both groups block-diagonally (GroupedGRU's state).
    w_ih, w_hh, b = _gru_onnx(*_block_diagonal_gru([_gru_weights(gru) for gru in inter.grus]))
    out, _ = g.op("GRU", [x, g.const(w_ih[None]), g.const(w_hh[None]), g.const(b[None]), "", state],
                  [g.name("gru"), new_state], hidden_size=inter.hidden, linear_before_reset=1)
    # For one frame the last state is the output; else the outputs [T, 1, F, C] without their direction axis.
    s = new_state if one_frame else g.op("Reshape", [out, g.const([-1, bins, channels])])
    s = g.op("Add", [g.op("MatMul", [s, g.const(_float64(layer.inter_fc.weight).T)]), g.const(layer.inter_fc.bias)])
    norm = layer.inter_norm
    s = g.op("LayerNormalization", [s, g.const(norm.weight), g.const(norm.bias)], axis=1, epsilon=norm.eps)
    return g.op("Add", [x, s])


def _transposed(g: _Graph, x: str, conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None,
                prelu: nn.PReLU | None) -> str:
    """A (grouped) transposed frequency convolution with its BatchNorm folded in."""
    weight = _float64(conv.weight)                                   # (in, out / groups, 1, k)
    bias = _float64(conv.bias)
    if bn is not None:
        scale, shift = _batchnorm(bn)
        per_group_in, per_group_out = weight.shape[0] // conv.groups, weight.shape[1]
        out_channel = (torch.arange(weight.shape[0])[:, None] // per_group_in) * per_group_out \
            + torch.arange(per_group_out)[None]
        weight = weight * scale[out_channel][..., None, None]
        bias = bias * scale + shift
    y = g.op("ConvTranspose", [x, g.const(weight), g.const(bias)], group=conv.groups, strides=list(conv.stride),
             pads=[conv.padding[0], conv.padding[1]] * 2)
    return y if prelu is None else _prelu(g, y, prelu)


def one_frame_graph(net, feats: str, mask: str, state_inputs: list[str], state_outputs: list[str],
                    opset: int) -> onnx.ModelProto:
    """GTCRN's one-frame step as an ONNX model (see the module docstring), state shapes as :class:`GTCRNStep`'s."""
    return frames_graph(net, feats, mask, state_inputs, state_outputs, opset, frames=1)


def frames_graph(net, feats: str, mask: str, state_inputs: list[str], state_outputs: list[str],
                 opset: int, frames: int | None = None) -> onnx.ModelProto:
    """GTCRN on ``frames`` frames (None: any number, a dynamic time axis ``frames``) from a state to the next.

    ``feats [1, 2M, T, bins]`` -> ``mask [1, 2, T, bins]``, the state passed in and out as by
    :class:`GTCRNStep`: with the zero start state and all of a file's frames this is the
    offline model (``sekd export --offline``: :func:`sekd.export.export_step` with ``offline=True``),
    with ``frames=1`` the streaming step.
    The one-frame graph leaves out the few transposes a time axis needs.
    """
    one_frame = frames == 1
    g = _Graph(one_frame)
    m, c, f2 = net.in_channels, net.args["channels"], net.f2
    states = list(zip(state_inputs, state_outputs))
    # Magnitude of each microphone, then the band merge. For one frame re² + im² is a 1×1 convolution (the
    # 1e-12 as its bias); over many frames a sum of squares over [re, im] runs several times faster.
    if one_frame:
        pairs = torch.cat([torch.eye(m, dtype=torch.float64)] * 2, dim=1)[..., None, None]
        power = g.op("Conv", [g.op("Mul", [feats, feats]), g.const(pairs), g.const(np.full(m, 1e-12))])
    else:
        parts = g.op("Reshape", [feats, g.const([1, 2, m, -1, net.bins])])
        power = g.op("Add", [g.op("ReduceSumSquare", [parts], axes=[1], keepdims=0), g.const([1e-12])])
    x = g.op("Concat", [g.op("Sqrt", [power]), feats], axis=1)                 # (1, 3M, 1, bins)
    x = _band_map(g, x, net.band_merge)                                       # (1, 3M, T, F0)
    enc1 = _enc1(g, net, x)                                                    # (1, C, 1, F1)
    conv, bn, prelu = net.enc2
    w, b = _fold(conv.weight, conv.bias, bn)
    enc2 = x = _conv_prelu(g, enc1, w, b, prelu, group=conv.groups, strides=[1, 2], pads=[0, 2, 0, 2])
    skips = []
    for block in net.enc_blocks:
        (history, new_history), (gru, new_gru) = states.pop(0), states.pop(0)
        x = _temporal_block(g, block, x, history, gru, new_history, new_gru, f2, one_frame)
        skips.append(x)
    # The dual-path GRUs work on [T, F, C]: frames as the time GRU's sequence, bins as its batch.
    x = g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 3, 1]), g.const([-1, f2, c])])
    for layer in net.middle:
        state, new_state = states.pop(0)
        x = _dual_path(g, layer, x, state, new_state, f2, one_frame)
    x = g.op("Reshape", [g.op("Transpose", [x], perm=[2, 0, 1]), g.const([1, c, -1, f2])])
    for block, skip in zip(net.dec_blocks, reversed(skips)):
        (history, new_history), (gru, new_gru) = states.pop(0), states.pop(0)
        x = _temporal_block(g, block, g.op("Add", [x, skip]), history, gru, new_history, new_gru, f2, one_frame)
    conv, bn, prelu = net.dec4
    x = _transposed(g, g.op("Add", [x, enc2]), conv, bn, prelu)
    x = _transposed(g, g.op("Add", [x, enc1]), net.dec5, None, None)         # (1, 2, 1, F0)
    _band_map(g, x, net.band_split, mask)

    shapes = [tuple(s.shape) for s in net.initial_state(1, net.bins)]
    value = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))  # noqa: E731
    time = "frames" if frames is None else frames
    graph = helper.make_graph(
        g.nodes, "gtcrn_step" if one_frame else "gtcrn_frames",
        [value(feats, (1, 2 * m, time, net.bins)), *(value(n, s) for n, s in zip(state_inputs, shapes))],
        [value(mask, (1, 2, time, net.bins)), *(value(n, s) for n, s in zip(state_outputs, shapes))],
        g.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)  # what onnxruntime releases of the last years read
    onnx.checker.check_model(model)
    return model
