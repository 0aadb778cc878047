"""Evaluation: the pool's scores equal direct ones, oracle models give the expected end points, outputs are written."""

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike

from sekd.data.datasets import list_pairs
from sekd.errors import SekdError
from sekd.evaluate import checkpoint_name, evaluate, evaluate_many, format_table, score_pairs, summarise
from sekd.metrics import METRICS, compute_metrics
from sekd.models import SpeechEnhancer, preset_args


class Oracle(SpeechEnhancer):
    """Passes one input channel through: channel 0 holds the noisy mixture, channel 1 the clean speech."""

    def __init__(self, channel: int):
        super().__init__(dict(preset_args("tiny"), in_channels=2))
        self.channel = channel

    def forward(self, noisy):
        return noisy[:, self.channel]


@pytest.fixture
def oracle_folder(tmp_path):
    """Paired folder whose noisy files carry the clean speech as a second channel.

    4.6 s files: DNSMOS doubles them once to fill its 9.01 s window and scores one window.
    """
    rng = np.random.default_rng(0)
    for i in range(2):
        clean = speechlike(4.6, seed=i)
        mixture = clean + 0.05 * rng.standard_normal(clean.size).astype(np.float32)
        for sub in ("noisy", "clean"):
            (tmp_path / sub).mkdir(exist_ok=True)
        sf.write(tmp_path / "noisy" / f"u{i}.wav", np.stack([mixture, clean]).T, 16000, subtype="FLOAT")
        sf.write(tmp_path / "clean" / f"u{i}.wav", clean, 16000, subtype="FLOAT")
    return tmp_path


def test_identity_and_perfect_models(oracle_folder):
    pairs = list_pairs(oracle_folder)
    rows = score_pairs(pairs, {"identity": Oracle(0), "perfect": Oracle(1)}, workers=2, progress=False)
    assert [(r["system"], r["id"]) for r in rows] == [(s, p.id) for s in ("noisy", "identity", "perfect")
                                                      for p in pairs]
    by_key = {(r["system"], r["id"]): r for r in rows}
    for pair in pairs:
        mixture = sf.read(pair.noisy, dtype="float32")[0][:, 0]
        clean = sf.read(pair.clean, dtype="float32")[0]
        scores = {key: {m: by_key[key, pair.id][m] for m in METRICS} for key in ("noisy", "identity", "perfect")}
        assert scores["noisy"] == pytest.approx(compute_metrics(mixture, clean))
        assert scores["identity"] == pytest.approx(scores["noisy"])
        assert scores["perfect"] == pytest.approx(compute_metrics(clean, clean))
        assert scores["perfect"]["pesq_wb"] >= 4.4 and scores["perfect"]["stoi"] == pytest.approx(1.0)
        assert scores["noisy"]["pesq_wb"] < scores["perfect"]["pesq_wb"] - 1

    summary = summarise(rows)
    assert list(summary) == ["noisy", "identity", "perfect"]
    assert summary["perfect"]["files"] == 2 and summary["perfect"]["nan_pesq_wb"] == 0
    assert summary["identity"]["si_sdr"] == pytest.approx(np.mean([by_key["noisy", p.id]["si_sdr"] for p in pairs]))
    table = format_table(summary).splitlines()
    assert table[0].startswith("| system | files | PESQ-WB | PESQ-NB | STOI | ESTOI | SI-SDR (dB) | DNSMOS OVRL")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["noisy", "identity", "perfect"]


def test_model_with_other_channel_count_is_refused(oracle_folder, tiny_ckpt):
    with pytest.raises(SekdError, match="2 channel"):
        evaluate(str(tiny_ckpt), str(oracle_folder), dnsmos=False, workers=1, progress=False)


def test_reserved_name_is_refused(oracle_folder):
    with pytest.raises(SekdError, match="reserved"):
        score_pairs(list_pairs(oracle_folder), {"noisy": Oracle(0)}, progress=False)


def test_evaluate_writes_csv_and_json(pair_folder, tiny_ckpt, tmp_path):
    csv_out, json_out = tmp_path / "out" / "scores.csv", tmp_path / "out" / "summary.json"
    summary = evaluate(str(tiny_ckpt), str(pair_folder), json_out=str(json_out), csv_out=str(csv_out),
                       workers=2, limit=2, dnsmos=False, progress=False)
    assert list(summary) == ["noisy", "tiny"] and summary["tiny"]["files"] == 2

    with open(csv_out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "system", "pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"]
    assert [(r["system"], r["id"]) for r in rows] == [("noisy", "f0"), ("noisy", "f1"), ("tiny", "f0"), ("tiny", "f1")]
    for system, entry in summary.items():
        values = [float(r["si_sdr"]) for r in rows if r["system"] == system]
        assert entry["si_sdr"] == pytest.approx(np.mean(values), abs=1e-4)

    report = json.loads(json_out.read_text())
    assert report["checkpoints"] == {"tiny": str(tiny_ckpt)} and report["dnsmos"] is False
    for system, entry in summary.items():
        for key, value in entry.items():
            assert report["summary"][system][key] == (None if isinstance(value, float) and math.isnan(value)
                                                      else pytest.approx(value))


def test_evaluate_many_scores_the_input_once(pair_folder, tiny_ckpt):
    summary = evaluate_many({"a": str(tiny_ckpt), "b": str(tiny_ckpt)}, str(pair_folder), workers=2, limit=1,
                            dnsmos=False, progress=False)
    assert list(summary) == ["noisy", "a", "b"]
    assert summary["a"] == pytest.approx(summary["b"])  # same weights, same scores up to float rounding


def test_format_table_notes_undefined_means():
    summary = {
        "student": {"files": 2, "pesq_wb": 2.5, "si_sdr": 10.0, "nan_pesq_wb": 1, "nan_si_sdr": 0},
        "noisy": {"files": 2, "pesq_wb": math.nan, "si_sdr": 1.234, "nan_pesq_wb": 2, "nan_si_sdr": 0},
    }
    table = format_table(summary)
    assert table.splitlines()[:4] == ["| system | files | PESQ-WB | SI-SDR (dB) |", "|---|---:|---:|---:|",
                                      "| noisy | 2 | n/a | 1.23 |", "| student | 2 | 2.500 | 10.00 |"]
    assert "noisy PESQ-WB 2, student PESQ-WB 1" in table


def test_checkpoint_names():
    assert checkpoint_name("runs/cpu-student/checkpoints/best.ckpt") == "cpu-student"
    assert checkpoint_name("models/teacher.ckpt") == "teacher"


def _manifest_corpus(root, pair_folder) -> None:
    """A manifest corpus with two test and two ood pairs (ood: the same audio, under its own split)."""
    rows = ["split,id,noisy,clean"]
    for split, ids in (("test", (0, 1)), ("ood", (1, 2))):
        for i in ids:
            rows.append(f"{split},{split}-{i},{pair_folder}/noisy/f{i}.wav,{pair_folder}/clean/f{i}.wav")
    root.mkdir()
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def test_evaluate_scores_ood_beside_test_when_the_corpus_has_it(tmp_path, pair_folder, tiny_ckpt, capsys):
    from sekd.cli import main
    from sekd.evaluate import default_splits
    corpus = tmp_path / "corpus"
    _manifest_corpus(corpus, pair_folder)
    assert default_splits(corpus) == ["test", "ood"]
    assert default_splits(pair_folder) == ["test"]
    assert main(["evaluate", "--data", str(corpus), "--ckpt", f"m={tiny_ckpt}", "--no-dnsmos", "--quiet",
                 "--workers", "1", "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "s.csv")]) == 0
    printed = capsys.readouterr().out
    assert "split test" in printed and "split ood" in printed
    for split, ids in (("test", ["test-0", "test-1"]), ("ood", ["ood-1", "ood-2"])):
        report = json.loads((tmp_path / f"s.{split}.json").read_text())
        assert report["split"] == split
        with open(tmp_path / f"s.{split}.csv") as fh:
            assert sorted({row["id"] for row in csv.DictReader(fh)}) == ids
    # One split named: the paths as given.
    assert main(["evaluate", "--data", str(corpus), "--split", "ood", "--no-dnsmos", "--quiet", "--workers", "1",
                 "--json", str(tmp_path / "one.json")]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["split"] == "ood"
