"""Self-sufficient checkpoints: a checkpoint alone rebuilds its enhancer.

Training (Lightning) checkpoints carry ``checkpoint['sekd'] = {'enhancer': config}`` beside
the state dict, whose model weights sit under the ``model.`` prefix. ``save_enhancer``
writes the same format without Lightning, so both load through :func:`load_enhancer`.

The payload is plain data. Format 2: ``config = {"model": spec, "signal_args": {...},
"ref_channel": int}`` with the model spec of :func:`sekd.models.base.build_network`
(``{"class": "package.module:Class", "args": {...}, "taps": ... | None, ...}``); the class
is imported by that name when the checkpoint loads, never unpickled, and only when it is
sekd's or trusted (:func:`sekd.models.base.require_trusted_class`: ``--trust-class``,
``SEKD_TRUST_CLASSES``), since importing a module runs its code. Format 1 (DPDCRN only)
stored ``"model_args"`` (DPDCRN arguments) instead of ``"model"`` and still loads.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from .audio import atomic_write_bytes
from .errors import SekdError
from .models import SpeechEnhancer
from .models.base import require_trusted_class
from .models.enhancer import as_model_spec

PREFIX = "model."


def enhancer_payload(model: SpeechEnhancer) -> dict:
    return {"enhancer": model.get_config(), "format": 2}


def enhancer_from_payload(payload: dict, where: str) -> SpeechEnhancer:
    """The (untrained) enhancer a payload describes; ``where`` (the checkpoint) prefixes errors."""
    config = dict(payload["enhancer"])
    if "model_args" in config:  # format 1: DPDCRN arguments
        config["model"] = config.pop("model_args")
    if not isinstance(config.get("model"), dict):
        raise SekdError(f"{where}: the checkpoint's model configuration has no model spec")
    spec = as_model_spec(config["model"])
    if isinstance(spec.get("class"), str):  # before anything is imported (a malformed spec is build_network's)
        require_trusted_class(spec["class"], where)
    return SpeechEnhancer(config["model"], config.get("signal_args"), config.get("ref_channel", 0), where=where)


def save_enhancer(model: SpeechEnhancer, path: str | Path) -> None:
    state = {PREFIX + k: v for k, v in model.state_dict().items()}
    save_checkpoint_file({"sekd": enhancer_payload(model), "state_dict": state}, path)


def save_checkpoint_file(checkpoint: dict, path: str | Path) -> None:
    """``torch.save`` that never leaves a truncated file under ``path`` (see ``audio.atomic_write``).

    Serialised in memory first: ``torch.save`` reports a full disk as "unexpected pos", a
    plain write as :class:`~sekd.errors.WriteFailed` naming the file and the reason.
    """
    encoded = io.BytesIO()
    torch.save(checkpoint, encoded)
    atomic_write_bytes(path, encoded.getbuffer())


def resolve_checkpoint(ref: str | Path) -> Path:
    """The file a checkpoint argument names: a path, or ``pretrained:NAME`` for a model shipped with
    sekd (:mod:`sekd.pretrained`; an unknown name is a SekdError listing the known ones).

    The one place that resolves such references: every reader of checkpoints goes through it.
    """
    from . import pretrained
    return pretrained.model_path(str(ref)) if pretrained.is_reference(ref) else Path(ref)


def read_checkpoint_file(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint's contents, unpickled with ``weights_only=True``: tensors and plain data only.

    Checkpoints are shared between people, and a full unpickle runs whatever code the file
    names; a file that needs more than plain data is refused, naming the file. ``path`` may
    be ``pretrained:NAME`` (:func:`resolve_checkpoint`).
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise SekdError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SekdError(f"{path}: refused: the checkpoint holds more than tensors and plain data, and loading it "
                        f"could run code from the file ({first_line})") from None
    except Exception as exc:  # truncated, not a zip/pickle at all, ...
        raise SekdError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def load_enhancer(path: str | Path, device: str = "cpu") -> SpeechEnhancer:
    """Rebuild the enhancer stored in a checkpoint (a path or ``pretrained:NAME``), in eval mode."""
    path = resolve_checkpoint(path)
    ckpt = read_checkpoint_file(path, device)
    if not isinstance(ckpt, dict) or "sekd" not in ckpt or "state_dict" not in ckpt:
        raise SekdError(f"{path}: not a sekd checkpoint (no model configuration inside)")
    try:
        model = enhancer_from_payload(ckpt["sekd"], str(path))
    except (TypeError, ValueError, KeyError) as exc:
        raise SekdError(f"{path}: the stored model configuration is not one this sekd builds ({exc})") from None
    state = {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SekdError(f"{path}: weights do not fit the stored model configuration ({exc})") from None
    return model.to(device).eval()
