"""ONNX export of the per-hop causal network (:class:`sekd.step.CausalStep`), with what running it needs.

The graph maps ``feats [1, 2M, 1, F]`` and the state tensors to ``mask [1, 2, 1, F]`` and
the new state; input ``state`` names are :meth:`CausalStep.state_names`, outputs carry the
prefix ``new_``. STFT and iSTFT stay outside (complex STFT does not export): the streaming
engines (:class:`sekd.streaming.StreamingEnhancer` with ``engine="onnx"``, and the
torch-free :class:`sekd.runtime.OnnxStreamer`) do them around the graph. The file's
metadata (:class:`sekd.runtime.StreamFormat`, keys ``sekd.*``) carries the sample rate,
STFT size, hop, window, compression, channels, the state's names, shapes and start values
and the latency, so the file alone is enough to stream. Initial state: zeros, except
DPDCRN's ``attention_mask``, which starts at -inf (no cached frames yet), and
``attention_slot``, the int64 ring position. Any causal network with a ``streaming_step``
exports this way: the step is traced (DPDCRN), or writes its own one-frame graph when it can
do so with fewer operators (GTCRN: :meth:`sekd.step.CausalStep.onnx_graph`).

``offline=True`` (``sekd export --offline``) writes the same network for a time axis of any
length (graph kind ``frames`` in the metadata): a whole file's STFT in one onnxruntime call
from the zero start state is the offline model, which :class:`sekd.runtime.OnnxEnhancer` runs
torch-free. Only a network whose step writes its own graph has it (GTCRN: the traced step
has fixed shapes).

``quantize="int8"`` (``sekd export --quantize int8``) stores the weights of the graph's
matrix products as int8 (:func:`quantize_int8`); the metadata, and so streaming with
:class:`sekd.runtime.OnnxStreamer` or ``sekd stream --onnx``, is unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import tempfile
import warnings
from pathlib import Path

import onnx
import torch

from .audio import SAMPLE_RATE, atomic_write_bytes
from .checkpoint import load_enhancer
from .errors import SekdError
from .models import SpeechEnhancer
from .runtime import StateSpec, StreamFormat
from .signal import _window
from .step import CACHE_SECONDS, CausalStep, attention_cache_frames, require_causal

OPSET = 17
FEATS_INPUT, MASK_OUTPUT = "feats", "mask"
QUANTIZATIONS = ("int8",)   # sekd export --quantize
INT8_OPERATORS = ("MatMul",)


def state_output(name: str) -> str:
    """The graph output that carries state input ``name``'s next value."""
    return f"new_{name}"


def stream_format(model: SpeechEnhancer, step: CausalStep) -> StreamFormat:
    """The metadata of ``model``'s exported step: its signal path and the state's names, shapes and start values."""
    cfg = model.signal
    states = []
    for name, start in zip(step.state_names(), step.initial_state(1, cfg.bins)):
        fill = start.flatten()[0].item() if start.numel() else 0.0
        if not bool((start == fill).all()):  # the metadata gives one start value per tensor
            raise SekdError(f"{type(model.network).__name__}: state {name!r} does not start at one value; "
                            "it cannot be described in the exported file")
        states.append(StateSpec(name, state_output(name), tuple(start.shape), str(start.numpy().dtype), float(fill)))
    return StreamFormat(sample_rate=SAMPLE_RATE, n_fft=cfg.n_fft, hop=cfg.hop, window_name=cfg.window,
                        window=tuple(_window(cfg, "cpu").tolist()), compress=cfg.compress,
                        channels=model.in_channels, ref_channel=model.ref_channel, feats=FEATS_INPUT,
                        mask=MASK_OUTPUT, states=tuple(states), model=model.network.describe())


def require_quantization(quantize: str | None) -> None:
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise SekdError(f"unknown quantisation {quantize!r}; choose {', '.join(QUANTIZATIONS)} (float32 without one)")


def quantize_int8(graph: onnx.ModelProto) -> onnx.ModelProto:
    """``graph`` with the weights of its matrix products (``INT8_OPERATORS``) stored as int8; metadata kept.

    onnxruntime's dynamic quantisation (``quantize_dynamic``): int8 weights with a scale
    per tensor, activations quantised on the fly per call, so no calibration data is
    needed. Only MatMul (the linear layers and the ERB band maps): on the streaming step it
    is the one choice that does not cost time (GTCRN, one thread, median per hop over 600
    interleaved calls on a busy 2-core machine: float32 0.51 ms, MatMul 0.49 ms, MatMul and
    Conv 0.69 ms, static QDQ calibrated on 100 frames 0.85 ms; mask SNR against float32 41,
    41 and 37 dB). ``ConvInteger`` and quantise/dequantise pairs around GTCRN's small
    convolutions cost more than the int8 arithmetic saves, and onnxruntime has no int8
    GRU, so the GRUs, most of GTCRN's weights, stay float32 in every mode. Static
    quantisation with calibration frames from the corpus was not needed for quality either:
    on the test split the dynamic one moves PESQ-WB by -0.004 on average
    (``benchmarks/int8_quality.py``; docs/deployment.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a warning for every tensor it leaves alone
    try:
        with tempfile.TemporaryDirectory(prefix="sekd-int8-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            onnx.save(graph, src)
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OPERATORS))
            quantized = onnx.load(dst)
    finally:
        root.setLevel(level)
    del quantized.graph.value_info[:]  # the quantiser's shape inference: optional, a sixth of the file
    # Our keys over whatever the quantiser kept or added: the file must stream as the float one does.
    props = {p.key: p.value for p in quantized.metadata_props}
    props.update({p.key: p.value for p in graph.metadata_props})
    onnx.helper.set_model_props(quantized, props)
    return quantized


def export_step(model: SpeechEnhancer, path: str | Path | None = None,
                cache_seconds: float = CACHE_SECONDS, quantize: str | None = None, offline: bool = False) -> bytes:
    """Export ``model``'s per-hop step to ONNX; returns the model bytes and, with ``path``, writes them atomically.

    ``quantize``: None (float32) or ``"int8"`` (:func:`quantize_int8`). ``offline``: the
    graph for any number of frames per call (graph kind ``frames``), see the module docstring.
    """
    require_quantization(quantize)
    net = model.network
    step = CausalStep(net, attention_cache_frames(net, model.signal.hop, cache_seconds)).eval()
    bins = model.signal.bins
    feats = torch.zeros(1, 2 * model.in_channels, 1, bins)
    state = step.initial_state(1, bins)
    names = step.state_names()
    outputs = [state_output(n) for n in names]
    with torch.no_grad():
        graph = step.onnx_graph(FEATS_INPUT, MASK_OUTPUT, names, outputs, OPSET, frames=None if offline else 1)
    if graph is None and offline:
        raise SekdError(f"{type(net).__name__}: no offline ONNX graph (sekd export --offline needs a network that "
                        "writes its own graph, GTCRN); export its per-hop step without --offline")
    if graph is None:  # no graph of its own: trace the step
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns that it is deprecated and that GRUs are traced with
            # batch size fixed; both are expected here (one stream, fixed shapes).
            warnings.simplefilter("ignore")
            torch.onnx.export(step, (feats, *state), buffer, input_names=[FEATS_INPUT, *names],
                              output_names=[MASK_OUTPUT, *outputs], opset_version=OPSET, dynamo=False)
        graph = onnx.load_from_string(buffer.getvalue())
    fmt = dataclasses.replace(stream_format(model, step), graph="frames" if offline else "step")
    if quantize == "int8":
        fmt = dataclasses.replace(fmt, model=f"{fmt.model}; int8 {'/'.join(INT8_OPERATORS)} weights")
    onnx.helper.set_model_props(graph, fmt.to_metadata())
    if quantize == "int8":
        graph = quantize_int8(graph)
    data = graph.SerializeToString()
    if path is not None:
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise SekdError(f"{path}: cannot write the ONNX model ({exc})") from None
    return data


def export_checkpoint(ckpt: str | Path, path: str | Path, cache_seconds: float = CACHE_SECONDS,
                      quantize: str | None = None, offline: bool = False) -> SpeechEnhancer:
    """Export a causal checkpoint's per-hop step (or with ``offline`` its whole-signal graph) to ``path``
    (``quantize``: None or int8); returns the loaded model."""
    require_quantization(quantize)
    model = load_enhancer(ckpt)
    require_causal(model.network, str(ckpt))
    export_step(model, path, cache_seconds, quantize, offline)
    return model
