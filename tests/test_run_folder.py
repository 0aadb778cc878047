"""Training's own refusals, all before anything is written: the run folder, the accelerator, a damaged checkpoint."""

import pytest
import torch

from sekd.checkpoint import read_checkpoint_file
from sekd.cli import main

RUN = ["model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=1", "train.max_steps=2",
       "train.val_every=1", "train.warmup_steps=1"]


def train(pair_folder, out, *more):
    return main(["train", "configs/cpu-teacher.yaml", f"data.train={pair_folder}", f"train.out_dir={out}", *RUN, *more])


@pytest.fixture
def finished_run(pair_folder, tmp_path):
    out = tmp_path / "run"
    assert train(pair_folder, out) == 0
    return out


def test_out_dir_that_is_a_file_is_refused(pair_folder, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert train(pair_folder, afile) == 2
    assert "train.out_dir" in capsys.readouterr().err and afile.read_text() == "x"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_a_gpu_says_so(pair_folder, tmp_path, capsys):
    assert train(pair_folder, tmp_path / "run", "train.accelerator=gpu") == 2
    assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_unknown_strategy_is_one_line_naming_the_keys(pair_folder, tmp_path, capsys):
    assert train(pair_folder, tmp_path / "run", "train.strategy=nonsense") == 2
    err = capsys.readouterr().err
    assert "train.strategy=nonsense" in err and "Traceback" not in err and not (tmp_path / "run").exists()


def test_another_model_in_the_run_folder_is_refused_before_writing(finished_run, pair_folder, capsys):
    config = (finished_run / "config.yaml").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*")}
    assert train(pair_folder, finished_run, "model.preset=cpu-student") == 2
    assert "model.preset: 'tiny' -> 'cpu-student'" in capsys.readouterr().err
    assert (finished_run / "config.yaml").read_bytes() == config
    assert {p: p.stat().st_mtime_ns for p in finished_run.rglob("*")} == stamps


def test_damaged_last_checkpoint_falls_back_with_a_warning(finished_run, pair_folder, caplog):
    ckpts = finished_run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) // 2])  # a kill during a copy across filesystems
    best_step = read_checkpoint_file(ckpts / "best.ckpt")["global_step"]
    with caplog.at_level("WARNING", logger="sekd"):
        assert train(pair_folder, finished_run, "train.max_steps=3") == 0
    assert any("does not load; resuming from" in r.getMessage() and "best.ckpt" in r.getMessage()
               for r in caplog.records)
    assert best_step >= 1 and read_checkpoint_file(ckpts / "last.ckpt")["global_step"] == 3
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]  # no best-v1.ckpt


def test_stale_checkpoint_temporary_files_are_removed(finished_run, pair_folder):
    import socket
    stale = finished_run / "checkpoints" / f".last.ckpt.sekd-{socket.gethostname()}-999999999-x.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert train(pair_folder, finished_run) == 0
    assert not stale.exists()
