"""A tiny study end to end: results per run, resumable without retraining, then its report."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from sekd.cli import main
from sekd.errors import SekdError
from sekd.study import load_study, plan_runs, plan_tuning, run_config

TINY = {"model.preset": "tiny", "data.batch_size": 4, "data.crop_seconds": 1.0, "data.valid_files": 2,
        "train.max_steps": 2, "train.val_every": 2, "train.warmup_steps": 1, "train.log_every": 1}


def write_study(path, small_corpus, out):
    path.write_text(yaml.safe_dump({
        "out_dir": str(out), "data": str(small_corpus), "seeds": [0, 1], "threads": 1,
        "teacher": {"config": "configs/cpu-teacher.yaml"}, "student": {"config": "configs/cpu-student.yaml"},
        "common": TINY, "methods": ["i2s_tfckd", "pkt"],
        "options": {"i2s_tfckd": {"fusion_channels": 8, "checkpoint": False}},
        "weights": {"pkt": 0.5},
        "tune": {"grid": [0.5, 2.0]},
        "ablations": {"i2s-intra-only": {"method": "i2s_tfckd", "options": {"inter": False}}},
        "peers": ["nsnet2"],
        "evaluation": {"limit": 3, "dnsmos": False, "workers": 1, "calibration_files": 4},
    }))
    return path


@pytest.fixture(scope="module")
def finished_study(small_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = write_study(root / "study.yaml", small_corpus, root / "out")
    assert main(["study", str(config)]) == 0
    return config, root / "out"


def test_plan_covers_teacher_baseline_methods_and_ablations(tmp_path):
    study = load_study(write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out"), ["seeds=[3]"])
    runs = plan_runs(study)
    assert [(r.system, r.seed) for r in runs] == [("teacher", 3), ("none", 3), ("i2s_tfckd", 3), ("pkt", 3),
                                                   ("i2s-intra-only", 3)]
    ablation = runs[-1]
    assert ablation.method == "i2s_tfckd" and ablation.options == {"fusion_channels": 8, "checkpoint": False,
                                                                    "inter": False}
    assert runs[3].weight == 0.5 and runs[1].method is None
    everything = load_study(write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out"), ["methods=all", "weights={}"])
    tuning = [(r.method, r.weight) for r in plan_tuning(everything)]
    assert tuning[:2] == [("i2s_tfckd", 0.5), ("i2s_tfckd", 2.0)]  # the main comparison first, then the others
    assert len(tuning) == 2 * (len(everything.methods) - 1) and ("none", 0.5) not in tuning


def test_bad_study_configs(tmp_path):
    path = write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out")
    with pytest.raises(SekdError, match="unknown name"):
        load_study(path, ["methods=[nope]"])
    with pytest.raises(SekdError, match="seeds"):
        load_study(path, ["seeds=[1, 1]"])
    with pytest.raises(SekdError, match="unknown key"):
        load_study(path, ["evaluation.lmit=3"])


def test_a_bare_data_override_is_the_studys_corpus_and_dotted_data_keys_go_to_every_run(tmp_path):
    path = write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out")
    study = load_study(path, ["data=/other/corpus", "data.num_workers=2"])
    assert study.data == "/other/corpus"
    assert "data" not in study.common and study.common["data.num_workers"] == 2
    teacher = run_config(study, plan_runs(study)[0])
    assert teacher.data.train == "/other/corpus" and teacher.data.num_workers == 2


def test_study_writes_results_and_skips_finished_runs(finished_study, caplog):
    config, out = finished_study
    runs = sorted(p.relative_to(out).as_posix() for p in out.rglob("result.json"))
    assert runs == ["i2s-intra-only/seed0/result.json", "i2s-intra-only/seed1/result.json",
                    "i2s_tfckd/seed0/result.json", "i2s_tfckd/seed1/result.json", "noisy/result.json",
                    "none/seed0/result.json", "none/seed1/result.json", "nsnet2/result.json",
                    "pkt/seed0/result.json", "pkt/seed1/result.json", "teacher/result.json"]
    i2s = json.loads((out / "i2s_tfckd" / "seed0" / "result.json").read_text())
    assert len(i2s["rows"]) == 3 and i2s["summary"]["files"] == 3 and i2s["params"] > 0 and i2s["macs_per_second"] > 0
    cal = i2s["calibration"]
    assert set(cal) == {f"{s}/{t}" for s in ("encoder", "middle", "decoder", "inter") for t in ("time", "second")}
    enc = cal["encoder/time"]
    assert enc["student"] == ["enc1", "enc2", "enc3"] and len(enc["weights"]) == 3
    assert all(abs(sum(row) - 1) < 1e-4 for row in enc["weights"])
    assert "calibration" not in json.loads((out / "pkt" / "seed0" / "result.json").read_text())

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.ckpt")}
    results = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    with caplog.at_level("INFO", logger="sekd"):
        assert main(["study", str(config)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.ckpt")} == stamps  # nothing retrained
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == results
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skip ")]
    assert sum(m.startswith("skip students ") for m in skipped) == len(results) - 3  # not noisy, nsnet2, teacher
    assert sum(m.startswith(("skip noisy", "skip nsnet2", "skip teacher")) for m in skipped) == 3
    assert sum(m.startswith("skip tune ") for m in skipped) == 2  # i2s_tfckd at 2 λ


def test_tuning_chooses_by_validation_and_the_seed_run_reuses_it(finished_study):
    _, out = finished_study
    choice = json.loads((out / "tune" / "choice.json").read_text())
    assert choice["split"] == "valid" and list(choice["methods"]) == ["i2s_tfckd"]  # pkt has a fixed λ
    entry = choice["methods"]["i2s_tfckd"]
    assert set(entry["grid"]) == {"0.5", "2"} and entry["chosen"] in (0.5, 2.0)
    assert entry["grid"][f"{entry['chosen']:g}"] == max(entry["grid"].values())
    seed0 = json.loads((out / "i2s_tfckd" / "seed0" / "result.json").read_text())
    seed1 = json.loads((out / "i2s_tfckd" / "seed1" / "result.json").read_text())
    assert seed0["weight"] == seed1["weight"] == entry["chosen"]
    assert seed0["from_tuning"] and not seed1["from_tuning"]  # the tuning seed's run is the tuning run
    assert json.loads((out / "i2s-intra-only" / "seed0" / "result.json").read_text())["weight"] == entry["chosen"]
    assert seed0["curve"] and all(len(point) == 2 for point in seed0["curve"])


def test_weights_from_takes_another_studys_choice_and_tunes_nothing(finished_study, tmp_path):
    from sekd.report import tuning_table
    from sekd.study import take_weights_from
    _, out = finished_study
    source = out / "tune" / "choice.json"
    chosen = json.loads(source.read_text())["methods"]["i2s_tfckd"]["chosen"]
    path = write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out")
    study = load_study(path, [f"weights_from={source}"])
    take_weights_from(study)
    assert study.weights == {"pkt": 0.5, "i2s_tfckd": chosen} and not plan_tuning(study)
    assert {r.system: r.weight for r in plan_runs(study)[1:4]} == {"none": 1.0, "i2s_tfckd": chosen, "pkt": 0.5}
    copied = json.loads((tmp_path / "out" / "tune" / "choice.json").read_text())
    assert copied["from"] == str(source) and list(copied["methods"]) == ["i2s_tfckd"]
    assert str(source) in "\n".join(tuning_table(tmp_path / "out"))

    for text, problem in (("", "not a study's tune/choice.json"), ('{"methods": {}}', "no λ chosen for i2s_tfckd")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(SekdError, match=re.escape(problem)):
            take_weights_from(load_study(path, [f"weights_from={tmp_path / 'bad.json'}"]))
    with pytest.raises(SekdError, match="file not found"):
        take_weights_from(load_study(path, [f"weights_from={tmp_path / 'none.json'}"]))


def test_a_tuning_run_without_its_checkpoints_is_not_reused(tmp_path):
    from sekd.study import TUNE_DIR, TUNE_RESULT, adopt_tuning_run
    study = load_study(write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out"), ["seeds=[0]"])
    run = next(r for r in plan_runs(study, {"i2s_tfckd": 2.0}) if r.system == "i2s_tfckd")
    source = tmp_path / "out" / TUNE_DIR / "i2s_tfckd" / "lambda2"
    (source / "csv").mkdir(parents=True)
    (source / TUNE_RESULT).write_text("{}")
    # Results from a clone, whose checkpoints are not committed: seed 0 is trained, not reused.
    assert not adopt_tuning_run(study, run) and not run.out_dir.exists()
    (source / "checkpoints").mkdir()
    for name in ("best.ckpt", "last.ckpt"):
        (source / "checkpoints" / name).write_bytes(name.encode())
    assert adopt_tuning_run(study, run)
    assert (run.out_dir / "checkpoints" / "last.ckpt").read_bytes() == b"last.ckpt"


def test_tune_stage_never_reads_the_test_split_and_reuses_a_finished_tuning(small_corpus, tmp_path, monkeypatch):
    import csv
    import shutil
    corpus = tmp_path / "corpus"
    shutil.copytree(small_corpus, corpus)
    with (corpus / "manifest.csv").open(newline="") as f:
        test_files = [corpus / row[key] for row in csv.DictReader(f) if row["split"] == "test"
                      for key in ("noisy", "clean")]
    assert test_files
    for path in test_files:  # any read of the test split now fails
        path.unlink()
    config = write_study(tmp_path / "s.yaml", corpus, tmp_path / "out")
    assert main(["study", str(config), "seeds=[0]", "--stage", "tune"]) == 0
    choice = (tmp_path / "out" / "tune" / "choice.json").read_text()
    assert not list((tmp_path / "out").rglob("result.json"))  # nothing evaluated

    import sekd.engine.distill
    monkeypatch.setattr(sekd.engine.distill, "distill", lambda cfg: pytest.fail("a finished tuning run retrained"))
    assert main(["study", str(config), "seeds=[0]", "--stage", "tune"]) == 0
    assert (tmp_path / "out" / "tune" / "choice.json").read_text() == choice


def test_a_trained_teacher_is_distilled_from_not_retrained(finished_study, tmp_path):
    config, out = finished_study
    teacher = out / "teacher" / "checkpoints" / "best.ckpt"
    overrides = [f"out_dir={tmp_path / 'out'}", "seeds=[0]", "methods=[output]", "ablations={}", "peers=[]",
                 "tune={grid: []}"]
    assert main(["study", str(config), *overrides, f"teacher.checkpoint={tmp_path / 'nope.ckpt'}"]) == 2
    assert main(["study", str(config), *overrides, f"teacher.checkpoint={teacher}"]) == 0
    result = json.loads((tmp_path / "out" / "teacher" / "result.json").read_text())
    assert result["checkpoint"] == str(teacher) and result["curve"]  # the teacher's own validation curve
    assert not (tmp_path / "out" / "teacher" / "checkpoints").exists()  # nothing trained
    student = json.loads((tmp_path / "out" / "output" / "seed0" / "result.json").read_text())
    assert student["settings"]["config"]["distill"]["teacher"] == str(teacher)


def test_changed_settings_are_refused(finished_study):
    config, out = finished_study
    assert main(["study", str(config), "evaluation.limit=2"]) == 2  # one error line, nothing mixed in


def test_report_from_the_study(finished_study, tmp_path):
    _, out = finished_study
    assert main(["report", str(out), "-o", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    for system in ("noisy", "teacher", "nsnet2", "none", "i2s_tfckd", "pkt", "i2s-intra-only"):
        assert f"| {system} |" in text
    for png in ("bars.png", "curves.png", "calibration.png", "spectrograms.png"):
        assert (tmp_path / "report" / png).stat().st_size > 5000
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<table>" in page and 'src="curves.png"' in page and "| none |" not in page  # tables became HTML
    players = re.findall(r'<audio controls preload="none" src="audio/([^"]+)">', page)
    assert len(players) == 3 * 5  # the three files of the evaluation × noisy, clean, teacher, I²S, no-KD
    for name in players:
        wave, rate = sf.read(tmp_path / "report" / "audio" / name)
        assert rate == 16000 and 0 < wave.size <= 4 * 16000 and np.abs(wave).max() > 0


@pytest.mark.parametrize("preset", sorted(Path("configs/study").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_study_presets_resolve_every_run(preset):
    """Every run of the shipped presets gets a valid run config (keys and types checked)."""
    study = load_study(preset)
    runs = plan_runs(study)
    systems = len({"none", *study.methods}) + len(study.ablations)  # the no-KD student, the methods, the ablations
    assert len(runs) == 1 + len(study.seeds) * systems  # teacher once, then the systems per seed
    for run in runs[:15]:
        cfg = run_config(study, run)
        if run.system == "teacher" and study.teacher.checkpoint:
            assert cfg is None  # a trained teacher: nothing to configure
            continue
        assert ("distill" in cfg.extra) == (run.method is not None)


def _fake_result(out, system, seed, best_val):
    folder = out / system / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"curve": [[1, best_val - 0.5], [2, best_val]]}))


def test_more_seeds_go_to_the_named_systems_and_the_methods_closest_to_i2s(tmp_path):
    from sekd.study import more_seed_systems
    out = tmp_path / "out"
    study = load_study(write_study(tmp_path / "s.yaml", tmp_path, out),
                       ["methods=[none, i2s_tfckd, pkt, at, sp]", "weights={}",
                        "more_seeds={seeds: [5, 6], closest: 2}"])
    # Mean best validation PESQ-WB over seeds 0 and 1: I²S 2.0; sp 1.95 and at 2.08 are nearest, pkt 1.5 is not.
    for system, values in {"i2s_tfckd": (2.0, 2.0), "pkt": (1.4, 1.6), "at": (2.1, 2.06), "sp": (1.9, 2.0),
                           "none": (1.0, 1.0)}.items():
        for seed, value in enumerate(values):
            _fake_result(out, system, seed, value)
    more = more_seed_systems(study)
    assert more == ["none", "i2s_tfckd", "sp", "at"]
    runs = plan_runs(study, more=more)[1:]
    extra = [(r.system, r.seed) for r in runs if r.seed >= 5]
    assert sorted(extra) == sorted((s, seed) for s in more for seed in (5, 6))
    assert len(runs) - len(extra) == 2 * 6  # the base seeds: none, 4 methods, 1 ablation


def test_more_seeds_config_is_checked(tmp_path):
    path = write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out")
    with pytest.raises(SekdError, match="more_seeds.seeds"):
        load_study(path, ["more_seeds={seeds: [1]}"])  # already a base seed
    with pytest.raises(SekdError, match="more_seeds.systems"):
        load_study(path, ["more_seeds={seeds: [4], systems: [nope]}"])
    with pytest.raises(SekdError, match="jobs"):
        load_study(path, ["jobs=0"])


def test_two_jobs_share_the_runs_and_more_seeds_follow(small_corpus, tmp_path, caplog):
    """Two processes: the study and the job it starts; every run done once, by whichever claimed it."""
    from sekd.study import more_seed_systems
    out = tmp_path / "out"
    config = write_study(tmp_path / "s.yaml", small_corpus, out)
    overrides = ["jobs=2", "threads=2", "seeds=[0]", "methods=[i2s_tfckd, pkt, at]", "weights={}", "ablations={}",
                 "more_seeds={seeds: [1], systems: [none], closest: 1}"]
    with caplog.at_level("INFO", logger="sekd"):
        assert main(["study", str(config), *overrides]) == 0
    claimed = re.compile(r"\[(?:tune|students|more seeds)(?: \d+/\d+| while tuning)\] (\S+) seed (\d+)")
    mine = {m.groups() for m in map(claimed.search, caplog.messages) if m}
    theirs = {m.groups() for m in map(claimed.search, (out / "logs" / "job1.log").read_text().splitlines()) if m}
    assert mine and theirs  # both processes trained
    more = more_seed_systems(load_study(config, overrides))
    assert more[0] == "none" and more[1] in ("pkt", "at") and len(more) == 2
    expected = {(s, "0") for s in ("none", "i2s_tfckd", "pkt", "at")} | {(s, "1") for s in more}
    assert {(s, seed) for s, seed in mine | theirs if s in ("none", "i2s_tfckd", "pkt", "at")} >= expected
    for system, seed in expected:
        assert (out / system / f"seed{seed}" / "result.json").is_file()
    assert len(list(out.glob("*/seed1/result.json"))) == 2
    assert len(list((out / "tune").rglob("tune.json"))) == 3 * 2  # three methods × the grid


def test_a_process_waiting_on_held_tuning_runs_trains_the_runs_that_need_no_lambda(small_corpus, tmp_path):
    """The last tuning run is held by another process: this one trains the no-KD and fixed-λ students meanwhile."""
    from sekd.study import choose_weights, claimed, do_one, plan_tuning, untuned_runs
    study = load_study(write_study(tmp_path / "s.yaml", small_corpus, tmp_path / "out"))
    free = untuned_runs(study)
    assert sorted((r.system, r.seed) for r in free) == [("none", 0), ("none", 1), ("pkt", 0), ("pkt", 1)]
    held, *others = plan_tuning(study)
    for run in others:  # finished tuning runs
        run.out_dir.mkdir(parents=True)
        (run.out_dir / "tune.json").write_text(json.dumps({"best_val_pesq_wb": 1.5}))
    done = []

    def train(run):
        done.append((run.system, run.seed))
        if len(done) == 2:  # the other process finishes its tuning run
            held.out_dir.mkdir(parents=True)
            (held.out_dir / "tune.json").write_text(json.dumps({"best_val_pesq_wb": 2.0}))

    with claimed(study, held) as mine:  # another open file: flock refuses this process's own second claim
        assert mine
        chosen = choose_weights(study, lambda: do_one(study, free, lambda r: (r.system, r.seed) in done, train,
                                                      "students while tuning"))
    assert done == [("none", 0), ("pkt", 0)]  # one run per wait, in the study's order
    assert chosen == {"i2s_tfckd": held.weight}


def test_more_splits_are_scored_into_each_result_and_reported_beside_the_main_one(finished_study, tmp_path):
    config, out = finished_study
    teacher = out / "teacher" / "checkpoints" / "best.ckpt"
    study = tmp_path / "out"
    assert main(["study", str(config), f"out_dir={study}", "seeds=[0]", "methods=[output]", "ablations={}",
                 "peers=[]", "tune={grid: []}", f"teacher.checkpoint={teacher}", "evaluation.more_splits=[ood]"]) == 0
    for run in ("noisy", "teacher", "none/seed0", "output/seed0"):
        result = json.loads((study / run / "result.json").read_text())
        assert {row["id"].split("-")[0] for row in result["rows"]} == {"test"}
        ood = result["splits"]["ood"]
        assert len(ood["rows"]) == 3 and {row["id"].split("-")[0] for row in ood["rows"]} == {"ood"}
        assert ood["summary"]["files"] == 3 and ood["summary"]["pesq_wb"] > 0
    assert main(["report", str(study), "-o", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Every split side by side" in text and "## Split test" in text and "## Split ood" in text
    # each split has its own table by condition (ood's speech sources are not test's), in its own section
    ood_section = text[text.index("## Split ood"):]
    assert "### PESQ-WB by condition of the test files" in text[:text.index("## Split ood")]
    assert "### PESQ-WB by condition of the ood files" in ood_section


def test_tuning_extends_the_grid_past_an_end_until_the_best_lambda_is_inside(tmp_path, monkeypatch):
    """tune.extend: a best λ on an end of the grid adds the next λ beyond it (by the end's ratio), at most
    `extend` times per end; every job plans the same runs from the finished ones."""
    import sekd.study as study_module
    study = load_study(write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out"),
                       ["tune={grid: [0.1, 0.3, 1], extend: 2}", "methods=[i2s_tfckd, pkt]", "weights={}"])
    peaks = {"i2s_tfckd": 0.02, "pkt": 1000.0}  # i2s: best inside after two steps down; pkt: beyond the limit
    trained = []

    def fake_tune_run(study, run):  # a score that peaks at the method's λ (log scale)
        trained.append((run.method, run.weight))
        run.out_dir.mkdir(parents=True)
        score = 2.0 - abs(np.log10(run.weight / peaks[run.method]))
        (run.out_dir / "tune.json").write_text(json.dumps({"best_val_pesq_wb": score}))

    monkeypatch.setattr(study_module, "tune_run", fake_tune_run)
    chosen = study_module.choose_weights(study)
    assert sorted(w for m, w in trained if m == "i2s_tfckd") == [0.011, 0.033, 0.1, 0.3, 1.0]
    assert sorted(w for m, w in trained if m == "pkt") == [0.1, 0.3, 1.0, 3.3, 11.0]
    assert chosen == {"i2s_tfckd": 0.033, "pkt": 11.0}
    choice = json.loads((tmp_path / "out" / "tune" / "choice.json").read_text())["methods"]
    assert "at_edge" not in choice["i2s_tfckd"] and choice["pkt"]["at_edge"] is True
    from sekd.report import tuning_table
    rows = {line.split(" | ")[0]: line for line in tuning_table(tmp_path / "out") if line.startswith("| ")}
    assert "(end of the λ tried)" in rows["| pkt"] and "end of" not in rows["| i2s_tfckd"]
    assert [r.weight for r in plan_tuning(study) if r.method == "i2s_tfckd"] == [0.011, 0.033, 0.1, 0.3, 1.0]
    with pytest.raises(SekdError, match="tune.extend"):
        load_study(tmp_path / "s.yaml", ["tune={grid: [1], extend: -1}"])
