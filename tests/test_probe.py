"""Every command over the bad-input corpus (tests/badcorpus.py): a clear line per bad file, the
right exit code, the inputs byte-identical afterwards, and the good files still processed."""

import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from badcorpus import snapshot, write_bad_corpus
from sekd.cli import main

TINY = ["model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "train.max_steps=1", "train.val_every=1"]


@pytest.fixture
def probe(tmp_path):
    root = tmp_path / "probe"
    bad, good = write_bad_corpus(root)
    before = snapshot(root)
    yield root, bad, good
    assert snapshot(root) == before, "a command changed its inputs"


def assert_names_every_bad_file(err, root, bad, good):
    assert "Traceback" not in err
    for pair_id, (path, words) in bad.items():
        lines = [line for line in err.splitlines() if str(root / path) in line]
        assert lines, f"{path} not named"
        assert any(words in line for line in lines), (path, words, lines)
    for pair_id in good:
        assert f"/{pair_id}.wav" not in err


def test_data_check_names_every_bad_file(probe, capsys):
    root, bad, good = probe
    assert main(["data", "check", str(root)]) == 1
    assert_names_every_bad_file(capsys.readouterr().out, root, bad, good)


@pytest.mark.parametrize("command", ["train", "distill"])
def test_training_refuses_bad_data_before_the_first_step(probe, tmp_path, tiny_ckpt, capsys, command):
    root, bad, good = probe
    out = tmp_path / "run"
    config = "configs/cpu-teacher.yaml" if command == "train" else "configs/cpu-distill.yaml"
    extra = [f"distill.teacher={tiny_ckpt}", "distill.method=pkt", "distill.options={}"] if command == "distill" else []
    assert main([command, config, f"data.train={root}", f"train.out_dir={out}", *TINY, *extra]) == 2
    assert_names_every_bad_file(capsys.readouterr().err, root, bad, good)
    assert not out.exists()  # nothing written


def test_evaluate_refuses_bad_pairs_or_leaves_them_out(probe, tmp_path, tiny_ckpt, capsys):
    root, bad, good = probe
    assert main(["evaluate", "--data", str(root), "--ckpt", str(tiny_ckpt), "--no-dnsmos", "-q",
                 "--workers", "1"]) == 2
    assert_names_every_bad_file(capsys.readouterr().err, root, bad, good)

    scores = tmp_path / "scores.json"
    assert main(["evaluate", "--data", str(root), "--ckpt", str(tiny_ckpt), "--no-dnsmos", "-q", "--workers", "1",
                 "--skip-bad", "--json", str(scores), "--device", "cpu"]) == 0
    report = json.loads(scores.read_text())
    assert sorted(report["skipped"]) == sorted(bad)
    assert report["summary"]["tiny"]["files"] == len(good) and report["summary"]["noisy"]["files"] == len(good)
    assert report["summary"]["noisy"]["si_sdr"] > 0  # no −94 dB silent reference averaged in


def test_enhance_processes_the_good_files_and_names_the_bad(probe, tmp_path, tiny_ckpt, capsys):
    root, bad, good = probe
    sf.write(tmp_path / "extra.mp3", np.asarray(sf.read(root / "clean" / "good0.wav")[0], np.float32), 16000)
    out = tmp_path / "out"
    assert main(["enhance", "--ckpt", str(tiny_ckpt), str(root / "noisy"), str(tmp_path / "extra.mp3"), "-o", str(out),
                 "-q", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    unreadable = ["nan", "empty", "nosamples", "garbage", "badcodec"]  # a stereo file is enhanced channel by channel
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == len(unreadable)
    for name in unreadable:
        assert sum(f"noisy/{name}.wav" in line for line in errors) == 1, name
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    enhanced = sorted({*good, "tiny", "silentref", "stereo", "stereoref", "lengths", "truncated"})
    assert written == ["extra.wav", *(f"probe/noisy/{n}.wav" for n in enhanced)]
    assert sf.info(out / "probe/noisy/pcm24.wav").subtype == "PCM_24"
    assert sf.info(out / "probe/noisy/float.wav").subtype == "FLOAT"
    assert "truncated" in err
    assert sf.info(out / "probe/noisy/stereo.wav").channels == 2  # the file's channels are kept


def test_stream_over_every_file(probe, tmp_path, causal_ckpt, capsys):
    root, bad, good = probe
    for wav in sorted((root / "noisy").iterdir()):
        code = main(["stream", "--ckpt", str(causal_ckpt), str(wav), "-o", str(tmp_path / "s" / wav.name)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        broken = wav.stem in ("nan", "empty", "nosamples", "garbage", "badcodec")  # stereo: channel by channel
        assert code == (2 if broken else 0), (wav.name, err)
        assert (str(wav) in err) == broken


def test_study_refuses_bad_data_before_any_run(probe, tmp_path, capsys):
    root, bad, good = probe
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "study"), "data": str(root), "seeds": [0], "threads": 1,
        "teacher": {"config": "configs/cpu-teacher.yaml"}, "student": {"config": "configs/cpu-student.yaml"},
        "common": {"model.preset": "tiny"}, "methods": ["pkt"], "peers": [],
        "evaluation": {"dnsmos": False, "workers": 1, "device": "cpu"},
    }))
    assert main(["study", str(config)]) == 2
    assert_names_every_bad_file(capsys.readouterr().err, root, bad, good)
    assert not list((tmp_path / "study").rglob("result.json"))
