"""train.stop_when_flat: training ends once validation PESQ-WB has been flat for a fraction of the run."""

from types import SimpleNamespace

import pytest
import torch

from conftest import write_pair_folder
from sekd.checkpoint import read_checkpoint_file
from sekd.cli import main
from sekd.engine.state import StopWhenFlat


def validate(callback, trainer, step, score):
    trainer.global_step, trainer.callback_metrics = step, {"val/pesq_wb": torch.tensor(score)}
    callback.on_validation_end(trainer, None)
    return trainer.should_stop


def test_stops_when_the_best_is_a_quarter_of_the_run_and_three_validations_old():
    trainer = SimpleNamespace(sanity_checking=False, should_stop=False)
    stop = StopWhenFlat(0.25, val_every=100)
    scores = {100: 1.2, 200: 1.4, 300: 1.5, 400: 1.5, 500: 1.49, 600: 1.52, 700: 1.5, 800: 1.5, 900: 1.51}
    stopped = [step for step, score in scores.items() if validate(stop, trainer, step, score)]
    # Best 1.52 at step 600: at 800 only two validations have passed; at 900, 300 steps ≥ max(225, 300).
    assert stopped == [900] and stop.stopped_at == 900 and stop.best_step == 600
    # Late in a long run the quarter is the longer wait.
    late = StopWhenFlat(0.25, val_every=100)
    trainer.should_stop = False
    validate(late, trainer, 2000, 1.6)
    assert not validate(late, trainer, 2600, 1.5) and validate(late, trainer, 2700, 1.5)
    # The state comes back from a checkpoint: a stopped run started again stops at once.
    again = StopWhenFlat(0.25, val_every=100)
    again.load_state_dict(stop.state_dict())
    fresh = SimpleNamespace(sanity_checking=False, should_stop=False)
    again.on_train_start(fresh, None)
    assert fresh.should_stop and (again.best_step, again.best_score) == (600, pytest.approx(1.52))


def test_a_flat_run_stops_early_keeps_its_checkpoints_and_stays_stopped(tmp_path, monkeypatch):
    import sekd.metrics
    monkeypatch.setattr(sekd.metrics, "pesq", lambda est, ref, *a, **k: 1.5)  # validation never improves
    data = write_pair_folder(tmp_path / "data", n=6)
    out = tmp_path / "run"
    args = ["train", "configs/cpu-teacher.yaml", f"data.train={data}", f"train.out_dir={out}", "model.preset=tiny",
            "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=2", "train.max_steps=40",
            "train.val_every=2", "train.warmup_steps=1", "train.threads=1", "train.stop_when_flat=0.25"]
    assert main(args) == 0
    # Best at the first validation (step 2); flat at step 8: 6 steps ≥ max(8 / 4, 3 validations × 2).
    assert read_checkpoint_file(out / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert "stop_when_flat: 0.25" in (out / "config.yaml").read_text()
    assert main(args) == 0  # started again: nothing more is trained
    assert read_checkpoint_file(out / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert main([*args[:-1], "train.stop_when_flat=1.5"]) == 2  # outside (0, 1): refused, naming the key
