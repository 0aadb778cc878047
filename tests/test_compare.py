"""Paired comparison of per-file scores: reading them back, the test's counts and p-values, bad files refused."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from sekd.cli import main
from sekd.errors import SekdError
from sekd.evaluate import compare_with, format_csv, read_scores


def rows_of(system: str, values: dict[str, list[float]]) -> list[dict]:
    n = len(next(iter(values.values())))
    return [{"id": f"f{i:02d}", "system": system, **{m: v[i] for m, v in values.items()}} for i in range(n)]


def test_csv_round_trip_keeps_every_score_and_nan(tmp_path):
    rows = rows_of("a", {"pesq_wb": [1.5, math.nan, 2.25], "stoi": [0.8, 0.9, 0.7]})
    path = tmp_path / "scores.csv"
    path.write_text(format_csv(rows))
    back = read_scores(path)
    assert [r["id"] for r in back] == ["f00", "f01", "f02"]
    assert back[0] == rows[0] and math.isnan(back[1]["pesq_wb"]) and back[2]["stoi"] == 0.7
    assert {r["system"] for r in read_scores(path, "run2")} == {"run2/a"}


def test_a_study_result_json_is_named_by_system_and_seed(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"system": "none", "seed": 3, "rows": [{"id": "x", "pesq_wb": 1.2, "stoi": None}]}))
    [row] = read_scores(path)
    assert row["system"] == "none-seed3" and row["pesq_wb"] == 1.2 and math.isnan(row["stoi"])
    assert read_scores(path, "base")[0]["system"] == "base"


def test_comparison_counts_files_and_matches_scipy():
    rng = np.random.default_rng(0)
    base = rng.normal(1.5, 0.2, 30)
    better = base + rng.normal(0.05, 0.05, 30)
    worse = base - 0.1
    rows = (rows_of("base", {"pesq_wb": list(base), "wer": list(base)})
            + rows_of("kd", {"pesq_wb": list(better), "wer": list(better)})
            + rows_of("bad", {"pesq_wb": list(worse), "wer": list(worse)})
            + rows_of("noisy", {"pesq_wb": list(base - 1), "wer": list(base - 1)}))
    found = {(c["system"], c["metric"]): c for c in compare_with(rows, "base")}
    assert {s for s, _ in found} == {"kd", "bad"}  # the input is not one of the systems compared
    kd = found["kd", "pesq_wb"]
    assert kd["files"] == 30 and kd["better"] == int((better > base).sum())
    assert kd["mean_diff"] == pytest.approx((better - base).mean())
    p_kd = stats.wilcoxon(better - base).pvalue
    p_bad = stats.wilcoxon(worse - base).pvalue
    assert kd["p"] == pytest.approx(p_kd)
    assert kd["p_holm"] == pytest.approx(min(1.0, max(2 * min(p_kd, p_bad), max(p_kd, p_bad))))
    assert found["bad", "pesq_wb"]["better"] == 0
    # a lower WER is better: the model whose WER is higher everywhere is better on no file
    assert found["kd", "wer"]["better"] == int((better < base).sum()) and found["bad", "wer"]["better"] == 30


def test_against_the_input_compares_every_model_and_nan_files_are_left_out():
    rows = (rows_of("noisy", {"pesq_wb": [1.0, 1.0, 1.0, 1.0]})
            + rows_of("m", {"pesq_wb": [1.5, math.nan, 1.2, 0.9]}))
    [c] = compare_with(rows, "noisy")
    assert c["system"] == "m" and c["files"] == 3 and c["better"] == 2


def test_unknown_reference_and_disjoint_files_are_refused():
    rows = rows_of("a", {"pesq_wb": [1.0]}) + [{"id": "other", "system": "b", "pesq_wb": 2.0}]
    with pytest.raises(SekdError, match="no such system"):
        compare_with(rows, "c")
    with pytest.raises(SekdError, match="share no file ids"):
        compare_with(rows, "a")


@pytest.mark.parametrize("text, problem", [
    ("not,a,header\n1,2,3\n", "not a per-file scores CSV"),
    ("id,system,pesq_wb\nf0,a,loud\n", "line 2: not a score row"),
    ("", "not a per-file scores CSV"),
])
def test_bad_csv_is_refused_with_the_file_and_line(tmp_path, text, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SekdError, match=problem) as error:
        read_scores(path)
    assert str(path) in str(error.value)


def test_bad_result_json_is_refused(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{"system": "x"}')
    with pytest.raises(SekdError, match="not a study run's result.json"):
        read_scores(path)
    path.write_text('{"system": "x", "seed": 0, "rows": [{"id": "a", "pesq_wb": 1.0}, {"pesq_wb": 2.0}]}')
    with pytest.raises(SekdError, match="row 2: not a score row"):
        read_scores(path)


def test_cli_merges_files_refuses_clashing_names_and_writes_json(tmp_path, capsys):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    one.write_text(format_csv(rows_of("noisy", {"pesq_wb": [1.0, 1.1, 1.2]})
                              + rows_of("base", {"pesq_wb": [1.2, 1.3, 1.4]})))
    two.write_text(format_csv(rows_of("noisy", {"pesq_wb": [1.0, 1.1, 1.2]})
                              + rows_of("kd", {"pesq_wb": [1.3, 1.5, 1.3]})))
    out = tmp_path / "paired.json"
    assert main(["compare", str(one), str(two), "--against", "base", "--json", str(out)]) == 0
    assert "| kd | PESQ-WB | +0.0667 | 2/3 |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["against"] == "base" and [c["system"] for c in saved["comparisons"]] == ["kd"]
    assert main(["compare", str(one), str(one), "--against", "base"]) == 2
    assert "also in" in capsys.readouterr().err
    assert main(["compare", str(one), f"again={one}", "--against", "base"]) == 0
    assert "again/base" in capsys.readouterr().out
