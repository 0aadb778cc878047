"""The models shipped inside the package: the list, `pretrained:NAME` wherever a checkpoint is taken,
the default model of `sekd enhance`, and files with more channels than the model takes."""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sekd import pretrained
from sekd.checkpoint import load_enhancer, read_checkpoint_file, resolve_checkpoint
from sekd.cli import main
from sekd.errors import SekdError

from conftest import speechlike

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["cpu-teacher", "cpu-student-i2s", "cpu-student-nokd"]  # at least these (the GTCRN ones may follow)
SMALL = "pretrained:cpu-student-nokd"


def stereo(seconds: float = 1.0) -> np.ndarray:
    """Two different channels ``[N, 2]``, quiet enough that no output needs scaling to fit PCM."""
    rng = np.random.default_rng(3)
    left = speechlike(seconds, seed=1) + 0.02 * rng.standard_normal(int(seconds * 16000)).astype(np.float32)
    right = 0.5 * speechlike(seconds, seed=2) + 0.03 * rng.standard_normal(int(seconds * 16000)).astype(np.float32)
    return 0.5 * np.stack([left, right], axis=1)


def test_the_list_has_the_shipped_models_with_their_scores(capsys):
    models = {m["name"]: m for m in pretrained.list_models()}
    assert set(SHIPPED) <= set(models)
    for name, entry in models.items():
        assert entry["ref"] == f"pretrained:{name}"
        assert entry["role"] in ("teacher", "student") and entry["study"] and entry["description"]
        assert entry["params"] > 0 and entry["macs_per_second"] > 0 and entry["config"]["model"]
        assert entry["data"]["attribution"] == "ATTRIBUTION.md" and entry["data"]["packages"]
        assert math.isfinite(pretrained.test_score(entry)) and entry["test"]["summary"]["files"] > 0
        result = REPO / entry["run"] / "result.json"  # the run that made it, where the repository holds it
        if result.is_file():
            run = json.loads(result.read_text())
            assert entry["test"]["summary"] == run["summary"]
            assert (entry["params"], entry["macs_per_second"]) == (run["params"], run["macs_per_second"])
    assert (pretrained.ATTRIBUTION.read_text().startswith("# Attribution"))
    assert models["cpu-student-i2s"]["teacher"] == "cpu-teacher" and models["cpu-student-i2s"]["method"] == "i2s_tfckd"

    assert main(["models"]) == 0
    table = capsys.readouterr().out
    for name, entry in models.items():
        row = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert f"{pretrained.test_score(entry):.2f}" in row and entry["study"] in row
    assert main(["models", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == list(models)


def test_best_model_is_the_highest_test_pesq():
    models = pretrained.list_models()
    assert pretrained.test_score(pretrained.best_model()) == max(map(pretrained.test_score, models))
    causal = [m for m in models if m["causal"]]
    if causal:
        assert pretrained.best_model(causal=True)["causal"]
    else:
        with pytest.raises(SekdError, match="no causal model"):
            pretrained.best_model(causal=True)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_checkpoint_is_weights_only_and_enhances(name):
    entry = pretrained.model_info(name)
    path = resolve_checkpoint(f"pretrained:{name}")
    assert path.parent == pretrained.HERE and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    contents = read_checkpoint_file(f"pretrained:{name}")  # torch.load(weights_only=True)
    assert set(contents) == {"sekd", "state_dict"}  # no optimiser state, no teacher, no fusion modules
    assert all(key.startswith("model.") for key in contents["state_dict"])
    model = load_enhancer(f"pretrained:{name}")
    assert sum(p.numel() for p in model.parameters()) == entry["params"] and model.network.causal == entry["causal"]
    noisy = torch.from_numpy(stereo(0.5)[:, 0])[None, None]
    with torch.inference_mode():
        enhanced = model(noisy)
    assert enhanced.shape == (1, noisy.shape[-1]) and torch.isfinite(enhanced).all()
    run_ckpt = REPO / entry["run"] / "checkpoints" / "best.ckpt"
    if run_ckpt.is_file():  # the very model the run trained and scored
        with torch.inference_mode():
            assert torch.equal(load_enhancer(run_ckpt)(noisy), enhanced)


def test_unknown_name_is_one_line_listing_the_names(tmp_path, capsys):
    with pytest.raises(SekdError, match="pretrained:nope: no shipped model.*cpu-teacher.*cpu-student-nokd"):
        resolve_checkpoint("pretrained:nope")
    sf.write(tmp_path / "x.wav", speechlike(0.2), 16000)
    assert main(["enhance", "--ckpt", "pretrained:nope", str(tmp_path / "x.wav"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known: cpu-teacher" in err and "Traceback" not in err


def test_evaluate_names_a_shipped_model_by_its_name(pair_folder, tmp_path):
    scores = tmp_path / "scores.json"
    assert main(["evaluate", "--data", str(pair_folder), "--ckpt", SMALL, "--ckpt", "kd=pretrained:cpu-student-i2s",
                 "--limit", "1", "--workers", "1", "--no-dnsmos", "-q", "--json", str(scores)]) == 0
    summary = json.loads(scores.read_text())["summary"]
    assert list(summary) == ["noisy", "cpu-student-nokd", "kd"]
    assert summary["cpu-student-nokd"]["files"] == 1 and summary["kd"]["pesq_wb"] != summary["cpu-student-nokd"]["pesq_wb"]


def test_profile_takes_a_shipped_model(capsys):
    assert main(["profile", "--ckpt", SMALL, "--seconds", "0.5", "--threads", "1", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    entry = pretrained.model_info(SMALL)
    assert result["params"] == entry["params"] and result["macs_per_second"] == entry["macs_per_second"]


def test_distill_from_a_shipped_teacher(pair_folder, tmp_path):
    run = tmp_path / "student"
    assert main(["distill", "configs/cpu-distill.yaml", f"data.train={pair_folder}", f"train.out_dir={run}",
                 "distill.teacher=pretrained:cpu-teacher", "distill.options={fusion_channels: 8}",
                 "model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=1",
                 "train.max_steps=1", "train.val_every=1", "train.warmup_steps=1", "train.log_every=1"]) == 0
    assert load_enhancer(run / "checkpoints" / "best.ckpt").network.args["channels"] == 8
    assert "teacher: pretrained:cpu-teacher" in (run / "config.yaml").read_text()


def test_enhance_without_ckpt_keeps_a_stereo_files_channels(tmp_path, capsys):
    sf.write(tmp_path / "both.wav", stereo(), 16000, subtype="FLOAT")
    for i in range(2):
        sf.write(tmp_path / f"ch{i}.wav", stereo()[:, i], 16000, subtype="FLOAT")
    best = pretrained.best_model()["name"]
    assert main(["enhance", str(tmp_path / "both.wav"), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert f"using the shipped model {best}" in capsys.readouterr().err
    assert main(["enhance", "--ckpt", f"pretrained:{best}", str(tmp_path / "ch0.wav"), str(tmp_path / "ch1.wav"),
                 "-o", str(tmp_path / "mono"), "-q"]) == 0
    both, sr = sf.read(tmp_path / "out" / "both.wav")
    assert sr == 16000 and both.shape == (16000, 2)
    for i in range(2):
        np.testing.assert_allclose(both[:, i], sf.read(tmp_path / "mono" / f"ch{i}.wav")[0], atol=1e-6)
    assert not np.allclose(both[:, 0], both[:, 1])


def test_downmix_enhances_the_mono_mix(tmp_path):
    sf.write(tmp_path / "both.wav", stereo(), 16000, subtype="FLOAT")
    sf.write(tmp_path / "mix.wav", stereo().mean(axis=1), 16000, subtype="FLOAT")
    assert main(["enhance", "--ckpt", SMALL, "--downmix", str(tmp_path / "both.wav"), str(tmp_path / "mix.wav"),
                 "-o", str(tmp_path / "out"), "-q"]) == 0
    downmixed, _ = sf.read(tmp_path / "out" / "both.wav")
    assert downmixed.ndim == 1
    np.testing.assert_allclose(downmixed, sf.read(tmp_path / "out" / "mix.wav")[0], atol=1e-6)


def test_stream_keeps_a_stereo_files_channels(tmp_path, causal_ckpt):
    sf.write(tmp_path / "both.wav", stereo(), 16000, subtype="FLOAT")
    sf.write(tmp_path / "ch1.wav", stereo()[:, 1], 16000, subtype="FLOAT")
    for args in (["stream", "--ckpt", str(causal_ckpt), str(tmp_path / "both.wav"), "-o", str(tmp_path / "s.wav")],
                 ["stream", "--ckpt", str(causal_ckpt), str(tmp_path / "ch1.wav"), "-o", str(tmp_path / "s1.wav")],
                 ["enhance", "--stream", "--ckpt", str(causal_ckpt), str(tmp_path / "both.wav"), "-o",
                  str(tmp_path / "e"), "-q"],
                 ["stream", "--downmix", "--ckpt", str(causal_ckpt), str(tmp_path / "both.wav"), "-o",
                  str(tmp_path / "d.wav")]):
        assert main(args) == 0, args
    streamed = sf.read(tmp_path / "s.wav")[0]
    assert streamed.shape == (16000, 2)
    np.testing.assert_allclose(streamed[:, 1], sf.read(tmp_path / "s1.wav")[0], atol=1e-4)  # 16-bit output
    np.testing.assert_allclose(sf.read(tmp_path / "e" / "both.wav")[0], streamed, atol=1e-4)
    assert sf.read(tmp_path / "d.wav")[0].ndim == 1


def test_downmix_is_refused_for_a_model_of_several_microphones(tmp_path, capsys):
    from sekd.checkpoint import save_enhancer
    from sekd.models import build_enhancer
    save_enhancer(build_enhancer("tiny", in_channels=4), tmp_path / "four.ckpt")
    sf.write(tmp_path / "both.wav", stereo(0.2), 16000)
    assert main(["enhance", "--ckpt", str(tmp_path / "four.ckpt"), "--downmix", str(tmp_path / "both.wav"),
                 "-o", str(tmp_path / "o")]) == 2
    assert "--downmix: the model takes 4 channels" in capsys.readouterr().err


def fake_run(folder: Path, corpus: Path, seed: int = 0, teacher: str | None = None) -> Path:
    """A finished run folder as sekd study leaves it: result.json, config.yaml, checkpoints/best.ckpt."""
    from sekd.checkpoint import save_enhancer
    from sekd.models import build_enhancer
    torch.manual_seed(seed)
    model = build_enhancer("tiny")
    save_enhancer(model, folder / "checkpoints" / "best.ckpt")
    config = {"data": {"train": str(corpus)}, "model": {"preset": "tiny"}, "train": {"seed": seed}}
    if teacher:
        config["distill"] = {"teacher": teacher, "method": "pkt", "weight": 0.5}
    (folder / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    summary = {"files": 3, "pesq_wb": 1.2 + seed / 10, "stoi": 0.8, "si_sdr": 5.0, "nan_pesq_wb": 0}
    (folder / "result.json").write_text(json.dumps({
        "kind": "student" if teacher else "teacher", "seed": seed, "method": "pkt" if teacher else "none",
        "weight": 0.5 if teacher else None, "params": sum(p.numel() for p in model.parameters()),
        "macs_per_second": 1000, "summary": summary, "settings": {"data": str(corpus), "evaluation": {"split": "test"}}}))
    return folder


def test_ship_models_writes_and_replaces_shipped_models(tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location("ship_models", REPO / "scripts" / "ship_models.py")
    ship_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_models)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text(json.dumps({"recipe": 1, "seed": 0, "packages": {"espeak-ng": "1"}}))
    (corpus / "ATTRIBUTION.md").write_text("# Attribution\n")
    monkeypatch.chdir(tmp_path)
    study = Path("study")
    fake_run(study / "teacher", corpus)
    fake_run(study / "pkt" / "seed1", corpus, seed=1, teacher="study/teacher/checkpoints/best.ckpt")
    out = tmp_path / "package"
    out.mkdir()
    assert ship_models.main(["--out", str(out), "t=study/teacher", "s=study/pkt/seed1"]) == 0
    index = json.loads((out / "index.json").read_text())["models"]
    assert [(m["name"], m["role"], m["study"], m["teacher"]) for m in index] == [
        ("t", "teacher", "study", None), ("s", "student", "study", "t")]
    assert index[1]["test"]["summary"]["pesq_wb"] == 1.3 and "distilled from pretrained:t with pkt" in index[1]["description"]
    assert set(read_checkpoint_file(out / "s.ckpt")) == {"sekd", "state_dict"}
    assert (out / "ATTRIBUTION.md").read_text() == "# Attribution\n"
    # The next study's model replaces one name and keeps the other; --replace-all drops what it does not name.
    fake_run(Path("next") / "pkt" / "seed0", corpus, seed=0, teacher="study/teacher/checkpoints/best.ckpt")
    assert ship_models.main(["--out", str(out), "--study", "results/next", "s=next/pkt/seed0"]) == 0
    index = json.loads((out / "index.json").read_text())["models"]
    assert [(m["name"], m["study"], m["seed"]) for m in index] == [("t", "study", 0), ("s", "results/next", 0)]
    assert ship_models.main(["--out", str(out), "--replace-all", "s=next/pkt/seed0"]) == 0
    assert [m["name"] for m in json.loads((out / "index.json").read_text())["models"]] == ["s"]
    assert not (out / "t.ckpt").exists()
    (Path("next") / "pkt" / "seed0" / "result.json").unlink()
    assert ship_models.main(["--out", str(out), "s=next/pkt/seed0"]) == 2  # not a finished run: one line, nothing written


def test_a_study_distils_from_a_shipped_teacher(tmp_path):
    from sekd.study import check_study_data, load_study, plan_runs, run_config
    from test_study import write_study
    path = write_study(tmp_path / "s.yaml", tmp_path, tmp_path / "out")
    study = load_study(path, ["teacher.checkpoint=pretrained:cpu-teacher"])
    check_study_data(study, [], None)  # the teacher's file is found
    student = next(run for run in plan_runs(study, {"i2s_tfckd": 1.0}) if run.method == "i2s_tfckd")
    assert run_config(study, student).extra["distill"]["teacher"] == "pretrained:cpu-teacher"
    with pytest.raises(SekdError, match="pretrained:nope: no shipped model"):
        check_study_data(load_study(path, ["teacher.checkpoint=pretrained:nope"]), [], None)
