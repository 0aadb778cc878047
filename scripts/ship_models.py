#!/usr/bin/env python3
"""Package finished runs as sekd's shipped models (``src/sekd/pretrained/``; ``sekd models`` lists them).

Each ``NAME=RUN`` names a run folder of ``sekd study`` (or of ``sekd train``/``distill`` evaluated
into a ``result.json``): ``RUN/result.json``, ``RUN/config.yaml`` and ``RUN/checkpoints/best.ckpt``.
For each, this writes ``NAME.ckpt`` (the model alone, through ``sekd.checkpoint.save_enhancer``:
no optimiser state, no teacher, no distillation modules; checked to enhance exactly as the run's
checkpoint does) and its entry in ``index.json`` (description, architecture, role, study, seed,
causality, training config, parameters, MACs per second, the test summary of ``result.json``, the
corpus it learned from), and copies the corpus's ``ATTRIBUTION.md`` beside them.

Run it from the repository root (run paths are recorded as given there); entries of other
names are kept unless ``--replace-all``, so the next study's models replace these the same way::

    python3 scripts/ship_models.py cpu-teacher=results/study-cpu/teacher \\
        cpu-student-i2s=results/study-cpu/i2s_tfckd/seed0 cpu-student-nokd=results/study-cpu/none/seed0
    python3 scripts/ship_models.py --study results/study-ultralight \\
        gtcrn-i2s=runs/ultralight-ship/i2s_tfckd/seed0 gtcrn-nokd=runs/ultralight-ship/none/seed0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import torch
import yaml

from sekd import __version__
from sekd.audio import atomic_write_text
from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.errors import SekdError
from sekd.pretrained import PREFIX

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "sekd" / "pretrained"
NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")


def read_run(run: Path) -> tuple[dict, dict, Path]:
    """(result.json, config.yaml, best.ckpt) of a finished run; SekdError naming what is missing."""
    files = [run / "result.json", run / "config.yaml", run / "checkpoints" / "best.ckpt"]
    for path in files:
        if not path.is_file():
            raise SekdError(f"{run}: not a finished run ({path.name} is missing)")
    result = json.loads(files[0].read_text())
    config = yaml.safe_load(files[1].read_text())
    if "summary" not in result or "params" not in result:
        raise SekdError(f"{files[0]}: no test summary or size (not a result.json of sekd study)")
    return result, config, files[2]


def study_of(run: Path) -> str:
    """The study folder of a run: ``STUDY/teacher`` or ``STUDY/<system>/seed<N>``."""
    return str(run.parent.parent if re.fullmatch(r"seed\d+", run.name) else run.parent)


def same_output(a: torch.nn.Module, b: torch.nn.Module, channels: int) -> bool:
    audio = torch.randn(1, channels, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        return torch.equal(a(audio), b(audio))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe(entry: dict, teacher: str | None) -> str:
    preset = entry["config"].get("model", {}).get("preset")
    kind = f"{entry['architecture']} {entry['role']}" + (f" (preset {preset})" if preset else "")
    causal = "causal (streams: sekd stream)" if entry["causal"] else "offline (not causal)"
    if entry["role"] == "teacher":
        how = "trained on the built-in corpus"
    elif entry["method"] in (None, "none"):
        how = "trained without distillation (the no-KD baseline)"
    else:
        how = f"distilled from {teacher} with {entry['method']} (λ {entry['weight']:g})"
    return f"{kind}, {causal}, {how}"


def corpus_info(corpus: Path) -> dict:
    info_path = corpus / "corpus.json"
    if not info_path.is_file() or not (corpus / "ATTRIBUTION.md").is_file():
        raise SekdError(f"{corpus}: no corpus.json and ATTRIBUTION.md (give --corpus the corpus the runs learned from)")
    info = json.loads(info_path.read_text())
    return {"corpus": str(corpus), "recipe": info.get("recipe"), "seed": info.get("seed"), "small": info.get("small"),
            "packages": info.get("packages", {}), "attribution": "ATTRIBUTION.md"}


def ship(items: list[tuple[str, Path]], out: Path, study: str | None, corpus: Path | None, replace_all: bool) -> list[dict]:
    index_path = out / "index.json"
    old = json.loads(index_path.read_text())["models"] if index_path.is_file() else []
    new_names = {name for name, _ in items}
    kept = [] if replace_all else [m for m in old if m["name"] not in new_names]
    # Students name their teacher by its shipped name when it is shipped (here or before).
    run_names = {m["run"]: m["name"] for m in kept} | {str(run): name for name, run in items}
    attribution = None
    entries = {}
    for name, run in items:
        result, config, best = read_run(run)
        model = load_enhancer(best)
        params = sum(p.numel() for p in model.parameters())
        if params != result["params"]:
            raise SekdError(f"{run}: result.json says {result['params']} parameters, the checkpoint has {params}")
        source = Path(result.get("settings", {}).get("data") or config["data"]["train"]) if corpus is None else corpus
        data = corpus_info(source)
        text = (source / "ATTRIBUTION.md").read_text(encoding="utf-8")
        if attribution is not None and text != attribution:
            raise SekdError(f"{source}: another ATTRIBUTION.md than the other runs' corpus; ship them separately")
        attribution = text
        path = out / f"{name}.ckpt"
        save_enhancer(model, path)
        if not same_output(model, load_enhancer(path), model.in_channels):
            raise SekdError(f"{path}: the stripped checkpoint does not enhance as {best} does")
        teacher_ckpt = (config.get("distill") or {}).get("teacher")
        teacher = None
        if teacher_ckpt:
            teacher_run = Path(teacher_ckpt).parent.parent
            teacher = run_names.get(str(teacher_run), teacher_ckpt)
        evaluation = result.get("settings", {}).get("evaluation", {})
        entry = {
            "name": name,
            "file": path.name,
            "sha256": sha256(path),
            "architecture": model.get_config()["model"]["class"].rpartition(":")[2],
            "model_class": model.get_config()["model"]["class"],
            "role": result.get("kind", "student"),
            "method": result.get("method"),
            "weight": result.get("weight"),
            "options": result.get("options") or {},
            "teacher": teacher,
            "study": study or study_of(run),
            "run": str(run),
            "seed": result.get("seed"),
            "causal": bool(model.network.causal),
            "in_channels": model.in_channels,
            "params": params,
            "macs_per_second": result["macs_per_second"],
            "train_seconds": result.get("train_seconds"),
            "config": config,
            "test": {"data": str(result.get("settings", {}).get("data", source)), "split": evaluation.get("split"),
                     "limit": evaluation.get("limit"), "summary": result["summary"]},
            "data": data,
            "sekd_version": __version__,
        }
        entry["description"] = describe(entry, f"{PREFIX}{teacher}" if teacher in run_names.values() else teacher)
        entries[name] = entry
    if attribution is not None:
        existing = out / "ATTRIBUTION.md"
        if kept and existing.is_file() and existing.read_text(encoding="utf-8") != attribution:
            raise SekdError(f"{existing}: the kept models ({', '.join(m['name'] for m in kept)}) learned from another "
                            "corpus; ship them again with these, or use --replace-all")
        atomic_write_text(existing, attribution)
    # Replaced entries keep their place; new ones follow in the order given.
    models = [entries.pop(m["name"], m) for m in old if not replace_all or m["name"] in entries]
    models += list(entries.values())
    for stale in {m["name"] for m in old} - {m["name"] for m in models}:
        (out / f"{stale}.ckpt").unlink(missing_ok=True)
    atomic_write_text(index_path, json.dumps({"format": 1, "models": models}, indent=1, ensure_ascii=False) + "\n")
    return models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="NAME=RUN", help="shipped name and run folder")
    p.add_argument("--study", help="the study to credit (default: the folder above the run, or above its seed folder)")
    p.add_argument("--corpus", type=Path, help="the corpus the runs learned from (default: their result.json's data)")
    p.add_argument("--replace-all", action="store_true", help="drop every shipped model not named here")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"package folder (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    items = []
    for item in args.runs:
        name, sep, run = item.partition("=")
        if not sep or not NAME.fullmatch(name):
            p.error(f"{item}: write NAME=RUN with NAME of lower-case letters, digits, '.' and '-'")
        items.append((name, Path(run)))
    try:
        models = ship(items, args.out, args.study, args.corpus, args.replace_all)
    except SekdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from sekd.pretrained import format_models
    print(format_models(models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
