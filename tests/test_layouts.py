"""Corpus layouts: tiny trees with the real corpora's names, correct and broken, recognised, listed and checked."""

import numpy as np
import pytest
import soundfile as sf

from sekd.cli import main
from sekd.data.datasets import list_pairs, load_pair
from sekd.data.layouts import check_corpus, scan
from sekd.errors import SekdError


def _wav(path, channels=1, seconds=0.25, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(path, 0.1 * rng.standard_normal((int(seconds * sr), channels)), sr)


def l3das23_tree(root):
    for folder, ids in {"L3DAS23_Task1_train100": ["19-198-0001", "19-198-0002"],
                        "L3DAS23_Task1_train360": ["100-121669-0000"], "L3DAS23_Task1_dev": ["84-121123-0000"]}.items():
        for i in ids:
            _wav(root / folder / "data" / f"{i}_A.wav", channels=4)
            _wav(root / folder / "data" / f"{i}_B.wav", channels=4)
            _wav(root / folder / "labels" / f"{i}.wav")
            (root / folder / "labels" / f"{i}.txt").write_text("A TRANSCRIPT\n")
    return root


def dns_tree(root):
    for n in (0, 1, 2):
        _wav(root / "noisy" / f"book_0000{n}_chp_0012_reader_05262_3_snr{5 * n}_tl-27_fileid_{n}.wav")
        _wav(root / "clean" / f"clean_fileid_{n}.wav")
    return root


def voicebank_tree(root):
    for name, ids in {"testset": ["p232_001", "p257_002"], "trainset_28spk": ["p226_001", "p230_002", "p287_003",
                                                                              "p231_004"]}.items():
        for i in ids:
            _wav(root / f"noisy_{name}_wav" / f"{i}.wav", sr=48000)
            _wav(root / f"clean_{name}_wav" / f"{i}.wav", sr=48000)
    return root


def paired_tree(root):
    for split in ("train", "valid"):
        for i in range(2):
            _wav(root / split / "noisy" / f"a{i}.wav", channels=2)
            _wav(root / split / "clean" / f"a{i}.wav")
    return root


def manifest_tree(root):
    rows = ["split,id,noisy,clean"]
    for split in ("train", "test"):
        _wav(root / split / "noisy" / f"{split}-0.wav")
        _wav(root / split / "clean" / f"{split}-0.wav")
        rows.append(f"{split},{split}-0,{split}/noisy/{split}-0.wav,{split}/clean/{split}-0.wav")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _remove_a_label(root):
    (root / "L3DAS23_Task1_dev" / "labels" / "84-121123-0000.wav").unlink()
    return "L3DAS23_Task1_dev/data/84-121123-0000_A.wav: no label"


def _three_channel_mic_b(root):
    _wav(root / "L3DAS23_Task1_train100" / "data" / "19-198-0002_B.wav", channels=3)
    return "19-198-0002_B.wav: 3 channel(s), expected 4"


def _short_dns_clean(root):
    _wav(root / "clean" / "clean_fileid_1.wav", seconds=0.2)
    return "clean_fileid_1.wav: 0.200 s"


def _stereo_voicebank_clean(root):
    _wav(root / "clean_testset_wav" / "p257_002.wav", channels=2, sr=48000)
    return "clean_testset_wav/p257_002.wav: the clean target must be mono"


def _unreadable_paired(root):
    (root / "valid" / "noisy" / "a1.wav").write_bytes(b"not audio")
    return "valid/noisy/a1.wav: cannot read audio"


def _missing_manifest_file(root):
    (root / "test" / "clean" / "test-0.wav").unlink()
    return "test/clean/test-0.wav: no such file"


def _voicebank_rate(root):
    _wav(root / "clean_trainset_28spk_wav" / "p230_002.wav", sr=16000)
    return "p230_002.wav: sample rate 16000 Hz"


LAYOUTS = {
    "l3das23": (l3das23_tree, [_remove_a_label, _three_channel_mic_b]),
    "dns": (dns_tree, [_short_dns_clean]),
    "voicebank": (voicebank_tree, [_stereo_voicebank_clean, _voicebank_rate]),
    "paired": (paired_tree, [_unreadable_paired]),
    "manifest": (manifest_tree, [_missing_manifest_file]),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_check_accepts_a_correct_tree(layout, tmp_path, capsys):
    root = LAYOUTS[layout][0](tmp_path / layout)
    corpus, _, problems = check_corpus(root)
    assert corpus.layout == layout and problems == []
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"layout: {layout}" in out and "no problems found" in out


@pytest.mark.parametrize("layout, breaker", [(k, b) for k, (_, breakers) in LAYOUTS.items() for b in breakers])
def test_check_names_the_broken_file(layout, breaker, tmp_path, capsys):
    root = LAYOUTS[layout][0](tmp_path / layout)
    expected = breaker(root)
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert expected in out


def test_l3das23_splits_and_microphones(tmp_path):
    root = l3das23_tree(tmp_path)
    assert [p.id for p in list_pairs(root, "train")] == ["19-198-0001", "19-198-0002", "100-121669-0000"]
    assert [p.id for p in list_pairs(root, "train360")] == ["100-121669-0000"]
    assert list_pairs(root, "test") == list_pairs(root, "valid")  # no test folder: dev
    pair = list_pairs(root / "L3DAS23_Task1_dev", "valid")[0]    # one split folder works too
    assert load_pair(pair, 4)[0].shape[0] == 4 and load_pair(pair, 8)[0].shape[0] == 8
    (root / "L3DAS23_Task1_dev" / "data" / "84-121123-0000_B.wav").unlink()
    with pytest.raises(SekdError, match=r"84-121123-0000_A\.wav: has 4 channel\(s\) but the model takes 8"):
        load_pair(list_pairs(root, "valid")[0], 8)
    _remove_a_label(root)
    with pytest.raises(SekdError, match="no label"):
        list_pairs(root, "valid")
    assert len(list_pairs(root, "train")) == 3  # other splits still load


def test_dns_pairs_by_fileid(tmp_path):
    pairs = list_pairs(dns_tree(tmp_path), "train")
    assert [(p.id, p.clean.name) for p in pairs] == [(f"fileid_{n}", f"clean_fileid_{n}.wav") for n in (0, 1, 2)]
    assert list_pairs(tmp_path, "test") == pairs  # a flat folder serves every split


def test_voicebank_splits(tmp_path):
    root = voicebank_tree(tmp_path)
    assert [p.id for p in list_pairs(root, "test")] == ["p232_001", "p257_002"]
    assert [p.id for p in list_pairs(root, "train")] == ["p230_002", "p231_004"]
    assert [p.id for p in list_pairs(root, "valid")] == ["p226_001", "p287_003"]
    noisy, clean = load_pair(list_pairs(root, "test")[0], 1)
    assert noisy.shape == (1, 4000) and clean.shape == (4000,)  # 48 kHz resampled to 16 kHz


def test_paired_and_manifest_layouts(tmp_path):
    assert scan(paired_tree(tmp_path / "p")).layout == "paired"
    assert [p.id for p in list_pairs(tmp_path / "p", "valid")] == ["a0", "a1"]
    assert [p.id for p in list_pairs(manifest_tree(tmp_path / "m"), "test")] == ["test-0"]
    with pytest.raises(SekdError, match="not a corpus"):
        scan(tmp_path)
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
