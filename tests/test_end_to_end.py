"""The whole story on the small built corpus, through the CLI: train, distil, evaluate, enhance."""

import json

import pytest
import torch

from sekd.checkpoint import load_enhancer
from sekd.cli import main

TINY = ["model.preset=tiny", "data.batch_size=4", "data.crop_seconds=1.0", "data.valid_files=4",
        "train.max_steps=4", "train.val_every=2", "train.warmup_steps=1", "train.log_every=1"]


@pytest.fixture(scope="module")
def teacher(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={small_corpus}", f"train.out_dir={out}", *TINY]) == 0
    return out / "checkpoints" / "best.ckpt"


def test_training_writes_resumable_checkpoints(small_corpus, teacher, tmp_path):
    run = teacher.parent.parent
    assert (run / "config.yaml").is_file() and (run / "csv" / "metrics.csv").is_file()
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 4
    # Starting the finished run again resumes from last.ckpt and trains no further step.
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={small_corpus}", f"train.out_dir={run}", *TINY]) == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    # Continuing with more steps picks up where it stopped.
    more = [*TINY, "train.max_steps=6"]
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={small_corpus}", f"train.out_dir={run}", *more]) == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6


def test_distil_evaluate_enhance(small_corpus, teacher, tmp_path):
    before = {k: v.clone() for k, v in load_enhancer(teacher).state_dict().items()}
    kd_run = tmp_path / "student"
    assert main(["distill", "configs/cpu-distill.yaml", f"data.train={small_corpus}", f"train.out_dir={kd_run}",
                 f"distill.teacher={teacher}", "distill.options={fusion_channels: 8}", *TINY]) == 0
    student = kd_run / "checkpoints" / "best.ckpt"
    after = load_enhancer(teacher).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert load_enhancer(student).network.args["channels"] == 8

    # The built-in corpus has an ood split: scored beside test by default, each in its own files.
    assert main(["evaluate", "--data", str(small_corpus), "--ckpt", f"teacher={teacher}", "--ckpt", f"student={student}",
                 "--json", str(tmp_path / "scores.json"), "--csv", str(tmp_path / "scores.csv"), "--limit", "3",
                 "--no-dnsmos", "-q"]) == 0
    for split in ("test", "ood"):
        summary = json.loads((tmp_path / f"scores.{split}.json").read_text())
        assert summary["split"] == split and list(summary["summary"]) == ["noisy", "teacher", "student"]

    out = tmp_path / "enhanced"
    assert main(["enhance", "--ckpt", str(student), str(small_corpus / "test" / "noisy"), "-o", str(out), "-q"]) == 0
    assert len(list(out.glob("*.wav"))) == len(list((small_corpus / "test" / "noisy").glob("*.wav")))


def test_every_method_sees_the_same_batches(small_corpus, teacher, tmp_path, monkeypatch):
    """A method's own modules draw random numbers at build; the batch order and crops must not move."""
    from sekd.engine.module import EnhancementModule

    seen: dict[str, list[float]] = {}
    step = EnhancementModule.training_step

    def recording_step(self, batch, batch_idx):
        seen.setdefault(type(self).__name__, []).append(batch[0].double().sum().item())
        return step(self, batch, batch_idx)

    monkeypatch.setattr(EnhancementModule, "training_step", recording_step)
    short = [*TINY, "train.max_steps=3", "train.val_every=100"]
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={small_corpus}",
                 f"train.out_dir={tmp_path / 'plain'}", *short]) == 0
    assert main(["distill", "configs/cpu-distill.yaml", f"data.train={small_corpus}",
                 f"train.out_dir={tmp_path / 'kd'}", f"distill.teacher={teacher}", "distill.method=fitnets",
                 "distill.options={}", *short]) == 0
    plain, distilled = seen.values()
    assert len(plain) == 3 and plain == distilled
