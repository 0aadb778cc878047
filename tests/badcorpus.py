"""A corpus of bad and odd inputs, the probe of issue 12 as a generator for tests.

``write_bad_corpus(root)`` writes a paired folder (``noisy/``, ``clean/``, same names) with a
few good pairs, good pairs in odd formats (24-bit, float, loud float) and one pair per defect.
Returns what a check must say: ``{pair id: (file that is wrong, words the message holds)}``,
and the ids of the pairs that are fine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import speechlike

SR = 16000


def _pair(root: Path, name: str, noisy, clean, noisy_subtype: str = "PCM_16", clean_subtype: str = "PCM_16",
          suffix: str = ".wav") -> None:
    for kind, audio, subtype in (("noisy", noisy, noisy_subtype), ("clean", clean, clean_subtype)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        if isinstance(audio, bytes):
            (root / kind / f"{name}{suffix}").write_bytes(audio)
        else:
            sf.write(root / kind / f"{name}{suffix}", np.asarray(audio, np.float32).T, SR, subtype=subtype)


def _truncated_wav(audio: np.ndarray) -> bytes:
    import io
    buffer = io.BytesIO()
    sf.write(buffer, audio, SR, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    return data[:len(data) * 2 // 3]  # the header still declares the whole data chunk


def _bad_format_wav() -> bytes:
    """A RIFF/WAVE header whose fmt chunk names an unknown codec: libsndfile cannot open it."""
    fmt = (0x1234).to_bytes(2, "little") + (1).to_bytes(2, "little") + SR.to_bytes(4, "little") + \
        (SR * 2).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    data = bytes(3200)
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def write_bad_corpus(root: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    clean = {i: speechlike(1.0, seed=i) for i in range(8)}
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.05
    good = ["good0", "good1", "pcm24", "float", "loud"]
    _pair(root, "good0", clean[0] + noise, clean[0])
    _pair(root, "good1", clean[1] + noise, clean[1])
    _pair(root, "pcm24", clean[2] + noise, clean[2], "PCM_24", "PCM_24")
    _pair(root, "float", clean[3] + noise, clean[3], "FLOAT", "FLOAT")
    _pair(root, "loud", 8 * (clean[4] + noise), clean[4], "FLOAT", "FLOAT")  # peaks far above full scale

    bad = {}
    nan = clean[5] + noise
    nan[100:200] = np.nan
    _pair(root, "nan", nan, clean[5], "FLOAT")
    bad["nan"] = ("noisy/nan.wav", "NaN")
    _pair(root, "empty", b"", clean[6])
    bad["empty"] = ("noisy/empty.wav", "cannot read audio")
    _pair(root, "nosamples", np.zeros(0), np.zeros(0))
    bad["nosamples"] = ("noisy/nosamples.wav", "no samples")
    _pair(root, "tiny", np.full(200, 0.1), np.full(200, 0.1))
    bad["tiny"] = ("clean/tiny.wav", "shorter than one STFT frame")
    _pair(root, "silentref", clean[7] + noise, np.zeros(SR))
    bad["silentref"] = ("clean/silentref.wav", "silent")
    _pair(root, "stereoref", clean[0] + noise, np.stack([clean[0], clean[0]]))
    bad["stereoref"] = ("clean/stereoref.wav", "mono")
    _pair(root, "stereo", np.stack([clean[1] + noise, clean[1]]), clean[1])
    bad["stereo"] = ("noisy/stereo.wav", "channel")
    _pair(root, "lengths", clean[2][: SR // 2] + noise[: SR // 2], clean[2])
    bad["lengths"] = ("clean/lengths.wav", "lasts")
    _pair(root, "truncated", _truncated_wav(clean[3] + noise), clean[3])
    bad["truncated"] = ("noisy/truncated.wav", "truncated")
    _pair(root, "garbage", np.random.default_rng(1).bytes(5000), clean[4])
    bad["garbage"] = ("noisy/garbage.wav", "cannot read audio")
    _pair(root, "badcodec", _bad_format_wav(), clean[5])
    bad["badcodec"] = ("noisy/badcodec.wav", "cannot read audio")
    return bad, good


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes, to prove a command left its inputs alone."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
