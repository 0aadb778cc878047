"""What ``sekd export --quantize int8`` costs in quality and gains in time, against the float32 export.

    python benchmarks/int8_quality.py                              # pretrained:gtcrn-i2s, all test files
    python benchmarks/int8_quality.py --limit 20                   # the first 20 test files
    python benchmarks/int8_quality.py --ckpt run/checkpoints/best.ckpt --data data/builtin

The checkpoint (a causal model: GTCRN, a causal DPDCRN) is exported twice, float32 and
int8 (:func:`sekd.export.export_step`), and both files stream every test file of the
corpus through the torch-free runtime (:class:`sekd.runtime.OnnxStreamer`, one thread),
hop by hop, the two engines alternating hop by hop so that both see the same machine load.
Each output (aligned with its input, as ``sekd stream`` writes it) is scored against the
clean reference: PESQ-WB, STOI and SI-SDR (:mod:`sekd.metrics`); the table gives the means
over the files for the noisy input, float32 and int8, the int8 − float32 difference (mean
and worst file) and the SNR of the int8 output against the float32 one. The timing table
gives the wall-clock time of one ``push`` of one hop (STFT, the graph, the mask, iSTFT),
median and 99th percentile, and as a share of the hop, for both files in the same run,
with the load average, so the int8/float32 ratio is comparable across machines.
Untrained weights make the quality columns meaningless: measure the shipped model.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sekd.checkpoint import load_enhancer  # noqa: E402
from sekd.data.datasets import list_pairs  # noqa: E402
from sekd.data.pairs import load_pair  # noqa: E402
from sekd.export import export_step  # noqa: E402
from sekd.metrics import pesq, si_sdr, stoi  # noqa: E402
from sekd.runtime import OnnxStreamer  # noqa: E402
from sekd.step import require_causal  # noqa: E402

ENGINES = ("float32", "int8")
METRICS = {"PESQ-WB": lambda est, ref: pesq(est, ref, "wb"), "STOI": stoi, "SI-SDR": si_sdr}


def stream_both(streamers: dict[str, OnnxStreamer], noisy: np.ndarray, times: dict[str, list[float]]):
    """Stream ``[M, N]`` through every engine, alternating hop by hop; outputs aligned with the input."""
    hop = next(iter(streamers.values())).hop
    outs = {name: [] for name in streamers}
    for i in range(0, noisy.shape[1], hop):
        block = noisy[:, i:i + hop]
        for name, streamer in streamers.items():
            start = time.perf_counter()
            outs[name].append(streamer.push(block))
            if block.shape[1] == hop:  # a whole hop: what a real-time loop does every 16 ms
                times[name].append(time.perf_counter() - start)
    result = {}
    for name, streamer in streamers.items():
        outs[name].append(streamer.flush())
        result[name] = np.concatenate(outs[name])[streamer.latency:]
    return result


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / max(float(np.sum((other - reference) ** 2)), 1e-20)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="pretrained:gtcrn-i2s", help="a causal checkpoint or pretrained:NAME")
    parser.add_argument("--data", default="data/builtin", help="corpus whose test split is streamed")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test files (default: all)")
    args = parser.parse_args()

    model = load_enhancer(args.ckpt)
    require_causal(model.network, args.ckpt)
    files = {name: export_step(model, quantize=None if name == "float32" else name) for name in ENGINES}
    streamers = {name: OnnxStreamer(data, threads=1) for name, data in files.items()}
    pairs = list_pairs(args.data, "test")[:args.limit]
    if not pairs:
        sys.exit(f"{args.data}: no test files")

    rows = ("noisy", *ENGINES)
    scores = {row: {m: [] for m in METRICS} for row in rows}
    snrs, times = [], {name: [] for name in ENGINES}
    audio_seconds = 0.0
    for pair in pairs:
        noisy, clean = load_pair(pair, model.in_channels)
        audio_seconds += noisy.shape[1] / streamers["float32"].sample_rate
        outputs = {"noisy": noisy[model.ref_channel], **stream_both(streamers, noisy, times)}
        for row in rows:
            for metric, fn in METRICS.items():
                scores[row][metric].append(fn(outputs[row], clean))
        snrs.append(snr_db(outputs["float32"], outputs["int8"]))

    print(f"# int8 against float32: {args.ckpt} ({model.network.describe()})")
    print(f"{len(pairs)} test files of {args.data} ({audio_seconds / 60:.1f} min), streamed hop by hop "
          f"through sekd.runtime.OnnxStreamer, one thread; file sizes float32 {len(files['float32']) / 1024:.0f} KiB, "
          f"int8 {len(files['int8']) / 1024:.0f} KiB\n")
    print("| output | " + " | ".join(METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{np.nanmean(scores[row][m]):.3f}" for m in METRICS) + " |")
    diffs = {m: np.asarray(scores["int8"][m]) - np.asarray(scores["float32"][m]) for m in METRICS}
    print("| int8 − float32, mean | " + " | ".join(f"{np.nanmean(diffs[m]):+.3f}" for m in METRICS) + " |")
    print("| int8 − float32, worst file | " + " | ".join(f"{np.nanmin(diffs[m]):+.3f}" for m in METRICS) + " |")
    print(f"\nint8 output against float32 output: SNR mean {np.mean(snrs):.1f} dB, lowest {np.min(snrs):.1f} dB\n")

    hop_ms = 1000 * streamers["float32"].hop / streamers["float32"].sample_rate
    print(f"| per-hop push ({hop_ms:.0f} ms hop) | median ms | p99 ms | p99 share of the hop |")
    print("|---|---:|---:|---:|")
    for name in ENGINES:
        t = np.asarray(times[name]) * 1000
        print(f"| {name} | {np.median(t):.3f} | {np.percentile(t, 99):.3f} | {np.percentile(t, 99) / hop_ms:.1%} |")
    ratio = np.median(times["int8"]) / np.median(times["float32"])
    print(f"\nint8 / float32, median per hop: {ratio:.2f}× ({len(times['int8'])} hops each; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")


if __name__ == "__main__":
    main()
