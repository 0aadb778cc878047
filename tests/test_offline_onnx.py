"""The offline ONNX path (sekd export --offline, sekd.runtime.OnnxEnhancer): a whole file in one onnxruntime call,
equal to the offline PyTorch model, torch-free, for any length."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from sekd.cli import main
from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.errors import SekdError
from sekd.export import export_step
from sekd.models import build_enhancer
from sekd.runtime import OnnxEnhancer, OnnxStreamer, istft, stft, stream_array
from sekd.signal import SignalConfig, _window
from sekd.signal import istft as torch_istft
from sekd.signal import stft as torch_stft

from conftest import speechlike
from test_gtcrn_onnx import trained_looking
from test_streaming import one_thread  # noqa: F401  (autouse fixture)

TORCH_FREE = """
import sys
import numpy as np
from sekd.runtime import OnnxEnhancer
np.save(sys.argv[3], OnnxEnhancer(sys.argv[1])(np.load(sys.argv[2])))
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not leaked, f"the runtime imported {leaked[:5]}"
"""


def noisy(channels: int, length: int) -> np.ndarray:
    audio = 0.05 * np.random.default_rng(4).standard_normal((channels, length)).astype(np.float32)
    audio[0] += np.resize(speechlike(1.0, seed=2), length)
    return audio


def offline(model, audio: np.ndarray) -> np.ndarray:
    """The PyTorch offline model on ``audio``, padded to one window as enhance_array does."""
    n = audio.shape[1]
    x = torch.from_numpy(audio)
    if n < model.signal.n_fft:
        x = torch.nn.functional.pad(x, (0, model.signal.n_fft - n))
    with torch.no_grad():
        return model(x[None])[0, :n].numpy()


@pytest.mark.parametrize("preset, in_channels, signal_args", [
    ("gtcrn", 1, None), ("gtcrn-l", 2, None), ("gtcrn", 1, {"n_fft": 256, "hop": 128})])
def test_one_call_equals_the_offline_model_for_any_length(preset, in_channels, signal_args):
    model = trained_looking(build_enhancer(preset, in_channels=in_channels, signal_args=signal_args))
    enhancer = OnnxEnhancer(export_step(model, offline=True))
    assert enhancer.format.graph == "frames"
    # Shorter than a window, one frame's worth, odd lengths, several seconds (the time axis is dynamic).
    for length in (300, model.signal.n_fft, 4097, 16000 + 37, 48000):
        audio = noisy(in_channels, length)
        want = offline(model, audio)
        got = enhancer(audio)
        assert got.shape == (length,)
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"{length} samples")
    assert np.abs(want).max() > 1e-2  # not trivially equal


def test_the_offline_graph_streams_too_and_a_step_file_enhances_whole_signals():
    """A frames graph runs one frame per call in OnnxStreamer; OnnxEnhancer streams a per-hop file."""
    model = trained_looking(build_enhancer("gtcrn"))
    audio = noisy(1, 9000)
    want = offline(model, audio)
    streamed = stream_array(OnnxStreamer(export_step(model, offline=True)), audio)
    np.testing.assert_allclose(streamed, want, atol=1e-4)
    np.testing.assert_allclose(OnnxEnhancer(export_step(model))(audio), want, atol=1e-4)


def test_numpy_stft_and_istft_are_torchs():
    cfg = SignalConfig(n_fft=512, hop=200, window="hamming")  # a hop that does not divide the window
    window = _window(cfg, "cpu").numpy()
    audio = noisy(2, 7777)
    spec = stft(audio, cfg.n_fft, cfg.hop, window)
    want = torch_stft(torch.from_numpy(audio), cfg)
    np.testing.assert_allclose(spec, want.numpy(), atol=1e-4)
    back = istft(spec[1], cfg.n_fft, cfg.hop, window, 7777)
    np.testing.assert_allclose(back, torch_istft(want[1], cfg, 7777).numpy(), atol=1e-5)
    np.testing.assert_allclose(back, audio[1], atol=1e-5)


def test_the_runtime_runs_the_offline_file_without_torch(tmp_path):
    model = trained_looking(build_enhancer("gtcrn"))
    export_step(model, tmp_path / "offline.onnx", offline=True)
    audio = noisy(1, 20000)
    np.save(tmp_path / "noisy.npy", audio)
    run = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tmp_path / "offline.onnx"),
                          str(tmp_path / "noisy.npy"), str(tmp_path / "out.npy")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), offline(model, audio), atol=1e-4)


def test_cli_export_offline_and_its_refusals(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "gtcrn.ckpt"
    save_enhancer(trained_looking(build_enhancer("gtcrn")), ckpt)
    out = tmp_path / "offline-int8.onnx"
    assert main(["export", "--ckpt", str(ckpt), "-o", str(out), "--offline", "--quantize", "int8"]) == 0
    assert "offline" in capsys.readouterr().out
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["sekd.graph"] == "frames" and "int8" in props["sekd.model"]
    audio = noisy(1, 8000)
    want = offline(load_enhancer(ckpt), audio)
    error = OnnxEnhancer(str(out))(audio) - want
    assert np.sqrt(np.mean(error ** 2) / np.mean(want ** 2)) < 0.05  # int8 weights: close, not equal
    # A network without a graph of its own has no offline export; a file of an unknown kind is refused by name.
    with pytest.raises(SekdError, match="no offline ONNX graph"):
        export_step(build_enhancer("tiny", causal=True).eval(), offline=True)
    graph = onnx.load(out)
    onnx.helper.set_model_props(graph, {**props, "sekd.graph": "chunks"})
    onnx.save(graph, tmp_path / "chunks.onnx")
    with pytest.raises(SekdError, match="chunks.onnx: graph kind 'chunks' unknown"):
        OnnxEnhancer(str(tmp_path / "chunks.onnx"))
    with pytest.raises(SekdError, match="takes 1 channel"):
        OnnxEnhancer(str(out))(np.zeros((2, 1000), np.float32))
