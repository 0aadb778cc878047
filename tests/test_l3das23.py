"""The built-in 8-channel corpus in the L3DAS23 layout, its B-format, and the whole multi-channel story:
build, train a tiny 8-channel teacher, distil a student, score with the L3DAS23 metric, write a submission."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from sekd.audio import read_audio
from sekd.asr import describe_asr, load_asr, wer, words
from sekd.checkpoint import load_enhancer
from sekd.cli import main
from sekd.data.datasets import load_pair, list_pairs
from sekd.data.l3das23 import SPLIT_FOLDERS, foa_gains, simulate_foa
from sekd.errors import SekdError
from sekd.metrics import l3das23_score

TINY = ["model.preset=tiny", "model.in_channels=8", "data.batch_size=4", "data.crop_seconds=1.0",
        "data.valid_files=2", "train.max_steps=2", "train.val_every=2", "train.warmup_steps=1", "train.log_every=1"]


@pytest.mark.parametrize("azimuth, elevation", [(0, 0), (90, 0), (60, 20), (-135, -40), (200, 70)])
def test_plane_wave_gives_acn_sn3d_b_format(azimuth, elevation):
    az, el = np.deg2rad(azimuth), np.deg2rad(elevation)
    direction = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
    mic = np.array([100.0, 100.0, 100.0])
    rir = simulate_foa(np.array([200.0, 200.0, 200.0]), mic + 60 * direction, [mic], None, 0, 4096)
    w, y, z, x = rir
    ratios = [float(ch @ w / (w @ w)) for ch in (y, z, x)]
    expected = [np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)]
    assert ratios == pytest.approx(expected, abs=1e-6)
    assert np.allclose(rir[1:], np.outer(expected, w), atol=1e-9)  # coincident capsules: same waveform
    assert np.argmax(np.abs(w)) == pytest.approx(15 + 60 / 343 * 16000, abs=1)  # SINC_HALF + d/c


def test_foa_gains_order_and_unit_energy():
    d = np.array([[0.0, 0.6], [1.0, 0.0], [0.0, 0.8]])  # (x, y, z) of two directions
    gains = foa_gains(d)
    assert gains[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]  # along +y: W, Y
    assert gains[:, 1].tolist() == [1.0, 0.0, 0.8, 0.6]  # Z = z, X = x
    assert np.sum(gains[1:] ** 2, axis=0) == pytest.approx([1.0, 1.0])  # SN3D: first order has W's norm


def test_wer_and_score():
    assert wer("the cat sat", "the cat sat") == 0.0
    assert wer("The cat, sat!", "the bat sat on") == pytest.approx(2 / 3)  # one substitution, one insertion
    assert wer("", "") == 0.0 and wer("", "word") == 1.0
    assert words("It's a TEST.") == ["IT'S", "A", "TEST"]
    assert l3das23_score(0.8, 0.2) == pytest.approx(0.8)
    assert l3das23_score(1.2, 1.5) == pytest.approx(0.5)  # both clipped to [0, 1]
    assert l3das23_score(-0.1, -0.3) == pytest.approx(0.5)


def test_asr_choice(tmp_path):
    assert not describe_asr("pocketsphinx").comparable
    with pytest.raises(SekdError, match="neither 'pocketsphinx' nor a folder"):
        describe_asr(str(tmp_path / "nothing"))
    model = tmp_path / "wav2vec2-base-960h"
    model.mkdir()
    (model / "config.json").write_text("{}")
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(SekdError, match=r"pip install 'sekd\[asr\]'"):
            describe_asr(str(model))
    else:
        assert describe_asr(str(model)).comparable


def test_pocketsphinx_transcribes_speech_repeatably(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(tmp_path / "s.wav"), "the quick brown fox jumps over the dog"],
                   check=True)
    audio = read_audio(tmp_path / "s.wav")[0][0]
    asr = load_asr("pocketsphinx")
    first = asr.transcribe(audio)
    assert words(first) and asr.transcribe(audio) == first


@pytest.fixture(scope="module")
def corpus(small_l3das23_corpus):
    return small_l3das23_corpus


def test_corpus_has_the_challenge_layout(corpus, capsys):
    info = json.loads((corpus / "corpus.json").read_text())
    assert info["layout"] == "l3das23" and (corpus / "ATTRIBUTION.md").is_file()
    for split, folder in SPLIT_FOLDERS.items():
        ids = sorted(p.name[:-6] for p in (corpus / folder / "data").glob("*_A.wav"))
        assert len(ids) == info["splits"][split]["mixtures"] > 0
        for i in ids[:3]:
            a, b = sf.info(corpus / folder / "data" / f"{i}_A.wav"), sf.info(corpus / folder / "data" / f"{i}_B.wav")
            label = sf.info(corpus / folder / "labels" / f"{i}.wav")
            assert (a.channels, b.channels, label.channels) == (4, 4, 1)
            assert a.samplerate == b.samplerate == label.samplerate == 16000 and a.subtype == "PCM_16"
            assert a.frames == b.frames == label.frames
    texts = list(corpus.glob("*/labels/*.txt"))
    assert texts and all(t.read_text().strip() for t in texts)
    # Mic A's W channel holds the speech at about the target's level; the mics are not copies.
    pair = list_pairs(corpus, "valid")[0]
    noisy, clean = load_pair(pair, 8)
    assert noisy.shape[0] == 8 and not np.allclose(noisy[:4], noisy[4:])
    assert load_pair(pair, 4)[0].shape[0] == 4  # mic A only
    capsys.readouterr()
    assert main(["data", "check", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "layout: l3das23" in out and "train100" in out and "4+4" in out and "no problems" in out


def test_build_is_deterministic_and_a_rebuild_is_a_no_op(corpus, tmp_path):
    """Building again is a no-op; a fresh build with the same seed gives the same bytes."""
    first = corpus / SPLIT_FOLDERS["test"] / "data" / "test-00000_A.wav"
    stamp = first.stat().st_mtime_ns
    assert main(["data", "build", str(corpus), "--layout", "l3das23", "--small", "-q"]) == 0
    assert first.stat().st_mtime_ns == stamp
    other = tmp_path / "again"
    assert main(["data", "build", str(other), "--layout", "l3das23", "--small", "-q"]) == 0
    for path in sorted(corpus.glob("L3DAS23_Task1_dev/*/*"))[:6]:
        assert path.read_bytes() == (other / path.relative_to(corpus)).read_bytes()


@pytest.fixture(scope="module")
def teacher(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher8")
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={corpus}", f"train.out_dir={out}", *TINY]) == 0
    return out / "checkpoints" / "best.ckpt"


def test_eight_channel_teacher_student_score_and_submission(corpus, teacher, tmp_path):
    assert load_enhancer(teacher).in_channels == 8
    student_run = tmp_path / "student"
    assert main(["distill", "configs/cpu-distill.yaml", f"data.train={corpus}", f"train.out_dir={student_run}",
                 f"distill.teacher={teacher}", "distill.options={fusion_channels: 8}", *TINY]) == 0
    student = student_run / "checkpoints" / "best.ckpt"
    assert load_enhancer(student).in_channels == 8

    scores = tmp_path / "scores.json"
    assert main(["evaluate", "--data", str(corpus), "--ckpt", f"teacher={teacher}", "--ckpt", f"student={student}",
                 "--metric", "l3das23", "--json", str(scores), "--csv", str(tmp_path / "scores.csv"),
                 "--limit", "2", "--workers", "1", "-q"]) == 0
    report = json.loads(scores.read_text())
    assert report["metric"] == "l3das23" and report["asr"]["comparable_with_challenge"] is False
    assert list(report["summary"]) == ["noisy", "teacher", "student"]
    for entry in report["summary"].values():
        assert 0.0 <= entry["l3das23"] <= 1.0 and 0.0 <= entry["stoi"] <= 1.0 and entry["wer"] >= 0.0
        assert "pesq_wb" not in entry

    dev = corpus / SPLIT_FOLDERS["valid"] / "data"
    out = tmp_path / "submission"
    assert main(["enhance", "--ckpt", str(student), str(dev), "-o", str(out), "--format", "l3das23-submission",
                 "-q"]) == 0
    written = sorted(out.glob("*.npy"))
    assert [p.stem for p in written] == sorted(p.name[:-6] for p in dev.glob("*_A.wav"))
    array = np.load(written[0])
    assert array.dtype == np.float32 and array.ndim == 1
    assert array.size == sf.info(dev / f"{written[0].stem}_A.wav").frames
    assert not list(out.glob(".*"))  # no temporary files left


def test_four_channel_model_reads_mic_a_only(corpus, tmp_path):
    from sekd.checkpoint import save_enhancer
    from sekd.models import build_enhancer
    torch.manual_seed(0)
    ckpt = tmp_path / "four.ckpt"
    save_enhancer(build_enhancer("tiny", in_channels=4), ckpt)
    dev = corpus / SPLIT_FOLDERS["valid"] / "data"
    out = tmp_path / "enhanced"
    assert main(["enhance", "--ckpt", str(ckpt), str(dev), "-o", str(out), "-q"]) == 0
    assert len(list(out.glob("*.wav"))) == len(list(dev.glob("*_A.wav")))
    # A 2-channel model cannot take these files: a clear error per file, exit status 1.
    save_enhancer(build_enhancer("tiny", in_channels=2), ckpt)
    assert main(["enhance", "--ckpt", str(ckpt), str(dev), "-o", str(out), "-q"]) == 1
