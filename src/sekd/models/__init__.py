"""Models: the model interface, its two built-in networks (DPDCRN, GTCRN), presets, and the SpeechEnhancer."""

from __future__ import annotations

import inspect

from ..errors import SekdError
from ..signal import SignalConfig
from .base import (EnhancementNetwork, HookedNetwork, StreamingStep, build_network, import_class, network_spec,
                   start_as_pass_through)
from .dpdcrn import DPDCRN
from .enhancer import SpeechEnhancer
from .gtcrn import GTCRN
from .presets import GTCRN_PRESETS, PRESETS, preset_args, preset_spec

__all__ = ["EnhancementNetwork", "HookedNetwork", "StreamingStep", "build_network", "network_spec", "DPDCRN",
           "GTCRN", "SpeechEnhancer", "PRESETS", "GTCRN_PRESETS", "preset_args", "preset_spec", "build_enhancer",
           "start_as_pass_through"]


def build_enhancer(preset: str, in_channels: int = 1, causal: bool = False, signal_args: dict | None = None,
                   **overrides) -> SpeechEnhancer:
    """A SpeechEnhancer from a preset name, with optional overrides of the network's arguments.

    ``causal`` goes to networks that have the option (DPDCRN); GTCRN is always causal. A
    network whose layout follows the STFT (GTCRN's ERB bands: ``stft_args(n_fft)``) is built
    for ``signal_args``' n_fft. An override the preset's network does not take (``lookback``
    for GTCRN) is refused.
    """
    spec = preset_spec(preset)
    cls = import_class(spec["class"], f"preset {preset!r}")
    accepted = inspect.signature(cls).parameters
    args = spec["args"]
    args["in_channels"] = in_channels
    if "causal" in accepted:
        args["causal"] = causal
    if hasattr(cls, "stft_args"):
        args.update(cls.stft_args(SignalConfig(**(signal_args or {})).n_fft))
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in accepted:
            raise SekdError(f"model.{key} does not apply to preset {preset!r} ({cls.__name__}); "
                            f"it takes: {', '.join(accepted)}")
        args[key] = value
    return SpeechEnhancer(spec, signal_args)
