"""Models that ship with sekd: trained checkpoints inside the package, with what made them.

Each model is a file ``<NAME>.ckpt`` in this folder (a weights-only sekd checkpoint, written by
:func:`sekd.checkpoint.save_enhancer`: the model spec and its weights, no optimiser state, no
teacher) and an entry of ``index.json``: a one-line description, the architecture and role,
the study and run that trained it, its training config, size and cost, its test scores and
the data it learned from (``ATTRIBUTION.md`` here holds that corpus's licences).
``scripts/ship_models.py`` (repository root) writes both from finished runs.

Wherever sekd takes a checkpoint it also takes ``pretrained:NAME``
(:func:`sekd.checkpoint.resolve_checkpoint` is the one place that turns it into this folder's
file). Reading the index runs no code: it is JSON, and the checkpoints load with
``weights_only=True`` like any other.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from ..errors import SekdError

PREFIX = "pretrained:"
HERE = Path(__file__).resolve().parent
INDEX = HERE / "index.json"
ATTRIBUTION = HERE / "ATTRIBUTION.md"
# Columns of the list: the summary keys of a run's result.json (sekd.evaluate), with their labels.
SCORES = (("pesq_wb", "PESQ-WB"), ("stoi", "STOI"), ("si_sdr", "SI-SDR"), ("dnsmos_ovrl", "DNSMOS"))


@lru_cache(maxsize=1)
def _index() -> dict:
    if not INDEX.is_file():
        return {"models": []}
    try:
        index = json.loads(INDEX.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SekdError(f"{INDEX}: the shipped models' index is unreadable ({exc}); reinstall sekd") from None
    return index


def list_models() -> list[dict]:
    """Every shipped model's metadata (``index.json`` entries, plus ``ref``: ``pretrained:NAME``, and
    ``path``: its file), in the index's order."""
    return [{**entry, "ref": PREFIX + entry["name"], "path": str(HERE / entry["file"])} for entry in _index()["models"]]


def names() -> list[str]:
    return [entry["name"] for entry in _index()["models"]]


def is_reference(ref) -> bool:
    """Whether a checkpoint argument names a shipped model (``pretrained:NAME``)."""
    return str(ref).startswith(PREFIX)


def model_info(name: str) -> dict:
    """The metadata of the shipped model ``name`` (``NAME`` or ``pretrained:NAME``); an unknown name
    is a SekdError listing the known ones."""
    name = name[len(PREFIX):] if is_reference(name) else name
    for entry in _index()["models"]:
        if entry["name"] == name:
            return dict(entry)
    known = ", ".join(names()) or "none (this installation ships no models)"
    raise SekdError(f"{PREFIX}{name}: no shipped model of that name; known: {known} ('sekd models' lists them)")


def model_path(name: str) -> Path:
    """The packaged checkpoint file of the shipped model ``name`` (``NAME`` or ``pretrained:NAME``)."""
    path = HERE / model_info(name)["file"]
    if not path.is_file():
        raise SekdError(f"{PREFIX}{name}: its file {path} is missing from this installation; reinstall sekd")
    return path


def test_score(entry: dict, metric: str = "pesq_wb") -> float:
    """A model's mean test score (NaN when its run did not measure it)."""
    value = entry.get("test", {}).get("summary", {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else math.nan


def best_model(causal: bool | None = None) -> dict:
    """The shipped model with the highest test PESQ-WB (among the causal ones with ``causal=True``)."""
    candidates = [m for m in list_models() if causal is None or m["causal"] == causal]
    candidates = [m for m in candidates if not math.isnan(test_score(m))]
    if not candidates:
        kind = "causal " if causal else ""
        raise SekdError(f"this installation ships no {kind}model with a test score; give --ckpt a {kind}checkpoint")
    return max(candidates, key=test_score)


def training_label(entry: dict) -> str:
    """How a model was trained, in a few words: ``teacher``, ``no KD``, ``i2s_tfckd λ=0.1``."""
    if entry["role"] == "teacher":
        return "teacher"
    if entry.get("method") in (None, "none"):
        return "no KD"
    return f"{entry['method']} λ={entry['weight']:g}"


def _fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def format_models(models: list[dict] | None = None) -> str:
    """The table ``sekd models`` prints: name, architecture, size, cost, causality, test scores, study."""
    models = list_models() if models is None else models
    if not models:
        return "no shipped models in this installation"
    header = ["name", "architecture", "training", "params", "GMAC/s", "causal", *(label for _, label in SCORES),
              "study"]
    rows = [[m["name"], m["architecture"], training_label(m), f"{m['params'] / 1000:.1f} k", f"{m['macs_per_second'] / 1e9:.2f}", "yes" if m["causal"] else "no",
             *(_fmt(test_score(m, key), 1 if key == "si_sdr" else 3 if key == "stoi" else 2) for key, _ in SCORES),
             m["study"]] for m in models]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    descriptions = [f"  {m['name']}: {m['description']}" for m in models]
    data = sorted({m["test"]["data"] + " " + m["test"]["split"] + " split" for m in models})
    return "\n".join([*lines, "", *descriptions, "",
                      f"scores: means over the test files of {', '.join(data)} (SI-SDR in dB; - not measured)",
                      f"use: --ckpt {PREFIX}NAME; the data's licences: {ATTRIBUTION}"])
