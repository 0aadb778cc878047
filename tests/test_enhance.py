import numpy as np
import soundfile as sf
import torch
from torch import nn

from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.cli import main
from sekd.enhance import enhance_array
from sekd.models import build_enhancer
from sekd.signal import SignalConfig

from conftest import speechlike


class PassThrough(nn.Module):
    """Stands in for a model: returns the reference channel, so chunk stitching must be exact."""

    signal = SignalConfig()
    in_channels = 1

    def forward(self, noisy):
        return noisy[:, 0] * 1.0


def test_chunked_enhancement_stitches_exactly():
    audio = np.random.default_rng(0).standard_normal((1, 16000 * 5 + 123)).astype(np.float32)
    out = enhance_array(PassThrough(), audio, chunk_seconds=1.3, overlap_seconds=0.25)
    assert out.shape == (audio.shape[1],)
    np.testing.assert_allclose(out, audio[0], atol=1e-6)


def test_chunk_outside_overlaps_equals_a_direct_pass(tiny_ckpt):
    model = load_enhancer(tiny_ckpt)
    audio = speechlike(6.0)[None]
    chunked = enhance_array(model, audio, chunk_seconds=2.0, overlap_seconds=0.5)
    first = enhance_array(model, audio[:, :32000], chunk_seconds=60)
    assert chunked.shape == (96000,) and np.isfinite(chunked).all()
    np.testing.assert_allclose(chunked[:24000], first[:24000], atol=1e-5)  # before the first cross-fade


def test_checkpoint_round_trip(tiny_ckpt):
    torch.manual_seed(0)
    a, b = load_enhancer(tiny_ckpt), load_enhancer(tiny_ckpt)
    x = torch.randn(1, 1, 4000)
    assert torch.equal(a(x), b(x))


def test_enhance_keeps_rate_and_length_and_reports_bad_files(tmp_path, tiny_ckpt, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sf.write(inputs / "good44k.wav", speechlike(1.5, sr=44100), 44100)
    sf.write(inputs / "tiny.wav", speechlike(0.01), 16000)          # shorter than one STFT window
    (inputs / "empty.wav").write_bytes(b"")
    sf.write(inputs / "nosamples.wav", np.zeros(0, np.float32), 16000)
    (inputs / "garbage.wav").write_bytes(b"RIFF....garbage")
    out = tmp_path / "out"
    code = main(["enhance", "--ckpt", str(tiny_ckpt), str(inputs), str(tmp_path / "missing.wav"), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 4
    for name in ["empty.wav", "nosamples.wav", "garbage.wav", "missing.wav"]:
        assert sum(name in line for line in lines) == 1, name
    # Names relative to the folder holding both inputs (the folder and missing.wav): out/in/...
    data, sr = sf.read(out / "in" / "good44k.wav")
    assert sr == 44100 and data.shape == (int(1.5 * 44100),)
    assert sf.info(out / "in" / "tiny.wav").frames == 160
    assert sorted(p.name for p in (out / "in").iterdir()) == ["good44k.wav", "tiny.wav"]  # no temporary files left


def test_enhance_refuses_wrong_channel_count(tmp_path, capsys):
    # A model of several microphones takes exactly its channels (a one-channel model enhances each channel:
    # tests/test_pretrained.py).
    save_enhancer(build_enhancer("tiny", in_channels=4), tmp_path / "four.ckpt")
    sf.write(tmp_path / "stereo.wav", np.zeros((16000, 2), np.float32), 16000)
    assert main(["enhance", "--ckpt", str(tmp_path / "four.ckpt"), str(tmp_path / "stereo.wav"), "-o",
                 str(tmp_path / "o")]) == 1
    assert "stereo.wav: has 2 channel(s) but the model takes 4" in capsys.readouterr().err


def test_bad_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"nope")
    assert main(["enhance", "--ckpt", str(bad), str(bad), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.ckpt" in err and "Traceback" not in err
