import numpy as np
import pytest
import soundfile as sf

from sekd.data.datasets import CropDataset, WholeFileDataset, list_pairs
from sekd.errors import SekdError


def test_paired_folder(pair_folder):
    pairs = list_pairs(pair_folder)
    assert [p.id for p in pairs] == ["f0", "f1", "f2"]
    noisy, clean = CropDataset(pairs, 8000)[0]
    assert noisy.shape == (1, 8000) and clean.shape == (8000,)
    noisy, clean = CropDataset(pairs, 40000)[1]          # longer than the file: zero-padded
    assert noisy.shape == (1, 40000) and float(clean[-100:].abs().sum()) == 0.0
    noisy, clean = WholeFileDataset(pairs)[2]
    assert noisy.shape == (1, 16000) and clean.shape == (16000,)


def test_manifest_split(tmp_path, pair_folder):
    (tmp_path / "manifest.csv").write_text(
        "split,id,noisy,clean\ntrain,a,pairs/noisy/f0.wav,pairs/clean/f0.wav\n"
        "test,b,pairs/noisy/f1.wav,pairs/clean/f1.wav\n")
    assert [p.id for p in list_pairs(tmp_path, "train")] == ["a"]
    assert [p.id for p in list_pairs(tmp_path / "manifest.csv", "test")] == ["b"]
    with pytest.raises(SekdError, match="no mixtures in split 'valid'"):
        list_pairs(tmp_path, "valid")


def test_other_sample_rates_are_resampled(pair_folder):
    sf.write(pair_folder / "noisy" / "f0.wav", np.zeros(8000, np.float32), 8000)
    noisy, _ = WholeFileDataset(list_pairs(pair_folder))[0]
    assert noisy.shape == (1, 16000)


def test_missing_pair_names_the_file(pair_folder):
    (pair_folder / "clean" / "f1.wav").unlink()
    with pytest.raises(SekdError, match=r"f1\.wav: no matching clean file"):
        list_pairs(pair_folder)


def test_unreadable_file_names_the_file(pair_folder):
    (pair_folder / "noisy" / "f0.wav").write_bytes(b"not audio at all")
    with pytest.raises(SekdError, match=r"noisy/f0\.wav: cannot read audio"):
        CropDataset(list_pairs(pair_folder), 8000)[0]


def test_channel_count_must_fit_the_model(pair_folder):
    with pytest.raises(SekdError, match=r"f0\.wav: has 1 channel\(s\) but the model takes 4"):
        CropDataset(list_pairs(pair_folder), 8000, in_channels=4)[0]


def test_not_a_dataset(tmp_path):
    with pytest.raises(SekdError, match="no such file or folder"):
        list_pairs(tmp_path / "nope")
    with pytest.raises(SekdError, match="not a corpus"):
        list_pairs(tmp_path)
