"""Per-utterance metrics: SI-SDR by its definition, PESQ/STOI at their known end points, DNSMOS offline."""

import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike

from sekd.audio import read_audio
from sekd.metrics import (DNSMOS_METRICS, METRICS, compute_metrics, dnsmos_scores, pesq, score_file, si_sdr,
                          si_sdr_torch, stoi)


def with_noise(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)


# DNSMOS repeats clips shorter than its 9.01 s window by doubling them and then scores
# every whole-second window: 4.6 s (doubled to 9.2 s) costs one window, 3 s would cost four.
@pytest.fixture(scope="module")
def clean():
    return speechlike(4.6)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """A sentence spoken by espeak-ng, at 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "sentence.wav"
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return read_audio(path)[0][0]


def test_si_sdr_of_a_signal_with_itself_is_very_large(clean):
    assert si_sdr(clean, clean) > 80


def test_si_sdr_is_invariant_to_scale_and_offset(clean):
    noisy = with_noise(clean, 5.0)
    base = si_sdr(noisy, clean)
    assert si_sdr(0.1 * noisy, clean) == pytest.approx(base, abs=1e-6)
    assert si_sdr(noisy, 7.0 * clean) == pytest.approx(base, abs=1e-6)
    assert si_sdr(noisy + 0.2, clean) == pytest.approx(base, abs=1e-6)  # zero-mean first


def test_si_sdr_of_added_noise_is_its_snr(clean):
    ref = clean - clean.mean()
    noise = np.random.default_rng(3).standard_normal(clean.size)
    noise -= noise.mean()
    noise -= np.dot(noise, ref) / np.dot(ref, ref) * ref  # orthogonal: the optimal scale is exactly 1
    noise *= np.sqrt(np.dot(ref, ref) / np.dot(noise, noise) / 10 ** (7.5 / 10))
    assert si_sdr(clean + noise, clean) == pytest.approx(7.5, abs=1e-3)
    # Independent noise is orthogonal only on average; 3 s of it is within 0.1 dB.
    assert si_sdr(with_noise(clean, 7.5), clean) == pytest.approx(7.5, abs=0.1)


def test_si_sdr_torch_matches_numpy_and_has_gradients(clean):
    refs = np.stack([clean, np.roll(clean, 500), 0.5 * clean])
    ests = np.stack([with_noise(r, snr, seed=i) for i, (r, snr) in enumerate(zip(refs, [0.0, 10.0, 20.0]))])
    est = torch.tensor(ests, requires_grad=True)
    values = si_sdr_torch(est, torch.tensor(refs))
    assert values.shape == (3,)
    np.testing.assert_allclose(values.detach().numpy(), [si_sdr(e, r) for e, r in zip(ests, refs)], atol=1e-3)
    values.sum().backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_clean_speech_scores_at_the_top_and_noise_lowers_them(clean):
    top = compute_metrics(clean, clean, dnsmos=False)
    assert top["pesq_wb"] >= 4.4 and top["pesq_nb"] >= 4.4
    assert top["stoi"] == pytest.approx(1.0, abs=1e-6) and top["estoi"] == pytest.approx(1.0, abs=1e-6)
    noisy = compute_metrics(with_noise(clean, 0.0), clean, dnsmos=False)
    assert noisy["pesq_wb"] < 2.0 and noisy["pesq_nb"] < 2.5
    assert noisy["stoi"] < 0.95 and noisy["estoi"] < 0.9
    assert noisy["si_sdr"] == pytest.approx(0.0, abs=0.2)


def test_compute_metrics_keys_and_shape_check(clean):
    assert tuple(compute_metrics(clean, clean)) == METRICS
    assert set(compute_metrics(clean, clean, dnsmos=False)) == set(METRICS) - set(DNSMOS_METRICS)
    with pytest.raises(ValueError, match="equal length"):
        compute_metrics(clean[:-1], clean)


def test_other_sample_rates_are_resampled(clean):
    scores = compute_metrics(clean[::2], clean[::2], sample_rate=8000, dnsmos=False)
    assert scores["pesq_wb"] >= 4.4 and scores["stoi"] == pytest.approx(1.0, abs=1e-6)


def test_undefined_scores_are_nan(clean):
    assert math.isnan(pesq(np.zeros_like(clean), clean))       # the package itself fails on silence
    assert math.isnan(pesq(clean, np.zeros_like(clean), "nb"))
    assert math.isnan(pesq(clean[:3000], clean[:3000]))          # shorter than 0.25 s
    assert math.isnan(stoi(clean[:4000], clean[:4000]))          # too few speech frames
    assert all(math.isnan(v) for v in dnsmos_scores(np.zeros(0, np.float32)).values())


# Values of speechmos.dnsmos.run (speechmos 0.0.1.1, which needs librosa) on the same clips:
# 0.6 s is doubled four times to fill the 9.01 s window, 12.5 s is scored in three windows.
@pytest.mark.parametrize("seconds, expected", [(0.6, (1.4877, 1.7089, 3.3636)), (12.5, (1.4231, 1.4267, 3.4157))])
def test_dnsmos_matches_the_reference_implementation(seconds, expected):
    scores = dnsmos_scores(speechlike(seconds))
    assert [scores[k] for k in DNSMOS_METRICS] == pytest.approx(expected, abs=1e-3)


def test_dnsmos_of_short_and_loud_clips_is_in_range(clean):
    for audio in (clean[:4800], 3.0 * clean):  # 0.3 s; samples beyond ±1 are clipped as a 16-bit file would be
        assert all(1.0 <= v <= 5.0 for v in dnsmos_scores(audio).values())


def test_spoken_sentence(spoken):
    top = compute_metrics(spoken, spoken)
    noisy = compute_metrics(with_noise(spoken, 0.0), spoken)
    assert top["pesq_wb"] >= 4.4 and top["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert all(1.0 <= top[k] <= 5.0 and 1.0 <= noisy[k] <= 5.0 for k in DNSMOS_METRICS)
    assert top["dnsmos_bak"] > noisy["dnsmos_bak"] + 1 and top["dnsmos_ovrl"] > noisy["dnsmos_ovrl"]
    assert noisy["pesq_wb"] < top["pesq_wb"] - 2


def test_score_file_reads_first_channels_and_trims(tmp_path, clean):
    noisy = with_noise(clean, 5.0)
    sf.write(tmp_path / "clean.wav", clean, 16000, subtype="FLOAT")
    sf.write(tmp_path / "noisy.wav", np.stack([noisy, clean]).T, 16000, subtype="FLOAT")  # 2 channels
    from_file = score_file(tmp_path / "clean.wav", tmp_path / "noisy.wav", dnsmos=False)
    assert from_file == pytest.approx(compute_metrics(noisy, clean, dnsmos=False))
    longer = np.concatenate([noisy, np.zeros(800, np.float32)])
    assert score_file(tmp_path / "clean.wav", longer, dnsmos=False) == pytest.approx(from_file)
