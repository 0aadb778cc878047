"""Per-utterance speech-enhancement metrics (method.md §5): PESQ, STOI, ESTOI, SI-SDR, DNSMOS.

Everything here works on 16 kHz mono numpy arrays and runs offline. A metric that is
undefined for an utterance (PESQ finds no speech, STOI has too few speech frames, an
empty clip for DNSMOS) is NaN instead of an exception, so one odd file never stops an
evaluation; callers count the NaNs.

DNSMOS is the P.835 model of Microsoft's DNS Challenge (``sig_bak_ovr.onnx``, raw
waveform in, SIG/BAK/OVRL out), read from the files the ``speechmos`` package ships. We
run it with onnxruntime ourselves rather than through ``speechmos.dnsmos``, which needs
librosa (not a dependency here) only for the P.808 score we do not report, and which
opens sessions that use every core (bad inside a process pool).

This module does not import torch at load time: evaluation workers import it, and they
should stay small; :func:`si_sdr_torch` imports torch when called.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pesq as pesq_lib
import pystoi

from .audio import SAMPLE_RATE, read_audio, resample

if TYPE_CHECKING:
    import onnxruntime
    import torch

METRICS = ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")
L3DAS23_METRICS = ("l3das23", "stoi", "wer")  # sekd evaluate --metric l3das23
ALL_METRICS = ("l3das23", "wer", *METRICS)     # every score a row may hold, in table order
DNSMOS_METRICS = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")

# The DNSMOS model scores fixed windows of 9.01 s, which start at every whole second.
DNSMOS_WINDOW = int(9.01 * SAMPLE_RATE)
DNSMOS_BATCH = 16  # windows per onnxruntime call; bounds memory on long files
# Quadratic calibration from the model's raw outputs to MOS, published with the model
# (non-personalised variant); coefficients highest power first.
DNSMOS_CALIBRATION = {
    "dnsmos_sig": (-0.08397278, 1.22083953, 0.0052439),
    "dnsmos_bak": (-0.13166888, 1.60915514, -0.39604546),
    "dnsmos_ovrl": (-0.06766283, 1.11546468, 0.04602535),
}


def si_sdr(estimate: np.ndarray, reference: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB of 1-D signals, both made zero-mean first (Le Roux et al., 2019)."""
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    est = est - est.mean()
    ref = ref - ref.mean()
    target = (np.dot(est, ref) / (np.dot(ref, ref) + eps)) * ref
    noise = est - target
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def si_sdr_torch(estimate: "torch.Tensor", reference: "torch.Tensor", eps: float = 1e-8) -> "torch.Tensor":
    """Batched, differentiable SI-SDR in dB: ``[B, N]`` and ``[B, N]`` -> ``[B]``; same definition as :func:`si_sdr`."""
    import torch  # here, not at module level: see the module docstring

    est = estimate - estimate.mean(dim=-1, keepdim=True)
    ref = reference - reference.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / (ref.pow(2).sum(dim=-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10.0 * torch.log10((target.pow(2).sum(dim=-1) + eps) / (noise.pow(2).sum(dim=-1) + eps))


def pesq(estimate: np.ndarray, reference: np.ndarray, mode: str = "wb") -> float:
    """PESQ (ITU-T P.862.2 wide band with ``mode='wb'``, P.862 narrow band with ``'nb'``) at 16 kHz.

    NaN when PESQ cannot score the pair: no utterance detected, a clip shorter than
    0.25 s, or an all-zero signal (which the pesq package cannot even normalise).
    """
    reference = np.asarray(reference, dtype=np.float32)
    estimate = np.asarray(estimate, dtype=np.float32)
    if not (np.any(reference) and np.any(estimate)):
        return math.nan
    try:
        return float(pesq_lib.pesq(SAMPLE_RATE, reference, estimate, mode))
    except pesq_lib.PesqError:  # NoUtterancesError, BufferTooShortError
        return math.nan


STOI_MIN_SAMPLES = 512  # pystoi's 256-sample frame at 10 kHz, rounded up to a 16 kHz STFT frame


def stoi(estimate: np.ndarray, reference: np.ndarray, extended: bool = False) -> float:
    """STOI, or ESTOI with ``extended=True`` (pystoi); NaN when too few speech frames remain.

    pystoi answers such clips with a warning and the placeholder 1e-5, which would drag a
    mean down; we turn it into NaN. Clips shorter than one of its 10 kHz frames (about 410
    samples at 16 kHz) make pystoi raise instead: NaN too.
    """
    if min(np.size(reference), np.size(estimate)) < STOI_MIN_SAMPLES:
        return math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = pystoi.stoi(np.asarray(reference, dtype=np.float64), np.asarray(estimate, dtype=np.float64),
                            SAMPLE_RATE, extended=extended)
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return math.nan
    return float(value)


@lru_cache(maxsize=1)
def _dnsmos_session() -> "onnxruntime.InferenceSession":
    """One single-threaded session per process (parallelism comes from the process pool)."""
    import onnxruntime
    import speechmos  # only to locate the model file it ships

    path = Path(speechmos.__file__).parent / "dnsmos_models" / "sig_bak_ovr.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def dnsmos_scores(estimate: np.ndarray) -> dict[str, float]:
    """DNSMOS P.835 ``{dnsmos_ovrl, dnsmos_sig, dnsmos_bak}`` of 16 kHz mono audio (non-intrusive).

    As in the DNS Challenge's reference scoring: the clip is clipped to [-1, 1] (what a
    16-bit file of it would hold), repeated by doubling until it fills one 9.01 s window,
    scored in 9.01 s windows starting at every whole second that leaves a full window
    (at least one), calibrated, and averaged over windows. Empty audio gives NaN.
    """
    audio = np.clip(np.asarray(estimate, dtype=np.float32), -1.0, 1.0)
    if audio.size == 0:
        return {name: math.nan for name in DNSMOS_METRICS}
    while audio.size < DNSMOS_WINDOW:
        audio = np.concatenate([audio, audio])
    count = max(1, audio.size // SAMPLE_RATE - 9)
    windows = np.stack([audio[i * SAMPLE_RATE:i * SAMPLE_RATE + DNSMOS_WINDOW] for i in range(count)])
    session = _dnsmos_session()
    raw = np.concatenate([session.run(None, {"input_1": windows[i:i + DNSMOS_BATCH]})[0]
                          for i in range(0, count, DNSMOS_BATCH)])  # (windows, 3): sig, bak, ovrl
    columns = {"dnsmos_sig": raw[:, 0], "dnsmos_bak": raw[:, 1], "dnsmos_ovrl": raw[:, 2]}
    return {name: float(np.mean(np.polyval(DNSMOS_CALIBRATION[name], columns[name]))) for name in DNSMOS_METRICS}


def compute_metrics(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = SAMPLE_RATE,
                    dnsmos: bool = True) -> dict[str, float]:
    """All metrics of one utterance: ``estimate`` scored against ``reference`` (1-D, same length).

    Returns the keys of :data:`METRICS` (the three DNSMOS keys only with ``dnsmos=True``).
    Audio at another ``sample_rate`` is resampled to 16 kHz first. Undefined values are
    NaN (see :func:`pesq`, :func:`stoi`, :func:`dnsmos_scores`).
    """
    estimate = np.asarray(estimate, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if estimate.ndim != 1 or estimate.shape != reference.shape:
        raise ValueError(f"estimate and reference must be 1-D of equal length, got {estimate.shape} and "
                         f"{reference.shape}")
    if sample_rate != SAMPLE_RATE:
        estimate = resample(estimate[None], sample_rate, SAMPLE_RATE)[0]
        reference = resample(reference[None], sample_rate, SAMPLE_RATE)[0]
    scores = {
        "pesq_wb": pesq(estimate, reference, "wb"),
        "pesq_nb": pesq(estimate, reference, "nb"),
        "stoi": stoi(estimate, reference),
        "estoi": stoi(estimate, reference, extended=True),
        "si_sdr": si_sdr(estimate, reference),
    }
    if dnsmos:
        scores.update(dnsmos_scores(estimate))
    return scores



def score_file(reference: str | Path, estimate: np.ndarray | str | Path, dnsmos: bool = True) -> dict[str, float]:
    """:func:`compute_metrics` of an estimate against an audio file's first channel.

    ``estimate`` is a 16 kHz array or an audio file, whose first channel is scored (the
    unprocessed input of a multichannel recording is its reference microphone). Both are
    trimmed to the shorter length, as training pairs are.
    """
    ref = read_audio(reference)[0][0]
    est = read_audio(estimate)[0][0] if isinstance(estimate, (str, Path)) else np.asarray(estimate, np.float32)
    n = min(ref.size, est.size)
    return compute_metrics(est[:n], ref[:n], dnsmos=dnsmos)


def l3das23_score(stoi_value: float, wer_value: float) -> float:
    """The L3DAS23 Task 1 metric: (STOI + (1 − WER)) / 2, both clipped to [0, 1] first."""
    return (min(max(stoi_value, 0.0), 1.0) + 1.0 - min(max(wer_value, 0.0), 1.0)) / 2


@lru_cache(maxsize=256)
def _transcript(path: str, asr: str) -> str:
    """The ASR transcript of an audio file's first channel (cached: every system reuses the clean one)."""
    from .asr import load_asr

    return load_asr(asr).transcribe(read_audio(path)[0][0])


def score_file_l3das23(reference: str | Path, estimate: np.ndarray | str | Path,
                       asr: str = "pocketsphinx") -> dict[str, float]:
    """``{l3das23, stoi, wer}`` of an estimate against an audio file's first channel, as the challenge scored.

    The WER compares the transcript of the estimate with that of the reference, both by
    the recogniser ``asr`` (see :mod:`sekd.asr`); ``estimate`` is read and trimmed as in
    :func:`score_file`. The score is NaN where STOI is.
    """
    from .asr import load_asr, wer

    ref = read_audio(reference)[0][0]
    est = read_audio(estimate)[0][0] if isinstance(estimate, (str, Path)) else np.asarray(estimate, np.float32)
    n = min(ref.size, est.size)
    stoi_value = stoi(est[:n], ref[:n])
    wer_value = wer(_transcript(str(reference), asr), load_asr(asr).transcribe(est[:n]))
    score = math.nan if math.isnan(stoi_value) else l3das23_score(stoi_value, wer_value)
    return {"l3das23": score, "stoi": stoi_value, "wer": wer_value}
