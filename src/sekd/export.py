"""ONNX export of the per-hop causal network (:class:`sekd.streaming.CausalStep`).

The graph maps ``feats [1, 2M, 1, F]`` and the state tensors to ``mask [1, 2, 1, F]`` and
the new state; input ``state`` names are :meth:`CausalStep.state_names`, outputs carry the
prefix ``new_``. STFT and iSTFT stay outside (complex STFT does not export): the streaming
engine (``StreamingEnhancer(engine="onnx")``) does them in NumPy/PyTorch around the graph.
Initial state: :meth:`CausalStep.initial_state` (zeros; for DPDCRN except ``attention_mask``,
which starts at -inf: no cached frames yet, and ``attention_slot``, the int64 ring position).
Any causal network with a ``streaming_step`` exports this way (DPDCRN, GTCRN).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from .audio import atomic_write_bytes
from .checkpoint import load_enhancer
from .errors import SekdError
from .models import SpeechEnhancer
from .streaming import CACHE_SECONDS, CausalStep, attention_cache_frames, require_causal

OPSET = 17


def export_step(model: SpeechEnhancer, path: str | Path | None = None,
                cache_seconds: float = CACHE_SECONDS) -> bytes:
    """Export ``model``'s per-hop step to ONNX; returns the model bytes and, with ``path``, writes them atomically."""
    net = model.network
    step = CausalStep(net, attention_cache_frames(net, model.signal.hop, cache_seconds)).eval()
    bins = model.signal.bins
    feats = torch.zeros(1, 2 * model.in_channels, 1, bins)
    state = step.initial_state(1, bins)
    names = step.state_names()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated and that GRUs are traced with
        # batch size fixed; both are expected here (one stream, fixed shapes).
        warnings.simplefilter("ignore")
        torch.onnx.export(step, (feats, *state), buffer, input_names=["feats", *names],
                          output_names=["mask", *(f"new_{n}" for n in names)], opset_version=OPSET,
                          dynamo=False)
    data = buffer.getvalue()
    if path is not None:
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise SekdError(f"{path}: cannot write the ONNX model ({exc})") from None
    return data


def export_checkpoint(ckpt: str | Path, path: str | Path, cache_seconds: float = CACHE_SECONDS) -> SpeechEnhancer:
    """Export a causal checkpoint's per-hop step to ``path``; returns the loaded model."""
    model = load_enhancer(ckpt)
    require_causal(model.network, str(ckpt))
    export_step(model, path, cache_seconds)
    return model
