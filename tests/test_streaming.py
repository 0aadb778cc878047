"""Frame-by-frame streaming of causal models: the per-hop step, the engine, ``sekd stream``."""

import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from sekd.checkpoint import load_enhancer
from sekd.cli import main
from sekd.enhance import enhance_array
from sekd.errors import SekdError
from sekd.models import DPDCRN, build_enhancer
from sekd.step import CausalStep
from sekd.streaming import StreamingEnhancer

from conftest import speechlike


@pytest.fixture(autouse=True)
def one_thread():
    """Frame-sized work: one thread, as deployed (extra threads only spin on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def push_in_random_pieces(streamer: StreamingEnhancer, audio: np.ndarray, seed: int = 0) -> np.ndarray:
    """Push ``[M, N]`` in pieces of random sizes (empty ones and single samples included), then flush."""
    rng = np.random.default_rng(seed)
    outs, i = [], 0
    while i < audio.shape[1]:
        size = int(rng.choice([0, 1, rng.integers(2, 200), rng.integers(200, 1500)]))
        piece = audio[:, i:i + size]
        out = streamer.push(piece)
        assert out.shape == (piece.shape[1],)
        outs.append(out)
        i += size
    tail = streamer.flush()
    assert tail.shape == (streamer.latency,)
    return np.concatenate(outs + [tail])


def assert_step_by_step_equals_whole_sequence(step: CausalStep, net, feats: torch.Tensor, tol: float) -> None:
    """Frame after frame through ``step`` gives the mask of ``net`` on the whole of ``feats``."""
    state = step.initial_state(batch=feats.shape[0])
    assert len(state) == len(step.state_names())
    frames = []
    with torch.inference_mode():
        for t in range(feats.shape[2]):
            mask, *state = step(feats[:, :, t:t + 1], *state)
            frames.append(mask)
        torch.testing.assert_close(torch.cat(frames, dim=2), net(feats), atol=tol, rtol=tol)


@pytest.mark.parametrize("lookback", [None, 3])
def test_step_by_step_equals_the_whole_sequence(lookback):
    torch.manual_seed(0)
    net = DPDCRN(channels=8, layers=2, causal=True, lookback=lookback).eval()
    step = CausalStep(net, cache_frames=30 if lookback is None else lookback)
    assert_step_by_step_equals_whole_sequence(step, net, torch.randn(1, 2, 25, 257), tol=1e-4)


@pytest.mark.parametrize("lookback,in_channels", [(None, 1), (4, 1), (None, 2)])
@pytest.mark.parametrize("length", [300, 8000 + 123])
def test_streaming_in_random_pieces_equals_the_offline_model(lookback, in_channels, length):
    torch.manual_seed(0)
    model = build_enhancer("tiny", causal=True, lookback=lookback, in_channels=in_channels).eval()
    audio = np.random.default_rng(1).standard_normal((in_channels, length)).astype(np.float32) * 0.1
    audio[0] += np.resize(speechlike(1.0), length)
    offline = enhance_array(model, audio)  # one pass, zero-padded to one window when shorter (as streaming)
    streamer = StreamingEnhancer(model)
    out = push_in_random_pieces(streamer, audio)
    assert out.shape == (length + streamer.latency,)
    assert np.all(out[:streamer.latency] == 0)  # the delay
    assert np.abs(out[streamer.latency:] - offline).max() < 1e-4
    # A flushed engine starts over: a second stream gives the same result.
    np.testing.assert_array_equal(push_in_random_pieces(streamer, audio, seed=5), out)


def test_gtcrn_streams_through_a_frozen_step_equal_to_the_offline_model():
    from test_gtcrn import with_running_statistics
    model = with_running_statistics(build_enhancer("gtcrn", channels=8, layers=1))
    audio = speechlike(1.0, seed=3)[None] + 0.05 * np.random.default_rng(2).standard_normal((1, 16000)).astype(
        np.float32)
    streamer = StreamingEnhancer(model)
    assert isinstance(streamer.runner.step, torch.jit.ScriptModule)  # the frozen trace, not the eager step
    out = push_in_random_pieces(streamer, audio)
    assert np.abs(out[streamer.latency:] - enhance_array(model, audio)).max() < 1e-4
    assert np.abs(out).max() > 1e-2  # not trivially equal
    # In training mode the network cannot be frozen: the eager step runs.
    assert StreamingEnhancer(model.train()).runner.step.__class__ is CausalStep


def test_latency_is_one_window():
    streamer = StreamingEnhancer(build_enhancer("tiny", causal=True))
    assert streamer.latency == 511 and streamer.latency_ms == pytest.approx(31.94, abs=0.01)


def test_a_non_causal_model_is_refused(tiny_ckpt, capsys):
    with pytest.raises(SekdError, match="not causal"):
        StreamingEnhancer(build_enhancer("tiny"))
    assert main(["stream", "--ckpt", str(tiny_ckpt), "in.wav", "-o", "out.wav"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tiny_ckpt) in err and "not causal" in err


@pytest.fixture
def noisy_wav(tmp_path):
    audio = speechlike(1.5, seed=3) + 0.05 * np.random.default_rng(0).standard_normal(24000).astype(np.float32)
    path = tmp_path / "noisy.wav"
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path


def offline_pcm(ckpt, wav) -> np.ndarray:
    """The offline causal model's output for a file, as 16-bit samples."""
    audio, _ = sf.read(wav, dtype="float32")
    out = enhance_array(load_enhancer(ckpt), audio[None])
    return np.rint(np.clip(out, -1, 1) * 32767)


def test_stream_file_to_file(causal_ckpt, noisy_wav, tmp_path):
    out = tmp_path / "enhanced.wav"
    assert main(["stream", "--ckpt", str(causal_ckpt), str(noisy_wav), "-o", str(out)]) == 0
    enhanced, sr = sf.read(out, dtype="int16")
    assert sr == 16000
    assert np.abs(enhanced - offline_pcm(causal_ckpt, noisy_wav)).max() <= 1


def test_enhance_stream_matches_enhance(causal_ckpt, noisy_wav, tmp_path):
    assert main(["enhance", "--ckpt", str(causal_ckpt), str(noisy_wav), "-o", str(tmp_path / "off"), "-q"]) == 0
    assert main(["enhance", "--stream", "--ckpt", str(causal_ckpt), str(noisy_wav), "-o", str(tmp_path / "on"),
                 "-q"]) == 0
    offline, _ = sf.read(tmp_path / "off" / "noisy.wav", dtype="int16")
    streamed, _ = sf.read(tmp_path / "on" / "noisy.wav", dtype="int16")
    assert np.abs(offline.astype(int) - streamed).max() <= 1


def test_stream_pipe_is_incremental_and_matches_the_file_form(causal_ckpt, noisy_wav):
    pcm = sf.read(noisy_wav, dtype="int16")[0].astype("<i2")
    proc = subprocess.Popen([sys.executable, "-m", "sekd", "stream", "--ckpt", str(causal_ckpt), "-", "-o", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        half = 12000
        proc.stdin.write(pcm[:half].tobytes())
        proc.stdin.flush()
        # Output for the first half arrives while standard input is still open.
        expected = (half - 511) * 2
        early = bytearray()
        reader = threading.Thread(target=lambda: early.extend(proc.stdout.read(expected)))
        reader.start()
        reader.join(timeout=120)
        assert not reader.is_alive() and len(early) == expected, proc.stderr.read1(10000)
        rest, err = proc.communicate(pcm[half:].tobytes(), timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    out = np.frombuffer(bytes(early) + rest, "<i2")
    assert out.shape == pcm.shape
    assert np.abs(out - offline_pcm(causal_ckpt, noisy_wav)).max() <= 1
