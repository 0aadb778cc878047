"""``sekd study``: the whole comparison, resumable run by run.

One study config (``configs/study/*.yaml``) names a teacher config, one student config,
the seeds, the methods, the I²S-TFCKD ablations, λ and options per method, the peers and
the evaluation. The study then

1. evaluates the unprocessed input (``OUT/noisy``) and each peer (``OUT/<peer>``) once;
2. trains the teacher once (``OUT/teacher``, seed ``teacher_seed``, default the first seed)
   and evaluates its best checkpoint (``teacher.checkpoint``: a trained teacher, evaluated
   and distilled from, not trained);
3. tunes λ (``tune``): with one seed, one run per method and λ of ``tune.grid`` (extended past
   an end, up to ``tune.extend`` times, while the best λ lies there), scored by
   their best validation PESQ-WB on the valid split, never the test split; the choice goes
   to ``OUT/tune/choice.json`` (methods with a fixed λ in ``weights``, or in the choice of
   another study named by ``weights_from``, are not tuned, and ``--stage tune`` stops here);
4. for every seed, trains the student once per system and evaluates it
   (``OUT/<system>/seed<k>``): ``none`` is the student trained on the SE loss alone
   (plain ``sekd train``, no teacher forward: the same loss as the ``none`` method, for
   less time), every other method of ``sekd methods`` and every ablation is the same
   student config with a ``distill`` section added. Data, crops, steps, schedule and
   evaluation are identical for all; only the method, λ and its options differ.

Every run folder gets a ``result.json`` when the run is finished and evaluated: the
per-file metric rows, their summary, the evaluated checkpoint, parameters, MACs per second,
wall times, the resolved config, and for I²S-TFCKD runs with learned calibration the
calibration weights α averaged over the evaluation files (``calibration``). A run whose
result exists is skipped when the study is started again (the log says ``skip``); a run
interrupted during training resumes from its ``last.ckpt``. A result made with a different
config is refused rather than mixed in.

The study config's keys are those of :class:`StudyConfig`; command-line overrides are
``key=value`` (``seeds=[0]``, ``evaluation.limit=20``), and dotted keys that start with a
run config section (``train.max_steps=10``, ``data.num_workers=2``) go to ``common``, the
overrides applied to every trained run; a bare ``data=PATH`` is the study's own ``data`` key.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from .audio import SAMPLE_RATE, atomic_write_text
from .device import resolve_device
from .config import SECTIONS, Config, build_section, load_config, parse_override, read_yaml_mapping, set_dotted
from .data.datasets import Pair, list_pairs, read_noisy
from .errors import SekdError

log = logging.getLogger("sekd")

NO_KD = "none"
RESULT = "result.json"
RUN_SECTIONS = (*SECTIONS, "distill")


@dataclass
class RunSpec:
    config: str = ""                 # a YAML run config (sections data, model, signal, loss, train)
    overrides: dict = field(default_factory=dict)  # dotted key -> value, applied on top of it
    checkpoint: str | None = None    # teacher only: distil from this trained checkpoint instead (config unused)


@dataclass
class EvaluationConfig:
    split: str = "test"              # manifest split scored (the report's main tables, the I²S calibration maps)
    more_splits: list = field(default_factory=list)  # scored too and reported beside it, e.g. [ood]
    limit: int | None = None         # score only the first N files of the split (None = all)
    dnsmos: bool = True
    workers: int | None = None       # metric processes (None = all cores)
    calibration_files: int = 64      # I²S runs: evaluation files (cropped, batched) the α heat maps average
    device: str | None = None        # models run here: cpu, cuda, cuda:1 (None = cuda when available); not a setting


@dataclass
class TuneConfig:
    grid: list = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0])  # λ tried per method ([]: no tuning)
    extend: int = 0                  # up to this many λ added beyond each end of the grid while the best is there
    seed: int | None = None          # the one seed of every tuning run (default: the first seed)


@dataclass
class MoreSeedsConfig:
    seeds: list = field(default_factory=list)     # run for `systems` and the `closest` methods, after `seeds`
    systems: list = field(default_factory=lambda: ["none", "i2s_tfckd"])
    closest: int = 2                 # methods whose mean best validation PESQ-WB is nearest I²S-TFCKD's


@dataclass
class StudyConfig:
    out_dir: str = "runs/study"
    data: str = "data/builtin"       # corpus for training, validation and evaluation (data.train of every run)
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    more_seeds: MoreSeedsConfig = field(default_factory=MoreSeedsConfig)
    teacher_seed: int | None = None  # default: the first seed
    threads: int | None = None       # torch threads: the teacher's, and shared by the jobs
    jobs: int = 1                    # runs trained at once (processes); each gets threads // jobs
    teacher: RunSpec = field(default_factory=RunSpec)
    student: RunSpec = field(default_factory=RunSpec)
    common: dict = field(default_factory=dict)     # dotted overrides applied to every trained run
    methods: list | str = "all"      # names from `sekd methods`, or "all"
    weights: dict = field(default_factory=dict)    # fixed λ per method: not tuned (untuned default 1.0)
    weights_from: str | None = None  # another study's tune/choice.json: its chosen λ, fixed here (not tuned)
    tune: TuneConfig = field(default_factory=TuneConfig)  # λ of every other method, chosen on the valid split
    options: dict = field(default_factory=dict)    # the method's options, per method
    ablations: dict = field(default_factory=dict)  # name -> {method, options, weight}: on top of the method's own
    peers: list = field(default_factory=lambda: ["rnnoise", "nsnet2"])
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


def _check_list(source: str, key: str, value, kind: type) -> list:
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise SekdError(f"{source}: {key} must be a list of {kind.__name__}, got {value!r}")
    return value


def study_from_dict(raw: dict, source: str) -> StudyConfig:
    """A :class:`StudyConfig` with every key and type checked; errors name the file and the key."""
    from .distill import list_methods
    from .peers import PEERS
    if not isinstance(raw, dict):
        raise SekdError(f"{source}: a study config must be a mapping")
    raw = dict(raw)
    nested = {"teacher": RunSpec, "student": RunSpec, "evaluation": EvaluationConfig}
    tune_raw = dict(raw.pop("tune", None) or {})
    grid = tune_raw.pop("grid", TuneConfig().grid)
    more_raw = raw.pop("more_seeds", None) or {}
    sections = {k: build_section(k, cls, raw.pop(k, None), source) for k, cls in nested.items()}
    lists = {k: raw.pop(k) for k in ("seeds", "methods", "peers") if k in raw}
    cfg = build_section("study", StudyConfig, {**raw, **{k: v for k, v in lists.items() if k == "methods"
                                                         and isinstance(v, str)}}, source)
    for k, cls in nested.items():
        setattr(cfg, k, sections[k])
    cfg.tune = build_section("tune", TuneConfig, tune_raw, source)
    if not isinstance(grid, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                             for v in grid) or len(set(grid)) != len(grid):
        raise SekdError(f"{source}: tune.grid must be a list of distinct positive λ values, got {grid!r}")
    cfg.tune.grid = [float(v) for v in grid]
    if cfg.tune.extend < 0:
        raise SekdError(f"{source}: tune.extend must be ≥ 0, got {cfg.tune.extend}")
    known = [name for name, _ in list_methods()]
    if "seeds" in lists:
        cfg.seeds = _check_list(source, "seeds", lists["seeds"], int)
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise SekdError(f"{source}: seeds must be distinct and at least one, got {cfg.seeds}")
    if not isinstance(more_raw, dict):
        raise SekdError(f"{source}: more_seeds must be a mapping, got {more_raw!r}")
    more = {k: v for k, v in more_raw.items() if k not in ("seeds", "systems")}
    cfg.more_seeds = build_section("more_seeds", MoreSeedsConfig, more, source)
    cfg.more_seeds.seeds = _check_list(source, "more_seeds.seeds", more_raw.get("seeds", []), int)
    cfg.more_seeds.systems = _check_list(source, "more_seeds.systems",
                                         more_raw.get("systems", MoreSeedsConfig().systems), str)
    if set(cfg.more_seeds.seeds) & set(cfg.seeds) or len(set(cfg.more_seeds.seeds)) != len(cfg.more_seeds.seeds):
        raise SekdError(f"{source}: more_seeds.seeds must be distinct and not among seeds, got "
                        f"{cfg.more_seeds.seeds}")
    if cfg.more_seeds.closest < 0 or cfg.jobs < 1 or (cfg.threads is not None and cfg.threads < 1):
        raise SekdError(f"{source}: more_seeds.closest must be ≥ 0, jobs and threads ≥ 1")
    if "peers" in lists:
        cfg.peers = _check_list(source, "peers", lists["peers"], str)
    if "methods" in lists and not isinstance(lists["methods"], str):
        cfg.methods = _check_list(source, "methods", lists["methods"], str)
    if cfg.methods == "all":
        cfg.methods = known
    elif isinstance(cfg.methods, str):
        raise SekdError(f"{source}: methods must be a list of method names or 'all', got {cfg.methods!r}")
    for where, names, choices in (("methods", cfg.methods, known), ("peers", cfg.peers, list(PEERS)),
                                  ("weights", list(cfg.weights), known), ("options", list(cfg.options), known),
                                  ("more_seeds.systems", cfg.more_seeds.systems if cfg.more_seeds.seeds else [],
                                   [NO_KD, *cfg.methods, *cfg.ablations])):
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise SekdError(f"{source}: {where}: unknown name(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    if cfg.more_seeds.seeds and cfg.more_seeds.closest and "i2s_tfckd" not in cfg.methods:
        raise SekdError(f"{source}: more_seeds.closest picks the methods nearest i2s_tfckd, which is not in methods")
    for name, spec in cfg.ablations.items():
        if not isinstance(spec, dict) or set(spec) - {"method", "options", "weight"} or spec.get("method") not in known:
            raise SekdError(f"{source}: ablations.{name} must be a mapping with 'method' (one of `sekd methods`) "
                            f"and optionally 'options' and 'weight', got {spec!r}")
        if name in known or name in ("teacher", "noisy", *PEERS):
            raise SekdError(f"{source}: ablations.{name}: the name is taken by a method, a peer or the teacher")
    if cfg.student.checkpoint:
        raise SekdError(f"{source}: student.checkpoint: only the teacher can be given as a checkpoint")
    for role in ("teacher", "student"):
        if not getattr(cfg, role).config and not getattr(cfg, role).checkpoint:
            raise SekdError(f"{source}: {role}.config must name a run config YAML"
                            + (" (or teacher.checkpoint a trained teacher)" if role == "teacher" else ""))
    return cfg


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    """Read a study YAML and apply ``key=value`` overrides (see the module docstring)."""
    raw = read_yaml_mapping(path, "study config")
    for text in overrides:
        keys, value = parse_override(text)
        if len(keys) > 1 and keys[0] in RUN_SECTIONS:  # a run config key: for every trained run
            raw.setdefault("common", {})[".".join(keys)] = value
        else:
            set_dotted(raw, keys, value, text)
    return study_from_dict(raw, str(path))


# --------------------------------------------------------------------------- runs

@dataclass
class Run:
    """One trained system of the study."""

    system: str          # teacher, none, a method name or an ablation name
    seed: int
    out_dir: Path
    method: str | None   # None: no teacher (the teacher itself and the no-KD student)
    weight: float = 1.0
    options: dict = field(default_factory=dict)


def main_comparison_first(system: str) -> tuple[bool, bool]:
    """Sort key: the baseline, then I²S-TFCKD, then the rest in their order, so that an
    interrupted study (or tuning stage) already has its main comparison."""
    return system != NO_KD, system != "i2s_tfckd"


def plan_runs(study: StudyConfig, tuned: dict[str, float] | None = None, more: list[str] = ()) -> list[Run]:
    """The teacher, then per seed: the no-KD student, every method, every ablation; then the
    ``more_seeds`` of the systems in ``more`` (see :func:`more_seed_systems`).

    λ per method: ``weights`` (fixed), else ``tuned`` (the tuning stage's choice), else 1.0;
    an ablation has its own ``weight`` or its method's λ.
    """
    tuned = tuned or {}
    out = Path(study.out_dir)
    teacher_seed = study.seeds[0] if study.teacher_seed is None else study.teacher_seed
    runs = [Run("teacher", teacher_seed, out / "teacher", None)]
    students = [(m, m, {}, None) for m in study.methods]
    students += [(name, spec["method"], spec.get("options") or {}, spec.get("weight"))
                 for name, spec in study.ablations.items()]
    if NO_KD not in study.methods:  # the baseline every gap is measured from
        students.insert(0, (NO_KD, NO_KD, {}, None))
    students.sort(key=lambda s: main_comparison_first(s[0]))
    for seed in [*study.seeds, *study.more_seeds.seeds]:
        for system, method, extra, weight in students:
            if seed not in study.seeds and system not in more:
                continue
            runs.append(Run(system, seed, out / system / f"seed{seed}", None if method == NO_KD else method,
                            float(weight if weight is not None else study.weights.get(method,
                                                                                        tuned.get(method, 1.0))),
                            {**(study.options.get(method) or {}), **extra}))
    return runs


def more_seed_systems(study: StudyConfig) -> list[str]:
    """The systems that get ``more_seeds``: ``more_seeds.systems``, then the ``closest`` methods.

    Closest: the methods (not ablations) whose mean best validation PESQ-WB over the base
    seeds is nearest I²S-TFCKD's, in either direction. The valid split decides, as for λ:
    nothing in the study's design reads the test split. Needs every base run finished.
    """
    more = study.more_seeds
    chosen = list(more.systems)
    if not more.seeds or not more.closest:
        return chosen
    def best_val(system: str) -> float:
        scores = []
        for seed in study.seeds:
            path = Path(study.out_dir) / system / f"seed{seed}" / RESULT
            curve = json.loads(path.read_text()).get("curve") if path.is_file() else None
            if not curve:
                raise SekdError(f"{path}: missing or without a validation curve; the closest methods are chosen "
                                "from every base seed's run")
            scores.append(max(v for _, v in curve))
        return float(np.mean(scores))
    reference = best_val("i2s_tfckd")
    others = [m for m in study.methods if m not in (NO_KD, "i2s_tfckd") and m not in chosen]
    others.sort(key=lambda m: abs(best_val(m) - reference))
    return chosen + others[:more.closest]


def teacher_checkpoint(study: StudyConfig) -> Path:
    """The teacher every method distils from: ``teacher.checkpoint``, else the one the study trains."""
    return Path(study.teacher.checkpoint or Path(study.out_dir) / "teacher" / "checkpoints" / "best.ckpt")


def run_config(study: StudyConfig, run: Run) -> Config | None:
    """The resolved run config: base file, ``common``, the role's overrides, then what the study fixes
    (None for a teacher given as a checkpoint)."""
    spec = study.teacher if run.system == "teacher" else study.student
    if spec.checkpoint:
        return None
    overrides = {**study.common, **spec.overrides, "data.train": study.data, "train.out_dir": str(run.out_dir),
                 "train.seed": run.seed}
    if study.threads:  # the teacher trains alone; students share the cores among the jobs
        overrides["train.threads"] = study.threads if run.system == "teacher" else max(1, study.threads // study.jobs)
    cfg = load_config(spec.config, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    if run.method is not None:
        cfg.extra["distill"] = {"teacher": str(teacher_checkpoint(study)),
                                "method": run.method, "weight": run.weight, "options": run.options}
    return cfg


def _existing_result(path: Path, settings: dict) -> dict | None:
    """The finished run's result, or None; refuses one made with other settings."""
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s: unreadable, the run is evaluated again", path)
        return None
    if result.get("settings") != settings:
        old = result.get("settings") or {}
        keys = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
        raise SekdError(f"{path}: made with other settings ({', '.join(keys)}); use another out_dir or delete "
                        f"{path.parent} to run it again")
    return result


def _settings(study: StudyConfig, cfg: Config | None = None, evaluation: bool = True) -> dict:
    """What decides a result: the run config and the evaluation (JSON round-tripped, to compare with a file)."""
    scoring = {k: v for k, v in asdict(study.evaluation).items() if k != "device"}  # same scores anywhere
    if not scoring["more_splits"]:
        del scoring["more_splits"]  # results made before more_splits existed stay valid
    d = {"evaluation": scoring, "data": study.data} if evaluation else {"data": study.data}
    if cfg is not None:
        d["config"] = cfg.to_dict()
        d["config"]["train"].pop("threads", None)  # how many cores ran it does not change what it is
    return json.loads(json.dumps(d))


def evaluation_pairs(study: StudyConfig) -> dict[str, list[Pair]]:
    """``{split: pairs}`` of every scored split, the main one (``evaluation.split``) first."""
    e = study.evaluation
    scored = {}
    for split in dict.fromkeys([e.split, *e.more_splits]):
        scored[split] = list_pairs(study.data, split)[:e.limit]
        if not scored[split]:
            raise SekdError(f"{study.data}: no files in split {split!r} to evaluate on")
    return scored


def _score(study: StudyConfig, scored: dict[str, list[Pair]], name: str, system) -> tuple[dict, float]:
    """A result's scores: ``summary`` and ``rows`` of the main split, and ``splits: {split: {summary, rows}}``
    for the others; and the seconds it took."""
    from .evaluate import score_pairs, summarise
    start = time.perf_counter()
    scores: dict = {}
    for split, pairs in scored.items():
        rows = score_pairs(pairs, {name: system} if system is not None else {}, workers=study.evaluation.workers,
                           dnsmos=study.evaluation.dnsmos, progress=False, include_noisy=system is None)
        entry = {"summary": summarise(rows)[name], "rows": _json_rows(rows)}
        if not scores:
            scores.update(entry)
        else:
            scores.setdefault("splits", {})[split] = entry
    return scores, time.perf_counter() - start


def _write_result(path: Path, result: dict) -> None:
    from .evaluate import _json_safe
    atomic_write_text(path, json.dumps(_json_safe(result), indent=1) + "\n")


def _json_rows(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items() if k != "system"}
            for row in rows]


def evaluate_untrained(study: StudyConfig, scored: dict[str, list[Pair]]) -> None:
    """The unprocessed input and the peers, once each."""
    from .evaluate import NOISY
    from .peers import build_peer
    for name in [NOISY, *study.peers]:
        path = Path(study.out_dir) / name / RESULT
        settings = _settings(study)
        if _existing_result(path, settings):
            log.info("skip %s: %s exists", name, path)
            continue
        log.info("evaluating %s on %s", name, ", ".join(f"{len(p)} {split} files" for split, p in scored.items()))
        peer = None if name == NOISY else build_peer(name)
        scores, seconds = _score(study, scored, name, peer)
        cost = peer.cost() if peer else {}
        _write_result(path, {"system": name, "kind": "input" if peer is None else "peer", "seed": None,
                             "params": cost.get("params"), "macs_per_second": cost.get("macs_per_second"),
                             "cost_note": cost.get("note"), "eval_seconds": seconds, **scores,
                             "settings": settings})


def train_and_evaluate(study: StudyConfig, run: Run, scored: dict[str, list[Pair]]) -> dict:
    """Train (or resume) one run, evaluate its best checkpoint, write its result; skipped when finished."""
    from .checkpoint import load_enhancer
    from .profile import macs_per_second
    cfg = run_config(study, run)
    # A teacher given as a checkpoint is that file.
    settings = _settings(study, cfg) if cfg is not None else {**_settings(study), "checkpoint": study.teacher.checkpoint}
    path = run.out_dir / RESULT
    existing = _existing_result(path, settings)
    if existing:
        log.info("skip %s seed %d: %s exists", run.system, run.seed, path)
        return existing
    adopted = run.method is not None and adopt_tuning_run(study, run)
    resumed = (run.out_dir / "checkpoints" / "last.ckpt").is_file()
    start = time.perf_counter()
    best = train_run(cfg, run) if cfg is not None else teacher_checkpoint(study)
    train_seconds = run_training_seconds(run, start)
    model = load_enhancer(best, device=str(resolve_device(study.evaluation.device)))
    scores, eval_seconds = _score(study, scored, run.system, model)
    result = {"system": run.system, "kind": "teacher" if run.system == "teacher" else "student",
              "seed": run.seed, "method": run.method or NO_KD, "weight": run.weight if run.method else None,
              "options": run.options, "checkpoint": str(best),
              "params": sum(p.numel() for p in model.parameters()), "macs_per_second": macs_per_second(model),
              "train_seconds": train_seconds, "resumed": resumed, "from_tuning": adopted,
              "curve": validation_curve(run.out_dir if cfg is not None else best.parent.parent),
              "eval_seconds": eval_seconds, **scores, "settings": settings}
    if run.method == "i2s_tfckd" and run.options.get("calibration", "learned") == "learned":
        main_pairs = scored[study.evaluation.split]
        result["calibration"] = calibration_maps(best, main_pairs[:study.evaluation.calibration_files])
    _write_result(path, result)
    log.info("finished %s seed %d: PESQ-WB %.3f (train %.0f s, evaluation %.0f s)", run.system, run.seed,
             scores["summary"].get("pesq_wb", float("nan")), train_seconds, eval_seconds)
    return result


def run_training_seconds(run: Run, start: float) -> float:
    """The run's training time over all its resumed parts (kept in its checkpoint); the wall time
    since ``start`` for a checkpoint saved before sekd kept that, or for a teacher given as a file."""
    from .engine.state import training_seconds
    seconds = training_seconds(run.out_dir / "checkpoints" / "last.ckpt")
    return time.perf_counter() - start if seconds is None else seconds


def train_run(cfg: Config, run: Run) -> Path:
    """Train (or resume, or find finished) one run; returns its best checkpoint."""
    resumed = (run.out_dir / "checkpoints" / "last.ckpt").is_file()
    log.info("%s %s seed %d in %s", "resuming" if resumed else "training", run.system, run.seed, run.out_dir)
    if run.method is None:
        from .engine.train import train
        return train(cfg)
    from .engine.distill import distill
    return distill(cfg)


@torch.no_grad()
def calibration_maps(ckpt: str | Path, pairs: list[Pair]) -> dict[str, dict]:
    """I²S-TFCKD's calibration α averaged over ``pairs``: ``{set/stream: {student, teacher, weights [S][S_t]}}``.

    The learned embeddings fix the crop length and batch size, so each file contributes
    its first training-crop length (zero-padded when shorter), in batches of the training
    batch size (the list is cycled to fill the last batch).
    """
    from .engine.distill import DistillationModule
    module = DistillationModule.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=True).eval()
    cfg, method = module.cfg, module.method
    samples, batch = int(cfg.data.crop_seconds * SAMPLE_RATE), cfg.data.batch_size
    crops = []
    for pair in pairs:
        noisy = read_noisy(pair, module.model.in_channels)[:, :samples]
        crops.append(np.pad(noisy, ((0, 0), (0, samples - noisy.shape[1]))))
    crops += crops[:(-len(crops)) % batch] if len(crops) >= batch else (crops * batch)[:batch - len(crops)]
    totals: dict[str, torch.Tensor] = {}
    batches = 0
    for start in range(0, len(crops), batch):
        x = torch.from_numpy(np.stack(crops[start:start + batch]))
        teacher_taps = module.teacher_taps(x)  # on the student's STFT grid (sekd.distill.bridge)
        _, student_taps = module.model(x, return_taps=True)
        method(student_taps, teacher_taps)
        for key, alpha in method.last_calibration.items():
            totals[key] = totals.get(key, 0) + alpha
        batches += 1
    names = {s: (method.student_info.sets[s], method.teacher_info.sets[s]) for s in method.student_info.sets}
    names["inter"] = (method._rep_names(method.student_info), method._rep_names(method.teacher_info))
    return {key: {"student": list(names[key.split("/")[0]][0]), "teacher": list(names[key.split("/")[0]][1]),
                  "weights": (total / batches).tolist()} for key, total in totals.items()}


# --------------------------------------------------------------------------- tuning λ

TUNE_DIR, TUNE_RESULT, CHOICE = "tune", "tune.json", "choice.json"


def tune_seed(study: StudyConfig) -> int:
    return study.seeds[0] if study.tune.seed is None else study.tune.seed


def plan_tuning(study: StudyConfig) -> list[Run]:
    """One run per (method, λ of its grid), one seed, the student schedule; methods with a fixed λ are not
    tuned. I²S-TFCKD first (:func:`main_comparison_first`). The grid is :func:`tuning_grid`'s, so it grows
    as finished runs ask for λ beyond its ends."""
    out, seed = Path(study.out_dir) / TUNE_DIR, tune_seed(study)
    methods = sorted((m for m in study.methods if m != NO_KD and m not in study.weights), key=main_comparison_first)
    return [Run(method, seed, out / method / f"lambda{weight:g}", method, weight, dict(study.options.get(method) or {}))
            for method in methods for weight in tuning_grid(study, method)]


def best_weight(scores: dict[float, float]) -> float:
    """The λ with the best validation score; ties (rare) go to the λ nearest 1 on a log scale, the untuned
    setting unless the data say otherwise."""
    return max(scores, key=lambda w: (scores[w], -abs(math.log(w))))


def tuning_grid(study: StudyConfig, method: str) -> list[float]:
    """The λ tried for ``method``, ascending: ``tune.grid``, extended while its finished runs put the best λ on
    an end of what was tried, by the ratio of that end to its neighbour (two significant digits), at most
    ``tune.extend`` times per end. A pure function of the finished runs, so every job plans the same runs."""
    grid = sorted(study.tune.grid)
    folder = Path(study.out_dir) / TUNE_DIR / method
    for _ in range(2 * study.tune.extend):
        scores = {}
        for weight in grid:
            path = folder / f"lambda{weight:g}" / TUNE_RESULT
            if not path.is_file():
                return grid
            scores[weight] = json.loads(path.read_text())["best_val_pesq_wb"]
        best = best_weight(scores)
        below, above = (grid[1] / grid[0], grid[-1] / grid[-2]) if len(grid) > 1 else (10.0, 10.0)
        if best == grid[0] and sum(w < min(study.tune.grid) for w in grid) < study.tune.extend:
            grid.insert(0, float(f"{grid[0] / below:.2g}"))
        elif best == grid[-1] and sum(w > max(study.tune.grid) for w in grid) < study.tune.extend:
            grid.append(float(f"{grid[-1] * above:.2g}"))
        else:
            break
    return grid


def validation_curve(run_dir: Path) -> list[list[float]]:
    """``[[step, validation PESQ-WB], ...]`` from a run's CSV log (the valid split, as training logs it)."""
    import csv
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/pesq_wb")]
    return sorted([int(r["step"]), float(r["val/pesq_wb"])] for r in rows)


def tune_run(study: StudyConfig, run: Run) -> dict:
    """Train one tuning run (or reuse its finished ``tune.json``) and score it on the valid split only."""
    cfg = run_config(study, run)
    settings = _settings(study, cfg, evaluation=False)  # the test split takes no part
    path = run.out_dir / TUNE_RESULT
    existing = _existing_result(path, settings)
    if existing:
        log.info("skip tuning %s λ=%g: %s exists", run.method, run.weight, path)
        return existing
    log.info("tuning %s λ=%g in %s", run.method, run.weight, run.out_dir)
    from .engine.distill import distill
    start = time.perf_counter()
    distill(cfg)
    curve = validation_curve(run.out_dir)
    if not curve:
        raise SekdError(f"{run.out_dir}: the tuning run logged no validation PESQ-WB")
    result = {"method": run.method, "weight": run.weight, "seed": run.seed, "options": run.options,
              "best_val_pesq_wb": max(v for _, v in curve), "curve": curve,
              "train_seconds": run_training_seconds(run, start), "settings": settings}
    _write_result(path, result)
    return result


def untuned_runs(study: StudyConfig) -> list[Run]:
    """The students of the base seeds whose λ no tuning can change (no-KD, a fixed λ)."""
    other = {run.method: -1.0 for run in plan_tuning(study)}  # any choice but the default's
    return [run for run, alt in zip(plan_runs(study)[1:], plan_runs(study, other)[1:]) if run.weight == alt.weight]


def choose_weights(study: StudyConfig, meanwhile: Callable[[], bool] | None = None) -> dict[str, float]:
    """The tuning stage: every grid run, then per method the λ with the best validation PESQ-WB.

    Writes ``OUT/tune/choice.json`` (``{method: {grid: {λ: score}, chosen, seed, files}}``);
    finished runs are reused, so starting the study again only reads them. ``meanwhile`` is
    what a process does instead of idling while other processes hold the last tuning runs.
    """
    runs: list[Run] = []
    while len(planned := plan_tuning(study)) > len(runs):  # finished runs may extend the grid: go on until not
        runs = planned
        work_through(study, runs, lambda run: (run.out_dir / TUNE_RESULT).is_file(),
                     lambda run: tune_run(study, run), "tune", meanwhile)
    choice: dict[str, dict] = {}
    for run in runs:
        result = json.loads((run.out_dir / TUNE_RESULT).read_text())  # every run is finished now
        entry = choice.setdefault(run.method, {"grid": {}, "seed": run.seed})
        entry["grid"][f"{run.weight:g}"] = result["best_val_pesq_wb"]
    for method, entry in choice.items():
        entry["chosen"] = best_weight({float(w): score for w, score in entry["grid"].items()})
        tried = sorted(float(w) for w in entry["grid"])
        if len(tried) > 1 and entry["chosen"] in (tried[0], tried[-1]):
            entry["at_edge"] = True  # the grid does not bracket the best: report it, or raise tune.extend
            log.warning("tuning %s: the best λ (%g) is at the end of the λ tried (%s)", method, entry["chosen"],
                        ", ".join(f"{w:g}" for w in tried))
    if choice:
        _write_result(Path(study.out_dir) / TUNE_DIR / CHOICE, {"metric": "best validation PESQ-WB",
                                                                "split": "valid", "methods": choice})
    return {method: entry["chosen"] for method, entry in choice.items()}


def take_weights_from(study: StudyConfig) -> None:
    """Fix the λ of every tuned method to the choice of another study (``weights_from``, its
    ``tune/choice.json``), e.g. the same student at another STFT setting, so that only the setting differs.

    A λ in ``weights`` stays. The source's choice is copied to ``OUT/tune/choice.json`` with ``from``
    naming it, so that the report shows which scores chose λ.
    """
    if not study.weights_from:
        return
    source = Path(study.weights_from)
    where = f"weights_from {source}"
    if not source.is_file():
        raise SekdError(f"{where}: file not found (run that study's tuning first: sekd study ITS_CONFIG --stage tune)")
    data = _read_result(source)
    methods = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(methods, dict) or not all(isinstance(e, dict) and isinstance(e.get("chosen"), (int, float))
                                                for e in methods.values()):
        raise SekdError(f"{where}: not a study's tune/choice.json (no 'methods' with a chosen λ each)")
    wanted = [m for m in study.methods if m != NO_KD and m not in study.weights]
    missing = [m for m in wanted if m not in methods]
    if missing:
        raise SekdError(f"{where}: no λ chosen for {', '.join(missing)}; give it in weights or tune it here")
    study.weights = {**study.weights, **{m: float(methods[m]["chosen"]) for m in wanted}}
    if wanted:
        _write_result(Path(study.out_dir) / TUNE_DIR / CHOICE, {
            "metric": "best validation PESQ-WB", "split": "valid", "from": str(source),
            "methods": {m: methods[m] for m in wanted}})


def adopt_tuning_run(study: StudyConfig, run: Run) -> bool:
    """Start a study run from the finished tuning run with the same method, λ, options and seed, if any.

    That run is the study run (same config but the folder), trained on the valid split's
    choice only; copying its checkpoints and logs saves retraining it. Returns whether it did.
    """
    source = Path(study.out_dir) / TUNE_DIR / str(run.method) / f"lambda{run.weight:g}"
    plain = run.system == run.method and run.options == (study.options.get(run.method) or {})
    # Its last.ckpt makes the copy a finished run; without it (results copied to another machine: checkpoints
    # are not committed) seed 0 is trained again.
    if not (plain and run.seed == tune_seed(study) and (source / TUNE_RESULT).is_file()
            and (source / "checkpoints" / "last.ckpt").is_file() and not (run.out_dir / "checkpoints").exists()):
        return False
    import shutil
    for folder in ("checkpoints", "csv"):
        shutil.copytree(source / folder, run.out_dir / folder, dirs_exist_ok=True)
    log.info("%s seed %d: trained in tuning (%s), reused", run.system, run.seed, source)
    return True


def check_study_data(study: StudyConfig, runs: list[Run], scored: dict[str, list[Pair]] | None) -> None:
    """Every problem of the training, validation and (with ``scored``) evaluation data, before hours of training."""
    from .checkpoint import resolve_checkpoint
    from .data.checks import require_good_pairs
    configs = [cfg for cfg in (run_config(study, run) for run in runs) if cfg is not None]
    if study.teacher.checkpoint and not resolve_checkpoint(study.teacher.checkpoint).is_file():  # pretrained:NAME too
        raise SekdError(f"teacher.checkpoint {study.teacher.checkpoint}: file not found")
    for channels in sorted({cfg.model.in_channels for cfg in configs}):
        for split, pairs in (scored or {}).items():
            require_good_pairs(pairs, f"{study.data}: evaluation data (split {split!r})", channels)
        for split in ("train", "valid"):
            require_good_pairs(list_pairs(study.data, split), f"{study.data}: {split} data", channels)


# --------------------------------------------------------------------------- several runs at once

LOCKS, WAIT_SECONDS = ".locks", 30.0


def lock_path(study: StudyConfig, run: Run) -> Path:
    """``OUT/.locks/<run folder, / as ->.lock``: held by the process working on the run."""
    return Path(study.out_dir) / LOCKS / (run.out_dir.relative_to(study.out_dir).as_posix().replace("/", "-") + ".lock")


@contextmanager
def claimed(study: StudyConfig, run: Run) -> Iterator[bool]:
    """Whether this process got the run's lock (without waiting); the lock goes when the block ends
    or the process dies, however it dies, so a killed job's run is free for the next one."""
    import fcntl
    path = lock_path(study, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def work_through(study: StudyConfig, runs: list[Run], done: Callable[[Run], bool], do: Callable[[Run], object],
                 what: str, meanwhile: Callable[[], bool] | None = None) -> None:
    """Do every run not ``done``, each by whichever of the study's processes claims it first;
    returns once all are done. While other processes hold the last ones it calls ``meanwhile``
    (other work; False when there is none left) or waits."""
    pending, first_pass = list(runs), True
    while pending:
        held = []
        for i, run in enumerate(pending, start=1):
            if done(run):
                if first_pass:
                    log.info("skip %s %s seed %d: finished", what, run.system, run.seed)
                continue
            if not claim_and_do(study, run, do, f"{what} {len(runs) - len(pending) + i}/{len(runs)}"):
                held.append(run)
        pending, first_pass = [run for run in held if not done(run)], False
        if pending and not (meanwhile and meanwhile()):
            log.info("%s: waiting for %d run(s) that other jobs hold", what, len(pending))
            time.sleep(WAIT_SECONDS)


def claim_and_do(study: StudyConfig, run: Run, do: Callable[[Run], object], label: str) -> bool:
    """Do ``run`` if this process gets its lock (logged as ``[label]``); whether it did."""
    with claimed(study, run) as mine:
        if mine:
            log.info("[%s] %s seed %d", label, run.system, run.seed)
            log.info("%s", progress_line(study))
            do(run)
    if mine:  # after the lock is gone: the run counts as finished, not running
        log.info("%s", progress_line(study))
    return mine


def do_one(study: StudyConfig, runs: list[Run], done: Callable[[Run], bool], do: Callable[[Run], object],
           what: str) -> bool:
    """Claim and do the first run of ``runs`` neither done nor held by another process; whether there was one."""
    return any(not done(run) and claim_and_do(study, run, do, what) for run in runs)


# --------------------------------------------------------------------------- progress

@dataclass
class RunState:
    """What the progress line needs of one trained run (tuning runs and students; the teacher comes before)."""

    name: str                 # its folder under OUT: none/seed1, tune/pkt/lambda1
    method: str               # whose step times it shares (none: no-KD); "" for a run whose method is not known yet
    steps: int                # train.max_steps
    evaluated: bool           # the test split is scored after training (not a tuning run)
    result: dict | None       # the finished run's result (train_seconds, eval_seconds), None while not finished
    running: bool = False     # a process holds its lock


def run_states(study: StudyConfig) -> list[RunState]:
    """Every run the study's jobs share, in order: the tuning runs, the students of the base seeds, the more seeds.

    The more seeds' closest methods are chosen once every base run is finished; until then
    they stand as runs of unknown method.
    """
    students = plan_runs(study)[1:]
    cfg = run_config(study, students[0]) if students else None
    steps = cfg.train.max_steps if cfg is not None else 0
    runs = [(run, TUNE_RESULT, False) for run in plan_tuning(study)]
    runs += [(run, RESULT, True) for run in students if run.seed in study.seeds]
    placeholders = 0
    if study.more_seeds.seeds:
        try:
            more = more_seed_systems(study)
        except SekdError:  # base runs not finished: the closest methods are not known yet
            more, placeholders = list(study.more_seeds.systems), study.more_seeds.closest
        runs += [(run, RESULT, True) for run in plan_runs(study, more=more)[1:] if run.seed not in study.seeds]
    states = [RunState(run.out_dir.relative_to(study.out_dir).as_posix(), run.method or NO_KD, steps, evaluated,
                       _read_result(run.out_dir / name), _is_locked(lock_path(study, run)))
              for run, name, evaluated in runs]
    states += [RunState(f"(closest method {i + 1})/seed{seed}", "", steps, True, None)
               for seed in study.more_seeds.seeds for i in range(placeholders)]
    return states


def _read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or being replaced
        return None


def _is_locked(path: Path) -> bool:
    """Whether a process holds this lock (probed with a non-blocking flock, released at once)."""
    import fcntl
    try:
        with open(path, "r") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:  # no lock file: never claimed
        return False


def estimate_seconds_left(states: list[RunState], jobs: int) -> float | None:
    """Seconds until every run is finished, from the finished runs' measured times, or None before the first.

    A run left takes its steps × the seconds per step measured on the finished runs of its
    method (of all finished runs, for a method not measured yet), plus the mean evaluation
    time when it is evaluated; ``jobs`` processes share the runs. A run under way counts as
    not started, so the estimate errs long by at most one run per job.
    """
    timed = [s for s in states if s.result and s.result.get("train_seconds") and s.steps]
    if not timed:
        return None

    def per_step(runs: list[RunState]) -> float:
        return sum(s.result["train_seconds"] for s in runs) / sum(s.steps for s in runs)

    overall = per_step(timed)
    by_method = {m: per_step([s for s in timed if s.method == m]) for m in {s.method for s in timed}}
    evals = [s.result["eval_seconds"] for s in states if s.result and s.evaluated and s.result.get("eval_seconds")]
    eval_each = sum(evals) / len(evals) if evals else 0.0
    left = sum(by_method.get(s.method, overall) * s.steps + (eval_each if s.evaluated else 0.0)
               for s in states if s.result is None)
    return left / max(1, jobs)


def progress_line(study: StudyConfig, states: list[RunState] | None = None) -> str:
    """``study: 14/62 runs finished; running: none/seed1, tune/pkt/lambda1; about 3:05:00 left (2 jobs)``."""
    from .progress import format_duration
    states = run_states(study) if states is None else states
    finished = sum(s.result is not None for s in states)
    running = [s.name for s in states if s.running and s.result is None]
    seconds = estimate_seconds_left(states, study.jobs)
    parts = [f"study: {finished}/{len(states)} runs finished", "running: " + (", ".join(running) or "none")]
    if finished == len(states):
        parts.append("nothing left")
    elif seconds is None:
        parts.append("time left: known when the first run has finished")
    else:
        parts.append(f"about {format_duration(seconds)} left ({study.jobs} job{'s' if study.jobs > 1 else ''}, "
                     "from the step times so far)")
    return "; ".join(parts)


def _term_with_parent() -> None:
    """Child of the study: SIGTERM when the parent dies, so it saves ``last.ckpt`` and stops too (Linux)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def trusting_env() -> dict:
    """This process's environment with the classes it trusts (``--trust-class``, the configs') in
    ``SEKD_TRUST_CLASSES``, so that the jobs load the same checkpoints."""
    import os
    from .models.base import TRUST_ENV, trusted_classes
    return {**os.environ, TRUST_ENV: ",".join(sorted(trusted_classes()))}


def start_jobs(study: StudyConfig, stage: str) -> list:
    """``jobs - 1`` more processes working through the same study (logs in ``OUT/logs/job<i>.log``)."""
    import subprocess
    import sys
    out = Path(study.out_dir)
    (out / "logs").mkdir(exist_ok=True)
    procs = []
    for i in range(1, study.jobs):
        with open(out / "logs" / f"job{i}.log", "a") as logfile:
            procs.append(subprocess.Popen([sys.executable, "-m", "sekd", "study", str(out / "study.yaml"),
                                           "--stage", stage, "--job"], stdout=logfile, stderr=subprocess.STDOUT,
                                          preexec_fn=_term_with_parent, env=trusting_env()))
        log.info("started job %d (pid %d): %s", i, procs[-1].pid, out / "logs" / f"job{i}.log")
    return procs


def run_study(study: StudyConfig, stage: str = "all", spawn: bool = True) -> Path:
    """Run (or continue) the whole study; returns its folder, ready for :func:`sekd.report.write_report`.

    Stages in order: the input and peers, the teacher, the tuning of λ, every student run;
    ``stage="teacher"`` stops after the teacher (trained and evaluated), ``stage="tune"`` after the tuning.
    """
    out = Path(study.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    take_weights_from(study)
    if spawn:  # the jobs read the study from here
        atomic_write_text(out / "study.yaml", yaml.safe_dump(json.loads(json.dumps(asdict(study))), sort_keys=False))
    if study.threads:
        torch.set_num_threads(study.threads)
    start = time.perf_counter()
    teacher, *_ = plan_runs(study)
    from .engine.train import trust_config_classes  # the study's configs are the user's: their classes too
    for cfg in filter(None, (run_config(study, run) for run in plan_runs(study))):
        trust_config_classes(cfg)
    scored = None
    if stage == "tune":  # the teacher and the tuning only: nothing reads the test split
        check_study_data(study, [teacher, *plan_tuning(study)], None)
        if not study.teacher.checkpoint:
            train_run(run_config(study, teacher), teacher)
    else:
        resolve_device(study.evaluation.device)  # a missing GPU is said now, not after the teacher's training
        scored = evaluation_pairs(study)
        check_study_data(study, plan_runs(study), scored)
        evaluate_untrained(study, scored)
        train_and_evaluate(study, teacher, scored)
        if stage == "teacher":
            return out
    # The teacher is done: from here the study's `jobs` processes share the runs, each with threads // jobs.
    jobs = start_jobs(study, stage) if spawn and study.jobs > 1 else []
    if study.threads:
        torch.set_num_threads(max(1, study.threads // study.jobs))
    if stage == "tune":  # nothing that reads the test split
        tuned = choose_weights(study)
        log.info("tuning finished in %.0f s: %s", time.perf_counter() - start, out / TUNE_DIR / CHOICE)
    else:  # a process the last tuning runs leave idle trains the students that need no λ
        def finished(run: Run) -> bool:
            return (run.out_dir / RESULT).is_file()
        def evaluated(run: Run) -> dict:
            return train_and_evaluate(study, run, scored)
        free = untuned_runs(study)
        tuned = choose_weights(study, lambda: do_one(study, free, finished, evaluated, "students while tuning"))
        base = plan_runs(study, tuned)[1:]  # the students (the teacher is done)
        work_through(study, base, finished, evaluated, "students")
        if study.more_seeds.seeds:
            more = more_seed_systems(study)
            log.info("more seeds (%s) for: %s", ", ".join(map(str, study.more_seeds.seeds)), ", ".join(more))
            work_through(study, plan_runs(study, tuned, more)[1 + len(base):], finished, evaluated, "more seeds")
        log.info("study finished in %.0f s: %s", time.perf_counter() - start, out)
    for i, proc in enumerate(jobs, start=1):
        if proc.wait():
            log.warning("job %d ended with exit code %d (its runs were finished by the others): %s", i,
                        proc.returncode, out / "logs" / f"job{i}.log")
    return out


def study(config: str | Path, overrides: list[str] = (), stage: str = "all", job: bool = False) -> Path:
    """``sekd study CONFIG [overrides] [--stage teacher|tune]``: load the study config and run it
    (``job``: one of the processes a study started, which starts none itself)."""
    return run_study(load_study(config, overrides), stage, spawn=not job)
