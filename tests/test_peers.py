"""The peers (RNNoise, NSNet2): same interface, aligned output, real noise reduction, streaming."""

import json

import numpy as np
import pytest

from conftest import speechlike
from sekd.audio import SAMPLE_RATE
from sekd.cli import main
from sekd.errors import SekdError
from sekd.peers import PEERS, build_peer


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(0)
    clean = np.concatenate([speechlike(1.5, seed=1), speechlike(1.5, seed=2)])
    noise = (0.05 * rng.standard_normal(clean.size)).astype(np.float32)  # stationary, about 0 dB SNR
    return clean, noise


@pytest.mark.parametrize("name", list(PEERS))
def test_peer_reduces_stationary_noise(name, mixture):
    clean, noise = mixture
    peer = build_peer(name)
    out = peer.enhance(clean + noise)
    assert out.shape == clean.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    # The output is aligned with the input (delay compensated) and keeps much less noise.
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean(noise ** 2)
    lag = np.argmax([np.dot(out[200:-200], clean[200 + d:clean.size - 200 + d]) for d in range(-40, 41)]) - 40
    assert abs(lag) <= 2
    assert peer.enhance(np.zeros(SAMPLE_RATE // 3, np.float32)).shape == (SAMPLE_RATE // 3,)


@pytest.mark.parametrize("name", list(PEERS))
def test_stream_frames(name):
    peer = build_peer(name)
    stream = peer.stream()
    frame = np.random.default_rng(0).standard_normal(peer.frame_size).astype(np.float32) * 0.1
    out = stream.process_frame(frame)
    assert out.shape == (peer.frame_size,) and np.all(np.isfinite(out))
    with pytest.raises(SekdError, match="samples"):
        stream.process_frame(frame[:-1])


def test_nsnet2_stream_equals_offline_after_its_delay():
    peer = build_peer("nsnet2")
    x = speechlike(0.5) + 0.02 * np.random.default_rng(3).standard_normal(SAMPLE_RATE // 2).astype(np.float32)
    stream = peer.stream()
    out = np.concatenate([stream.process_frame(x[i:i + peer.hop]) for i in range(0, x.size, peer.hop)])
    # The stream's first frame holds one hop of zeros before the signal: offline, that is a leading hop of zeros.
    offline = peer.enhance(np.concatenate([np.zeros(peer.delay, np.float32), x]))[:x.size]
    np.testing.assert_allclose(out, offline, atol=1e-5)


def test_peer_costs():
    rnnoise, nsnet2 = build_peer("rnnoise").cost(), build_peer("nsnet2").cost()
    assert nsnet2["params"] == 2_687_561  # the NSNet2 baseline's weights and biases
    assert nsnet2["macs_per_second"] == 100 * (161 * 400 + 2 * 2 * 1200 * 400 + 400 * 600 + 600 * 600 + 600 * 161)
    assert 2_000_000 < rnnoise["params"] < 4_000_000 and rnnoise["macs_per_second"] < 100 * rnnoise["params"]


def test_unknown_peer_and_channels():
    with pytest.raises(SekdError, match="unknown peer"):
        build_peer("nope")
    with pytest.raises(SekdError, match="one channel"):
        build_peer("nsnet2").enhance(np.zeros((2, 1600), np.float32))


def test_evaluate_scores_peers_as_systems(pair_folder, tmp_path):
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--data", str(pair_folder), "--peer", "nsnet2", "--ckpt", "rn=peer:rnnoise",
                 "--no-dnsmos", "--workers", "1", "-q", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert list(summary) == ["noisy", "rn", "nsnet2"]
    assert summary["nsnet2"]["si_sdr"] > summary["noisy"]["si_sdr"]
