"""``sekd report``: tables and pictures from a study's result files.

Reads every ``result.json`` under a results folder (:mod:`sekd.study`) and writes into the
output folder:

- ``report.md``: one row per system (input, teacher, peers, every student), the mean over
  seeds of each metric with its 95 % confidence interval (Student's t, n − 1 degrees of
  freedom; "±" is the half-width; systems run once get no interval), parameters and MACs
  per second, and for each distilled student the share of the teacher–student gap it
  closes on PESQ-WB, (KD − noKD) / (teacher − noKD), with the no-KD student of the same
  study, over the seeds both have, and its interval (:func:`gap_closed_ci`); a second table
  gives that share for every metric; then the paired per-file test of I²S-TFCKD against
  every other student (Wilcoxon signed-rank, two-sided, on per-file PESQ-WB averaged over
  the seeds both systems have; p-values also Holm-adjusted over all those comparisons),
  which student comes first (over the seeds every student has), and the λ each method got
  in the study's tuning stage with the validation score of every λ of the grid
  (``tune/choice.json``); and, for
  the built-in corpus, mean PESQ-WB per condition (SNR band, room, speech source, noise type) of
  the input, the teacher and the no-KD and I²S-TFCKD students on each split (:func:`condition_table`);
  and how I²S-TFCKD's inter-set term and its teacher-side targets move during training, from
  the runs' training logs (:func:`inter_set_table`).
- ``bars.png`` (means with their intervals), ``curves.png`` (validation PESQ-WB against
  training step, mean over seeds, per student system; the teacher beside),
  ``calibration.png`` (I²S-TFCKD's calibration weights α per set and stream, student tap × teacher tap, averaged over the evaluation
  files and the seeds), ``spectrograms.png`` (one evaluation file: noisy, clean, teacher,
  I²S-TFCKD student, no-KD student; needs the corpus and the checkpoints, skipped with a
  note when they are gone).
- ``report.html``: the same text and pictures as a page, with audio players for the first
  four evaluation files (noisy, clean, teacher, I²S-TFCKD and no-KD students: 4 s excerpts,
  16 kHz, written to ``audio/`` at report time, like the spectrograms).
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from .audio import SAMPLE_RATE, atomic_write_bytes, atomic_write_text, write_audio
from .errors import SekdError

log = logging.getLogger("sekd")

METRICS = ("pesq_wb", "stoi", "estoi", "si_sdr", "dnsmos_ovrl")
LABELS = {"pesq_wb": "PESQ-WB", "stoi": "STOI", "estoi": "ESTOI", "si_sdr": "SI-SDR (dB)", "dnsmos_ovrl": "DNSMOS OVRL"}
KIND_ORDER = {"input": 0, "teacher": 1, "peer": 2, "student": 3}
NO_KD, I2S = "none", "i2s_tfckd"


def load_results(results_dir: str | Path) -> dict[str, list[dict]]:
    """``{system: [result per seed]}`` from every ``result.json`` under ``results_dir``, in report order."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise SekdError(f"{results_dir}: no such folder")
    systems: dict[str, list[dict]] = {}
    for path in sorted(results_dir.rglob("result.json")):
        result = read_study_json(path)
        if "system" not in result:
            raise SekdError(f"{path}: not a sekd study result ('system' missing)")
        result["folder"] = str(path.parent)  # in memory only: where the run's training log lies
        systems.setdefault(result["system"], []).append(result)
    if not systems:
        raise SekdError(f"{results_dir}: no result.json files (run 'sekd study' first)")
    order = _study_order(results_dir)
    return dict(sorted(systems.items(), key=lambda item: (KIND_ORDER.get(item[1][0].get("kind"), 9),
                                                           item[0] != NO_KD, order.get(item[0], 999), item[0])))


def read_study_json(path: Path) -> dict:
    """One of a study's JSON files (``result.json``, ``tune.json``, ``choice.json``); a damaged one is
    refused naming the file."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SekdError(f"{path}: not a sekd study result ({exc})") from None
    if not isinstance(data, dict):
        raise SekdError(f"{path}: not a sekd study result (not a JSON object)")
    return data


def _study_config(results_dir: Path | None) -> dict:
    """The study's own config (``study.yaml``, written by :mod:`sekd.study`); ``{}`` without it."""
    path = None if results_dir is None else Path(results_dir) / "study.yaml"
    if path is None or not path.is_file():
        return {}
    try:
        study = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SekdError(f"{path}: not a sekd study config ({exc})") from None
    if not isinstance(study, dict):
        raise SekdError(f"{path}: not a sekd study config (not a mapping)")
    return study


def _study_order(results_dir: Path) -> dict[str, int]:
    """Methods, then ablations, in the order the study config lists them (when its study.yaml is there)."""
    study = _study_config(results_dir)
    names = [*(study.get("methods") or []), *(study.get("ablations") or {})]
    return {name: i for i, name in enumerate(names)}


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its ``level`` confidence interval (t-distribution); NaN width for one value."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half)


def _metric_values(results: list[dict], metric: str) -> list[float]:
    return [r["summary"].get(metric) if r["summary"].get(metric) is not None else math.nan for r in results]


def summarise_systems(systems: dict[str, list[dict]]) -> dict[str, dict]:
    """Per system: kind, seeds, params, MACs/s, and (mean, half-width) per metric."""
    out = {}
    for name, results in systems.items():
        entry = {"kind": results[0].get("kind"), "seeds": len(results), "params": results[0].get("params"),
                 "macs_per_second": results[0].get("macs_per_second"), "method": results[0].get("method")}
        for m in METRICS:
            entry[m] = mean_ci(_metric_values(results, m))
        out[name] = entry
    return out


def gap_closed_ci(student: dict[int, float], no_kd: dict[int, float], teacher: float, level: float = 0.95
                  ) -> tuple[float, float]:
    """Gap closed over the seeds both students have, and the half-width of its ``level`` interval.

    A seed fixes the initial weights, the data order and the crops for every method, and the
    seed alone moves every student by as much as the methods differ, so KD − noKD is paired
    by seed: Student's t over the per-seed differences, divided by teacher − mean noKD over
    those seeds (the teacher is one run, a constant here). Seeds only one side has are left
    out: a mean over other seeds would mix the seeds' effect into the methods'. NaN width with
    fewer than two shared seeds; NaN when the teacher is not better than no-KD."""
    seeds = [s for s in student if s in no_kd and not (math.isnan(student[s]) or math.isnan(no_kd[s]))]
    if not seeds:
        return math.nan, math.nan
    gap = teacher - float(np.mean([no_kd[s] for s in seeds]))
    if gap <= 0:
        return math.nan, math.nan
    mean, half = mean_ci([student[s] - no_kd[s] for s in seeds], level)
    return mean / gap, half / gap


def _by_seed(results: list[dict], metric: str) -> dict[int, float]:
    return dict(zip((r["seed"] for r in results), _metric_values(results, metric)))


def _fmt(metric: str, value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if metric == "si_sdr" else f"{value:.3f}"


def _fmt_ci(metric: str, mean_half: tuple[float, float]) -> str:
    mean, half = mean_half
    return _fmt(metric, mean) if math.isnan(half) else f"{_fmt(metric, mean)} ± {_fmt(metric, half)}"


def _fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def _count(value, scale: float = 1.0, unit: str = "") -> str:
    return "n/a" if value is None else (f"{value:,}" if scale == 1.0 else f"{value / scale:.3f}{unit}")


def paired_tests(systems: dict[str, list[dict]], reference: str = I2S, metric: str = "pesq_wb") -> list[dict]:
    """Wilcoxon signed-rank test of ``reference`` against every other student on per-file ``metric``.

    Per file, each system's scores are averaged over the seeds both systems have; files
    are matched by id. Returns ``{system, files, mean_diff, wins, p}`` (difference =
    reference − other).
    """
    if reference not in systems:
        return []
    tests = []
    ref_runs = {r["seed"]: r for r in systems[reference]}
    for name, results in systems.items():
        if name == reference or results[0].get("kind") != "student":
            continue
        seeds = sorted(set(ref_runs) & {r["seed"] for r in results})
        if not seeds:
            continue
        other = {r["seed"]: r for r in results}
        a, b = _per_file(ref_runs, seeds, metric), _per_file(other, seeds, metric)
        ids = [i for i in a if i in b and not (math.isnan(a[i]) or math.isnan(b[i]))]
        diff = np.array([a[i] - b[i] for i in ids])
        p = signed_rank_p(diff)
        tests.append({"system": name, "files": len(ids), "mean_diff": float(diff.mean()) if diff.size else math.nan,
                      "wins": int((diff > 0).sum()), "p": p})
    for test, adjusted in zip(tests, holm([t["p"] for t in tests])):
        test["p_holm"] = adjusted
    return tests


def signed_rank_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences; NaN when there are none or all are zero."""
    if not diff.size or not np.any(diff != 0):
        return math.nan
    return float(stats.wilcoxon(diff, alternative="two-sided").pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error over all the comparisons); NaN stays NaN."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))  # monotone in the sorted order
        adjusted[i] = running
    return adjusted


def _per_file(runs: dict[int, dict], seeds: list[int], metric: str) -> dict[str, float]:
    per_id: dict[str, list[float]] = {}
    for seed in seeds:
        for row in runs[seed]["rows"]:
            value = row.get(metric)
            per_id.setdefault(row["id"], []).append(math.nan if value is None else value)
    return {i: float(np.mean(v)) for i, v in per_id.items() if len(v) == len(seeds)}


def tuning_table(results_dir: Path | None) -> list[str]:
    """Markdown lines: the λ grid's validation PESQ-WB per method and the choice (``tune/choice.json``)."""
    path = None if results_dir is None else Path(results_dir) / "tune" / "choice.json"
    if path is None or not path.is_file():
        return []
    choice = read_study_json(path)
    methods = choice.get("methods")
    if not isinstance(methods, dict):
        raise SekdError(f"{path}: not a sekd study result ('methods' missing)")
    grid = sorted({float(w) for entry in methods.values() for w in entry["grid"]})
    lines = ["### λ per method, chosen on the valid split", "",
             "| method | chosen λ | " + " | ".join(f"λ = {w:g}" for w in grid) + " |",
             "|---|---:|" + "---:|" * len(grid)]
    for method, entry in methods.items():
        cells = []
        for w in grid:
            score = entry["grid"].get(f"{w:g}")
            text = "" if score is None else f"{score:.3f}"
            cells.append(f"**{text}**" if score is not None and w == entry["chosen"] else text)
        edge = " (end of the λ tried)" if entry.get("at_edge") else ""
        lines.append(f"| {method} | **{entry['chosen']:g}**{edge} | " + " | ".join(cells) + " |")
    seeds = sorted({entry.get("seed") for entry in methods.values()})
    lines += ["", f"Best validation PESQ-WB of one training run per λ (seed {', '.join(map(str, seeds))}, the "
                  "students' schedule); the test split takes no part. Ablations use their method's λ."]
    if choice.get("from"):  # weights_from: this study took another's choice and did not tune
        lines.append(f"These λ were chosen by another study's tuning (`{choice['from']}`), "
                     "with its student; this study took them and did not tune.")
    if any(entry.get("at_edge") for entry in methods.values()):
        lines.append("A λ chosen at the end of the λ tried may not be the best: the grid does not bracket it.")
    return lines


def training_time_table(systems: dict[str, list[dict]], results_dir: Path | None) -> list[str]:
    """Markdown lines: what training cost, per trained system (minutes per run) and in all, tuning included.

    A study run reused from its tuning run (``from_tuning``) is counted once, as the tuning run.
    """
    rows = []
    for name, results in systems.items():
        own = [r["train_seconds"] for r in results
               if r.get("kind") in ("teacher", "student") and not r.get("from_tuning") and r.get("train_seconds")]
        if own:
            rows.append((name, len(own), float(np.mean(own)), float(np.sum(own))))
    tuning_runs = sorted(Path(results_dir).glob("tune/*/*/tune.json")) if results_dir is not None else []
    tuned = [read_study_json(path).get("train_seconds") or 0.0 for path in tuning_runs]
    if tuned:
        rows.append(("λ tuning (all methods)", len(tuned), float(np.mean(tuned)), float(np.sum(tuned))))
    if not rows:
        return []
    evaluation = sum(r.get("eval_seconds") or 0.0 for results in systems.values() for r in results)
    total = sum(row[3] for row in rows)
    teacher = sum(row[3] for row in rows if row[0] == "teacher")
    jobs = int(_study_config(results_dir).get("jobs") or 1)
    lines = ["### Training time", "", "| trained | runs | minutes per run (mean) | hours in all |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {runs} | {mean / 60:.1f} | {whole / 3600:.2f} |" for name, runs, mean, whole in rows]
    lines += ["", f"In all {total / 3600:.1f} h of training and {evaluation / 3600:.1f} h of evaluation, each run's "
                  "wall time (over all its resumed parts) added up; runs that shared the machine (the study's "
                  "`jobs`) overlap, so the study's own wall time is shorter."]
    if jobs > 1:
        # the teacher trains alone; students and tuning runs share the machine `jobs` at a time
        machine = teacher + (total - teacher + evaluation) / jobs
        lines[-1] += (f" With {jobs} runs at once and the teacher alone, the machine's time is about "
                      f"{machine / 3600:.1f} h (teacher + the rest / {jobs}).")
    return lines


SNR_BANDS = ((-math.inf, 5.0, "SNR < 5 dB"), (5.0, 12.5, "SNR 5–12.5 dB"), (12.5, math.inf, "SNR ≥ 12.5 dB"))


def _conditions(results_dir: Path | None) -> dict[str, list[str]]:
    """``{file id: [condition label]}`` from the manifest of the study's corpus (SNR band, dry or
    reverberant, speech source, noise type); ``{}`` when the study's data has no such manifest
    (a paired folder, another corpus)."""
    import csv
    study = _study_config(results_dir)
    if not study.get("data"):
        return {}
    data = Path(study["data"])
    manifest = data / "manifest.csv" if data.is_dir() else data
    if manifest.suffix != ".csv" or not manifest.is_file():
        return {}
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "snr_db", "room", "source", "noise_type"} <= set(rows[0]):
        return {}
    conditions = {}
    for row in rows:
        snr = float(row["snr_db"])
        band = next(label for low, high, label in SNR_BANDS if low <= snr < high)
        room = "dry" if row["room"] == "none" else "reverberant"
        conditions[row["id"]] = [band, room, f"speech: {row['source']}", f"noise: {row['noise_type']}"]
    return conditions


def condition_table(systems: dict[str, list[dict]], results_dir: Path | None, split: str = "test") -> list[str]:
    """Markdown lines: mean PESQ-WB per condition of the corpus (:func:`_conditions`) for the input, the
    teacher and the no-KD and I²S-TFCKD students (per file averaged over seeds), with teacher − noKD:
    where the teacher has something to transfer. ``systems``: one split's results (``split`` names it in
    the title). ``[]`` without a manifest or a teacher and a no-KD student."""
    conditions = _conditions(results_dir)
    if not conditions or "teacher" not in systems or NO_KD not in systems:
        return []
    names = [n for n, r in systems.items() if r[0].get("kind") == "input"] + [
        n for n in ("teacher", NO_KD, I2S) if n in systems]
    per_file = {}
    for name in names:
        runs = {r["seed"]: r for r in systems[name]}
        per_file[name] = _per_file(runs, sorted(runs, key=lambda s: -1 if s is None else s), "pesq_wb")
    groups: dict[str, list[str]] = {}
    for file_id in per_file["teacher"]:
        for label in conditions.get(file_id, []):
            groups.setdefault(label, []).append(file_id)
    order = [label for _, _, label in SNR_BANDS] + ["dry", "reverberant"]
    labels = [g for g in order if g in groups] + sorted(g for g in groups if g not in order)
    lines = [f"### PESQ-WB by condition of the {split} files", "",
             "| condition | files | " + " | ".join(names) + " | teacher − none |", "|---|---:|" + "---:|" * (len(names) + 1)]
    for label in labels:
        means = {n: float(np.nanmean([per_file[n].get(i, math.nan) for i in groups[label]])) for n in names}
        lines.append(f"| {label} | {len(groups[label])} | " + " | ".join(f"{means[n]:.3f}" for n in names)
                     + f" | {means['teacher'] - means[NO_KD]:+.3f} |")
    lines += ["", "Conditions from the corpus's manifest; students' per-file scores averaged over their seeds."]
    return lines


def _logged(folder: Path, columns: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """``{column: [(step, value)]}`` from a run's ``csv/metrics.csv``; ``{}`` without one."""
    import csv
    path = folder / "csv" / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for column in columns:
        values = [(int(r["step"]), float(r[column])) for r in rows if r.get(column) not in (None, "")]
        if values:
            out[column] = values
    return out


def inter_set_table(systems: dict[str, list[dict]]) -> list[str]:
    """Markdown lines: how I²S-TFCKD's inter-set term moves during training, per system that has
    one (the full method and its ablations): its mean over the first and the last tenth of the
    steps, its share of L_KD at the end, and how far the teacher-side targets have drifted from
    their initial ones (``drift/target``, logged when the teacher-side fusion learns); means
    over seeds. ``[]`` when no run logged the term."""
    terms = ("train/kd/inter", "train/kd", "train/diag/drift/target")
    rows = []
    for name, results in systems.items():
        per_seed = [_logged(Path(r["folder"]), terms) for r in results if r.get("folder")]
        per_seed = [logged for logged in per_seed if "train/kd/inter" in logged]
        if not per_seed:
            continue

        def tenth(logged: dict, column: str, last: bool) -> float:
            values = logged.get(column)
            if not values:
                return math.nan
            end = max(step for step, _ in values)
            lo, hi = (0.9 * end, math.inf) if last else (-math.inf, 0.1 * end)
            return float(np.mean([v for step, v in values if lo <= step <= hi]))

        first, last = (float(np.mean([tenth(g, "train/kd/inter", at_end) for g in per_seed])) for at_end in (False, True))
        share = float(np.mean([tenth(g, "train/kd/inter", True) / tenth(g, "train/kd", True) for g in per_seed]))
        drift = float(np.nanmean([tenth(g, "train/diag/drift/target", True) for g in per_seed]) if any(
            "train/diag/drift/target" in g for g in per_seed) else math.nan)
        rows.append(f"| {name} | {len(per_seed)} | {first:.3f} | {last:.3f} | {share:.0%} | "
                    + ("n/a" if math.isnan(drift) else f"{drift:.3f}") + " |")
    if not rows:
        return []
    return ["### I²S-TFCKD's inter-set term during training", "",
            "| system | seeds | inter-set term, first tenth of steps | last tenth | share of L_KD, last tenth | "
            "target drift, last tenth |", "|---|---:|---:|---:|---:|---:|", *rows, "",
            "Means over seeds of the training log (`csv/metrics.csv`). Target drift: Jeffreys divergence between "
            "the teacher-side representatives' time-stream distributions now and with the initial fusion units "
            "(logged only when those units learn, `teacher_fusion: learned`)."]


def scored_splits(systems: dict[str, list[dict]]) -> list[str]:
    """The splits scored beside the main one (a study's ``evaluation.more_splits``), in the results' order."""
    return list(dict.fromkeys(split for results in systems.values() for r in results for split in r.get("splits") or {}))


def split_view(systems: dict[str, list[dict]], split: str) -> dict[str, list[dict]]:
    """The results with ``split``'s summary and rows in place of the main split's; results without it left out."""
    view = {}
    for name, results in systems.items():
        kept = [{**r, **r["splits"][split]} for r in results if split in (r.get("splits") or {})]
        if kept:
            view[name] = kept
    return view


def side_by_side_table(views: dict[str, dict[str, list[dict]]]) -> list[str]:
    """Markdown lines: PESQ-WB, SI-SDR and DNSMOS OVRL of every system on each scored split (``views``: split ->
    its :func:`split_view`, the main split first), and each distilled student's difference to the no-KD student on
    PESQ-WB, paired by seed, with its 95 % interval."""
    systems = next(iter(views.values()))
    summaries = {split: summarise_systems(view) for split, view in views.items()}
    metrics = ("pesq_wb", "si_sdr", "dnsmos_ovrl")
    head = [f"{LABELS[m]} {split}" for m in metrics for split in views] + [f"KD − noKD PESQ-WB {s}" for s in views]
    lines = ["| system | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for name in systems:
        cells = [_fmt_ci(m, summaries[split][name][m]) if name in summaries[split] else "-"
                 for m in metrics for split in views]
        for split, view in views.items():
            student = view.get(name, [{}])[0].get("kind") == "student"
            if student and name != NO_KD and NO_KD in view:
                by_seed, base = _by_seed(view[name], "pesq_wb"), _by_seed(view[NO_KD], "pesq_wb")
                cells.append(_fmt_ci("pesq_wb", mean_ci([by_seed[s] - base[s] for s in by_seed if s in base])))
            else:
                cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean over seeds ± half-width of the 95 % interval. KD − noKD: the per-seed difference to the "
                  f"no-KD student `{NO_KD}` over the seeds both have, ± its 95 % interval (t-distribution). The "
                  f"sections below give every table for each split."]
    return lines


SPLIT_NOTES = {"test": "in domain: unseen speakers and held-out noise files of the training corpus's sources",
               "ood": "out of domain: speech and noise from sources that no other split uses"}


def format_report(systems: dict[str, list[dict]], results_dir: Path | None = None) -> str:
    """The markdown of ``report.md`` (see the module docstring); ``results_dir`` adds the tuning table.

    With splits scored beside the main one, a side-by-side table comes first, then every
    score table and table by condition per split; the tables of the inter-set term, of the
    tuning and of the training time follow once."""
    main = (_study_config(results_dir).get("evaluation") or {}).get("split", "test")
    others = scored_splits(systems)
    views = {main: systems, **{split: split_view(systems, split) for split in others}}
    lines = ["## Every split side by side", "", *side_by_side_table(views), ""] if others else []
    for split, view in views.items():
        if others:
            note = f" ({SPLIT_NOTES[split]})" if split in SPLIT_NOTES else ""
            lines += [f"## Split {split}{note}", ""]
        # Conditions per split: ood's speech sources are not test's.
        for section in (score_tables(view), condition_table(view, results_dir, split)):
            if section:
                lines += [*section, ""]
    for section in (inter_set_table(systems), tuning_table(results_dir), training_time_table(systems, results_dir)):
        if section:
            lines += [*section, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def score_tables(systems: dict[str, list[dict]]) -> list[str]:
    """Markdown lines for one split: the main table, the gap closed per metric, the paired per-file tests
    and the ranking."""
    summary = summarise_systems(systems)
    teacher, no_kd = summary.get("teacher"), summary.get(NO_KD)
    lines = ["| system | seeds | " + " | ".join(LABELS[m] for m in METRICS)
             + " | parameters | MACs/s | gap closed (PESQ-WB) |",
             "|---|---:|" + "---:|" * (len(METRICS) + 3)]
    for name, e in summary.items():
        gap = ""
        if e["kind"] == "student" and name != NO_KD and teacher and no_kd:
            gap = _fmt_ci("", gap_closed_ci(_by_seed(systems[name], "pesq_wb"), _by_seed(systems[NO_KD], "pesq_wb"),
                                            teacher["pesq_wb"][0]))
        lines.append(f"| {name} | {e['seeds']} | " + " | ".join(_fmt_ci(m, e[m]) for m in METRICS)
                     + f" | {_count(e['params'])} | {_count(e['macs_per_second'], 1e9, ' G')} | {gap} |")
    lines += ["", "Mean over seeds ± half-width of the 95 % confidence interval (t-distribution); the input, "
                  "the peers and the teacher are evaluated once. Gap closed: (KD − noKD) / (teacher − noKD) "
                  "with the no-KD student `none`, over the seeds both have (a seed fixes the initial weights and the "
                  "data order for every method), ± the 95 % interval of the per-seed KD − noKD differences "
                  "(t-distribution) divided by teacher − noKD; n/a where the teacher is not better than the no-KD "
                  "student."]
    if teacher and no_kd:
        students = [n for n, e in summary.items() if e["kind"] == "student" and n != NO_KD]
        lines += ["", "### Share of the teacher–student gap closed, per metric", "",
                  "| system | " + " | ".join(LABELS[m] for m in METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
        lines += [f"| {n} | " + " | ".join(_fmt("", gap_closed_ci(_by_seed(systems[n], m), _by_seed(systems[NO_KD], m),
                                                                  teacher[m][0])[0])
                                           for m in METRICS) + " |" for n in students]
        lines += ["", "teacher − noKD: " + ", ".join(f"{LABELS[m]} {_fmt(m, teacher[m][0] - no_kd[m][0])}"
                                                     for m in METRICS)]
    tests = paired_tests(systems)
    if tests:
        lines += ["", "### I²S-TFCKD against each other student (per-file PESQ-WB, averaged over seeds)", "",
                  "| other system | files | mean difference (I²S − other) | files where I²S is better | "
                  "Wilcoxon p | Holm-adjusted p |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {t['system']} | {t['files']} | {t['mean_diff']:+.3f} | {t['wins']} | "
                  f"{_fmt_p(t['p'])} | {_fmt_p(t['p_holm'])} |" for t in tests]
        lines += ["", f"Holm's correction is over the {len(tests)} comparisons of this table."]
    return [*lines, "", _ranking(systems)]


def _ranking(systems: dict[str, list[dict]]) -> str:
    """Where I²S-TFCKD comes by mean PESQ-WB over the seeds every student has (the seed moves all
    students together, so means over different seed sets would not compare the methods)."""
    students = {n: _by_seed(results, "pesq_wb") for n, results in systems.items()
                if results[0].get("kind") == "student"}
    if not students:
        return "No student results yet."
    common = sorted(set.intersection(*(set(by_seed) for by_seed in students.values())))
    if not common:
        return "The students share no seed, so they are not ranked."
    means = sorted(((float(np.mean([by_seed[s] for s in common])), n) for n, by_seed in students.items()), reverse=True)
    means = [(v, n) for v, n in means if not math.isnan(v)]
    if not means:
        return "No student results yet."
    over = "" if all(len(by_seed) == len(common) for by_seed in students.values()) else \
        f" over seed{'s' if len(common) > 1 else ''} {', '.join(map(str, common))}, which every student has"
    best_value, best = means[0]
    if I2S not in students:
        return f"First student by mean PESQ-WB{over}: {best} ({best_value:.3f})."
    i2s = dict((n, v) for v, n in means)[I2S]
    if best == I2S:
        runner = f", ahead of {means[1][1]} by {i2s - means[1][0]:.3f}" if len(means) > 1 else ""
        return f"I²S-TFCKD comes first by mean PESQ-WB{over} ({i2s:.3f}){runner}."
    rank = [n for _, n in means].index(I2S) + 1
    return (f"I²S-TFCKD does not come first: it is number {rank} of {len(means)} students by mean PESQ-WB{over} "
            f"({i2s:.3f}); {best} leads with {best_value:.3f}, {best_value - i2s:.3f} more.")


# --------------------------------------------------------------------------- pictures

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path, dpi: int) -> None:
    """A PNG written whole or not at all (``audio.atomic_write``; a full disk is one line naming it)."""
    encoded = io.BytesIO()
    fig.savefig(encoded, format="png", dpi=dpi)
    atomic_write_bytes(path, encoded.getbuffer())


def plot_bars(summary: dict[str, dict], path: Path) -> None:
    plt = _pyplot()
    names = list(summary)
    # a metric no system was scored on (DNSMOS when the study skips it) would be an empty panel
    metrics = [m for m in METRICS if any(not math.isnan(summary[n][m][0]) for n in names)] or list(METRICS)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.35 * len(names) + 1.6), sharey=True,
                             squeeze=False)
    axes = axes[0]
    colours = {"input": "0.6", "teacher": "tab:red", "peer": "tab:green", "student": "tab:blue"}
    for ax, m in zip(axes, metrics):
        means = [summary[n][m][0] for n in names]
        halves = [0.0 if math.isnan(summary[n][m][1]) else summary[n][m][1] for n in names]
        ax.barh(range(len(names)), means, xerr=halves, capsize=3,
                color=[colours.get(summary[n]["kind"], "0.4") for n in names])
        low = [v - h for v, h in zip(means, halves) if not math.isnan(v)]
        high = [v + h for v, h in zip(means, halves) if not math.isnan(v)]
        if low and m != "si_sdr":  # zoom in on the differences; SI-SDR may be negative, keep its zero
            span = max(high) - min(low) or 1.0
            ax.set_xlim(min(low) - 0.1 * span, max(high) + 0.05 * span)
        ax.set_title(LABELS[m])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.suptitle("mean over seeds with 95 % confidence interval")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def mean_curves(systems: dict[str, list[dict]]) -> dict[str, tuple[list[int], list[float]]]:
    """Per trained system: the steps every seed validated at, and the mean validation PESQ-WB there."""
    curves = {}
    for name, results in systems.items():
        runs = [dict((int(step), value) for step, value in r["curve"]) for r in results if r.get("curve")]
        steps = sorted(set.intersection(*(set(c) for c in runs))) if runs else []
        if steps:
            curves[name] = (steps, [float(np.mean([c[step] for c in runs])) for step in steps])
    return curves


def plot_curves(curves: dict[str, tuple[list[int], list[float]]], path: Path, dashed: frozenset[str] = frozenset()
                ) -> None:
    """Validation PESQ-WB against training step, mean over seeds; the teacher on its own axis (longer
    schedule); the systems in ``dashed`` (I²S-TFCKD's ablations) drawn dashed."""
    plt = _pyplot()
    teacher = curves.get("teacher")
    fig, axes = plt.subplots(1, 2 if teacher else 1, figsize=(13 if teacher else 8, 5), squeeze=False)
    ax = axes[0][0]
    # tab10 repeats after ten systems: tab20's dark shades, then its light ones, without the reds of I²S-TFCKD
    tab20 = plt.get_cmap("tab20").colors
    palette = [tab20[i] for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (6, 7)]
    for i, (name, (steps, values)) in enumerate((n, c) for n, c in curves.items() if n != "teacher"):
        ax.plot(steps, values, marker="o", markersize=3, label=name, linewidth=2.5 if name in (I2S, NO_KD) else 1.2,
                color="black" if name == NO_KD else "tab:red" if name == I2S else palette[i % len(palette)],
                linestyle="--" if name in dashed else "-")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation PESQ-WB (mean over seeds)")
    ax.set_title("students")
    ax.grid(alpha=0.3)
    if len(curves) > (1 if teacher else 0):
        ax.legend(fontsize=7, ncol=2)
    if teacher:
        axes[0][1].plot(*teacher, marker="o", color="tab:red")
        axes[0][1].set_xlabel("training step")
        axes[0][1].set_title("teacher")
        axes[0][1].grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def average_calibration(results: list[dict]) -> dict[str, dict]:
    """The ``calibration`` maps of several seeds' results averaged per ``set/stream``."""
    maps = [r["calibration"] for r in results if r.get("calibration")]
    if not maps:
        return {}
    return {key: {**maps[0][key], "weights": np.mean([np.array(m[key]["weights"]) for m in maps], axis=0)}
            for key in maps[0]}


def plot_calibration(maps: dict[str, dict], path: Path) -> None:
    plt = _pyplot()
    keys = list(maps)
    streams = sorted({k.split("/")[1] for k in keys}, key=lambda s: s != "time")
    sets = list(dict.fromkeys(k.split("/")[0] for k in keys))
    fig, axes = plt.subplots(len(streams), len(sets), figsize=(3.9 * len(sets), 3.3 * len(streams)), squeeze=False,
                             layout="constrained")
    for r, stream in enumerate(streams):
        for c, s in enumerate(sets):
            ax = axes[r][c]
            entry = maps.get(f"{s}/{stream}")
            if entry is None:
                ax.axis("off")
                continue
            w = np.asarray(entry["weights"])
            im = ax.imshow(w, vmin=0, vmax=1, cmap="viridis")
            for i in range(w.shape[0]):
                for j in range(w.shape[1]):
                    ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if w[i, j] < 0.5 else "black")
            ax.set_xticks(range(w.shape[1]), entry["teacher"], rotation=45, fontsize=7)
            ax.set_yticks(range(w.shape[0]), entry["student"], fontsize=7)
            ax.set_title(f"{s} / {stream}", fontsize=9)
            ax.set_xlabel("teacher tap", fontsize=8)
            ax.set_ylabel("student tap", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="α (rows sum to 1)")
    save_figure(fig, path, dpi=110)
    plt.close(fig)


EXAMPLE_SYSTEMS = (("teacher", "teacher"), (I2S, "I²S-TFCKD student"), (NO_KD, "no-KD student"))


def example_signals(systems: dict[str, list[dict]], results_dir: Path, count: int
                    ) -> tuple[list[tuple[str, list[tuple[str, np.ndarray]]]], str | None]:
    """For the first ``count`` evaluation files: ``(id, [(label, waveform)])`` with the noisy input,
    the clean reference and the teacher, I²S-TFCKD and no-KD students (first seed each); or
    ``([], why)`` when the study file, the corpus or a checkpoint is gone."""
    from .checkpoint import load_enhancer, resolve_checkpoint
    from .data.datasets import list_pairs, load_pair
    from .enhance import enhance_array
    study = _study_config(results_dir)
    if not study:
        return [], f"{results_dir / 'study.yaml'} not found"
    ckpts = {}
    for name, _ in EXAMPLE_SYSTEMS:
        if name in systems:
            first = min(systems[name], key=lambda r: r["seed"])
            try:
                found = resolve_checkpoint(first.get("checkpoint", "")).is_file()  # pretrained:NAME too
            except SekdError:  # a shipped model this installation no longer has
                found = False
            if not found:
                return [], f"checkpoint {first.get('checkpoint')} not found"
            ckpts[name] = first["checkpoint"]
    try:
        pairs = {p.id: p for p in list_pairs(study["data"], study["evaluation"]["split"])}
    except SekdError as exc:
        return [], str(exc)
    ids = [row["id"] for row in next(iter(systems.values()))[0]["rows"][:count]]
    missing = [i for i in ids if i not in pairs]
    if missing:
        return [], f"evaluation file {missing[0]} not found in {study['data']}"
    models = {name: load_enhancer(c) for name, c in ckpts.items()}
    examples = []
    for file_id in ids:
        noisy, clean = load_pair(pairs[file_id], 1)
        signals = [("noisy", noisy[0]), ("clean", clean)]
        signals += [(label, enhance_array(models[name], noisy)) for name, label in EXAMPLE_SYSTEMS if name in models]
        examples.append((file_id, signals))
    return examples, None


def plot_spectrograms(example: tuple[str, list[tuple[str, np.ndarray]]], path: Path) -> None:
    """Spectrograms of one evaluation file, one row per signal."""
    import torch

    from .signal import SignalConfig, stft
    file_id, signals = example
    cfg = SignalConfig()
    plt = _pyplot()
    fig, axes = plt.subplots(len(signals), 1, figsize=(8, 1.8 * len(signals)), sharex=True)
    for ax, (label, wave) in zip(axes, signals):
        spec = stft(torch.from_numpy(np.asarray(wave, dtype=np.float32)), cfg).abs().numpy().T  # (F, T)
        db = 20 * np.log10(spec + 1e-6)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max(),
                  extent=(0, wave.size / 16000, 0, 8))
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1].set_xlabel(f"seconds ({file_id})")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def write_excerpts(examples: list, folder: Path, seconds: float) -> list[tuple[str, list[tuple[str, str]]]]:
    """The first ``seconds`` of every example signal as 16 kHz 16-bit WAV in ``folder``;
    returns ``(id, [(label, file name)])``. The audio derives from the corpus: it is written at
    report time, not shipped (the corpus's licences travel with the corpus)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for file_id, signals in examples:
        names = []
        for label, wave in signals:
            name = f"{file_id}-{label.split()[0].lower().replace('²', '2')}.wav"
            write_audio(folder / name, np.asarray(wave)[:int(seconds * SAMPLE_RATE)])  # 16-bit, scaled if loud
            names.append((label, name))
        out.append((file_id, names))
    return out


HTML_STYLE = """body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}td{text-align:right}td:first-child{text-align:left}img{max-width:100%;margin:1em 0}
audio{width:170px;height:32px}.listen td{text-align:center}"""


def format_html(markdown_text: str, excerpts: list, excerpt_note: str) -> str:
    """``report.md``'s content as a page, then the listening table (one row per file)."""
    import html

    import markdown
    body = markdown.markdown(markdown_text, extensions=["tables"])
    listen = ["<h2>Listen</h2>", f"<p>{html.escape(excerpt_note)}</p>"]
    if excerpts:
        labels = [label for label, _ in excerpts[0][1]]
        listen += ['<table class="listen"><tr><th>file</th>' + "".join(f"<th>{html.escape(l)}</th>" for l in labels)
                   + "</tr>"]
        for file_id, names in excerpts:
            cells = "".join(f'<td><audio controls preload="none" src="audio/{html.escape(n)}"></audio></td>'
                            for _, n in names)
            listen.append(f"<tr><td>{html.escape(file_id)}</td>{cells}</tr>")
        listen.append("</table>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>sekd study report</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n{body}\n{chr(10).join(listen)}\n</body></html>\n")


EXCERPT_FILES, EXCERPT_SECONDS = 4, 4.0


def write_report(results_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``report.md``, ``report.html`` (with ``audio/``) and the PNGs for the study in
    ``results_dir``; returns the markdown's path."""
    results_dir = Path(results_dir)
    systems = load_results(results_dir)
    out = Path(out_dir) if out_dir else results_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    text = format_report(systems, results_dir)
    plot_bars(summarise_systems(systems), out / "bars.png")
    pictures = ["![metrics](bars.png)"]
    curves = mean_curves(systems)
    if curves:
        ablations = frozenset(n for n, results in systems.items() if n != I2S and results[0].get("method") == I2S)
        plot_curves(curves, out / "curves.png", dashed=ablations)
        pictures.append("![validation PESQ-WB during training](curves.png)")
    maps = average_calibration(systems.get(I2S, []))
    if maps:
        plot_calibration(maps, out / "calibration.png")
        pictures.append("![I²S-TFCKD calibration weights](calibration.png)")
    examples, skipped = example_signals(systems, results_dir, EXCERPT_FILES)
    if skipped:
        log.warning("spectrograms and audio skipped: %s", skipped)
        pictures.append(f"(spectrograms skipped: {skipped})")
        excerpts, note = [], f"Audio skipped: {skipped}."
    else:
        plot_spectrograms(examples[0], out / "spectrograms.png")
        pictures.append("![spectrograms](spectrograms.png)")
        excerpts = write_excerpts(examples, out / "audio", EXCERPT_SECONDS)
        note = (f"The first {EXCERPT_SECONDS:g} s of the first {len(excerpts)} evaluation files; students of the "
                "first seed.")
    path = out / "report.md"
    markdown_text = "# Study report\n\n" + text + "\n" + "\n\n".join(pictures) + "\n"
    atomic_write_text(path, markdown_text)
    atomic_write_text(out / "report.html", format_html(markdown_text, excerpts, note))
    return path
