"""Every recipe in configs/recipes/ starts as configured (its own model size and channels) and runs a step
on the built-in data, with only the data paths and the schedule overridden to be tiny."""

from pathlib import Path

import pytest
import torch
import yaml

from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.cli import main
from sekd.config import load_config
from sekd.models import build_enhancer

RECIPES = sorted(Path("configs/recipes").glob("*.yaml"))
SHORT = ["data.crop_seconds=0.5", "data.batch_size=2", "data.valid_files=1", "data.num_workers=0", "data.valid=null",
         "train.max_steps=1", "train.val_every=1", "train.warmup_steps=1", "train.log_every=1",
         "train.accelerator=cpu", "train.devices=1", "train.threads=2"]


def test_recipes_cover_both_corpora_and_all_sizes():
    names = {p.stem for p in RECIPES}
    assert names == {f"{corpus}-{model}" for corpus in ("dns", "l3das23")
                     for model in ("teacher", "student-m", "student-l")}
    for path in RECIPES:
        cfg = load_config(path)
        assert cfg.model.in_channels == (8 if path.stem.startswith("l3das23") else 1)
        distill = yaml.safe_load(path.read_text()).get("distill")
        assert (distill is None) == path.stem.endswith("teacher")
        if distill:
            corpus = path.stem.split("-")[0]
            assert distill["method"] == "i2s_tfckd" and distill["teacher"].startswith(f"runs/{corpus}-teacher")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_a_step(recipe, small_corpus, small_l3das23_corpus, tmp_path):
    torch.set_num_threads(2)
    cfg = load_config(recipe)
    corpus = small_l3das23_corpus if cfg.model.in_channels == 8 else small_corpus
    args = [f"data.train={corpus}", f"train.out_dir={tmp_path / 'run'}", *SHORT]
    if "distill" in cfg.extra:
        teacher = tmp_path / "teacher.ckpt"  # an untrained teacher of the recipe's size: only shapes matter here
        save_enhancer(build_enhancer("teacher", in_channels=cfg.model.in_channels), teacher)
        # The fusion units' width is a KD option, not the model's: narrow it to keep the step quick.
        args += [f"distill.teacher={teacher}", "distill.options.fusion_channels=16", "distill.options.checkpoint=false"]
    assert main(["distill" if "distill" in cfg.extra else "train", str(recipe), *args]) == 0
    model = load_enhancer(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert model.in_channels == cfg.model.in_channels
    assert model.network.args["channels"] == build_enhancer(cfg.model.preset).network.args["channels"]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1
