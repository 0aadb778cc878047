"""Models: the DPDCRN network, its presets, and the waveform-level SpeechEnhancer."""

from .dpdcrn import DPDCRN
from .enhancer import SpeechEnhancer
from .presets import PRESETS, preset_args

__all__ = ["DPDCRN", "SpeechEnhancer", "PRESETS", "preset_args", "build_enhancer"]


def build_enhancer(preset: str, in_channels: int = 1, causal: bool = False, signal_args: dict | None = None,
                   **overrides) -> SpeechEnhancer:
    """A SpeechEnhancer from a preset name, with optional overrides of the DPDCRN arguments."""
    args = preset_args(preset)
    args.update(in_channels=in_channels, causal=causal)
    args.update({k: v for k, v in overrides.items() if v is not None})
    return SpeechEnhancer(args, signal_args)
