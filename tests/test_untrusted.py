"""A checkpoint from a stranger must not run code: every command that reads one refuses it."""

import pytest
import torch

from sekd.cli import main


class RunsCode:
    """Unpickling this calls ``open(marker, "w")``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def malicious(tmp_path, tiny_ckpt):
    """A real sekd checkpoint with one extra entry that runs code when fully unpickled."""
    marker = tmp_path / "code-ran"
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["note"] = RunsCode(marker)
    path = tmp_path / "shared.ckpt"
    torch.save(ckpt, path)
    torch.load(path, weights_only=False)  # a full unpickle does run it: the file is a real threat
    assert marker.exists()
    marker.unlink()
    return path, marker


def commands(ckpt, tmp_path, pair_folder):
    wav = str(pair_folder / "noisy" / "f0.wav")
    return {
        "enhance": ["enhance", "--ckpt", str(ckpt), wav, "-o", str(tmp_path / "out")],
        "enhance --stream": ["enhance", "--stream", "--ckpt", str(ckpt), wav, "-o", str(tmp_path / "out")],
        "evaluate": ["evaluate", "--ckpt", str(ckpt), "--data", str(pair_folder), "--no-dnsmos", "-q",
                     "--workers", "1"],
        "profile": ["profile", "--ckpt", str(ckpt), "--seconds", "0.5"],
        "stream": ["stream", "--ckpt", str(ckpt), wav, "-o", str(tmp_path / "s.wav")],
        "export": ["export", "--ckpt", str(ckpt), "-o", str(tmp_path / "m.onnx")],
        "distill": ["distill", "configs/cpu-distill.yaml", f"data.train={pair_folder}", "model.preset=tiny",
                    f"train.out_dir={tmp_path / 'kd'}", f"distill.teacher={ckpt}", "data.batch_size=2"],
    }


@pytest.mark.parametrize("command", ["enhance", "enhance --stream", "evaluate", "profile", "stream", "export",
                                     "distill"])
def test_crafted_checkpoint_runs_no_code(malicious, tmp_path, pair_folder, command, capsys):
    ckpt, marker = malicious
    assert main(commands(ckpt, tmp_path, pair_folder)[command]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert str(ckpt) in err and "refused" in err and "Traceback" not in err


def test_crafted_last_checkpoint_is_not_resumed_from(malicious, tmp_path, pair_folder, caplog):
    """A poisoned last.ckpt in a run folder is skipped with a warning; training starts afresh."""
    ckpt, marker = malicious
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt.replace(run / "checkpoints" / "last.ckpt")
    with caplog.at_level("WARNING", logger="sekd"):
        assert main(["train", "configs/cpu-teacher.yaml", f"data.train={pair_folder}", f"train.out_dir={run}",
                     "model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "train.max_steps=1",
                     "train.val_every=1", "data.valid_files=1"]) == 0
    assert not marker.exists()
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
