"""A run folder is one process's at a time: a second ``sekd train``/``distill`` into a folder in use is
refused, naming the PID of the one using it; the folder is free again however that process ends."""

import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from sekd.cli import main
from sekd.engine.train import LOCK_FILE, launched_rank, run_folder_lock
from sekd.errors import SekdError

RUN = ["model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=1",
       "train.warmup_steps=1", "train.threads=1"]


def refusal(out, pid) -> str:
    return f"error: {out}: in use by another sekd run (PID {pid}); wait for it or choose another train.out_dir"


@contextmanager
def held(out, pid):
    """The run folder's lock, held through another open file, as another process holds it."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(f"{pid}\n")
        fh.flush()
        yield


def train_args(pair_folder, out, *more):
    return ["train", "configs/cpu-teacher.yaml", f"data.train={pair_folder}", f"train.out_dir={out}", *RUN, *more]


def test_a_folder_in_use_is_refused_and_free_once_released(pair_folder, tmp_path, capsys):
    out = tmp_path / "run"
    with held(out, 4242):
        assert main(train_args(pair_folder, out, "train.max_steps=1", "train.val_every=1")) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == refusal(out, 4242)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing of the run written
    assert main(train_args(pair_folder, out, "train.max_steps=1", "train.val_every=1")) == 0
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
    with held(out, 1):  # released when the run ended
        pass


def test_distill_into_a_folder_in_use_is_refused(pair_folder, tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "kd"
    with held(out, 777):
        assert main(["distill", "configs/cpu-distill.yaml", f"distill.teacher={tiny_ckpt}", "distill.method=output",
                     "distill.options={}", f"data.train={pair_folder}", f"train.out_dir={out}", *RUN,
                     "train.max_steps=1", "train.val_every=1"]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == refusal(out, 777)


def test_two_trainings_started_at_once(pair_folder, tmp_path):
    """The issue's case, as two real processes: the second is refused with the first one's PID; when the
    first is stopped, the next run resumes from the checkpoint it saved."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "sekd", *train_args(pair_folder, out, "train.max_steps=100000",
                                                         "train.val_every=100000")]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "config.yaml").is_file():  # written under the lock
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()[-3000:]
            time.sleep(0.2)
        second = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert [line for line in second.stderr.splitlines() if line.startswith("error:")] == [refusal(out, first.pid)]
    finally:
        first.send_signal(signal.SIGTERM)  # saves last.ckpt and ends
        first.wait(timeout=300)
    assert first.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), first.stderr.read()[-3000:]
    third = subprocess.run([*command[:-2], "train.max_steps=1", "train.val_every=1"], capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]


@pytest.mark.parametrize("env, rank", [({}, 0), ({"LOCAL_RANK": "1"}, 1), ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1),
                                       ({"RANK": "3", "LOCAL_RANK": "1"}, 3), ({"SLURM_PROCID": "0"}, 0)])
def test_only_rank_zero_claims_the_folder(env, rank, tmp_path, monkeypatch):
    """The ranks of one DDP run (Lightning starts them with their rank in the environment) share its folder."""
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launched_rank() == rank
    out = tmp_path / "run"
    with held(out, 99):
        if rank:
            with run_folder_lock(out):
                pass
        else:
            with pytest.raises(SekdError, match="in use by another sekd run \\(PID 99\\)"):
                with run_folder_lock(out):
                    pass
