"""Shared fixtures: short synthetic audio and tiny models, made in the test's tmp folder."""

import numpy as np
import pytest
import soundfile as sf
import torch

from sekd.checkpoint import save_enhancer
from sekd.models import build_enhancer


def speechlike(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope: enough structure for STFT-domain tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None)
    return (0.3 * voiced * envelope / np.abs(voiced).max()).astype(np.float32)


def write_pair_folder(root, n: int = 3, seconds: float = 1.0, channels: int = 1, snr_db: float = 5.0):
    rng = np.random.default_rng(1)
    for i in range(n):
        clean = speechlike(seconds, seed=i)
        noise = rng.standard_normal((channels, clean.size)).astype(np.float32)
        noise *= np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
        (root / "noisy").mkdir(parents=True, exist_ok=True)
        (root / "clean").mkdir(parents=True, exist_ok=True)
        sf.write(root / "noisy" / f"f{i}.wav", (clean + noise).T, 16000)
        sf.write(root / "clean" / f"f{i}.wav", clean, 16000)
    return root


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """The built-in corpus, --small, built once per session through the CLI."""
    from sekd.cli import main
    out = tmp_path_factory.mktemp("small-corpus")
    assert main(["data", "build", str(out), "--small", "-q"]) == 0
    return out


@pytest.fixture(scope="session")
def small_l3das23_corpus(tmp_path_factory):
    """The built-in 8-channel corpus in the L3DAS23 layout, --small, built once per session."""
    from sekd.data.l3das23 import build_l3das23
    out = tmp_path_factory.mktemp("small-l3das23")
    build_l3das23(out, small=True, progress=False)
    return out


@pytest.fixture
def pair_folder(tmp_path):
    return write_pair_folder(tmp_path / "pairs")


@pytest.fixture
def tiny_ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.ckpt"
    save_enhancer(build_enhancer("tiny"), path)
    return path


@pytest.fixture
def causal_ckpt(tmp_path):
    """A tiny causal model with a short look-back, so streams longer than the look-back test the cache."""
    torch.manual_seed(0)
    path = tmp_path / "causal.ckpt"
    save_enhancer(build_enhancer("tiny", causal=True, lookback=6), path)
    return path
