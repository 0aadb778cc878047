"""Streaming an exported model (``sekd export``) with numpy and onnxruntime alone: no PyTorch.

    from sekd.runtime import OnnxStreamer, stream_array
    streamer = OnnxStreamer("model.onnx")          # reads sample rate, STFT, state from the file
    out = streamer.push(block)                     # any number of samples in, as many out
    tail = streamer.flush()                        # the last ``streamer.latency`` samples
    enhanced = stream_array(streamer, audio)       # a whole signal, aligned with its input

    from sekd.runtime import OnnxEnhancer          # a whole signal at once (sekd export --offline)
    enhanced = OnnxEnhancer("model-offline.onnx")(audio)

This module imports only numpy, onnxruntime and :mod:`sekd.errors` (``import sekd`` is
lazy), so a deployment needs neither torch nor the rest of sekd; ``examples/stream_onnx.py``
enhances a WAV with it.

Three parts:

- :class:`OverlapAddStreamer`: the frame-exact STFT / iSTFT around any per-frame
  enhancement, for pushes of any size. It frames the stream exactly as the offline
  ``torch.stft(center=True)`` does (reflection at both ends), overlap-adds the inverse
  frames with ``torch.istft``'s window-envelope division and returns as many samples as it
  was given, delayed by a fixed :attr:`~OverlapAddStreamer.latency` of ``n_fft - 1``
  samples. :class:`sekd.streaming.StreamingEnhancer` (PyTorch or onnxruntime, from a
  checkpoint) and :class:`OnnxStreamer` (onnxruntime, from the exported file) both build on
  it, so the two frame the signal with the same code.
- :class:`OnnxStreamer`: the exported per-hop graph with the signal path of
  :mod:`sekd.signal` written in numpy (power-law compression, features, polar mask), its
  settings read from the file's metadata (:class:`StreamFormat`, keys ``sekd.*``).
- :class:`OnnxEnhancer`: a whole signal through an exported file. A file of graph kind
  ``frames`` (``sekd export --offline``: any number of frames in one call, GTCRN) runs the
  whole STFT at once, the STFT and iSTFT in numpy (:func:`stft`, :func:`istft`); a per-hop
  file streams it. Both equal the offline PyTorch model to float rounding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .errors import SekdError

FORMAT_VERSION = 1          # of the ``sekd.*`` metadata; a reader refuses other versions by name
METADATA_PREFIX = "sekd."
# What the graph takes (metadata ``sekd.graph``): one STFT frame per call (``sekd export``), or any number of
# frames along a dynamic time axis (``sekd export --offline``); both carry their state in and out.
GRAPH_KINDS = ("step", "frames")
# The epsilons of sekd.signal.compress and sekd.signal.apply_polar_mask.
COMPRESS_EPS = 1e-8
MASK_EPS = 1e-8


def algorithmic_latency(cfg) -> int:
    """Samples between an input sample and the output sample it finishes: one window minus the sample itself.

    ``cfg`` is anything with ``n_fft`` (:class:`sekd.signal.SignalConfig`, :class:`StreamFormat`).
    Output sample n needs every frame that overlaps it; the last one ends n_fft - 1 samples
    after n when (n + n_fft/2) falls on a frame boundary (the worst case, hence the fixed delay).
    """
    return cfg.n_fft - 1


# -- the exported file's description -------------------------------------------------------
@dataclass(frozen=True)
class StateSpec:
    """One state tensor of the exported step: graph input and output names, shape, dtype, start value."""

    input: str
    output: str
    shape: tuple[int, ...]
    dtype: str      # numpy dtype name: float32, int64
    fill: float     # every element starts at this value (0, or -inf for DPDCRN's empty attention slots)

    def initial(self) -> np.ndarray:
        return np.full(self.shape, self.fill, dtype=self.dtype)


@dataclass(frozen=True)
class StreamFormat:
    """What running an exported step needs besides the graph; written by ``sekd export`` as metadata.

    Keys (``metadata_props``, all strings): ``sekd.format`` (version), ``sekd.sample_rate``,
    ``sekd.n_fft``, ``sekd.hop``, ``sekd.window`` (name), ``sekd.window_samples`` (JSON list:
    the analysis and synthesis window), ``sekd.compress`` (JSON: the power-law exponent on
    the input magnitude, or null), ``sekd.channels`` (microphones M), ``sekd.ref_channel``
    (the one the mask applies to), ``sekd.input`` / ``sekd.output`` (the feature input and
    mask output of the graph), ``sekd.state`` (JSON list of ``{input, output, shape, dtype,
    fill}``), ``sekd.latency`` (samples, informative: ``n_fft - 1``), ``sekd.model``
    (a one-line description, informative) and ``sekd.graph`` (one of ``GRAPH_KINDS``;
    files written before it existed are ``step``).
    """

    sample_rate: int
    n_fft: int
    hop: int
    window_name: str
    window: tuple[float, ...]
    compress: float | None
    channels: int
    ref_channel: int
    feats: str
    mask: str
    states: tuple[StateSpec, ...]
    model: str = ""
    graph: str = "step"

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def latency(self) -> int:
        return algorithmic_latency(self)

    def to_metadata(self) -> dict[str, str]:
        values = {
            "format": FORMAT_VERSION, "sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop": self.hop,
            "window": self.window_name, "window_samples": json.dumps([float(w) for w in self.window]),
            "compress": json.dumps(self.compress), "channels": self.channels, "ref_channel": self.ref_channel,
            "input": self.feats, "output": self.mask,
            "state": json.dumps([dict(input=s.input, output=s.output, shape=list(s.shape), dtype=s.dtype,
                                      fill=repr(float(s.fill))) for s in self.states]),
            "latency": self.latency, "model": self.model, "graph": self.graph,
        }
        return {METADATA_PREFIX + key: str(value) for key, value in values.items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str], where: str) -> StreamFormat:
        """Parse the ``sekd.*`` keys; a file without them, or with another version, is refused naming ``where``."""
        ours = {k[len(METADATA_PREFIX):]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
        if "format" not in ours:
            raise SekdError(f"{where}: no sekd streaming metadata (sample rate, STFT, state); export it again "
                            "with this version of sekd export")
        if ours["format"] != str(FORMAT_VERSION):
            raise SekdError(f"{where}: streaming metadata format {ours['format']}, this runtime reads "
                            f"{FORMAT_VERSION}; export it again with this version of sekd export")
        try:
            compress = json.loads(ours["compress"])
            states = tuple(StateSpec(s["input"], s["output"], tuple(int(d) for d in s["shape"]), str(s["dtype"]),
                                     float(s["fill"])) for s in json.loads(ours["state"]))
            fmt = cls(sample_rate=int(ours["sample_rate"]), n_fft=int(ours["n_fft"]), hop=int(ours["hop"]),
                      window_name=ours["window"],
                      window=tuple(float(w) for w in json.loads(ours["window_samples"])),
                      compress=None if compress is None else float(compress), channels=int(ours["channels"]),
                      ref_channel=int(ours["ref_channel"]), feats=ours["input"], mask=ours["output"],
                      states=states, model=ours.get("model", ""), graph=ours.get("graph", "step"))
        except (KeyError, ValueError, TypeError) as exc:
            raise SekdError(f"{where}: damaged sekd streaming metadata ({type(exc).__name__}: {exc})") from None
        if len(fmt.window) != fmt.n_fft or not 0 < fmt.hop <= fmt.n_fft // 2 or not 0 <= fmt.ref_channel < fmt.channels:
            raise SekdError(f"{where}: inconsistent sekd streaming metadata (n_fft {fmt.n_fft}, hop {fmt.hop}, "
                            f"{len(fmt.window)} window samples, reference channel {fmt.ref_channel} of "
                            f"{fmt.channels})")
        if fmt.graph not in GRAPH_KINDS:
            raise SekdError(f"{where}: graph kind {fmt.graph!r} unknown to this runtime (it reads "
                            f"{', '.join(GRAPH_KINDS)}); export it again with this version of sekd export")
        return fmt


# -- onnxruntime -----------------------------------------------------------------------------
OPTIMISATION_LEVELS = ("all", "extended", "basic", "none")


def session_options(threads: int | None = 1, optimisation: str = "all"):
    """The onnxruntime options sekd streams with (:func:`onnx_session`); ``benchmarks/onnx_ops.py`` compares levels.

    One stream is frame-sized work: ``threads=1`` (the default) runs it on the calling
    thread alone, as deployed; extra threads only spin on a busy machine. ``all`` includes
    the NCHWc layout transform, whose reorder nodes roughly break even on GTCRN's small
    convolutions and help the wider DPDCRN students.
    """
    import onnxruntime as ort
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[optimisation]
    return opts


def onnx_session(model: bytes | str, threads: int | None = 1, where: str | None = None, options=None):
    """An onnxruntime CPU session for an exported step: the one place sekd's streaming sessions are made.

    ``options``: :func:`session_options` (the default) or a variant of them.
    """
    import onnxruntime as ort
    where = where or (model if isinstance(model, str) else "the exported ONNX model")
    try:
        return ort.InferenceSession(model, options or session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise SekdError(f"{where}: cannot load the ONNX model ({exc})") from None


# A per-hop step whose inputs (features and state) hold fewer values than this runs without onnxruntime's
# memory arena (step_session).
SMALL_STEP_VALUES = 1 << 16


def step_session(model: bytes | str, threads: int | None = 1, where: str | None = None):
    """An onnxruntime session (:func:`onnx_session`) for an exported per-hop step, sized to it.

    A small step's tensors are a few hundred values each, and the system allocator serves them
    faster than onnxruntime's arena: a step whose inputs hold fewer than ``SMALL_STEP_VALUES``
    values (GTCRN's, 10 to 28 thousand) runs without the arena, which made GTCRN's step 7 %
    faster and gtcrn-l's 2 % (one thread, interleaved calls); the DPDCRN students' (over a
    million values, most of them the attention caches) keep it, which they are 7 % faster with.
    """
    session = onnx_session(model, threads, where)
    values = sum(int(np.prod([d if isinstance(d, int) else 1 for d in i.shape])) for i in session.get_inputs())
    if values >= SMALL_STEP_VALUES:
        return session
    options = session_options(threads)
    options.enable_cpu_mem_arena = False
    return onnx_session(model, threads, where, options)


def read_stream_format(session, where: str) -> StreamFormat:
    """The :class:`StreamFormat` in an onnxruntime session's model metadata."""
    return StreamFormat.from_metadata(dict(session.get_modelmeta().custom_metadata_map), where)


class OnnxStep:
    """The exported per-hop graph with its state carried between calls: ``feats -> mask``, numpy in and out.

    Each call runs on buffers bound once (onnxruntime's I/O binding): the state lives in two
    sets of numpy arrays that take turns as the graph's inputs and outputs, so nothing is
    converted, allocated or copied per call but the features in and the mask out. With a
    plain ``session.run`` that work costs about as much as a small network's whole hop
    (GTCRN's 15 inputs and outputs: several microseconds each).
    """

    def __init__(self, session, feats: str, mask: str, states: list[tuple[str, str, np.ndarray]], where: str):
        """``states``: (graph input, graph output, initial value) of each state tensor."""
        self.session = session
        shapes = {i.name: i.shape for i in session.get_inputs()}
        if feats not in shapes or any(shapes.get(name) != list(start.shape) for name, _, start in states):
            raise SekdError(f"{where}: its state shapes do not fit this model (exported from another model, "
                            "or with another cache length)")
        self.initial = [start for _, _, start in states]
        feats_shape = [d if isinstance(d, int) else 1 for d in shapes[feats]]
        self._feats = np.zeros(feats_shape, np.float32)
        # One plain run from the start state gives the mask's shape and checks the graph runs.
        self._mask = np.zeros_like(session.run([mask], {feats: self._feats, **{n: s for n, _, s in states}})[0])
        self._buffers = [[s.copy() for s in self.initial], [s.copy() for s in self.initial]]
        self._bindings = []
        for k in range(2):  # binding k reads state set k and writes set 1 - k
            binding = session.io_binding()
            self._bind(binding.bind_input, feats, self._feats)
            self._bind(binding.bind_output, mask, self._mask)
            for (name, out, _), src, dst in zip(states, self._buffers[k], self._buffers[1 - k]):
                self._bind(binding.bind_input, name, src)
                self._bind(binding.bind_output, out, dst)
            self._bindings.append(binding)
        self.reset()

    @staticmethod
    def _bind(bind, name: str, array: np.ndarray) -> None:
        bind(name, "cpu", 0, array.dtype.type, list(array.shape), array.ctypes.data)

    @property
    def state(self) -> list[np.ndarray]:
        """The current state (the arrays the next call reads)."""
        return self._buffers[self._turn]

    def reset(self) -> None:
        self._turn = 0
        for buffer, start in zip(self._buffers[0], self.initial):
            buffer[...] = start

    @property
    def feats(self) -> np.ndarray:
        """The graph's bound feature input: what :meth:`run` reads (write the next frame's features into it)."""
        return self._feats

    def run(self) -> np.ndarray:
        """One call on the features in :attr:`feats`; returns the bound mask output, overwritten by the next call."""
        self.session.run_with_iobinding(self._bindings[self._turn])
        self._turn = 1 - self._turn
        return self._mask

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """One call on ``feats``; returns a copy of the mask."""
        self._feats[...] = feats
        return self.run().copy()


# -- the signal path of sekd.signal, in numpy ---------------------------------------------------
# Written for few numpy calls, each into a buffer where it can (a call costs about a microsecond, as
# much as its arithmetic on one frame): these run around every streamed hop.
def features(spec: np.ndarray, compress: float | None, out: np.ndarray | None = None) -> np.ndarray:
    """``[M, F]`` complex spectrum -> network input ``[1, 2M, 1, F]``: compressed real parts, then imaginary."""
    return sequence_features(spec[:, None], compress, out)


def sequence_features(spec: np.ndarray, compress: float | None, out: np.ndarray | None = None) -> np.ndarray:
    """``[M, T, F]`` complex spectra -> network input ``[1, 2M, T, F]`` float32 (into ``out`` when given).

    The compression's gain max(|Y|, eps)^(p - 1) is exp((p - 1)·log): numpy's float32 log and
    exp are vectorised, its power is not (half the time on a whole file).
    """
    m = spec.shape[0]
    if out is None:
        out = np.empty((1, 2 * m, *spec.shape[1:]), np.float32)
    real, imag = out[0, :m], out[0, m:]
    if compress is None or compress == 1.0:
        real[...], imag[...] = spec.real, spec.imag
        return out
    gain = np.abs(spec)
    np.maximum(gain, COMPRESS_EPS, out=gain)
    np.log(gain, out=gain)
    gain *= compress - 1.0
    np.exp(gain, out=gain)
    np.multiply(spec.real, gain, out=real)
    np.multiply(spec.imag, gain, out=imag)
    return out


def apply_polar_mask(mask: np.ndarray, ref_spec: np.ndarray) -> np.ndarray:
    """``mask [2, ..., F]`` (M_r, M_i) on the reference spectrum ``[..., F]``: tanh(|M|)·|Y|·exp(j(∠Y + ∠M)),
    computed as Y·M·tanh(|M|)/|M| (|M| with the epsilon inside the root, as :func:`sekd.signal.apply_polar_mask`)."""
    m_r, m_i = mask[0], mask[1]
    norm = m_r * m_r
    norm += m_i * m_i
    norm += MASK_EPS
    np.sqrt(norm, out=norm)
    gain = np.tanh(norm)
    gain /= norm
    rotation = np.empty(m_r.shape, np.complex64)
    parts = rotation.view(np.float32).reshape(*m_r.shape, 2)     # (re, im) pairs of the complex array
    np.multiply(m_r, gain, out=parts[..., 0])
    np.multiply(m_i, gain, out=parts[..., 1])
    rotation *= ref_spec
    return rotation


def enhance_spectrum(step: OnnxStep, spec: np.ndarray, compress: float | None, ref_channel: int) -> np.ndarray:
    """One frame through the exported graph with the signal path in numpy: spectra ``[M, F]`` -> enhanced ``[F]``.

    The features are written into the step's bound input and the mask read from its bound
    output: no array is copied on the way.
    """
    features(spec, compress, step.feats)
    mask = step.run()                                                    # (1, 2, 1, F)
    return apply_polar_mask(mask[0, :, 0], spec[ref_channel])


# -- framing -----------------------------------------------------------------------------------
class OverlapAddStreamer:
    """Enhance a stream pushed in pieces of any size; output = input delayed by :attr:`latency` samples.

    ``push(audio)`` takes ``[n]`` (mono) or ``[M, n]`` float32 samples and returns ``n``
    enhanced samples; :meth:`flush` ends the stream and returns the last ``latency``
    samples. The first ``latency`` samples out are the zeros of the delay, so
    ``concatenate(outputs)[latency:]`` is the offline STFT → enhancement → iSTFT of the
    whole stream. A subclass supplies :meth:`enhance_frame` (one frame's spectra to the
    enhanced spectrum) and resets its own state in :meth:`reset`.

    Edges, as the offline path handles them: the first frame waits for ``n_fft/2 + 1``
    samples to mirror the start of the stream (``center=True`` reflection); ``flush``
    mirrors the end the same way, and a stream shorter than ``n_fft`` is first padded with
    zeros to ``n_fft`` as :func:`sekd.enhance.enhance_array` does.
    """

    def __init__(self, n_fft: int, hop: int, window: np.ndarray, channels: int, sample_rate: int):
        if hop > n_fft // 2:
            raise SekdError(f"streaming needs hop <= n_fft/2 (got hop {hop}, n_fft {n_fft})")
        self.n_fft, self.hop, self.channels, self.sample_rate = n_fft, hop, channels, sample_rate
        self.window = np.asarray(window, dtype=np.float32)
        self.window_sq = self.window ** 2
        # After this many frames the squared windows overlap-added before a frame no longer change.
        self._envelope_frames = -(-n_fft // hop)
        self.reset()

    def enhance_frame(self, spec: np.ndarray) -> np.ndarray:
        """One frame: the windowed spectra of every channel ``[M, F]`` -> the enhanced spectrum ``[F]``."""
        raise NotImplementedError

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: output sample n leaves with the push that brings input n + latency."""
        return algorithmic_latency(self)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.sample_rate

    # Buffers are allocated here and written in place per hop: at one frame per push, numpy's cost per
    # call (about a microsecond) is what the framing costs, so it makes as few calls as it can.
    def reset(self) -> None:
        """Start a new stream (all buffers back to zero; a subclass also resets its network state)."""
        n_fft = self.n_fft
        self._received = 0                                           # input samples pushed so far
        self._emitted = 0                                            # output samples returned so far
        # Input not yet framed (from _next on), kept with at least the last n_fft/2 + 1 samples fed,
        # which flush mirrors; _used of its columns hold samples.
        self._input = np.zeros((self.channels, 2 * n_fft), np.float32)
        self._used = 0
        self._next = 0                                               # where the next frame starts
        self._started = False                                        # start mirrored in yet?
        self._ola = np.zeros(n_fft, np.float32)                      # overlap-add of the current frame span
        self._env = np.zeros(n_fft, np.float32)                      # and of the squared window
        self._frames = 0                                             # frames overlap-added so far
        self._steady_inverse = None                                  # 1 / envelope of a hop once it is constant
        self._ready = np.zeros(self.latency + n_fft, np.float32)     # finished output, the delay first
        self._ready_len = self.latency
        self._to_skip = n_fft // 2                                   # finished samples that fall in the start pad

    def _check(self, audio) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise SekdError(f"the model takes {self.channels} channel(s); got audio of shape {audio.shape}")
        return audio

    def push(self, audio) -> np.ndarray:
        """Feed ``[n]`` or ``[M, n]`` samples; returns ``n`` output samples."""
        audio = self._check(audio)
        self._feed(audio)
        return self._take(audio.shape[1])

    def flush(self) -> np.ndarray:
        """End the stream: mirror its end, finish the last frames, return the remaining ``latency`` samples.

        The engine is then reset for a new stream.
        """
        n_fft, half = self.n_fft, self.n_fft // 2
        total = self._received
        if total == 0:
            self.reset()
            return np.zeros(0, np.float32)
        if total < n_fft:  # as enhance_array: zeros up to one window
            self._feed(np.zeros((self.channels, n_fft - total), np.float32))
        tail = self._input[:, self._used - half - 1:self._used]       # the last n_fft/2 + 1 samples fed
        self._feed(tail[:, -2::-1].copy(), end=True)                  # reflection of the last n_fft/2 samples
        # No more frames: everything overlap-added so far is final.
        self._finish(n_fft)
        out = self._take(total + self.latency - self._emitted)
        self.reset()
        return out

    def _append(self, audio: np.ndarray) -> None:
        """Add ``audio`` after the input buffer's samples (the buffer grows when it must)."""
        n = audio.shape[1]
        self._input = _with_room(self._input, self._used, self._used + n)
        self._input[:, self._used:self._used + n] = audio
        self._used += n

    def _feed(self, audio: np.ndarray, end: bool = False) -> None:
        n_fft, hop, half = self.n_fft, self.hop, self.n_fft // 2
        if not end:
            self._received += audio.shape[1]
        self._append(audio)
        if not self._started:
            if self._used <= half:
                return
            fed = self._input[:, :self._used].copy()
            self._used = 0
            self._append(fed[:, half:0:-1])  # the start mirrored, as torch.stft(center=True)
            self._append(fed)
            self._started = True
        while self._used - self._next >= n_fft:
            self._frame(self._input[:, self._next:self._next + n_fft])
            self._finish(hop)
            self._next += hop
        # Drop what no frame and no mirrored end will read again.
        drop = min(self._next, self._used - half - 1)
        if drop > 0:
            self._input[:, :self._used - drop] = self._input[:, drop:self._used]
            self._used -= drop
            self._next -= drop

    def _frame(self, frame: np.ndarray) -> None:
        """One STFT frame through :meth:`enhance_frame`; its inverse is overlap-added."""
        enhanced = self.enhance_frame(np.fft.rfft(frame * self.window))
        inverse = np.fft.irfft(enhanced, n=self.n_fft).astype(np.float32, copy=False)
        inverse *= self.window
        self._ola += inverse
        if self._steady_inverse is None:
            self._env += self.window_sq
            self._frames += 1

    def _envelope(self, count: int) -> np.ndarray:
        """The first ``count`` samples of the squared windows' overlap-add, 1 where it is (nearly) zero."""
        env = self._env[:count]
        return np.where(env > 1e-11, env, np.float32(1.0))

    def _finish(self, count: int) -> None:
        """Move the first ``count`` overlap-added samples, now final, to the output queue."""
        skip = min(self._to_skip, count)
        self._to_skip -= skip
        size = self._ready_len + count - skip
        self._ready = _with_room(self._ready, self._ready_len, size)
        done = self._ready[self._ready_len:size]
        if count == self.hop and self._steady_inverse is not None:  # the envelope stays as it is
            np.multiply(self._ola[skip:count], self._steady_inverse[skip:], out=done)
        else:
            envelope = self._envelope(count)
            np.divide(self._ola[skip:count], envelope[skip:], out=done)
            if count == self.hop and self._frames > self._envelope_frames:
                self._steady_inverse = 1.0 / envelope  # every later frame sees this envelope: stop updating it
            self._env[:-count] = self._env[count:]
            self._env[-count:] = 0.0
        self._ready_len = size
        self._ola[:-count] = self._ola[count:]  # shifted in place: no new arrays per hop
        self._ola[-count:] = 0.0

    def _take(self, count: int) -> np.ndarray:
        if count > self._ready_len:  # cannot happen with latency n_fft - 1; guards the arithmetic above
            raise RuntimeError(f"streaming: {count} samples asked, {self._ready_len} ready")
        out = self._ready[:count].copy()
        rest = self._ready_len - count
        self._ready[:rest] = self._ready[count:self._ready_len]
        self._ready_len = rest
        self._emitted += count
        return out


def _with_room(buffer: np.ndarray, used: int, size: int) -> np.ndarray:
    """``buffer`` when its last axis holds ``size`` samples, else a zeroed one of twice that with the first
    ``used`` kept: the streamer's buffers grow rarely and are written in place."""
    if size <= buffer.shape[-1]:
        return buffer
    grown = np.zeros((*buffer.shape[:-1], 2 * size), buffer.dtype)
    grown[..., :used] = buffer[..., :used]
    return grown


def stream_array(streamer: OverlapAddStreamer, audio: np.ndarray, block: int | None = None) -> np.ndarray:
    """Enhance ``[M, N]`` (or ``[N]``) audio through ``streamer`` in blocks; returns ``[N]`` aligned with the input."""
    audio = streamer._check(audio)
    block = block or streamer.hop
    out = [streamer.push(audio[:, i:i + block]) for i in range(0, audio.shape[1], block)]
    out.append(streamer.flush())
    return np.concatenate(out)[streamer.latency:]


# -- the torch-free engine -------------------------------------------------------------------------
class OnnxStreamer(OverlapAddStreamer):
    """Stream an exported model (a file path or its bytes) with numpy and onnxruntime alone.

    Everything but the graph comes from the file's metadata (:attr:`format`, a
    :class:`StreamFormat`): audio is ``format.sample_rate`` Hz with ``format.channels``
    channels. The output equals ``sekd stream --onnx`` (and the offline model) to float
    rounding.
    """

    def __init__(self, model: bytes | str, threads: int | None = 1):
        where = model if isinstance(model, str) else "the exported ONNX model"
        session = step_session(model, threads, where)
        self.format = fmt = read_stream_format(session, where)
        self.step = OnnxStep(session, fmt.feats, fmt.mask, [(s.input, s.output, s.initial()) for s in fmt.states],
                             where)
        super().__init__(fmt.n_fft, fmt.hop, np.asarray(fmt.window, np.float32), fmt.channels, fmt.sample_rate)

    def reset(self) -> None:
        self.step.reset()
        super().reset()

    def enhance_frame(self, spec: np.ndarray) -> np.ndarray:
        return enhance_spectrum(self.step, spec, self.format.compress, self.format.ref_channel)


# -- a whole signal at once ----------------------------------------------------------------------
def stft(audio: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """``[M, N]`` real -> ``[M, T, F]`` complex, T = 1 + N // hop: ``torch.stft(center=True)``'s frames
    (reflected ends)."""
    half = n_fft // 2
    padded = np.pad(audio, ((0, 0), (half, half)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]  # (M, T, n_fft)
    # In float64: numpy's float32 forward FFT takes about three times as long (numpy 2.4).
    return np.fft.rfft(frames * window.astype(np.float64), axis=-1).astype(np.complex64)


def istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray, length: int) -> np.ndarray:
    """``[T, F]`` complex -> ``[length]`` real: overlap-add divided by the squared window's sum, as ``torch.istft``."""
    frames = np.fft.irfft(spec, n=n_fft, axis=-1).astype(np.float32, copy=False)       # (T, n_fft)
    frames *= window
    count = frames.shape[0]
    out = np.zeros(n_fft + hop * count, np.float32)  # one hop more than the frames span: room for the views below
    envelope = np.zeros_like(out)
    # Overlap-add by the frames' offsets within one hop: n_fft / hop slices instead of T adds.
    for k in range(0, n_fft, hop):
        width = min(hop, n_fft - k)
        chunk = frames[:, k:k + width]                                   # frame t's samples k.. at t·hop + k
        out[k:k + hop * count].reshape(count, hop)[:, :width] += chunk
        envelope[k:k + hop * count].reshape(count, hop)[:, :width] += window[k:k + width] ** 2
    half = n_fft // 2
    out, envelope = out[half:half + length], envelope[half:half + length]
    return out / np.where(envelope > 1e-11, envelope, np.float32(1.0))


class OnnxEnhancer:
    """A whole signal through an exported file: ``OnnxEnhancer(path)(audio [M, N] or [N]) -> [N]``, torch-free.

    A ``frames`` graph (``sekd export --offline``) takes the file's whole STFT in one call
    from the zero start state: the STFT, features, polar mask and iSTFT in numpy around one
    onnxruntime run, the time axis of any length. A ``step`` graph (``sekd export``) is
    streamed (:class:`OnnxStreamer`, :func:`stream_array`). Either way the output equals the
    offline PyTorch model's (``model(audio)``) to float rounding; audio shorter than one
    window is padded with zeros to ``n_fft`` as :func:`sekd.enhance.enhance_array` does.
    """

    def __init__(self, model: bytes | str, threads: int | None = 1):
        self.where = where = model if isinstance(model, str) else "the exported ONNX model"
        self.session = onnx_session(model, threads, where)
        self.format = fmt = read_stream_format(self.session, where)
        self._streamer = OnnxStreamer(model, threads) if fmt.graph == "step" else None
        self._window = np.asarray(fmt.window, np.float32)
        self._start = {s.input: s.initial() for s in fmt.states}
        self._outputs = [fmt.mask]

    def __call__(self, audio) -> np.ndarray:
        fmt = self.format
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[0] != fmt.channels:
            raise SekdError(f"{self.where}: the model takes {fmt.channels} channel(s); got audio of shape "
                            f"{audio.shape}")
        if self._streamer is not None:
            return stream_array(self._streamer, audio)
        n = audio.shape[1]
        if n < fmt.n_fft:
            audio = np.pad(audio, ((0, 0), (0, fmt.n_fft - n)))
        spec = stft(audio, fmt.n_fft, fmt.hop, self._window)                       # (M, T, F)
        feats = sequence_features(spec, fmt.compress)
        mask = self.session.run(self._outputs, {fmt.feats: feats, **self._start})[0]  # (1, 2, T, F)
        enhanced = apply_polar_mask(mask[0], spec[fmt.ref_channel])
        return istft(enhanced, fmt.n_fft, fmt.hop, self._window, audio.shape[1])[:n]
