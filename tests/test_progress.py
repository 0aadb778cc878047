"""Progress in a log: a line now and then, never a redrawn bar (sekd.progress, engine/progress.py)."""

import io
import re
import subprocess
import sys

from sekd.progress import LINE_MAX_SECONDS, ProgressLines, format_duration, progress_bar

LINE = re.compile(r"^work: \d+/\d+ \(\d+ %\), \d+:\d\d elapsed(, about \d+:\d\d left)?$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(total: int, seconds_per_item: float, start: int = 0) -> list[str]:
    """The lines ProgressLines writes for ``total`` items that take ``seconds_per_item`` each."""
    out, clock = io.StringIO(), FakeClock()
    lines = ProgressLines(total=total, desc="work", stream=out, start=start, clock=clock)
    for _ in range(total - start):
        clock.now += seconds_per_item
        lines.update(1)
    lines.close()
    return out.getvalue().splitlines()


def test_a_line_per_tenth_when_tenths_are_slow():
    lines = run(1000, 0.5)  # 500 s: a tenth every 50 s
    assert len(lines) == 10 and all(LINE.match(line) for line in lines)
    assert lines[0] == "work: 100/1000 (10 %), 0:50 elapsed, about 7:30 left"
    assert lines[-1] == "work: 1000/1000 (100 %), 8:20 elapsed"


def test_fast_work_writes_one_line():
    assert run(600, 0.01) == ["work: 600/600 (100 %), 0:06 elapsed"]


def test_lines_are_at_least_half_a_minute_apart():
    lines = run(1000, 0.1)  # 100 s: tenths every 10 s, but a line at most every 30 s
    assert 3 <= len(lines) <= 4


def test_slow_work_still_writes_every_five_minutes():
    lines = run(4, LINE_MAX_SECONDS + 1)  # a tenth is one item; every item is a line anyway
    assert len(lines) == 4
    out, clock = io.StringIO(), FakeClock()
    unknown = ProgressLines(desc="work", unit="file", stream=out, clock=clock)  # no total: the clock alone
    for _ in range(20):
        clock.now += 60
        unknown.update()
    unknown.close()
    assert out.getvalue().splitlines()[0] == "work: 5 file, 5:00 elapsed"
    assert len(out.getvalue().splitlines()) == 4  # every 5 min (the last is the 20th item)


def test_a_resumed_count_estimates_from_the_work_done_since():
    out, clock = io.StringIO(), FakeClock()
    lines = ProgressLines(total=100, desc="work", stream=out, start=50, clock=clock)
    clock.now = 100.0
    lines.update(10)  # 10 items in 100 s: 40 left take 400 s
    assert lines.line() == "work: 60/100 (60 %), 1:40 elapsed, about 6:40 left"


def test_progress_bar_off_a_terminal_and_disabled(capsys):
    assert list(progress_bar(range(3), desc="work")) == [0, 1, 2]
    assert capsys.readouterr().err == "work: 3/3 (100 %), 0:00 elapsed\n"  # pytest's stderr is no terminal
    assert list(progress_bar(range(3), desc="work", disable=True)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00", "1:02:05"]


def test_evaluate_into_a_log_writes_lines_not_a_bar(pair_folder, tiny_ckpt):
    """A redrawn bar writes carriage returns and an update per score; a log gets one line here."""
    done = subprocess.run([sys.executable, "-m", "sekd", "evaluate", "--data", str(pair_folder), "--no-dnsmos",
                           "--workers", "1", "--ckpt", f"tiny={tiny_ckpt}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("evaluate:")]
    assert progress == ["evaluate: 6/6 (100 %), " + progress[0].split(", ", 1)[1]]
    assert "| tiny |" in done.stdout


def test_training_into_a_log_writes_lines_not_a_bar(pair_folder, tmp_path, capfd):
    from sekd.cli import main
    assert main(["train", "configs/cpu-student.yaml", f"data.train={pair_folder}", f"train.out_dir={tmp_path / 'run'}",
                 "model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=1",
                 "train.max_steps=4", "train.val_every=2", "train.warmup_steps=1"]) == 0
    err = capfd.readouterr().err
    assert "\r" not in err
    assert [line.split(" (")[0] for line in err.splitlines() if line.startswith("validation at")] == \
        ["validation at step 2", "validation at step 4"]
    assert re.search(r"^train: 4/4 \(100 %\), \d+:\d\d elapsed, loss -?\d+\.\d{4}$", err, re.M)


# --------------------------------------------------------------------------- sekd study's progress line

def test_study_estimate_uses_each_methods_step_time():
    from sekd.study import RunState, estimate_seconds_left
    done = [RunState("tune/i2s_tfckd/lambda1", "i2s_tfckd", 100, False, {"train_seconds": 200.0}),
            RunState("none/seed0", "none", 100, True, {"train_seconds": 50.0, "eval_seconds": 10.0})]
    left = [RunState("i2s_tfckd/seed0", "i2s_tfckd", 100, True, None, running=True),   # 200 + 10
            RunState("none/seed1", "none", 100, True, None),                            # 50 + 10
            RunState("pkt/seed0", "pkt", 100, True, None),                              # (250 / 200) × 100 + 10
            RunState("tune/pkt/lambda1", "pkt", 100, False, None)]                      # 125
    assert estimate_seconds_left(done + left, jobs=1) == 200 + 10 + 50 + 10 + 125 + 10 + 125
    assert estimate_seconds_left(done + left, jobs=2) == (200 + 10 + 50 + 10 + 125 + 10 + 125) / 2
    assert estimate_seconds_left(left, jobs=2) is None  # nothing measured yet
    # A finished run without times (a result written before sekd kept them) counts, but tells no time.
    assert estimate_seconds_left([RunState("none/seed0", "none", 100, True, {"summary": {}}), *left], 1) is None


def test_study_progress_line(tmp_path):
    from sekd.study import RunState, StudyConfig, progress_line
    study = StudyConfig(out_dir=str(tmp_path), jobs=2)
    states = [RunState("none/seed0", "none", 100, True, {"train_seconds": 60.0, "eval_seconds": 30.0}),
              RunState("i2s_tfckd/seed0", "i2s_tfckd", 100, True, None, running=True),
              RunState("none/seed1", "none", 100, True, None, running=True),
              RunState("none/seed2", "none", 100, True, None)]
    assert progress_line(study, states) == ("study: 1/4 runs finished; running: i2s_tfckd/seed0, none/seed1; "
                                            "about 2:15 left (2 jobs, from the step times so far)")
    assert progress_line(study, states[1:]) == ("study: 0/3 runs finished; running: i2s_tfckd/seed0, none/seed1; "
                                                "time left: known when the first run has finished")
    assert progress_line(study, states[:1]) == "study: 1/1 runs finished; running: none; nothing left"


def test_study_run_states_read_results_and_locks(tmp_path):
    """The runs of a study folder: finished ones by their result files, running ones by their held locks."""
    import json

    import yaml

    from sekd.study import claimed, load_study, plan_runs, run_states
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "out"), "data": str(tmp_path), "seeds": [0], "jobs": 2,
        "teacher": {"config": "configs/cpu-teacher.yaml"}, "student": {"config": "configs/cpu-student.yaml"},
        "common": {"train.max_steps": 40}, "methods": ["i2s_tfckd"], "tune": {"grid": [0.5, 2.0]},
        "more_seeds": {"seeds": [1], "systems": ["none"], "closest": 1}}))
    study = load_study(config)
    none0, i2s0 = plan_runs(study)[1:3]
    none0.out_dir.mkdir(parents=True)
    (none0.out_dir / "result.json").write_text(json.dumps({"train_seconds": 20.0, "eval_seconds": 5.0}))
    with claimed(study, i2s0) as mine:
        assert mine
        states = run_states(study)
    assert [(s.name, s.method, s.steps, s.evaluated, s.result is not None, s.running) for s in states] == [
        ("tune/i2s_tfckd/lambda0.5", "i2s_tfckd", 40, False, False, False),
        ("tune/i2s_tfckd/lambda2", "i2s_tfckd", 40, False, False, False),
        ("none/seed0", "none", 40, True, True, False),
        ("i2s_tfckd/seed0", "i2s_tfckd", 40, True, False, True),
        ("none/seed1", "none", 40, True, False, False),
        ("(closest method 1)/seed1", "", 40, True, False, False)]  # chosen once the base runs are finished
    assert not any(s.running for s in run_states(study))  # the lock went with the block
