"""Where models run: ``--device`` of ``evaluate``, ``enhance``, ``profile`` and the study's evaluation."""

from __future__ import annotations

import torch

from .errors import SekdError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, checked; None (the default) is CUDA when a GPU is available, else the CPU.

    Raises SekdError for a name torch does not know or a device this machine lacks.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SekdError(f"--device {device}: not a device name (cpu, cuda, cuda:1, ...): {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise SekdError(f"--device {device}: no CUDA GPU is available here (torch {torch.__version__})")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise SekdError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type != "cpu":
        raise SekdError(f"--device {device}: only cpu and cuda are supported")
    return resolved


def model_device(model) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any, or for a non-torch engine)."""
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if callable(parameters) else None
    return first.device if first is not None else torch.device("cpu")
