"""Typed run configuration: YAML sections with dotted command-line overrides.

A config file has the sections ``data``, ``model``, ``signal``, ``loss`` and ``train`` (and
``distill`` for ``sekd distill``); every field and its default is below, with a comment.
Overrides look like ``train.max_steps=200 model.preset=tiny``; keys and value types are
checked, and the resolved config is written into the run folder.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import SekdError
from .signal import SignalConfig


@dataclass
class DataConfig:
    train: str = "data/builtin"     # built corpus folder, manifest CSV, or paired folder (noisy/, clean/)
    valid: str | None = None        # default: the 'valid' split of `train`
    crop_seconds: float = 2.0       # random training crops of this length
    batch_size: int = 8
    num_workers: int = 0            # DataLoader worker processes
    valid_files: int | None = 40    # validate on the first N validation files (None = all)
    # Training examples: fixed = crops of the corpus's noisy/clean pairs; online = each example mixed afresh
    # from pools of clean speech, noise and room impulse responses (sekd.data.mixing). Validation and test
    # stay the fixed files (data.valid, or the valid split of data.train).
    mixing: str = "fixed"
    # The online keys below; left out of the resolved config of a fixed run (it equals one written before them)
    pools: str | None = None        # clean/ noise/ [rir/] folder, DNS Challenge download; None: data.train's pools
    snr_range: list = field(default_factory=lambda: [-5.0, 20.0])    # dB: speech (as in the input) over noise
    level_range: list = field(default_factory=lambda: [-35.0, -15.0])  # dBFS: RMS of the noisy input
    rir_prob: float = 0.4           # share of examples in a room (target: direct path + 50 ms of early reflections)
    noises_per_example: list = field(default_factory=lambda: [1, 1])   # [min, max] noise files summed
    skip_bad: bool = False          # leave out bad pool files (counted in the log) instead of refusing them

    ONLINE_KEYS: typing.ClassVar[tuple[str, ...]] = ("mixing", "pools", "snr_range", "level_range", "rir_prob",
                                                     "noises_per_example", "skip_bad")

    def omitted_keys(self) -> tuple[str, ...]:
        """Keys left out of the resolved config: the online-mixing ones while mixing is fixed."""
        return self.ONLINE_KEYS if self.mixing == "fixed" else ()


@dataclass
class ModelConfig:
    preset: str = "cpu-teacher"     # teacher, student-l, student-m, cpu-teacher, cpu-student, tiny (DPDCRN); gtcrn(-l)
    channels: int | None = None     # override the preset's width C
    layers: int | None = None       # override the preset's number of dual-path layers L
    in_channels: int = 1            # microphone channels M (the network reads 2M feature maps)
    causal: bool = False            # DPDCRN: frame-causal (masked time attention, per-frame norms); GTCRN always is
    lookback: int | None = None     # causal DPDCRN only: attention look-back in frames (None = unbounded)
    class_: str | None = None       # YAML key `class`: your own network 'package.module:Class' instead of a preset
    args: dict | None = None        # with class: its constructor arguments (plain YAML data)
    taps: dict | None = None        # with class: {encoder: [...], middle: [...], decoder: [...]} submodule names

    # YAML keys that are Python keywords, and the fields that hold them
    KEY_FIELDS: typing.ClassVar[dict[str, str]] = {"class": "class_"}
    # Left out of the resolved config while unset, so that a preset run's config equals one
    # written before these keys existed (sekd study compares resolved configs)
    OMIT_UNSET: typing.ClassVar[tuple[str, ...]] = ("class_", "args", "taps")


@dataclass
class LossConfig:
    """SE loss: compressed-spectrum MSEs plus a time-domain SI-SDR term (see sekd.losses)."""

    compress: float = 0.3           # power-law exponent applied to both spectra before the MSEs
    magnitude: float = 0.7          # weight of MSE(|S|^c, |Ŝ|^c)
    complex: float = 0.3            # weight of MSE on the compressed complex spectra
    si_sdr: float = 0.01            # weight of −SI-SDR (dB) on the waveforms


@dataclass
class TrainConfig:
    out_dir: str = "runs/model"     # checkpoints, logs and the resolved config go here
    max_steps: int = 2000
    lr: float = 1e-3
    warmup_steps: int = 100         # linear warm-up, then cosine decay to lr_min over max_steps
    lr_min: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 5.0          # gradient-norm clipping (0 = off)
    val_every: int = 250            # validate and checkpoint every N steps
    log_every: int = 10
    seed: int = 0
    resume: bool = True             # continue from out_dir/checkpoints/last.ckpt when it exists
    accelerator: str = "auto"       # Lightning: cpu, gpu, auto
    devices: str = "auto"           # Lightning: e.g. 1, 4, auto (several devices -> DDP)
    strategy: str = "auto"          # Lightning: auto, ddp, ...
    num_nodes: int = 1
    precision: str = "32-true"
    threads: int | None = None      # torch CPU threads (None = torch's default)
    stop_when_flat: float | None = None  # stop once validation PESQ-WB has not improved for this fraction of
                                    # the steps so far (e.g. 0.25) and at least 3 validations (None = never)

    # Left out of the resolved config while unset, so that a run's config equals one written before it existed
    OMIT_UNSET: typing.ClassVar[tuple[str, ...]] = ("stop_when_flat",)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    signal: SignalConfig = field(default_factory=SignalConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    extra: dict = field(default_factory=dict)  # further sections (e.g. distill), checked by their owners

    def to_dict(self) -> dict:
        d = {f.name: _to_keys(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        d.update(self.extra)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS = {f.name: f for f in dataclasses.fields(Config) if f.name != "extra"}


def _to_keys(section) -> dict:
    """A section as YAML keys (``class_`` back to ``class``)."""
    fields = {v: k for k, v in getattr(section, "KEY_FIELDS", {}).items()}
    omit = getattr(section, "OMIT_UNSET", ())
    unused = section.omitted_keys() if hasattr(section, "omitted_keys") else ()
    return {fields.get(k, k): v for k, v in dataclasses.asdict(section).items()
            if not (k in omit and v is None) and k not in unused}


def _check_value(where: str, value, annotation):
    """Coerce/validate ``value`` against a field annotation like ``int``, ``str | None``."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise SekdError(f"{where}: a value is required")
    for kind in options:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if kind is dict and isinstance(value, dict):
            return value
        if kind is list and isinstance(value, list):
            return value
    names = " or ".join("null" if k is type(None) else "mapping" if k is dict else k.__name__ for k in options)
    raise SekdError(f"{where}: expected {names}, got {value!r}")


def build_section(name: str, cls, values, source: str):
    """``cls(**values)`` with every key and value type checked; errors name the section and key."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise SekdError(f"{source}: section '{name}' must be a mapping")
    key_fields = getattr(cls, "KEY_FIELDS", {})
    key_of = {f: k for k, f in key_fields.items()}
    values = {key_fields.get(k, k): v for k, v in values.items()}
    fields = {k: v for k, v in typing.get_type_hints(cls).items() if typing.get_origin(v) is not typing.ClassVar}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SekdError(f"{source}: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                        f"valid keys: {', '.join(f'{name}.{key_of.get(k, k)}' for k in fields)}")
    return cls(**{k: _check_value(f"{source}: {name}.{key_of.get(k, k)}", v, fields[k]) for k, v in values.items()})


def _at_least(low):
    return lambda v: v >= low, f"at least {low}"


def _interval(low=-float("inf"), high=float("inf"), kind=(int, float)):
    """A ``[low, high]`` pair of numbers of ``kind`` within [low, high], the first not above the second."""
    def valid(v):
        return (len(v) == 2 and all(isinstance(x, kind) and not isinstance(x, bool) for x in v)
                and low <= v[0] <= v[1] <= high)
    bounds = (f", low >= {low}" if low > -float("inf") else "") + (f", high <= {high}" if high < float("inf") else "")
    return valid, f"[low, high]: two {'integers' if kind is int else 'numbers'}, low <= high{bounds}"


_POSITIVE = (lambda v: v > 0, "greater than 0")
_NOT_NEGATIVE = _at_least(0)
_DEVICES = re.compile(r"^(auto|-1|[1-9]\d*|\d+(,\s*\d+)*,?|\[\s*\d+(\s*,\s*\d+)*\s*\])$")
# Valid values of every numeric (and free-text Lightning) field; None values are always valid where the
# type allows them. Lightning checks the strategy and precision names itself (train.py names the key).
RANGES: dict[str, tuple] = {
    "data.crop_seconds": _POSITIVE, "data.batch_size": _at_least(1), "data.num_workers": _NOT_NEGATIVE,
    "data.valid_files": _at_least(1),
    "data.mixing": (lambda v: v in ("fixed", "online"), "fixed or online"),
    "data.snr_range": _interval(), "data.level_range": _interval(high=0), "data.rir_prob": (lambda v: 0 <= v <= 1,
                                                                                          "in [0, 1]"),
    "data.noises_per_example": _interval(low=1, kind=int),
    "model.channels": _at_least(1), "model.layers": _at_least(1), "model.in_channels": _at_least(1),
    "model.lookback": _at_least(1), "train.stop_when_flat": (lambda v: 0 < v < 1, "in (0, 1)"),
    "signal.n_fft": _at_least(16), "signal.hop": _at_least(1),
    "signal.compress": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "loss.compress": (lambda v: 0 < v <= 1, "in (0, 1]"), "loss.magnitude": _NOT_NEGATIVE,
    "loss.complex": _NOT_NEGATIVE, "loss.si_sdr": _NOT_NEGATIVE,
    "train.max_steps": _at_least(1), "train.lr": _POSITIVE, "train.warmup_steps": _NOT_NEGATIVE,
    "train.lr_min": _NOT_NEGATIVE, "train.weight_decay": _NOT_NEGATIVE, "train.grad_clip": _NOT_NEGATIVE,
    "train.val_every": _at_least(1), "train.log_every": _at_least(1),
    "train.seed": (lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)"), "train.num_nodes": _at_least(1),
    "train.threads": _at_least(1),
    "train.accelerator": (lambda v: v in ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
                          "one of auto, cpu, gpu, cuda, mps, tpu"),
    "train.devices": (lambda v: bool(_DEVICES.match(v)), "auto, a device count (or -1: all), or a list of "
                      "device indices like 0,1"),
}


def check_ranges(cfg: Config, source: str) -> None:
    """Raise SekdError naming the key for the first value outside its range (see :data:`RANGES`)."""
    for key, (valid, text) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is not None and not valid(value):
            raise SekdError(f"{source}: {key} must be {text}, got {value!r}")
    if cfg.train.lr_min > cfg.train.lr:
        raise SekdError(f"{source}: train.lr_min ({cfg.train.lr_min}) must not exceed train.lr ({cfg.train.lr})")
    if cfg.signal.hop > cfg.signal.n_fft:
        raise SekdError(f"{source}: signal.hop ({cfg.signal.hop}) must not exceed signal.n_fft ({cfg.signal.n_fft})")
    unused = [key for key in cfg.data.omitted_keys() if getattr(cfg.data, key) != getattr(DataConfig(), key)]
    if unused:  # a fixed run would silently ignore it (and leave it out of the resolved config)
        raise SekdError(f"{source}: data.{unused[0]} applies to data.mixing=online only (data.mixing is fixed)")


def config_from_dict(d: dict, source: str = "config", extra_sections: tuple[str, ...] = ("distill",)) -> Config:
    unknown = sorted(set(d) - set(SECTIONS) - set(extra_sections))
    if unknown:
        raise SekdError(f"{source}: unknown section(s) {', '.join(unknown)}; "
                        f"valid: {', '.join([*SECTIONS, *extra_sections])}")
    cfg = Config(**{name: build_section(name, f.default_factory().__class__, d.get(name), source)
                    for name, f in SECTIONS.items()})
    cfg.extra = {k: d[k] for k in extra_sections if k in d}
    check_ranges(cfg, source)
    return cfg


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise SekdError(f"override {text!r}: expected section.key=value, e.g. train.max_steps=100")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else None


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    """A YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise SekdError(f"{path}: {what} file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SekdError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SekdError(f"{path}: a {what} must be a mapping of sections")
    return raw


def set_dotted(raw: dict, keys: list[str], value, text: str) -> None:
    """``raw[k1][k2]... = value``, making sections as needed (``text`` is the override, for errors)."""
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise SekdError(f"override {text!r}: {k} is not a section")
    node[keys[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides."""
    raw: dict = {}
    source = "defaults"
    if path is not None:
        raw, source = read_yaml_mapping(path), str(path)
    for text in overrides:
        keys, value = parse_override(text)
        if len(keys) < 2:
            raise SekdError(f"override {text!r}: expected section.key=value")
        set_dotted(raw, keys, value, text)
    return config_from_dict(raw, source)
