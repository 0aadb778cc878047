"""Size and speed of our models and of the peers, as ratios to the teacher and to NSNet2, in one run.

    python benchmarks/speed.py            # teacher, student-l, student-m, gtcrn, gtcrn-l, RNNoise, NSNet2; 10 s
    python benchmarks/speed.py --quick    # 2 s of audio, one timed run (a smoke test of the script)
    python benchmarks/speed.py --systems teacher gtcrn nsnet2   # some rows only (the teacher first: the ratios)

For each system: parameters, MACs per second of audio, and the single-thread real-time
factor (processing time / audio duration; below 1 is faster than real time) on one
10-second noisy file, with torch and onnxruntime limited to one thread, in wall-clock and
in CPU time (the process's, ``time.process_time``: what the code costs whatever else holds
the core). Our models (the DPDCRN presets and the ultra-light GTCRN ones, which are causal
by design) have random weights (their cost does not depend on them) and are timed
offline, the whole file in one pass, STFT to waveform (``model(audio)``). The peers are
timed through ``peer.enhance`` on the same file, which for RNNoise includes the 16 ↔ 48 kHz
resampling its 48 kHz model needs. Each RTF is the median of the timed runs after one
warm-up; the runs go round the systems in turn (every round times each system once), so a
load that comes and goes on a shared machine falls on all rows alike. The last two columns
divide every row's RTFs (= time per audio second) by NSNet2's in the same run; NSNet2 is
always measured (added when ``--systems`` leaves it out).

GTCRN presets get a second row, "(onnx offline)": the same model exported for a whole file
(``sekd export --offline``) and run by :class:`sekd.runtime.OnnxEnhancer`, the STFT, iSTFT
and signal path in numpy around one onnxruntime call (one thread), as NSNet2 is run. The
target line reads the faster of gtcrn's two rows, both deployable (it names the one).

MACs: ours are counted by ptflops on the network (:mod:`sekd.profile`); the peers' are
their weight matrices used once per 10 ms frame, read from their own model files
(``peer.cost()``; feature extraction not counted, see :mod:`sekd.peers`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sekd.audio import SAMPLE_RATE
from sekd.export import export_step
from sekd.models import build_enhancer
from sekd.peers import PEERS, build_peer
from sekd.profile import macs_per_second
from sekd.runtime import OnnxEnhancer

OURS = ("teacher", "student-l", "student-m", "gtcrn", "gtcrn-l")
GTCRN_TARGET = 0.5  # gtcrn's offline RTF at most half NSNet2's (issue 27)
OFFLINE_ONNX = " (onnx offline)"  # the row suffix of a GTCRN preset run through its offline ONNX export


def noisy_file(seconds: float) -> np.ndarray:
    """A speech-like harmonic signal with syllable envelope, plus white noise at 5 dB SNR."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / SAMPLE_RATE
    speech = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    speech = 0.3 * speech / np.abs(speech).max()
    noise = rng.standard_normal(t.size) * np.sqrt(np.mean(speech ** 2) / 10 ** 0.5)
    return (speech + noise).astype(np.float32)


def median_rtfs(calls: list, seconds: float, runs: int) -> list[tuple[float, float]]:
    """(wall, CPU) real-time factors of each ``call()`` on ``seconds`` of audio: medians of ``runs`` rounds
    after a warm-up, each round calling every system once (interleaved, so that the ratios share the load)."""
    for call in calls:
        call()
    wall, cpu = [[] for _ in calls], [[] for _ in calls]
    for _ in range(runs):
        for call, w, c in zip(calls, wall, cpu):
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            w.append(time.perf_counter() - start)
            c.append(time.process_time() - start_cpu)
    return [(statistics.median(w) / seconds, statistics.median(c) / seconds) for w, c in zip(wall, cpu)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s of audio and one timed run")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default 10, 2 with --quick)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs (default 3, 1 with --quick)")
    parser.add_argument("--systems", nargs="+", choices=(*OURS, *PEERS), default=(*OURS, *PEERS),
                        help="rows to measure (default all); ratios are to the first row")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    runs = args.runs or (1 if args.quick else 3)
    torch.set_num_threads(1)
    audio = noisy_file(seconds)

    systems = list(args.systems)
    if "nsnet2" not in systems:
        systems.append("nsnet2")  # the reference of the last two columns
    measured = []  # (name, parameters, MACs/s, call(): enhance the file once)
    noisy = torch.from_numpy(audio)[None, None]

    def eager(model):
        def call():
            with torch.inference_mode():
                model(noisy)
        return call

    for preset in (s for s in systems if s in OURS):
        torch.manual_seed(0)
        model = build_enhancer(preset).eval()
        params, macs = sum(p.numel() for p in model.parameters()), macs_per_second(model)
        measured.append((preset, params, macs, eager(model)))
        if preset.startswith("gtcrn"):
            enhancer = OnnxEnhancer(export_step(model, offline=True))
            measured.append((preset + OFFLINE_ONNX, params, macs, lambda enhancer=enhancer: enhancer(audio)))
    for name in (s for s in systems if s in PEERS):
        peer = build_peer(name)  # onnxruntime sessions are built with one thread
        cost = peer.cost()
        measured.append((name, cost["params"], cost["macs_per_second"], lambda peer=peer: peer.enhance(audio)))
    rtfs = median_rtfs([call for *_, call in measured], seconds, runs)
    rows = [(name, params, macs, *rtf) for (name, params, macs, _), rtf in zip(measured, rtfs)]

    first, t_params, t_macs, t_rtf, _ = rows[0]
    _, _, _, n_rtf, n_cpu = next(r for r in rows if r[0] == "nsnet2")
    print(f"{seconds:g} s of audio, 1 thread, median of {runs} timed round(s) over all systems after a warm-up\n")
    print(f"| system | parameters | × {first} | MACs/s | × {first} | RTF (1 thread) | × {first} | CPU RTF "
          f"| RTF × NSNet2 | CPU RTF × NSNet2 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, params, macs, rtf, cpu in rows:
        print(f"| {name} | {params:,} | {params / t_params:.3f} | {macs / 1e9:.3f} G | {macs / t_macs:.3f} "
              f"| {rtf:.4f} | {rtf / t_rtf:.3f} | {cpu:.4f} | {rtf / n_rtf:.2f}× | {cpu / n_cpu:.2f}× |")
    gtcrn = [r for r in rows if r[0] in ("gtcrn", "gtcrn" + OFFLINE_ONNX)]
    if gtcrn:
        best = min(gtcrn, key=lambda r: r[3])
        ratio = best[3] / n_rtf
        print(f"\nTarget (gtcrn offline RTF <= {GTCRN_TARGET:.2f}× NSNet2's; best deployable row, {best[0]}): "
              f"{ratio:.2f}× (CPU {best[4] / n_cpu:.2f}×) -> {'met' if ratio <= GTCRN_TARGET else 'NOT met'}.")


if __name__ == "__main__":
    main()
