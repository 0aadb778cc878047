"""The model interface: what sekd trains, distils, evaluates, enhances, profiles and streams.

An *enhancement network* maps features ``[B, 2M, T, F]`` (real and imaginary parts of M
microphone spectra, :func:`sekd.signal.features`) to a polar mask ``[B, 2, T, F]``
(:func:`sekd.signal.apply_polar_mask`). With ``return_taps=True`` it also returns its
*taps*, an ordered mapping ``name -> [B, C, T, D]`` (channels, frames, bins; T is the input's
frame count), and :attr:`EnhancementNetwork.tap_sets` groups the tap names into the
correlated sets ``encoder``, ``middle`` and ``decoder`` that the distillation methods read
(method.md §3.1). Everything outside :mod:`sekd.models` uses only this interface.

Three ways to be one:

- subclass :class:`EnhancementNetwork` (the built-ins :class:`sekd.models.DPDCRN` and
  :class:`sekd.models.GTCRN`): implement ``forward`` and ``tap_sets``; a causal network
  that can run hop by hop also implements :meth:`~EnhancementNetwork.streaming_step`;
- any ``nn.Module`` with ``forward(feats) -> mask``, wrapped by :class:`HookedNetwork`,
  which captures the outputs of named submodules with forward hooks (as torchdistill does);
- either, named in a config or checkpoint by a *model spec* (:func:`build_network`):
  ``{"class": "package.module:Class", "args": {...}, "taps": {set: [submodule, ...]} | None,
  "in_channels": M}`` — plain data, so a checkpoint stores it without pickling code. The
  class is imported by name, never unpickled.

Importing a module runs its code, so a checkpoint (a file from anyone) may name only a
trusted class (:func:`require_trusted_class`, checked on the name before any import): the
classes of :mod:`sekd.models`, and those the user vouches for (:func:`trust_classes`: the
``--trust-class`` option, :data:`TRUST_ENV`, the class a config the user runs names).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections import OrderedDict
from collections.abc import Iterable
from functools import partial

import torch
from torch import nn

from ..errors import SekdError

SETS = ("encoder", "middle", "decoder")
PROBE_FRAMES = 4  # frames of the dummy input that measures tap shapes


class StreamingStep(nn.Module):
    """One hop of a causal network: ``(feats [B, 2M, 1, F], *state) -> (mask [B, 2, 1, F], *new_state)``.

    The state is a flat tuple of tensors, so the step runs eagerly and exports to ONNX with
    its state as inputs and outputs (:mod:`sekd.export`).
    """

    def state_names(self) -> list[str]:
        raise NotImplementedError

    def initial_state(self, batch: int = 1, bins: int = 257) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class EnhancementNetwork(nn.Module):
    """Base of every enhancement network (see the module docstring).

    Subclasses set ``in_channels`` (microphones M), ``causal`` (True when output frame t
    depends on input frames ≤ t only, in eval mode) and implement :meth:`forward`,
    :attr:`tap_sets` and :meth:`get_model_args` (constructor arguments as plain data).
    """

    in_channels: int = 1
    causal: bool = False

    def forward(self, feats: torch.Tensor, return_taps: bool = False):
        raise NotImplementedError

    @property
    def tap_sets(self) -> dict[str, list[str]]:
        raise NotImplementedError

    def get_model_args(self) -> dict:
        """Constructor arguments as plain data; by default those :func:`build_network` built it with."""
        if not hasattr(self, "_spec_args"):
            raise NotImplementedError(f"{type(self).__name__} must implement get_model_args()")
        return dict(self._spec_args)

    def describe(self) -> str:
        """One line for ``sekd profile``."""
        return f"{type(self).__name__} {self.get_model_args()}"

    def tap_layout(self, bins: int = 257) -> tuple["OrderedDict[str, tuple[int, int]]", str | None]:
        """``(shapes, mask_tap)``: (C, D) of every tap for ``bins`` input bins, and the tap that *is* the mask.

        Measured by running a small dummy input (:data:`PROBE_FRAMES` frames); errors name
        taps that are missing, not ``[B, C, T, D]`` or change the number of frames.
        """
        feats = torch.zeros(1, 2 * self.in_channels, PROBE_FRAMES, bins,
                            device=next(self.parameters()).device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                mask, taps = self(feats, return_taps=True)
        finally:
            self.train(was_training)
        named = [name for names in self.tap_sets.values() for name in names]
        missing = [name for name in named if name not in taps]
        if missing:
            raise SekdError(f"{type(self).__name__}: tap(s) {', '.join(missing)} of tap_sets are not returned")
        shapes, mask_tap = OrderedDict(), None
        for name in named:
            x = taps[name]
            if x.dim() != 4 or x.shape[0] != 1 or x.shape[2] != PROBE_FRAMES:
                raise SekdError(f"{type(self).__name__}: tap {name!r} has shape {list(x.shape)} for an input of "
                                f"{PROBE_FRAMES} frames; taps must be [B, C, T, D] with the input's B and T")
            shapes[name] = (x.shape[1], x.shape[3])
            if x.shape == mask.shape and torch.equal(x, mask):
                mask_tap = name
        return shapes, mask_tap

    # -- streaming (causal networks) -------------------------------------------------------
    def attention_cache_frames(self, hop: int, cache_seconds: float) -> int:
        """Frames of attention memory a streaming step keeps (0: the network has no attention over time)."""
        return 0

    def streaming_step(self, cache_frames: int) -> StreamingStep:
        raise SekdError(f"{type(self).__name__} has no hop-by-hop implementation, so it cannot stream or export")


def start_as_pass_through(head: nn.Module, real_bias: float, weight_scale: float = 1.0) -> None:
    """Start a mask head (a layer whose two output channels are M_r and M_i) near a pass-through mask.

    Its bias becomes (``real_bias``, 0), which gives every bin phase 0 and gain tanh(real_bias)
    before training, and its drawn weights are multiplied by ``weight_scale``, which shrinks the
    random part around that. PyTorch's own start is a mask of random phase per bin: the network
    first has to learn to turn it back, and may settle far from where a pass-through start
    leads (``results/schedule-probes/README.md``).
    """
    with torch.no_grad():
        head.weight.mul_(weight_scale)
        head.bias.copy_(torch.tensor([real_bias, 0.0], dtype=head.bias.dtype))


class HookedNetwork(EnhancementNetwork):
    """Any ``module(feats) -> mask`` with taps captured from named submodules by forward hooks.

    ``taps`` maps each set to submodule names (``dict(module.named_modules())`` keys, e.g.
    ``encoder.0``); a tap is named after its submodule with dots turned into underscores. A
    submodule that returns a tuple (a GRU) gives its first element. Each tapped submodule
    must run once per forward and return ``[B, C, T, D]``. ``args`` are the module's
    constructor arguments, stored in checkpoints so that the class rebuilds it. The hooks
    exist only during a forward with ``return_taps=True`` (nothing to copy or pickle).
    """

    def __init__(self, module: nn.Module, taps: dict[str, list[str]], in_channels: int = 1, args: dict | None = None,
                 where: str = "model"):
        super().__init__()
        self.module = module
        self.module_args = dict(args or {})  # what ``type(module)(**args)`` was built with, for the checkpoint
        self.in_channels = in_channels
        self.causal = bool(getattr(module, "causal", False))
        if not isinstance(taps, dict) or set(taps) != set(SETS):
            raise SekdError(f"{where}: model.taps must map each of {', '.join(SETS)} to a list of submodule names; "
                            f"got {taps!r}")
        modules = dict(module.named_modules())
        self._sets: dict[str, list[str]] = {}
        self._module_of: dict[str, str] = {}
        for set_name in SETS:
            names = taps[set_name]
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise SekdError(f"{where}: model.taps.{set_name} must be a non-empty list of submodule names")
            for path in names:
                if path not in modules or not path:
                    raise SekdError(f"{where}: model.taps.{set_name} names {path!r}, which is not a submodule of "
                                    f"{type(module).__name__}; its submodules: {', '.join(n for n in modules if n)}")
                tap = path.replace(".", "_")
                if tap in self._module_of:
                    raise SekdError(f"{where}: model.taps names the submodule {path!r} twice (or two names that "
                                    f"both become tap {tap!r})")
                self._module_of[tap] = path
                self._sets.setdefault(set_name, []).append(tap)

    @property
    def tap_sets(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._sets.items()}

    def get_model_args(self) -> dict:
        return dict(self.module_args)

    def describe(self) -> str:
        return f"{type(self.module).__name__} {self.module_args} (taps by forward hooks)"

    def forward(self, feats: torch.Tensor, return_taps: bool = False):
        if not return_taps:
            return self.module(feats)
        captured: dict[str, torch.Tensor] = {}
        handles = [self.module.get_submodule(path).register_forward_hook(partial(_capture, captured, tap, path))
                   for tap, path in self._module_of.items()]
        try:
            mask = self.module(feats)
        finally:
            for handle in handles:
                handle.remove()
        taps = OrderedDict((name, captured[name]) for names in self._sets.values() for name in names
                           if name in captured)
        return mask, taps


def _capture(captured: dict, tap: str, path: str, module: nn.Module, inputs, output) -> None:
    """Forward hook of :class:`HookedNetwork`: keep the submodule's output (a tuple's first element)."""
    if tap in captured:
        raise SekdError(f"tap {tap!r}: submodule {path!r} runs more than once per forward; tap a submodule that "
                        f"runs once")
    captured[tap] = output[0] if isinstance(output, (tuple, list)) else output


BUILT_IN = "sekd.models"  # the package whose classes every checkpoint may name
TRUST_ENV = "SEKD_TRUST_CLASSES"  # comma-separated 'package.module:Class' names the user trusts
_trusted: set[str] = set()  # trusted in this process (trust_classes)


def split_class_path(path: str, where: str) -> tuple[str, str]:
    """``(module, class)`` of ``package.module:Class`` (or ``package.module.Class``); errors name ``where``."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not all(part.isidentifier() for part in module_name.split(".")) or not attr.isidentifier():
        raise SekdError(f"{where}: model class {path!r} must be written 'package.module:Class'")
    return module_name, attr


def _in_sekd_models(module_name: str) -> bool:
    return module_name == BUILT_IN or module_name.startswith(BUILT_IN + ".")


def trust_classes(paths: Iterable[str], where: str) -> None:
    """Trust ``paths`` (``package.module:Class``) for the rest of this process: checkpoints may name them.

    ``where`` (the option or config key they came from) prefixes errors about a malformed name.
    """
    for path in paths:
        if not isinstance(path, str):
            raise SekdError(f"{where}: expected a class name 'package.module:Class', got {path!r}")
        _trusted.add(":".join(split_class_path(path.strip(), where)))


def trusted_classes() -> set[str]:
    """The classes outside :mod:`sekd.models` that checkpoints may name here: :func:`trust_classes`'s and
    :data:`TRUST_ENV`'s (read now, so a child process inherits the user's choice through it)."""
    named = [p.strip() for p in os.environ.get(TRUST_ENV, "").split(",") if p.strip()]
    return _trusted | {":".join(split_class_path(p, f"${TRUST_ENV}")) for p in named}


def require_trusted_class(path: str, where: str) -> None:
    """Refuse, before importing anything, a class a checkpoint names that is neither sekd's nor trusted.

    Importing a module runs its code, and the class is then built with arguments from the
    file, so a checkpoint from a stranger must not pick them. ``where`` is the checkpoint.
    """
    module_name, attr = split_class_path(path, where)
    name = f"{module_name}:{attr}"
    if not _in_sekd_models(module_name) and name not in trusted_classes():
        raise SekdError(f"{where}: refused: the checkpoint names the class {name}, which is not part of sekd; if you "
                        f"trust it, pass --trust-class {name} (or set {TRUST_ENV})")


def import_class(path: str, where: str) -> type:
    """The class ``package.module:Class`` (or ``package.module.Class``); errors name ``where`` and the class."""
    module_name, attr = split_class_path(path, where)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SekdError(f"{where}: model class {path!r} is not importable ({exc}); install its package or put "
                        f"its folder on PYTHONPATH") from None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise SekdError(f"{where}: model class {path!r}: module {module_name!r} has no nn.Module class {attr!r}")
    if _in_sekd_models(module_name) and not _in_sekd_models(cls.__module__):
        # trusted by its sekd.models name, but a class imported there from elsewhere (torch's)
        raise SekdError(f"{where}: model class {path!r} is not one of sekd's networks")
    return cls


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def build_network(spec: dict, where: str = "model") -> EnhancementNetwork:
    """The network a model spec names (see the module docstring); ``where`` (a file) prefixes errors."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
        raise SekdError(f"{where}: the model spec needs 'class' ('package.module:Class'); got {spec!r}")
    cls = import_class(spec["class"], where)
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise SekdError(f"{where}: model args of {spec['class']!r} must be a mapping; got {args!r}")
    try:
        module = cls(**args)
    except TypeError as exc:
        accepted = ", ".join(inspect.signature(cls).parameters)
        raise SekdError(f"{where}: {spec['class']}({', '.join(args)}) failed: {exc}; it accepts: {accepted}") from None
    taps = spec.get("taps")
    if isinstance(module, EnhancementNetwork):
        if taps:
            raise SekdError(f"{where}: {spec['class']} defines its own taps; leave model.taps empty")
        module._spec_args = dict(args)
        return module
    if not taps:
        raise SekdError(f"{where}: {spec['class']} is not a sekd EnhancementNetwork, so model.taps must name its "
                        f"submodules per set (encoder, middle, decoder)")
    return HookedNetwork(module, taps, int(spec.get("in_channels", 1)), args, where)


def network_spec(net: EnhancementNetwork) -> dict:
    """The plain-data spec that :func:`build_network` turns back into ``net``'s architecture."""
    if isinstance(net, HookedNetwork):
        return {"class": class_path(type(net.module)), "args": net.get_model_args(),
                "taps": {s: [net._module_of[t] for t in names] for s, names in net.tap_sets.items()},
                "in_channels": net.in_channels}
    return {"class": class_path(type(net)), "args": net.get_model_args(), "taps": None}
