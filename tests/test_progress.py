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
