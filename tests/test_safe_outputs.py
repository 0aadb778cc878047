"""``sekd enhance`` and ``sekd stream`` never destroy inputs or each other's outputs, and never clip silently."""

import hashlib

import numpy as np
import pytest
import soundfile as sf
from torch import nn

from conftest import speechlike
from sekd.cli import main
from sekd.enhance import enhance_files
from sekd.signal import SignalConfig


class Gain(nn.Module):
    """Stands in for a model: the input times ``gain``, so loud outputs are easy to make."""

    signal = SignalConfig()
    in_channels = 1

    def __init__(self, gain: float = 1.0):
        super().__init__()
        self.gain = gain

    def forward(self, noisy):
        return noisy[:, 0] * self.gain


def digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        sf.write(folder / f"a{i}.wav", speechlike(0.5, seed=i), 16000)
    return folder


def test_output_folder_equal_to_the_input_is_refused(inputs, tiny_ckpt, capsys):
    before = digest(inputs)
    assert main(["enhance", "--ckpt", str(tiny_ckpt), str(inputs), "-o", str(inputs), "-q"]) == 2
    assert "is the input folder" in capsys.readouterr().err
    assert digest(inputs) == before


def test_output_naming_an_input_file_is_refused(inputs, tiny_ckpt, capsys):
    before = digest(inputs)
    assert main(["enhance", "--ckpt", str(tiny_ckpt), str(inputs / "a0.wav"), "-o", str(inputs), "-q"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert digest(inputs) == before


def test_output_inside_the_input_folder_is_not_scanned(inputs, tiny_ckpt):
    out = inputs / "enhanced"
    for _ in range(2):  # the second run must not enhance the first run's outputs
        assert main(["enhance", "--ckpt", str(tiny_ckpt), str(inputs), "-o", str(out), "-q"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a0.wav", "a1.wav"]


def test_equal_names_in_different_folders_keep_apart(tmp_path, tiny_ckpt):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "same.wav", speechlike(0.5, seed=len(folder)), 16000)
    out = tmp_path / "out"
    assert main(["enhance", "--ckpt", str(tiny_ckpt), str(tmp_path / "x" / "same.wav"), str(tmp_path / "y"),
                 "-o", str(out), "-q"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == ["x/same.wav", "y/same.wav"]


def test_same_stem_in_two_formats_is_refused_naming_both(inputs, tiny_ckpt, capsys):
    sf.write(inputs / "x.flac", speechlike(0.5), 16000)
    sf.write(inputs / "x.ogg", speechlike(0.5), 16000)
    assert main(["enhance", "--ckpt", str(tiny_ckpt), str(inputs), "-o", str(inputs.parent / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "x.flac" in err and "x.ogg" in err
    assert not (inputs.parent / "out" / "a0.wav").exists()  # refused before anything was written


def test_output_that_is_a_file_or_under_one_is_refused(inputs, tiny_ckpt, capsys):
    afile = inputs.parent / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert main(["enhance", "--ckpt", str(tiny_ckpt), str(inputs), "-o", str(out), "-q"]) == 2
        assert f"-o {out}" in capsys.readouterr().err


def test_mp3_is_read_and_other_files_are_skipped_with_a_word(inputs, tiny_ckpt, caplog):
    sf.write(inputs / "song.mp3", speechlike(0.5), 16000)
    (inputs / "notes.txt").write_text("not audio")
    out = inputs.parent / "out"
    with caplog.at_level("INFO", logger="sekd"):
        assert main(["enhance", "--ckpt", str(tiny_ckpt), str(inputs), "-o", str(out), "-q"]) == 0
    assert (out / "song.wav").is_file()
    assert any("notes.txt" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_24", "PCM_16"])
def test_output_keeps_the_input_subtype(tmp_path, subtype):
    sf.write(tmp_path / "x.wav", speechlike(0.5), 16000, subtype=subtype)
    assert enhance_files(Gain(), [tmp_path / "x.wav"], tmp_path / "out", progress=False) == []
    assert sf.info(tmp_path / "out" / "x.wav").subtype == subtype


def test_float_input_keeps_loud_samples(tmp_path):
    sf.write(tmp_path / "x.wav", speechlike(0.5), 16000, subtype="FLOAT")
    enhance_files(Gain(5.0), [tmp_path / "x.wav"], tmp_path / "out", progress=False)
    assert np.abs(sf.read(tmp_path / "out" / "x.wav")[0]).max() > 1.2  # nothing clipped


def test_loud_integer_output_is_scaled_not_clipped_and_says_so(tmp_path, caplog):
    sf.write(tmp_path / "x.wav", speechlike(0.5), 16000, subtype="PCM_16")
    with caplog.at_level("WARNING", logger="sekd"):
        enhance_files(Gain(5.0), [tmp_path / "x.wav"], tmp_path / "out", progress=False)
    out = sf.read(tmp_path / "out" / "x.wav")[0]
    assert np.abs(out).max() <= 1.0 and np.mean(np.abs(out) >= 0.999) < 0.001  # not a clipped plateau
    assert any("scaled down" in r.getMessage() and "x.wav" in r.getMessage() for r in caplog.records)


def test_truncated_wav_is_enhanced_with_a_warning(tmp_path, caplog):
    sf.write(tmp_path / "cut.wav", speechlike(0.5), 16000)
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) // 2])
    with caplog.at_level("WARNING", logger="sekd"):
        assert enhance_files(Gain(), [tmp_path / "cut.wav"], tmp_path / "out", progress=False) == []
    assert any("truncated" in r.getMessage() and "cut.wav" in r.getMessage() for r in caplog.records)


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    import socket
    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".x.wav.sekd-{socket.gethostname()}-999999999-abc.tmp"
    foreign = out / ".x.wav.sekd-otherhost-1-abc.tmp"
    dead.write_bytes(b"partial")
    foreign.write_bytes(b"partial")
    sf.write(tmp_path / "x.wav", speechlike(0.5), 16000)
    enhance_files(Gain(), [tmp_path / "x.wav"], out, progress=False)
    assert not dead.exists() and foreign.exists()  # another host's writer may still be running


def test_written_files_follow_the_umask(tmp_path):
    import os
    sf.write(tmp_path / "x.wav", speechlike(0.5), 16000)
    old = os.umask(0o002)
    try:
        enhance_files(Gain(), [tmp_path / "x.wav"], tmp_path / "out", progress=False)
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "x.wav").stat().st_mode & 0o777 == 0o664


def test_stream_refuses_to_overwrite_its_input_or_a_folder(tmp_path, causal_ckpt, capsys):
    wav = tmp_path / "x.wav"
    sf.write(wav, speechlike(0.5), 16000)
    before = wav.read_bytes()
    assert main(["stream", "--ckpt", str(causal_ckpt), str(wav), "-o", str(wav)]) == 2
    assert main(["stream", "--ckpt", str(causal_ckpt), str(wav), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is the input file" in err and "a folder" in err and "Traceback" not in err
    assert wav.read_bytes() == before
