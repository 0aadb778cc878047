"""Scoring the unprocessed input and trained models against the clean references.

Enhancement runs in this process with torch; the metrics (PESQ, STOI, DNSMOS: CPU-bound
C, numpy and onnxruntime code) run in a pool of single-threaded worker processes. The
workers are spawned, not forked, so they neither inherit torch's thread pool nor load
torch at all (:mod:`sekd.metrics` does not import it). Before each file it enhances, the
main process gives torch the cores that scoring tasks do not occupy at that moment, so
the two never oversubscribe the machine by more than one thread, and torch gets every
core when the pool is idle. At most two tasks per worker wait in the queue, which bounds
the memory held by enhanced signals.

Outputs: per-file scores (CSV, one row per file and system), a summary of means per
system (NaN scores, where a metric is undefined for a file, are counted and left out of
the means), JSON of that summary, and a markdown table of it.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from .audio import atomic_write_text
from .checkpoint import load_enhancer
from .data.checks import check_pairs
from .data.datasets import Pair, list_pairs, read_noisy
from .data.layouts import scan
from .device import resolve_device
from .enhance import enhance_array
from .errors import SekdError
from .metrics import ALL_METRICS, score_file, score_file_l3das23
from .models import SpeechEnhancer
from .peers import PEER_PREFIX, build_peer
from .pretrained import PREFIX as PRETRAINED_PREFIX
from .progress import progress_bar
from .workers import die_with_parent

log = logging.getLogger("sekd")

NOISY = "noisy"  # the system name of the unprocessed input
LABELS = {
    "pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI", "estoi": "ESTOI", "si_sdr": "SI-SDR (dB)",
    "dnsmos_ovrl": "DNSMOS OVRL", "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK",
    "l3das23": "L3DAS23", "wer": "WER",
}
METRIC_SETS = ("standard", "l3das23")  # --metric: PESQ, STOI, ESTOI, SI-SDR, DNSMOS; or (STOI + 1 − WER)/2


def checkpoint_name(path: str | os.PathLike) -> str:
    """A system name for a checkpoint: its run folder for ``<run>/checkpoints/<file>``, else the file's stem.

    A peer spec ``peer:NAME`` and a shipped model ``pretrained:NAME`` are named ``NAME``.
    """
    for prefix in (PEER_PREFIX, PRETRAINED_PREFIX):
        if str(path).startswith(prefix):
            return str(path)[len(prefix):]
    path = Path(path)
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem


def load_system(spec: str | os.PathLike, device: str | torch.device = "cpu"):
    """A system to score: a checkpoint path (its model on ``device``), or ``peer:NAME`` for a peer of
    :mod:`sekd.peers` (they run on the CPU)."""
    if str(spec).startswith(PEER_PREFIX):
        return build_peer(str(spec)[len(PEER_PREFIX):])
    return load_enhancer(spec, device=str(device))


def enhance_system(system, noisy: np.ndarray) -> np.ndarray:
    """``[M, N]`` → ``[N]`` with a SpeechEnhancer (chunked, :func:`enhance_array`) or a peer (``enhance``)."""
    if isinstance(system, SpeechEnhancer):
        return enhance_array(system, noisy)
    return system.enhance(noisy)


def metric_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned (not forked: no torch thread pool inherited) single-task workers that die with this process."""
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))


def score_pairs(pairs: list[Pair], models: dict, workers: int | None = None,
                dnsmos: bool = True, progress: bool = True, include_noisy: bool = True, metric: str = "standard",
                asr: str = "pocketsphinx") -> list[dict]:
    """Per-file scores of the noisy input and of every model on every pair.

    ``models`` maps names to SpeechEnhancers or peers (:func:`load_system`). Returns one
    row ``{id, system, <metric>: value}`` per pair and system, the noisy input's rows
    first (unless ``include_noisy`` is false), then each model's in the order of
    ``models``; pairs in the order given. The noisy input scored is the first channel of
    the noisy file; models get the channels they take (:func:`read_noisy`).

    ``metric`` ``standard`` gives the :data:`sekd.metrics.METRICS`; ``l3das23`` gives
    ``l3das23, stoi, wer`` (:func:`sekd.metrics.score_file_l3das23`, recogniser ``asr``).
    """
    if metric not in METRIC_SETS:
        raise SekdError(f"unknown metric {metric!r}; choose one of: {', '.join(METRIC_SETS)}")
    score = (functools.partial(score_file, dnsmos=dnsmos) if metric == "standard"
             else functools.partial(score_file_l3das23, asr=asr))
    if NOISY in models:
        raise SekdError(f"the system name {NOISY!r} is reserved for the unprocessed input; name the model otherwise")
    cpus = os.cpu_count() or 1
    workers = workers or cpus
    systems = [NOISY, *models] if include_noisy else list(models)
    first = 0 if include_noisy else 1  # index of the first model in ``systems`` (noisy is 0)
    scores: dict[tuple[int, int], dict[str, float]] = {}
    pending: dict[Future, tuple[int, int]] = {}
    torch_threads = torch.get_num_threads()
    pool = metric_pool(workers)
    bar = progress_bar(total=len(pairs) * len(systems), desc="evaluate", unit="score", disable=not progress)

    def collect(block: bool) -> None:
        done, _ = wait(pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            scores[pending.pop(future)] = future.result()
            bar.update(1)

    try:
        for p, pair in enumerate(pairs):
            if include_noisy:
                pending[pool.submit(score, str(pair.clean), str(pair.noisy))] = (0, p)
            if not models:
                continue
            inputs: dict[int, np.ndarray] = {}  # by channel count: models may take different microphones
            for s, (name, model) in enumerate(models.items(), start=1):
                if model.in_channels not in inputs:
                    try:
                        inputs[model.in_channels] = read_noisy(pair, model.in_channels)
                    except SekdError as exc:
                        raise SekdError(f"{exc} (model {name!r})") from None
                noisy = inputs[model.in_channels]
                while len(pending) >= 2 * workers:
                    collect(block=True)
                collect(block=False)
                torch.set_num_threads(max(1, cpus - min(len(pending), workers)))
                estimate = enhance_system(model, noisy)
                pending[pool.submit(score, str(pair.clean), estimate)] = (s, p)
        while pending:
            collect(block=True)
    finally:
        torch.set_num_threads(torch_threads)
        bar.close()
        pool.shutdown(cancel_futures=True)
    return [{"id": pair.id, "system": system, **scores[s, p]}
            for s, system in enumerate(systems, start=first) for p, pair in enumerate(pairs)]


def summarise(rows: list[dict]) -> dict[str, dict]:
    """``{system: {files, <metric>: mean, nan_<metric>: count}}`` from :func:`score_pairs` rows.

    Means leave out NaN scores (NaN when every file's score is NaN); ``nan_<metric>``
    says how many were left out.
    """
    summary: dict[str, dict] = {}
    for system in dict.fromkeys(row["system"] for row in rows):
        own = [row for row in rows if row["system"] == system]
        values = {m: np.array([row[m] for row in own], dtype=np.float64) for m in ALL_METRICS if m in own[0]}
        summary[system] = {
            "files": len(own),
            **{m: _mean_of_defined(v) for m, v in values.items()},
            **{f"nan_{m}": int(np.isnan(v).sum()) for m, v in values.items()},
        }
    return summary


def _mean_of_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def format_table(summary: dict[str, dict], note: str = "") -> str:
    """Markdown table of a summary: one row per system (noisy first), one column per metric.

    A note under the table says how many files each undefined (NaN) mean left out; ``note``
    (e.g. which recogniser gave the WER) follows it.
    """
    metrics = [m for m in ALL_METRICS if any(m in entry for entry in summary.values())]
    systems = sorted(summary, key=lambda name: name != NOISY)  # stable: models keep their order
    lines = ["| system | files | " + " | ".join(LABELS[m] for m in metrics) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    for system in systems:
        entry = summary[system]
        cells = [_format_value(m, entry.get(m, math.nan)) for m in metrics]
        lines.append(f"| {system} | {entry['files']} | " + " | ".join(cells) + " |")
    left_out = [f"{system} {LABELS[m]} {summary[system][f'nan_{m}']}" for system in systems for m in metrics
                if summary[system].get(f"nan_{m}", 0)]
    if left_out:
        lines += ["", "Files left out of a mean because the metric is undefined for them (no speech found, "
                      "too short): " + ", ".join(left_out) + "."]
    if note:
        lines += ["", note]
    return "\n".join(lines)


def asr_note(asr: str) -> str:
    """The line under an L3DAS23 table saying which recogniser gave the WER, and whether it is the challenge's."""
    from .asr import describe_asr

    info = describe_asr(asr).to_dict()
    return f"WER by {info['name']}: {info['note']}."


def _format_value(metric: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if metric == "si_sdr" else f"{value:.3f}"


LOWER_IS_BETTER = {"wer"}


def read_scores(path: str | Path, name: str | None = None) -> list[dict]:
    """Per-file scores from a file: the CSV of ``sekd evaluate --csv`` or a study run's ``result.json``.

    Returns :func:`score_pairs`-style rows (``id``, ``system`` and a float per metric; an empty
    cell or ``nan`` is NaN). A result.json's system is ``<system>-seed<seed>`` (``<system>``
    when unseeded); ``name`` renames it, or prefixes a CSV's systems (``name/system``).
    Anything unreadable is refused with the file and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SekdError(f"{path}: cannot read scores ({e})") from None
    if path.suffix == ".json":
        try:
            run = json.loads(text)
            system = name or (run["system"] if run.get("seed") is None else f"{run['system']}-seed{run['seed']}")
            raw = [{"system": system, **row} for row in run["rows"]]
        except (ValueError, KeyError, TypeError) as e:
            raise SekdError(f"{path}: not a study run's result.json ({type(e).__name__}: {e})") from None
    else:
        raw = list(csv.DictReader(io.StringIO(text)))
        if not raw or not {"id", "system"} <= set(raw[0]):
            raise SekdError(f"{path}: not a per-file scores CSV (wanted a header with id, system and metrics)")
        if name:
            raw = [{**row, "system": f"{name}/{row['system']}"} for row in raw]
    rows = []
    for line, row in enumerate(raw, start=2):
        try:
            rows.append({"id": str(row["id"]), "system": str(row["system"]),
                         **{m: math.nan if row[m] in (None, "") else float(row[m]) for m in ALL_METRICS if m in row}})
        except (ValueError, TypeError, KeyError) as e:
            where = f"line {line}" if path.suffix != ".json" else f"row {line - 1}"
            raise SekdError(f"{path}, {where}: not a score row ({type(e).__name__}: {e})") from None
    return rows


def compare_with(rows: list[dict], reference: str) -> list[dict]:
    """File-by-file comparison of every model in ``rows`` with the system ``reference``.

    Per metric and model: the mean of the per-file differences (model − reference, files
    where either score is NaN left out), on how many files the model is better, and the
    two-sided Wilcoxon signed-rank p, Holm-adjusted over the models compared on that metric.
    The unprocessed input is left out unless it is the reference (every model is then
    compared with the input) or the only other system.
    """
    from .report import holm, signed_rank_p

    systems = list(dict.fromkeys(row["system"] for row in rows))
    if reference not in systems:
        raise SekdError(f"--against {reference}: no such system; scored: {', '.join(systems)}")
    scores = {system: {row["id"]: row for row in rows if row["system"] == system} for system in systems}
    others = [s for s in systems if s not in (reference, NOISY)] or [s for s in systems if s != reference]
    for system in others:
        if not scores[system].keys() & scores[reference].keys():
            raise SekdError(f"{system} and {reference} share no file ids; they were scored on different data")
    metrics = [m for m in ALL_METRICS if all(m in row for row in rows)]
    comparisons = []
    for metric in metrics:
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        found = []
        for system in others:
            pairs = [(scores[system][i][metric], ref[metric]) for i, ref in scores[reference].items()
                     if i in scores[system]]
            diff = np.array([a - b for a, b in pairs if not (math.isnan(a) or math.isnan(b))])
            found.append({"system": system, "metric": metric, "files": int(diff.size),
                          "mean_diff": float(diff.mean()) if diff.size else math.nan,
                          "better": int((sign * diff > 0).sum()), "p": signed_rank_p(diff)})
        for entry, adjusted in zip(found, holm([entry["p"] for entry in found])):
            entry["p_holm"] = adjusted
        comparisons += found
    return comparisons


def format_comparison(comparisons: list[dict], reference: str) -> str:
    """Markdown table of :func:`compare_with`: one row per model and metric."""
    lines = [f"Paired with {reference}, file by file (difference = system − {reference}; Wilcoxon signed-rank, "
             "Holm-adjusted over the systems of each metric):", "",
             "| system | metric | mean difference | better on | p | p (Holm) |", "|---|---|---:|---:|---:|---:|"]
    for c in comparisons:
        p, p_holm = (("n/a" if math.isnan(v) else f"{v:.2g}") for v in (c["p"], c["p_holm"]))
        lines.append(f"| {c['system']} | {LABELS[c['metric']]} | {c['mean_diff']:+.4f} | {c['better']}/{c['files']} "
                     f"| {p} | {p_holm} |")
    return "\n".join(lines)


def format_csv(rows: list[dict]) -> str:
    """Per-file scores as CSV: ``id,system,<metric>,...`` (NaN written as ``nan``)."""
    metrics = [m for m in ALL_METRICS if rows and m in rows[0]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "system", *metrics])
    for row in rows:
        writer.writerow([row["id"], row["system"], *(f"{row[m]:.6g}" for m in metrics)])
    return out.getvalue()


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def evaluate_many(ckpts: dict[str, str], data: str, split: str = "test", json_out: str | None = None,
                  csv_out: str | None = None, workers: int | None = None, limit: int | None = None,
                  dnsmos: bool = True, progress: bool = True, metric: str = "standard",
                  asr: str = "pocketsphinx", skip_bad: bool = False, device: str | None = None) -> dict[str, dict]:
    """Score the noisy input once and every checkpoint of ``ckpts`` (``{name: path}``) on ``data``.

    A path may also be a peer spec ``peer:NAME`` (:mod:`sekd.peers`).

    ``data`` is anything :func:`sekd.data.datasets.list_pairs` takes; ``split`` picks the
    manifest split; ``limit`` scores only the first files. Writes per-file scores to
    ``csv_out`` and ``{data, split, checkpoints, dnsmos, summary}`` to ``json_out`` (NaN
    as null), both atomically, when given. ``workers`` metric processes (default: all
    cores). ``metric`` and ``asr`` are those of :func:`score_pairs`; with ``l3das23`` the
    JSON also says which recogniser gave the WER and whether it is the challenge's.
    Returns the :func:`summarise` summary, ``noisy`` first.

    Every pair is checked first (:mod:`sekd.data.checks`: a silent or stereo reference,
    lengths that differ, NaN, a clip too short to score would bias or break the means): any
    problem is refused with every line, or with ``skip_bad`` those pairs are left out and
    counted (``skipped`` in the JSON, a warning). Models run on ``device`` (default: CUDA
    when available).
    """
    if workers is not None and workers < 1:
        raise SekdError(f"workers must be at least 1, got {workers}")
    if limit is not None and limit < 1:
        raise SekdError(f"limit must be at least 1, got {limit}")
    asr_info = None
    if metric == "l3das23":
        from .asr import describe_asr
        asr_info = describe_asr(asr).to_dict()  # a missing recogniser fails here, before any work
    pairs = list_pairs(data, split)[:limit]
    device = resolve_device(device)
    models = {name: load_system(path, device) for name, path in ckpts.items()}  # all checked before scoring
    # The channel counts the models take (the noisy input alone: no such check).
    channel_counts = sorted({model.in_channels for model in models.values()}) or [None]
    bad: dict[str, list[str]] = {}
    for channels in channel_counts:
        for pair_id, problems in check_pairs(pairs, channels).items():
            bad[pair_id] = list(dict.fromkeys([*bad.get(pair_id, []), *problems]))
    if bad and not skip_bad:
        lines = [line for problems in bad.values() for line in problems]
        raise SekdError(f"{data}: {len(bad)} of {len(pairs)} pair(s) have problems; fix or remove them, or "
                        "leave them out with --skip-bad:\n" + "\n".join(f"  {line}" for line in lines))
    skipped = [pair.id for pair in pairs if pair.id in bad]
    if skipped:
        log.warning("warning: left out %d of %d pair(s) with problems (--skip-bad):\n%s", len(skipped), len(pairs),
                    "\n".join(f"  {line}" for problems in bad.values() for line in problems))
        pairs = [pair for pair in pairs if pair.id not in bad]
        if not pairs:
            raise SekdError(f"{data}: every pair has a problem; nothing left to score")
    rows = score_pairs(pairs, models, workers=workers, dnsmos=dnsmos, progress=progress, metric=metric, asr=asr)
    summary = summarise(rows)
    if csv_out:
        atomic_write_text(csv_out, format_csv(rows))
    if json_out:
        report = {"data": str(data), "split": split, "checkpoints": dict(ckpts), "dnsmos": dnsmos,
                  "skipped": skipped, "device": str(device), "metric": metric,
                  **({"asr": asr_info} if asr_info else {}), "summary": _json_safe(summary)}
        atomic_write_text(json_out, json.dumps(report, indent=2) + "\n")
    return summary


def default_splits(data: str | Path) -> list[str]:
    """The splits ``sekd evaluate`` scores when none is named: ``test``, and ``ood`` beside it when ``data``
    has an out-of-domain split (the built-in corpus does)."""
    corpus = scan(data)
    return ["test", *(["ood"] if "ood" in corpus.splits and not corpus.flat else [])]


def split_path(path: str | None, split: str, several: bool) -> str | None:
    """``path`` for one of several scored splits: ``scores.json`` -> ``scores.ood.json``; as given for one split."""
    if path is None or not several:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}.{split}{p.suffix}"))


def evaluate(ckpt: str | None, data: str, split: str = "test", json_out: str | None = None,
             csv_out: str | None = None, workers: int | None = None, limit: int | None = None,
             dnsmos: bool = True, progress: bool = True) -> dict[str, dict]:
    """Score the noisy input and, when ``ckpt`` is given, that model (named by :func:`checkpoint_name`).

    The arguments and the result are those of :func:`evaluate_many`.
    """
    ckpts = {checkpoint_name(ckpt): ckpt} if ckpt else {}
    return evaluate_many(ckpts, data, split=split, json_out=json_out, csv_out=csv_out, workers=workers,
                         limit=limit, dnsmos=dnsmos, progress=progress)
