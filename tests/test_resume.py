"""Exact resumption: a run killed mid-epoch and started again equals the run never stopped.

Each run is a real ``sekd train`` process; a recorder wrapped around the training step logs
(global step, batch checksum) and, at a chosen step, kills its own process with SIGKILL or
SIGTERM or SIGINT, before that step trains, or during the validation after that step.
"""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import write_pair_folder
from sekd.checkpoint import read_checkpoint_file, save_checkpoint_file
from sekd.engine.state import training_seconds

RECORDER = """
import json, os, signal, sys
from sekd.engine.module import EnhancementModule
from sekd.cli import main
record, signal_name, where = sys.argv[1], sys.argv[2], sys.argv[3].split(":")[0]
kill_at = int(sys.argv[3].split(":")[-1])
step, validation_step = EnhancementModule.training_step, EnhancementModule.validation_step
def recording_step(self, batch, batch_idx):
    if where == "train" and self.global_step == kill_at and signal_name != "none":
        os.kill(os.getpid(), getattr(signal, signal_name))
    with open(record, "a") as fh:
        fh.write(json.dumps([self.global_step, batch[0].double().sum().item(), batch[1].double().sum().item()]) + "\\n")
    return step(self, batch, batch_idx)
def killing_validation_step(self, batch, batch_idx):
    if where == "valid" and self.global_step == kill_at and batch_idx == 0 and signal_name != "none":
        os.kill(os.getpid(), getattr(signal, signal_name))  # with a batch of the validation still to come
    return validation_step(self, batch, batch_idx)
EnhancementModule.training_step, EnhancementModule.validation_step = recording_step, killing_validation_step
sys.exit(main(sys.argv[4:]))
"""

# 12 files, batches of 2: 6 steps an epoch; validations and checkpoints at steps 5 and 10; 10 steps in all.
RUN = ["model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=2",
       "train.max_steps=10", "train.val_every=5", "train.warmup_steps=1", "train.log_every=1", "train.threads=1"]


def sekd_train(tmp_path, data, out, record, signal_name="none", kill_at="train:-1"):
    args = [sys.executable, "-c", RECORDER, str(record), signal_name, kill_at, "train", "configs/cpu-teacher.yaml",
            f"data.train={data}", f"train.out_dir={out}", *RUN]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def trained_batches(record) -> dict[int, list[float]]:
    """Step → batch checksums; a step trained again after a restart overwrites the lost one."""
    batches = {}
    for line in record.read_text().splitlines():
        step, *sums = json.loads(line)
        batches[step] = sums
    return batches


def weights(run) -> dict[str, torch.Tensor]:
    return read_checkpoint_file(run / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_pair_folder(root / "data", n=12)
    record = root / "straight.jsonl"
    done = sekd_train(root, data, root / "straight", record)
    assert done.returncode == 0, done.stderr[-3000:]
    return data, root / "straight", trained_batches(record)


@pytest.mark.parametrize("signal_name, kill_at, exit_code, resumed_at", [
    ("SIGKILL", "train:7", -signal.SIGKILL, 5),   # mid-epoch 1, two steps after the last checkpoint: they are redone
    ("SIGTERM", "train:2", 128 + signal.SIGTERM, 3),  # saves last.ckpt after the step in progress, mid-epoch 0
    ("SIGINT", "train:4", 128 + signal.SIGINT, 5),    # the step before a validation: that validation runs first
    ("SIGTERM", "valid:5", 128 + signal.SIGTERM, 5),  # mid-validation: it ends first, then training stops
    ("SIGTERM", "valid:10", 128 + signal.SIGTERM, 10),  # the last validation: it still scores the final weights
])
def test_killed_run_resumes_the_same_batches_and_weights(uninterrupted, tmp_path, signal_name, kill_at, exit_code,
                                                         resumed_at):
    data, straight, expected = uninterrupted
    assert sorted(expected) == list(range(10))
    assert len({tuple(v) for v in expected.values()}) == 10  # every batch differs: the comparison means something
    run, record = tmp_path / "run", tmp_path / "run.jsonl"
    killed = sekd_train(tmp_path, data, run, record, signal_name, kill_at)
    assert killed.returncode == exit_code, killed.stderr[-3000:]
    if signal_name != "SIGKILL":
        assert "Traceback" not in killed.stderr and "last.ckpt" in killed.stderr
    assert read_checkpoint_file(run / "checkpoints" / "last.ckpt")["global_step"] == resumed_at
    metrics_before = csv_rows(run / "csv" / "metrics.csv")
    # The training time is carried over: make the first part's count recognisable, then check it grew.
    last = run / "checkpoints" / "last.ckpt"
    assert 0 < training_seconds(last) < 600
    stored = read_checkpoint_file(last)
    stored["callbacks"]["Timer"]["time_elapsed"]["train"] = 10_000.0
    save_checkpoint_file(stored, last)

    started = time.monotonic()
    resumed = sekd_train(tmp_path, data, run, record)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 10_000 <= training_seconds(last) < 10_000 + (time.monotonic() - started)
    lines = [json.loads(line)[0] for line in record.read_text().splitlines()]
    assert lines[len(lines) - (10 - resumed_at):] == list(range(resumed_at, 10))  # no replayed batch
    assert trained_batches(record) == expected
    final, reference = weights(run), weights(straight)
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    metrics_after = csv_rows(run / "csv" / "metrics.csv")  # appended to, not replaced
    assert len(metrics_after) >= len(metrics_before) and metrics_after[:len(metrics_before)] == metrics_before
    # Every validation ran once, on the same weights as the run never stopped: best.ckpt is chosen from all of them.
    assert validations(run) == validations(straight) and len(validations(straight)) == 2


def validations(run) -> list[tuple[str, str]]:
    """(step, validation PESQ-WB) of every validation the run logged."""
    return [(row["step"], row["val/pesq_wb"]) for row in csv_rows(run / "csv" / "metrics.csv") if "val/pesq_wb" in row]


def csv_rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(fh)]


def test_a_run_started_over_replaces_the_metrics_of_the_lost_one(uninterrupted, tmp_path):
    import shutil
    data, straight, _ = uninterrupted
    run = tmp_path / "run"
    killed = sekd_train(tmp_path, data, run, tmp_path / "first.jsonl", "SIGTERM", "train:7")
    assert killed.returncode == 128 + signal.SIGTERM and len(validations(run)) == 1
    shutil.rmtree(run / "checkpoints")  # lost (a fresh clone of committed results): the run starts over
    again = sekd_train(tmp_path, data, run, tmp_path / "again.jsonl")
    assert again.returncode == 0, again.stderr[-3000:]
    assert validations(run) == validations(straight)  # not the lost run's step 5 as well
