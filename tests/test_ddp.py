"""Two-process DDP on the CPU (gloo), through the CLI as a user runs it: train a teacher, distil a
student with I²S-TFCKD, kill one rank mid-run, resume; the result equals an uninterrupted run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_pair_folder
from sekd.checkpoint import load_enhancer, read_checkpoint_file

TESTS = Path(__file__).parent
# 12 pairs, 2 ranks, batches of 2: 3 steps an epoch; checkpoints every 2 steps.
DDP = ["model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=2",
       "train.max_steps=6", "train.val_every=2", "train.warmup_steps=1", "train.log_every=1", "train.threads=1",
       "train.devices=2", "train.strategy=ddp", "train.accelerator=cpu"]


def sekd(*args, kill_at=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("KILL_AT", None)
    if kill_at is not None:
        env["KILL_AT"] = str(kill_at)
    # A new session: a rank left waiting for a dead peer is killed with its group at the end.
    proc = subprocess.Popen([sys.executable, "-m", "ddp_entry", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = "timed out"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return proc.returncode, out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_pair_folder(tmp_path_factory.mktemp("ddp") / "data", n=12, seconds=0.6)


def test_ddp_train_distil_kill_a_rank_and_resume(data, tmp_path):
    teacher = tmp_path / "teacher"
    code, out = sekd("train", "configs/cpu-teacher.yaml", f"data.train={data}", f"train.out_dir={teacher}", *DDP)
    assert code == 0, out[-4000:]
    assert read_checkpoint_file(teacher / "checkpoints" / "last.ckpt")["global_step"] == 6

    kd = ["distill", "configs/cpu-distill.yaml", f"data.train={data}", "distill.method=i2s_tfckd",
          f"distill.teacher={teacher / 'checkpoints' / 'best.ckpt'}", "distill.options={fusion_channels: 8}", *DDP]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    code, out = sekd(*kd, f"train.out_dir={straight}")
    assert code == 0, out[-4000:]

    code, out = sekd(*kd, f"train.out_dir={killed}", kill_at=3)  # rank 1 dies after the step-2 checkpoint
    assert code != 0, out[-4000:]
    assert read_checkpoint_file(killed / "checkpoints" / "last.ckpt")["global_step"] == 2
    code, out = sekd(*kd, f"train.out_dir={killed}")
    assert code == 0, out[-4000:]
    assert "resuming from" in out

    final, reference = (read_checkpoint_file(run / "checkpoints" / "last.ckpt") for run in (killed, straight))
    assert final["global_step"] == reference["global_step"] == 6
    assert all(torch.equal(final["state_dict"][k], reference["state_dict"][k]) for k in reference["state_dict"])
    assert load_enhancer(killed / "checkpoints" / "best.ckpt").network.args["channels"] == 8
