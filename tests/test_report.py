"""The study report from synthetic result files: numbers checked by hand, pictures written."""

import json
import math

import pytest

from sekd.cli import main
from sekd.errors import SekdError
from sekd.report import format_report, gap_closed_ci, load_results, mean_ci, paired_tests

FILES = ["a", "b", "c", "d", "e", "f"]


def write_result(root, system, kind, seed, pesq, per_file_offset=0.0, calibration=None):
    """A result.json whose summary PESQ-WB is ``pesq`` and whose per-file PESQ-WB is pesq + offset + i/100."""
    rows = [{"id": f, "pesq_wb": pesq + per_file_offset + i / 100, "stoi": 0.8, "estoi": 0.6, "si_sdr": 10.0,
             "dnsmos_ovrl": None} for i, f in enumerate(FILES)]
    result = {"system": system, "kind": kind, "seed": seed, "params": 1000, "macs_per_second": 2_500_000_000,
              "summary": {"files": 6, "pesq_wb": pesq, "stoi": 0.8, "estoi": 0.6, "si_sdr": 10.0 + (seed or 0),
                          "dnsmos_ovrl": None}, "rows": rows}
    if calibration:
        result["calibration"] = calibration
    folder = root / system / (f"seed{seed}" if seed is not None else "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(result))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "study"
    write_result(root, "noisy", "input", None, 1.5)
    write_result(root, "rnnoise", "peer", None, 1.7)
    write_result(root, "teacher", "teacher", 0, 3.0)
    cal = {"encoder/time": {"student": ["enc1", "enc2"], "teacher": ["enc1", "enc2", "enc3"],
                            "weights": [[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]]}}
    for seed, (nokd, i2s, pkt) in enumerate([(2.0, 2.4, 2.2), (2.2, 2.6, 2.1), (2.4, 2.8, 2.3)]):
        write_result(root, "none", "student", seed, nokd)
        write_result(root, "i2s_tfckd", "student", seed, i2s, per_file_offset=0.0, calibration=cal)
        write_result(root, "pkt", "student", seed, pkt, per_file_offset=-0.05 * (FILES.index("a") + 1))
    return root


def test_mean_ci_by_hand():
    mean, half = mean_ci([2.0, 2.2, 2.4])
    # s = 0.2, t(0.975, 2) = 4.302653, half = 4.302653 * 0.2 / sqrt(3)
    assert mean == pytest.approx(2.2) and half == pytest.approx(4.302653 * 0.2 / math.sqrt(3), rel=1e-6)
    assert math.isnan(mean_ci([1.0])[1]) and math.isnan(mean_ci([])[0])


def test_gap_closed_is_paired_by_seed_over_the_teacher_gap():
    from scipy import stats
    student, none = {0: 2.5, 1: 2.7, 2: 2.6}, {0: 2.1, 1: 2.2, 2: 2.3, 3: 2.9, 4: 2.9}
    centre, half = gap_closed_ci(student, none, 3.0)
    # seeds 3 and 4 (none only) take no part: differences 0.4, 0.5, 0.3 over a gap of 3.0 − 2.2
    assert centre == pytest.approx(0.4 / 0.8)
    paired = stats.ttest_1samp([0.4, 0.5, 0.3], 0.0).confidence_interval(0.95)
    assert half == pytest.approx((paired.high - paired.low) / 2 / 0.8)
    assert math.isnan(gap_closed_ci({0: 2.6}, none, 3.0)[1])  # one shared seed: no interval
    assert math.isnan(gap_closed_ci(student, none, 2.0)[0])  # the teacher is not better: no gap to close
    assert math.isnan(gap_closed_ci({7: 2.6}, none, 3.0)[0])  # no shared seed


def test_table_rows_numbers_and_significance(results):
    systems = load_results(results)
    assert list(systems) == ["noisy", "teacher", "rnnoise", "none", "i2s_tfckd", "pkt"]
    text = format_report(systems)
    row = next(line for line in text.splitlines() if line.startswith("| i2s_tfckd |"))
    assert "| 3 | 2.600 ± 0.497 |" in row            # mean and CI half-width over the three seeds
    assert row.rstrip().endswith("| 1,000 | 2.500 G | 0.500 ± 0.000 |")  # (2.6 − 2.2) / (3.0 − 2.2), 0.4 at every seed
    assert "| teacher | 1 | 3.000 |" in text and "| rnnoise | 1 | 1.700 |" in text
    assert "n/a" in row  # DNSMOS missing everywhere
    tests = {t["system"]: t for t in paired_tests(systems)}
    assert set(tests) == {"none", "pkt"}
    assert tests["none"]["files"] == 6 and tests["none"]["mean_diff"] == pytest.approx(0.4)
    assert tests["none"]["wins"] == 6 and tests["none"]["p"] == pytest.approx(0.03125)  # exact test, 6 of 6
    assert "I²S-TFCKD comes first" in text


def test_i2s_not_first_is_said_plainly(results):
    for seed in range(3):
        write_result(results, "pkt", "student", seed, 3.5)
    text = format_report(load_results(results))
    assert "I²S-TFCKD does not come first: it is number 2 of 3" in text and "pkt leads with 3.500, 0.900 more" in text


def test_students_are_ranked_over_the_seeds_they_share(results):
    # two more seeds, both lucky, for I²S-TFCKD only: they must not lift it above pkt
    write_result(results, "pkt", "student", 0, 2.6)
    write_result(results, "pkt", "student", 1, 2.8)
    write_result(results, "pkt", "student", 2, 3.0)
    for seed in (3, 4):
        write_result(results, "i2s_tfckd", "student", seed, 3.4)
        write_result(results, "none", "student", seed, 2.9)
    text = format_report(load_results(results))
    assert ("I²S-TFCKD does not come first: it is number 2 of 3 students by mean PESQ-WB over seeds 0, 1, 2, "
            "which every student has (2.600); pkt leads with 2.800, 0.200 more.") in text
    assert "| i2s_tfckd | 5 | 2.920 ± " in text  # the table itself keeps every seed


def test_cli_writes_report_and_pictures(results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(results), "-o", str(out)]) == 0
    assert "| none |" in (out / "report.md").read_text()
    assert (out / "bars.png").stat().st_size > 5000 and (out / "calibration.png").stat().st_size > 5000
    assert "spectrograms skipped" in (out / "report.md").read_text()  # no study.yaml, no corpus


def test_no_results(tmp_path):
    with pytest.raises(SekdError, match="no result.json"):
        load_results(tmp_path)


@pytest.mark.parametrize("damaged, content", [("teacher/seed0/result.json", '{"system": "tea'),
                                               ("teacher/seed0/result.json", '{"kind": "teacher"}'),
                                               ("tune/pkt/lambda1/tune.json", "[1, 2]"),
                                               ("tune/choice.json", '{"metric": "x"}'),
                                               ("study.yaml", "jobs: [2"), ("study.yaml", "- 2")])
def test_a_damaged_study_file_is_refused_by_name(results, tmp_path, capsys, damaged, content):
    (results / damaged).parent.mkdir(parents=True, exist_ok=True)
    (results / damaged).write_text(content)
    assert main(["report", str(results), "-o", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert f"{results / damaged}: not a sekd study" in err and "Traceback" not in err


def test_holm_adjusts_by_rank_and_stays_monotone():
    from sekd.report import holm
    adjusted = holm([0.01, 0.04, math.nan, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 over 4 tests: ×4, ×3, ×2, ×1, each at least the one before
    assert adjusted[0] == pytest.approx(0.04) and adjusted[3] == pytest.approx(0.09)
    assert adjusted[1] == pytest.approx(0.09) and adjusted[4] == pytest.approx(0.5) and math.isnan(adjusted[2])
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_report_prints_the_tuned_lambdas(results, tmp_path):
    tune = results / "tune"
    tune.mkdir()
    (tune / "choice.json").write_text(json.dumps({"metric": "best validation PESQ-WB", "split": "valid", "methods": {
        "i2s_tfckd": {"grid": {"0.1": 2.1, "1": 2.3, "10": 2.2}, "chosen": 1.0, "seed": 0},
        "pkt": {"grid": {"0.1": 2.25, "1": 2.2, "10": 1.9}, "chosen": 0.1, "seed": 0}}}))
    text = format_report(load_results(results), results)
    assert "| i2s_tfckd | **1** | 2.100 | **2.300** | 2.200 |" in text
    assert "| pkt | **0.1** | **2.250** | 2.200 | 1.900 |" in text


def test_training_time_counts_a_run_reused_from_tuning_once(tmp_path):
    from sekd.report import training_time_table
    systems = {"noisy": [{"kind": "input", "eval_seconds": 60}],
               "teacher": [{"kind": "teacher", "train_seconds": 7200, "eval_seconds": 60}],
               "pkt": [{"kind": "student", "train_seconds": 1200, "from_tuning": True, "eval_seconds": 60},
                       {"kind": "student", "train_seconds": 600, "eval_seconds": 60},
                       {"kind": "student", "train_seconds": 1800, "eval_seconds": 60}]}
    for weight, seconds in (("0.1", 1200), ("1", 2400)):
        (tmp_path / "tune" / "pkt" / f"lambda{weight}").mkdir(parents=True)
        (tmp_path / "tune" / "pkt" / f"lambda{weight}" / "tune.json").write_text(json.dumps({"train_seconds": seconds}))
    lines = training_time_table(systems, tmp_path)
    assert "| teacher | 1 | 120.0 | 2.00 |" in lines and "| pkt | 2 | 20.0 | 0.67 |" in lines
    assert "| λ tuning (all methods) | 2 | 30.0 | 1.00 |" in lines
    assert any(line.startswith("In all 3.7 h of training and 0.1 h of evaluation") for line in lines)
    assert not any("machine's time" in line for line in lines)  # no study.yaml: one run at a time
    (tmp_path / "study.yaml").write_text("jobs: 2\n")
    # teacher 7200 s alone; students 2400 s + tuning 3600 s + evaluation 240 s, two at once: 10,320 s
    assert "the machine's time is about 2.9 h" in training_time_table(systems, tmp_path)[-1]
    assert training_time_table({"noisy": systems["noisy"]}, None) == []


def test_curves_are_averaged_over_seeds_at_common_steps():
    from sekd.report import mean_curves
    systems = {"none": [{"curve": [[10, 1.0], [20, 2.0]]}, {"curve": [[10, 2.0], [20, 3.0], [30, 9.0]]}],
               "noisy": [{"rows": []}]}
    assert mean_curves(systems) == {"none": ([10, 20], [1.5, 2.5])}


def test_pesq_by_condition_from_the_corpus_manifest(results, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = ["split,id,noisy,clean,speaker,source,language,noise_type,snr_db,room,duration_s"]
    for i, (f, snr) in enumerate(zip(FILES, [0, 1, 8, 9, 15, 16])):
        room = "none" if i % 2 == 0 else "rt60=0.5"
        lines.append(f"test,{f},n/{f}.wav,c/{f}.wav,s,{'synthetic' if i < 3 else 'studio'},en,pink,{snr},{room},3.0")
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")
    (results / "study.yaml").write_text(f"data: {corpus}\nevaluation: {{split: test}}\n")
    text = format_report(load_results(results), results)
    # per-file PESQ-WB is the system's value + i/100 (i = the file's index); none's seeds average 2.2
    assert "| condition | files | noisy | teacher | none | i2s_tfckd | teacher − none |" in text
    assert "| SNR < 5 dB | 2 | 1.505 | 3.005 | 2.205 | 2.605 | +0.800 |" in text   # files a, b
    assert "| dry | 3 | 1.520 | 3.020 | 2.220 | 2.620 | +0.800 |" in text          # files a, c, e
    assert "| speech: studio | 3 | 1.540 |" in text and "| noise: pink | 6 |" in text
    assert "by condition" not in format_report(load_results(results))  # no study folder: no table


def test_the_inter_set_term_is_followed_from_the_training_logs(results):
    # seed 0 of I²S-TFCKD logged its terms: inter rises from 0.05 to 0.30 of an L_KD of 0.5 at the end
    lines = ["step,train/kd,train/kd/inter,train/diag/drift/target"]
    lines += [f"{step},0.5,{0.05 if step < 50 else 0.30},{step / 1000}" for step in range(0, 101, 10)]
    (results / "i2s_tfckd" / "seed0" / "csv").mkdir()
    (results / "i2s_tfckd" / "seed0" / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    text = format_report(load_results(results))
    # first tenth: steps 0 and 10; last tenth: steps 90 and 100 (drift 0.09 and 0.10)
    assert "| i2s_tfckd | 1 | 0.050 | 0.300 | 60% | 0.095 |" in text
    assert "| pkt |" not in text.split("inter-set term during training")[1]  # no inter-set term logged


def test_a_second_split_gets_its_own_tables_and_a_side_by_side_one(results):
    """ood scores (here: the test ones lowered by 0.5, no-KD's by 0.3) are reported beside test."""
    for path in results.rglob("result.json"):
        result = json.loads(path.read_text())
        drop = 0.3 if result["system"] == "none" else 0.5
        ood = {"summary": {**result["summary"], "pesq_wb": result["summary"]["pesq_wb"] - drop},
               "rows": [{**row, "pesq_wb": row["pesq_wb"] - drop} for row in result["rows"]]}
        path.write_text(json.dumps({**result, "splits": {"ood": ood}}))
    text = format_report(load_results(results))
    assert "## Split test (in domain" in text and "## Split ood (out of domain" in text
    side = text.split("## Split test")[0]
    row = next(line for line in side.splitlines() if line.startswith("| i2s_tfckd |"))
    # PESQ-WB test, then ood; ...; KD − noKD on test (+0.4 every seed), then ood (+0.2 every seed)
    assert row.startswith("| i2s_tfckd | 2.600 ± 0.497 | 2.100 ± 0.497 |")
    assert row.rstrip().endswith("| 0.400 ± 0.000 | 0.200 ± 0.000 |")
    ood_section = text.split("## Split ood")[1]
    assert "| i2s_tfckd | 3 | 2.100 ± 0.497 |" in ood_section
    assert "| 0.333 ± 0.000 |" in ood_section  # gap closed on ood: 0.2 / (teacher 2.5 − no-KD 1.9)
