"""The torch-free runtime (sekd.runtime): an exported file alone, numpy and onnxruntime, equal to sekd stream."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from sekd.checkpoint import save_enhancer
from sekd.cli import main
from sekd.errors import SekdError
from sekd.export import export_step
from sekd.models import build_enhancer
from sekd.runtime import OnnxStreamer, stream_array
from sekd.signal import _window
from sekd.step import CausalStep, attention_cache_frames
from sekd.streaming import StreamingEnhancer

from conftest import speechlike
from test_gtcrn import with_running_statistics
from test_streaming import one_thread, push_in_random_pieces  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]

# Streams a file through the runtime in a fresh interpreter and fails if anything imported torch.
TORCH_FREE = """
import sys
import numpy as np
from sekd.runtime import OnnxStreamer, stream_array
audio = np.load(sys.argv[2])
np.save(sys.argv[3], stream_array(OnnxStreamer(sys.argv[1]), audio, block=100))
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not leaked, f"the runtime imported {leaked[:5]}"
"""

MODELS = {
    "gtcrn": lambda: with_running_statistics(build_enhancer("gtcrn")),
    # Two microphones (the mask applies to the reference channel) and the attention cache's -inf start.
    "dpdcrn-causal-2mic": lambda: build_enhancer("tiny", causal=True, lookback=6, in_channels=2).eval(),
}


def noisy(channels: int, length: int = 9000) -> np.ndarray:
    audio = 0.05 * np.random.default_rng(4).standard_normal((channels, length)).astype(np.float32)
    audio[0] += np.resize(speechlike(1.0, seed=2), length)
    return audio


@pytest.mark.parametrize("name", MODELS)
def test_runtime_without_torch_equals_the_streaming_engine(name, tmp_path):
    torch.manual_seed(0)
    model = MODELS[name]()
    path = tmp_path / "model.onnx"
    export_step(model, path)
    audio = noisy(model.in_channels)
    np.save(tmp_path / "noisy.npy", audio)
    run = subprocess.run([sys.executable, "-c", TORCH_FREE, str(path), str(tmp_path / "noisy.npy"),
                          str(tmp_path / "out.npy")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (audio.shape[1],)
    with_file = stream_array(StreamingEnhancer(model, engine="onnx", onnx_model=str(path)), audio)  # sekd stream --onnx
    eager = stream_array(StreamingEnhancer(model, engine="torch"), audio)                           # sekd stream
    assert np.abs(out - with_file).max() < 1e-4
    assert np.abs(out - eager).max() < 1e-4
    assert np.abs(eager).max() > 1e-2  # not trivially equal


def test_runtime_in_random_pieces_equals_whole_blocks(tmp_path):
    model = MODELS["gtcrn"]()
    export_step(model, tmp_path / "m.onnx")
    audio = noisy(1, 7000)
    streamer = OnnxStreamer(str(tmp_path / "m.onnx"))
    pieces = push_in_random_pieces(streamer, audio)[streamer.latency:]
    np.testing.assert_allclose(pieces, stream_array(streamer, audio), atol=1e-6)  # flush reset the state


def test_the_file_carries_what_streaming_needs(tmp_path):
    model = build_enhancer("tiny", causal=True, signal_args={"hop": 128, "window": "hamming", "compress": 0.5}).eval()
    data = export_step(model)
    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert props["sekd.sample_rate"] == "16000" and props["sekd.n_fft"] == "512" and props["sekd.hop"] == "128"
    assert props["sekd.window"] == "hamming" and json.loads(props["sekd.compress"]) == 0.5
    assert props["sekd.latency"] == "511" and props["sekd.channels"] == "1" and props["sekd.ref_channel"] == "0"
    fmt = OnnxStreamer(data).format
    np.testing.assert_array_equal(np.asarray(fmt.window, np.float32), _window(model.signal, "cpu").numpy())
    step = CausalStep(model.network, attention_cache_frames(model.network, 128))
    start = step.initial_state(1, 257)
    assert [s.input for s in fmt.states] == step.state_names()
    assert [s.shape for s in fmt.states] == [tuple(t.shape) for t in start]
    for spec, t in zip(fmt.states, start):
        np.testing.assert_array_equal(spec.initial(), t.numpy())
    by_name = {s.input: s for s in fmt.states}
    assert by_name["attention_mask"].fill == float("-inf") and by_name["attention_slot"].dtype == "int64"
    assert by_name["mid1_gru"].output == "new_mid1_gru"


def without_metadata(data: bytes, path: Path, **replace) -> str:
    graph = onnx.load_from_string(data)
    props = {p.key: p.value for p in graph.metadata_props}
    del graph.metadata_props[:]
    if replace:
        onnx.helper.set_model_props(graph, {**props, **replace})
    path.write_bytes(graph.SerializeToString())
    return str(path)


def test_files_without_usable_metadata_are_refused_by_name(tmp_path):
    data = export_step(MODELS["gtcrn"]())
    for path, message in [(without_metadata(data, tmp_path / "old.onnx"), "no sekd streaming metadata"),
                          (without_metadata(data, tmp_path / "v9.onnx", **{"sekd.format": "9"}), "format 9"),
                          (without_metadata(data, tmp_path / "bad.onnx", **{"sekd.state": "[{"}), "damaged"),
                          (without_metadata(data, tmp_path / "hop.onnx", **{"sekd.hop": "400"}), "inconsistent")]:
        with pytest.raises(SekdError, match=f"{Path(path).name}: .*{message}"):
            OnnxStreamer(path)
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(SekdError, match="text.onnx: cannot load"):
        OnnxStreamer(str(tmp_path / "text.onnx"))


def test_the_checkpoint_engine_still_runs_a_file_without_metadata(tmp_path):
    """sekd stream --onnx takes the state's names and start values from the checkpoint: older exports still run."""
    model = MODELS["gtcrn"]()
    data = export_step(model)
    old = without_metadata(data, tmp_path / "old.onnx")
    audio = noisy(1, 5000)
    np.testing.assert_array_equal(stream_array(StreamingEnhancer(model, engine="onnx", onnx_model=old), audio),
                                  stream_array(StreamingEnhancer(model, engine="onnx", onnx_model=data), audio))


def test_a_file_exported_for_another_signal_path_is_refused(tmp_path):
    torch.manual_seed(0)
    other = tmp_path / "hop128.onnx"
    export_step(build_enhancer("gtcrn", signal_args={"hop": 128}), other)  # same state shapes, other hop
    with pytest.raises(SekdError, match="hop128.onnx: exported for n_fft 512, hop 128.*checkpoint uses .* hop 256"):
        StreamingEnhancer(build_enhancer("gtcrn"), engine="onnx", onnx_model=str(other))


def test_example_enhances_a_wav_like_sekd_stream(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "gtcrn.ckpt"
    save_enhancer(MODELS["gtcrn"](), ckpt)
    assert main(["export", "--ckpt", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 0
    wav = tmp_path / "noisy.wav"
    sf.write(wav, noisy(1, 12000)[0], 16000, subtype="PCM_16")
    assert main(["stream", "--ckpt", str(ckpt), "--onnx", str(tmp_path / "m.onnx"), str(wav),
                 "-o", str(tmp_path / "sekd.wav")]) == 0
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "stream_onnx.py"), str(tmp_path / "m.onnx"),
                          str(wav), str(tmp_path / "example.wav"), "--block", "160"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "latency 31.94 ms" in run.stdout
    example, rate = sf.read(tmp_path / "example.wav", dtype="int16")
    reference = sf.read(tmp_path / "sekd.wav", dtype="int16")[0]
    assert rate == 16000 and example.shape == reference.shape == (12000,)
    assert np.abs(example.astype(int) - reference).max() <= 1
    assert np.abs(reference).max() > 300
    sf.write(tmp_path / "8k.wav", np.zeros(800), 8000)
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "stream_onnx.py"), str(tmp_path / "m.onnx"),
                          str(tmp_path / "8k.wav"), str(tmp_path / "x.wav")], capture_output=True, text=True)
    assert run.returncode == 2 and "8k.wav: 8000 Hz, but the model runs at 16000 Hz" in run.stderr
