"""Enhance a WAV file with an exported model, hop by hop, using numpy, onnxruntime and soundfile alone.

    sekd export --ckpt causal.ckpt -o model.onnx
    python examples/stream_onnx.py model.onnx noisy.wav enhanced.wav
    python examples/stream_onnx.py model.onnx noisy.wav enhanced.wav --block 160   # 10 ms pushes

The file is pushed in blocks of ``--block`` samples (default: the model's hop), as a
real-time loop would, through :class:`sekd.runtime.OnnxStreamer`, which reads the sample
rate, STFT, window, compression and state from the ONNX file's metadata; the output is
aligned with the input (the engine's fixed delay of ``n_fft - 1`` samples is dropped) and
written in the input's WAV subtype (integer subtypes clipped to full scale). ``sekd.runtime``
imports neither torch nor the rest of sekd, so ``pip install --no-deps`` of sekd next to
numpy, onnxruntime and soundfile is enough to run this.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import soundfile as sf

from sekd.errors import SekdError
from sekd.runtime import OnnxStreamer, stream_array


def enhance_wav(model: str, src: str, dst: str, block: int | None = None) -> dict:
    """Stream ``src`` through the exported ``model`` into ``dst``; returns timing figures."""
    streamer = OnnxStreamer(model)
    fmt = streamer.format
    try:
        audio, rate = sf.read(src, dtype="float32", always_2d=True)
        subtype = sf.info(src).subtype
    except (OSError, RuntimeError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise SekdError(f"{src}: cannot read audio ({exc})") from None
    if rate != fmt.sample_rate:
        raise SekdError(f"{src}: {rate} Hz, but the model runs at {fmt.sample_rate} Hz; resample it first")
    if audio.shape[1] != fmt.channels:
        raise SekdError(f"{src}: has {audio.shape[1]} channel(s) but the model takes {fmt.channels}")
    start = time.perf_counter()
    enhanced = stream_array(streamer, audio.T, block)
    seconds = time.perf_counter() - start
    if not subtype.startswith("FLOAT") and not subtype.startswith("DOUBLE"):
        enhanced = np.clip(enhanced, -1.0, 1.0)
    sf.write(dst, enhanced, rate, subtype=subtype, format="WAV")
    return dict(seconds=seconds, audio_seconds=audio.shape[0] / rate, latency_ms=streamer.latency_ms,
                model=fmt.model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="ONNX file written by sekd export")
    parser.add_argument("input", help="noisy WAV at the model's sample rate")
    parser.add_argument("output", help="enhanced WAV")
    parser.add_argument("--block", type=int, default=None, help="samples per push (default: the model's hop)")
    args = parser.parse_args(argv)
    if args.block is not None and args.block < 1:
        parser.error("--block must be at least 1")
    try:
        stats = enhance_wav(args.model, args.input, args.output, args.block)
    except SekdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {stats['model']}; latency {stats['latency_ms']:.2f} ms, real-time factor "
          f"{stats['seconds'] / stats['audio_seconds']:.3f} (1 thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
