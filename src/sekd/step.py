"""The per-hop step of a causal network, as one module that runs eagerly and exports to ONNX.

:class:`CausalStep` runs one STFT frame through a causal network with all of its memory
passed in and out as a flat tuple of tensors. The network supplies the step
(:meth:`sekd.models.EnhancementNetwork.streaming_step`: DPDCRN's in
``models/dpdcrn_step.py``, GTCRN's in ``models/gtcrn_step.py``); the step owns no weights of
its own, so there is one model. :mod:`sekd.export` turns it into an ONNX graph and
:mod:`sekd.streaming` runs it (or that graph) hop by hop; both import it from here.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .errors import SekdError
from .models import EnhancementNetwork

CACHE_SECONDS = 4.0  # attention memory for models without a look-back: the paper-scale training crop


def require_causal(net: EnhancementNetwork, where: str = "this model") -> None:
    if not net.causal:
        raise SekdError(f"{where}: the model is not causal (built with causal=False, config model.causal=false), "
                        "so it cannot run frame by frame; train a causal model (model.causal=true)")


def attention_cache_frames(net: EnhancementNetwork, hop: int, cache_seconds: float = CACHE_SECONDS) -> int:
    """Frames each time-path attention keeps, the current one included (DPDCRN: the look-back, or
    ``cache_seconds``; 0 for a network without attention over time)."""
    return net.attention_cache_frames(hop, cache_seconds)


class CausalStep(nn.Module):
    """One hop of any causal network: ``(feats [B, 2M, 1, F], *state) -> (mask [B, 2, 1, F], *new_state)``.

    The network's own :meth:`~sekd.models.EnhancementNetwork.streaming_step` does the work;
    ``state_names()`` and ``initial_state(batch, bins)`` describe the flat state tuple.
    """

    def __init__(self, net: EnhancementNetwork, cache_frames: int):
        super().__init__()
        require_causal(net)
        self.impl = net.streaming_step(cache_frames)

    def state_names(self) -> list[str]:
        return self.impl.state_names()

    def initial_state(self, batch: int = 1, bins: int = 257) -> tuple[torch.Tensor, ...]:
        return self.impl.initial_state(batch, bins)

    def forward(self, feats: torch.Tensor, *state: torch.Tensor):
        return self.impl(feats, *state)

    def onnx_graph(self, feats: str, mask: str, state_inputs: list[str], state_outputs: list[str], opset: int,
                   frames: int | None = 1):
        """The step as an ONNX model written by the network's step itself, or None to trace this module.

        A step with an ``onnx_graph`` method (GTCRN's: :func:`sekd.models.gtcrn_step.frames_graph`)
        builds its graph from the weights, with far fewer operators than the trace, for one
        frame or (``frames=None``) a time axis of any length: the offline model.
        """
        build = getattr(self.impl, "onnx_graph", None)
        return None if build is None else build(feats, mask, state_inputs, state_outputs, opset, frames)

    def frozen(self, channels: int, bins: int):
        """The step for eager streaming: a frozen TorchScript trace when the network's step allows it, else itself.

        A step whose ``traceable`` attribute is true (GTCRN's: no Python decision depends on a
        tensor's value, one frame always takes the same operators) is traced on one frame of
        ``channels`` microphones and ``bins`` bins (its ``one_frame_module()`` when it has one,
        a module for one frame of batch 1 built from the current weights) and frozen: its weights become constants,
        so what depends on them alone (GTCRN's block-diagonal GRU weights) is computed once
        instead of every hop, BatchNorm folds into the convolution before it, and the hop
        runs as one TorchScript graph instead of ~100 Python module calls. The result equals
        the eager step to float rounding (the folding reorders a few products; tests check
        streaming against the offline model). The trace holds the weights as they are now:
        a later change to the network's weights is not seen (freeze again). Freezing needs
        the network in eval mode; in training mode, or for another step, the eager step is
        returned.
        """
        networks = [m for m in self.modules() if isinstance(m, EnhancementNetwork)]
        if not getattr(self.impl, "traceable", False) or any(net.training for net in networks):
            return self
        self.eval()  # the wrappers around the network; they behave alike in both modes
        feats = torch.zeros(1, 2 * channels, 1, bins)
        state = self.initial_state(1, bins)
        # A step may offer a module written for this one case (GTCRN's: models/gtcrn_step.OneFrameGTCRN).
        one_frame = getattr(self.impl, "one_frame_module", None)
        module = self if one_frame is None else one_frame().eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notice
            frozen = torch.jit.freeze(torch.jit.trace(module, (feats, *state), check_trace=False))
            for _ in range(3):  # the profiling executor specialises the graph over its first runs
                frozen(feats, *state)
        return frozen
