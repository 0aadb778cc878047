"""The built-in corpus builder, on the small corpus: layout, split hygiene, SNRs, determinism.

Needs the Debian packages of sekd.data.build.PACKAGES (the build installs them when missing
and it may: as root or with password-less sudo).
"""

import csv
import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from sekd.cli import main
from sekd.data import debian, sources
from sekd.data.build import MANIFEST_COLUMNS, SMALL_SIZE, build_corpus
from sekd.data.datasets import list_pairs
from sekd.errors import SekdError


def read_manifest(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    manifest = build_corpus(out, seed=0, small=True, workers=2, progress=False)
    assert manifest == out / "manifest.csv"
    return out


def test_layout(corpus):
    columns, rows = read_manifest(corpus / "manifest.csv")
    assert tuple(columns) == MANIFEST_COLUMNS
    for split, count in SMALL_SIZE.mixtures.items():
        assert sum(r["split"] == split for r in rows) == count
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        infos = [sf.info(str(corpus / row[kind])) for kind in ("noisy", "clean")]
        for info in infos:
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert infos[0].frames == infos[1].frames
        assert float(row["duration_s"]) == pytest.approx(infos[0].frames / 16000, abs=1e-3)
        assert row["source"] in {"studio", "acted", "synthetic"}
        assert row["room"] == "none" or row["room"].startswith("rt60=")
    info = json.loads((corpus / "corpus.json").read_text())
    assert info["seed"] == 0 and info["small"] is True
    attribution = (corpus / "ATTRIBUTION.md").read_text()
    assert "asterisk-core-sounds-en-g722" in attribution and "CC-BY-SA-3.0" in attribution


def test_held_out_speakers(corpus):
    _, rows = read_manifest(corpus / "manifest.csv")
    splits = ("train", "valid", "test", "ood")
    speakers = {split: {r["speaker"] for r in rows if r["split"] == split} for split in splits}
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not speakers[a] & speakers[b], (a, b)
    info = json.loads((corpus / "corpus.json").read_text())
    for split in ("valid", "test"):
        held_out = info["splits"][split]["speakers"]
        assert info["splits"][split]["real_speakers"] >= 4 and info["splits"][split]["synthetic_speakers"] >= 2
        assert any(s.startswith("asterisk-") for s in held_out) and any(s.startswith("fillets-") for s in held_out)
        assert not set(held_out) & set(info["splits"]["train"]["speakers"])
    assert info["splits"]["train"]["real_speakers"] >= 40
    ood = info["splits"]["ood"]
    assert ood["synthetic_speakers"] == 0 and ood["real_speakers"] >= 3
    assert {r["source"] for r in rows if r["split"] == "ood"} <= {"studio", "acted"}


def test_ood_uses_packages_of_no_other_split_and_reserved_sources_are_never_read():
    ood_files = {str(p) for package in sources.OOD_PACKAGES for p in debian.package_files(package)}
    reserved = {str(p) for p in debian.package_files(sources.DIALOGUE_PACKAGE) if p.suffix != ".lua"}
    utterances = sources.recorded_utterances()
    assert {sources.speaker_split(u.speaker) for u in utterances} == {"train", "valid", "test", "ood"}
    for utt in utterances:
        assert (utt.path in ood_files) == (sources.speaker_split(utt.speaker) == "ood"), utt
        assert utt.path not in reserved and "alsa" not in utt.path and "openttd" not in utt.path, utt
    assert not set(sources.OOD_PACKAGES) & set(sources.PACKAGES)


def test_corpus_facts_are_recorded_and_checked(corpus, capsys):
    info = json.loads((corpus / "corpus.json").read_text())
    train = info["splits"]["train"]
    assert train["speech_hours"]["real"] > 0 and train["speech_hours"]["synthetic"] > 0
    assert sum(1 for s in train["speaker_table"].values() if s["source"] != "synthetic") == train["real_speakers"]
    assert train["noise_hours"] and set(train["noise_hours"]) == set(train["noise_files"])
    pools = json.loads((corpus / "pools" / "pools.json").read_text())
    speech = train["speech_hours"]["real"] + train["speech_hours"]["synthetic"]
    assert pools["clean_distinct_speech_hours"] == pytest.approx(speech, abs=2e-4)  # every utterance once
    assert set(pools["clean_speakers"]) == set(train["speakers"])
    assert len(list_pairs(corpus, "ood")) == SMALL_SIZE.mixtures["ood"]
    assert main(["data", "check", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^train +40 .* {train['real_speakers']} \({train['real_speakers_with_30s']}\) "
                     rf"\+ {train['synthetic_speakers']}$", out, re.M)
    assert f"{len(train['noise_hours'])} of them in train" in out
    assert "ood: 8 mixtures" in out and "alsa-utils" in out


def test_snr_and_level(corpus):
    _, rows = read_manifest(corpus / "manifest.csv")
    for row in rows:
        snr = float(row["snr_db"])
        assert -5.0 <= snr <= 20.0
        noisy = sf.read(str(corpus / row["noisy"]))[0]
        clean = sf.read(str(corpus / row["clean"]))[0]
        assert max(np.abs(noisy).max(), np.abs(clean).max()) <= 0.99 + 1e-4
        if row["room"] == "none":  # the clean file is then exactly the speech in the noisy one
            measured = 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))
            assert measured == pytest.approx(snr, abs=0.3)


def test_complete_corpus_is_not_rebuilt(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    assert build_corpus(corpus, seed=0, small=True, progress=False) == corpus / "manifest.csv"
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before


def test_same_seed_same_corpus_for_any_worker_count(corpus, tmp_path):
    build_corpus(tmp_path, seed=0, small=True, workers=1, progress=False)
    assert (tmp_path / "manifest.csv").read_bytes() == (corpus / "manifest.csv").read_bytes()
    _, rows = read_manifest(corpus / "manifest.csv")
    for row in rows:
        for kind in ("noisy", "clean"):
            assert (tmp_path / row[kind]).read_bytes() == (corpus / row[kind]).read_bytes(), row[kind]
    assert (tmp_path / "pools" / "pools.json").read_bytes() == (corpus / "pools" / "pools.json").read_bytes()
    for path in sorted((corpus / "pools").glob("[cn]*/*.wav")):  # clean and noise: bit-identical
        assert (tmp_path / path.relative_to(corpus)).read_bytes() == path.read_bytes(), path
    for path in sorted((corpus / "pools" / "rir").glob("*.wav")):  # pyroomacoustics' sums: float32 rounding apart
        other = sf.read(str(tmp_path / path.relative_to(corpus)))[0]
        assert np.allclose(other, sf.read(str(path))[0], atol=1e-6), path


def test_other_seed_rebuilds_with_other_data(corpus, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(corpus, out)
    build_corpus(out, seed=1, small=True, progress=False)
    assert json.loads((out / "corpus.json").read_text())["seed"] == 1
    _, old = read_manifest(corpus / "manifest.csv")
    _, new = read_manifest(out / "manifest.csv")
    assert [r["id"] for r in new] == [r["id"] for r in old]
    assert [(r["speaker"], r["snr_db"]) for r in new] != [(r["speaker"], r["snr_db"]) for r in old]
    first = new[0]["noisy"]
    assert (out / first).read_bytes() != (corpus / first).read_bytes()
    def mixtures(root):
        return sorted(p.relative_to(root) for p in root.rglob("*.wav") if p.relative_to(root).parts[0] != "pools")
    assert mixtures(out) == mixtures(corpus)  # nothing stale left behind
    pools = json.loads((out / "pools" / "pools.json").read_text())  # the clean files follow the seed's utterances
    assert {pool: len(list((out / "pools" / pool).glob("*.wav"))) for pool in pools["files"]} == pools["files"]


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SekdError, match="notes.txt"):
        build_corpus(tmp_path, small=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_package_without_root_names_the_install_command(monkeypatch):
    assert debian.missing_packages(["espeak-ng", "sekd-no-such-package"]) == ["sekd-no-such-package"]
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(debian.shutil, "which", lambda name: None if name == "sudo" else f"/usr/bin/{name}")
    with pytest.raises(SekdError, match="apt-get install -y sekd-no-such-package"):
        debian.ensure_packages(["espeak-ng", "sekd-no-such-package"])


def test_corpus_facts_of_other_or_damaged_folders(tmp_path):
    from sekd.data.checks import built_corpus_facts
    assert built_corpus_facts(tmp_path) == []  # no corpus.json: not a built-in corpus
    (tmp_path / "corpus.json").write_text('{"splits": {"train": {"mixtures": 3}}')
    assert built_corpus_facts(tmp_path) == [f"{tmp_path / 'corpus.json'}: cannot read the corpus facts "
                                            "(JSONDecodeError: Expecting ',' delimiter: line 1 column 38 (char 37))"]
    (tmp_path / "corpus.json").write_text('{"splits": {"train": {"mixtures": 3}}}')  # an older recipe's
    assert built_corpus_facts(tmp_path)[0].startswith(f"{tmp_path / 'corpus.json'}: cannot read the corpus facts (")
