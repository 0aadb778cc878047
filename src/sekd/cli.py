"""The ``sekd`` command. Every subcommand is a thin layer over a documented library function.

``main(argv)`` is callable from tests; user errors (:class:`SekdError`) print one line and
exit with the error's status (2, or 130/143 for a training stopped by a signal), never a
traceback. The exit codes are listed in :mod:`sekd.errors`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .errors import SekdError


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add(sub, name: str, help: str, examples: str):
    # help is %-formatted in 'sekd -h', the description is printed as it is
    return sub.add_parser(name, help=help, description=help.replace("%%", "%"), epilog="examples:\n" + examples,
                          formatter_class=_formatter)


def cmd_data_build(args) -> int:
    if args.layout == "l3das23":
        from .data.l3das23 import build_l3das23
        out = build_l3das23(args.out, seed=args.seed, small=args.small, workers=args.workers, progress=not args.quiet)
        print(f"corpus (L3DAS23 Task 1 layout): {out}")
        return 0
    from .data.build import build_corpus
    manifest = build_corpus(args.out, seed=args.seed, small=args.small, workers=args.workers,
                            progress=not args.quiet)
    print(f"corpus manifest: {manifest}")
    return 0


def cmd_data_check(args) -> int:
    from .data.checks import built_corpus_facts
    from .data.layouts import check_data
    facts = built_corpus_facts(args.dir)  # a built-in corpus's speakers, hours, noise families, ood split
    if facts:
        print("\n".join(facts) + "\n")
    return 1 if check_data(args.dir) else 0


def cmd_fit(args) -> int:
    """``sekd train`` and ``sekd distill``: the same run, with or without a teacher."""
    from .config import load_config
    if args.command == "distill":
        from .engine.distill import distill as fit
    else:
        from .engine.train import train as fit
    best = fit(load_config(args.config, args.overrides))
    print(f"best checkpoint: {best}")
    return 0


def cmd_methods(args) -> int:
    from .distill import list_methods
    methods = list_methods()
    width = max(len(name) for name, _ in methods)
    for name, description in methods:
        print(f"{name:<{width}}  {description}")
    return 0


def _named_checkpoints(items: list[str]) -> dict[str, str]:
    """``NAME=PATH`` items, or bare paths named by :func:`sekd.evaluate.checkpoint_name`."""
    from .evaluate import NOISY, checkpoint_name
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = checkpoint_name(item), item
        if name in named or name == NOISY:
            raise SekdError(f"--ckpt {item}: the name {name!r} is taken; write NAME=PATH")
        named[name] = path
    return named


def cmd_evaluate(args) -> int:
    from .evaluate import asr_note, default_splits, evaluate_many, format_table, split_path
    systems = _named_checkpoints([*args.ckpt, *(f"peer:{name}" for name in args.peer)])
    splits = list(dict.fromkeys(args.split)) if args.split else default_splits(args.data)
    several = len(splits) > 1
    for split in splits:
        summary = evaluate_many(systems, args.data, split=split, json_out=split_path(args.json, split, several),
                                csv_out=split_path(args.csv, split, several), workers=args.workers, limit=args.limit,
                                dnsmos=not args.no_dnsmos, progress=not args.quiet, metric=args.metric, asr=args.asr,
                                skip_bad=args.skip_bad, device=args.device)
        if several:
            print(f"\nsplit {split}" + (" (out of domain: speech and noise from sources no other split uses)"
                                        if split == "ood" else ""))
        print(format_table(summary, note=asr_note(args.asr) if args.metric == "l3das23" else ""))
    return 0


def cmd_compare(args) -> int:
    from .evaluate import NOISY, compare_with, format_comparison, read_scores
    rows, source = [], {}
    for item in args.scores:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = None, item
        for system, own in _by_system(read_scores(path, name)).items():
            if system in source:
                if system == NOISY:
                    continue  # the unprocessed input: scored once, the first file's kept
                raise SekdError(f"{path}: the system {system!r} is also in {source[system]}; write NAME={path}")
            source[system] = path
            rows += own
    comparisons = compare_with(rows, args.against)
    print(format_comparison(comparisons, args.against))
    if args.json:
        from .audio import atomic_write_text
        from .evaluate import _json_safe
        atomic_write_text(args.json, json.dumps({"against": args.against, "scores": args.scores,
                                                 "comparisons": [_json_safe(c) for c in comparisons]}, indent=2) + "\n")
    return 0


def _by_system(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["system"], []).append(row)
    return grouped


def cmd_study(args) -> int:
    from .study import study
    out = study(args.config, args.overrides, args.stage, job=args.job)
    print(f"study results: {out} (next: sekd report {out})")
    return 0


def cmd_report(args) -> int:
    from .report import write_report
    print(f"report: {write_report(args.results, args.output)}")
    return 0


def cmd_models(args) -> int:
    from .pretrained import format_models, list_models
    print(json.dumps(list_models(), indent=1, ensure_ascii=False) if args.json else format_models())
    return 0


def _checkpoint_or_best(ckpt: str | None, causal: bool | None = None) -> str:
    """``--ckpt``, or else the best shipped model (the causal ones for streaming), said on stderr."""
    if ckpt:
        return ckpt
    from .pretrained import PREFIX, best_model, test_score
    best = best_model(causal=causal)
    print(f"using the shipped model {best['name']} (test PESQ-WB {test_score(best):.2f}); --ckpt to choose another; "
          "'sekd models' lists them", file=sys.stderr)
    return PREFIX + best["name"]


def cmd_enhance(args) -> int:
    from .checkpoint import load_enhancer
    from .enhance import enhance_files
    chunking = dict(chunk_seconds=args.chunk_seconds)
    ckpt = _checkpoint_or_best(args.ckpt, causal=True if args.stream else None)
    if args.stream:
        import torch

        from .streaming import StreamedModel, load_streamer
        torch.set_num_threads(1)
        model = StreamedModel(load_streamer(ckpt, engine=args.engine))
        chunking = dict(chunk_seconds=1e9)  # the stream's memory is bounded: no chunks needed
    else:
        from .device import resolve_device
        model = load_enhancer(ckpt, device=str(resolve_device(args.device)))
    errors = enhance_files(model, args.inputs, args.output, progress=not args.quiet, format=args.format,
                           downmix=args.downmix, **chunking)
    return 1 if errors else 0


def cmd_stream(args) -> int:
    import torch

    from .audio import check_output_file
    from .streaming import load_streamer, stream_file
    if args.output != "-":
        check_output_file(args.output, (args.input,) if args.input != "-" else ())
    torch.set_num_threads(args.threads)
    engine = "onnx" if args.onnx else args.engine
    # An exported model (--onnx) is not replaced by a shipped one; only no model at all falls back to them.
    ckpt = args.ckpt or (None if args.onnx else _checkpoint_or_best(None, causal=True))
    streamer = load_streamer(ckpt, engine=engine, onnx_model=args.onnx)
    logging.getLogger("sekd").debug("streaming with %s, latency %d samples (%.2f ms)", engine, streamer.latency,
                                    streamer.latency_ms)
    try:
        stream_file(streamer, args.input, args.output, downmix=args.downmix)
    except OSError as exc:  # raw PCM on standard output that the system refuses (redirected to a full disk)
        from .errors import WRITE_ERRNOS, WriteFailed
        if args.output != "-" or exc.errno not in WRITE_ERRNOS:
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere at exit
        raise WriteFailed.of("standard output", exc) from None
    return 0


def cmd_export(args) -> int:
    from .audio import SAMPLE_RATE
    from .export import export_checkpoint
    from .streaming import algorithmic_latency
    latency = algorithmic_latency(export_checkpoint(args.ckpt, args.output, quantize=args.quantize,
                                                    offline=args.offline).signal)
    weights = "float32" if args.quantize is None else f"{args.quantize} weights"
    if args.offline:
        print(f"ONNX offline model (any number of frames per call): {args.output} ({weights})")
        return 0
    print(f"ONNX per-hop model: {args.output} ({weights}; algorithmic latency {latency} samples, "
          f"{1000 * latency / SAMPLE_RATE:.2f} ms)")
    return 0


def cmd_profile(args) -> int:
    from .checkpoint import load_enhancer
    from .models import build_enhancer
    from .profile import format_profile, profile_model
    if (args.model is None) == (args.ckpt is None):
        raise SekdError("give exactly one of --model PRESET or --ckpt CKPT")
    from .device import resolve_device
    device = resolve_device(args.device)
    model = load_enhancer(args.ckpt) if args.ckpt else build_enhancer(args.model, in_channels=args.in_channels,
                                                                      causal=args.causal)
    model = model.to(device)
    result = profile_model(model, seconds=args.seconds, rtf_threads=args.threads)
    print(json.dumps(result) if args.json else format_profile(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sekd", description="Knowledge distillation for small, fast speech enhancement.",
                                formatter_class=_formatter,
                                epilog="run 'sekd COMMAND --help' for the options and examples of each command\n\n"
                                       "exit status: 0 done, 1 some inputs failed or a file could not be written "
                                       "(each named),\n2 bad usage or bad data, 130/143 stopped by Ctrl-C/SIGTERM "
                                       "(training saves last.ckpt "
                                       "first), anything else a crash")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="build or inspect corpora").add_subparsers(dest="data_command", required=True,
                                                                               metavar="ACTION")
    b = _add(data, "build", "build the built-in corpus from Debian packages (no downloads beyond the registries), "
                            "with its train split's pools for online mixing (OUT/pools)",
             "  sekd data build data/builtin\n  sekd data build /tmp/tiny --small --seed 1\n"
             "  sekd data build data/l3das23 --layout l3das23")
    b.add_argument("out", help="output folder")
    b.add_argument("--layout", choices=("builtin", "l3das23"), default="builtin",
                   help="builtin: mono pairs with manifest.csv and pools/ (clean, noise, rir); l3das23: two "
                        "4-channel Ambisonics mics in the L3DAS23 Task 1 layout")
    b.add_argument("--small", action="store_true", help="a tiny corpus for tests and smoke runs")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_data_build)
    c = _add(data, "check", "recognise a corpus's layout (L3DAS23, DNS, VoiceBank-DEMAND, paired folders, "
                            "manifest) or its pools for online mixing (clean/ noise/ rir/, the DNS Challenge "
                            "download) and validate it: pairs or pool files, sample rates, channels, lengths, hours",
             "  sekd data check /data/L3DAS23\n  sekd data check /data/DNS/test_set/synthetic/no_reverb\n"
             "  sekd data check /data/DNS-Challenge   # datasets_fullband/{clean_fullband,noise_fullband,...}\n"
             "  sekd data check my_pools/             # clean/ noise/ [rir/]")
    c.add_argument("dir", help="corpus or pools folder (or manifest CSV)")
    c.set_defaults(func=cmd_data_check)

    t = _add(sub, "train", "train a model (Lightning; resumes from the run's last checkpoint)",
             "  sekd train configs/cpu-teacher.yaml\n"
             "  sekd train configs/teacher.yaml train.devices=4 train.strategy=ddp data.train=/data/dns")
    t.add_argument("config", help="YAML config (sections data, model, signal, loss, train)")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100 model.preset=tiny")
    t.set_defaults(func=cmd_fit)

    d = _add(sub, "distill", "distil a student from a frozen teacher: L_SE + λ·L_KD with a method from 'sekd methods'",
             "  sekd distill configs/cpu-distill.yaml distill.teacher=runs/cpu-teacher/checkpoints/best.ckpt\n"
             "  sekd distill configs/cpu-distill.yaml distill.method=pkt distill.weight=0.5 distill.options={}"
             "   # another method: its own options")
    d.add_argument("config", help="YAML config (train's sections plus distill: teacher, method, weight, options)")
    d.add_argument("overrides", nargs="*", help="dotted overrides, e.g. distill.method=at distill.options.mode=paper")
    d.set_defaults(func=cmd_fit)

    m = _add(sub, "methods", "list the distillation methods", "  sekd methods")
    m.set_defaults(func=cmd_methods)

    ms = _add(sub, "models", "list the models shipped with sekd: size, cost, test scores, the study that made them; "
              "any --ckpt takes pretrained:NAME",
              "  sekd models\n  sekd models --json\n  sekd enhance --ckpt pretrained:cpu-teacher noisy.wav -o enhanced/")
    ms.add_argument("--json", action="store_true", help="every model's metadata (training config, scores, data "
                    "licences, file) as JSON")
    ms.set_defaults(func=cmd_models)

    e = _add(sub, "evaluate", "score models and the unprocessed input: PESQ, STOI, ESTOI, SI-SDR, DNSMOS",
             "  sekd evaluate --ckpt runs/teacher/checkpoints/best.ckpt --data data/builtin\n"
             "  sekd evaluate --ckpt teacher=t.ckpt --ckpt student=s.ckpt --data vb_test/ --json scores.json\n"
             "  sekd evaluate --ckpt best.ckpt --peer rnnoise --peer nsnet2 --data data/builtin")
    e.add_argument("--ckpt", action="append", default=[], metavar="[NAME=]CKPT",
                   help="checkpoint (or pretrained:NAME, see 'sekd models') to score (repeatable); without it only "
                        "the input is scored")
    e.add_argument("--peer", action="append", default=[], choices=("rnnoise", "nsnet2"),
                   help="also score a known small denoiser (repeatable); same as --ckpt peer:NAME")
    e.add_argument("--data", required=True, help="corpus folder, manifest CSV, or paired folder (noisy/, clean/)")
    e.add_argument("--split", action="append", metavar="SPLIT",
                   help="manifest split to score (repeatable; default: test, and ood beside it when the corpus has "
                        "one). With several, --json and --csv get the split in their names: scores.ood.json")
    e.add_argument("--json", help="write the summary as JSON here")
    e.add_argument("--csv", help="write per-file scores here")
    e.add_argument("--workers", type=int, default=None, help="metric processes (default: all cores)")
    e.add_argument("--limit", type=int, default=None, help="score only the first N files")
    e.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS")
    e.add_argument("--metric", choices=("standard", "l3das23"), default="standard",
                   help="standard: PESQ, STOI, ESTOI, SI-SDR, DNSMOS; l3das23: the challenge's (STOI + 1 - WER)/2, "
                        "WER between ASR transcripts of the output and of the clean file")
    e.add_argument("--asr", default="pocketsphinx", metavar="pocketsphinx|DIR",
                   help="recogniser for --metric l3das23: pocketsphinx (offline, not comparable with the "
                        "challenge) or a local wav2vec2-base-960h folder (needs sekd[asr])")
    e.add_argument("--skip-bad", action="store_true",
                   help="leave out (and count) pairs with problems (silent or stereo reference, lengths that "
                        "differ, NaN, too short) instead of refusing the data")
    e.add_argument("--device", default=None, help="run the models on this device: cpu, cuda, cuda:1 "
                   "(default: cuda when a GPU is available, else cpu)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_evaluate)

    c = _add(sub, "compare", "compare systems file by file with one of them: mean difference, files better, "
             "Wilcoxon signed-rank p (Holm-adjusted)",
             "  sekd evaluate --ckpt base=a.ckpt --ckpt kd=b.ckpt --data data/builtin --csv scores.csv\n"
             "  sekd compare scores.csv --against base\n"
             "  sekd compare results/study-cpu/none/seed0/result.json results/study-cpu/i2s_tfckd/seed0/result.json "
             "--against none-seed0")
    c.add_argument("scores", nargs="+", metavar="[NAME=]SCORES",
                   help="per-file scores: a CSV of 'sekd evaluate --csv' or a study run's result.json; NAME= "
                        "renames a result.json's run or prefixes a CSV's systems (NAME/system)")
    c.add_argument("--against", required=True, metavar="SYSTEM",
                   help="the system the others are compared with (difference = other − SYSTEM)")
    c.add_argument("--json", help="write the comparisons as JSON here")
    c.set_defaults(func=cmd_compare)

    s = _add(sub, "study", "the whole comparison: teacher once, every method and ablation over seeds, input and "
                           "peers; resumable (finished runs are skipped)",
             "  sekd study configs/study/cpu.yaml\n"
             "  sekd study configs/study/cpu.yaml out_dir=runs/smoke seeds=[0] train.max_steps=20 evaluation.limit=10")
    s.add_argument("config", help="study YAML (see configs/study/ and src/sekd/study.py)")
    s.add_argument("overrides", nargs="*", help="key=value for the study (seeds=[0,1], evaluation.limit=20); "
                                                "run config keys (train.max_steps=10) apply to every trained run")
    s.add_argument("--stage", choices=("all", "teacher", "tune"), default="all",
                   help="'teacher': stop after the input, the peers and the teacher; 'tune': train the teacher "
                        "and stop after choosing λ per method on the valid split (default: the whole study)")
    s.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # a process the study started itself
    s.set_defaults(func=cmd_study)

    r = _add(sub, "report", "report.md, report.html and pictures from a study's results: means and 95 %% CIs "
                            "over seeds, gap closed, significance",
             "  sekd report results/study-cpu\n  sekd report results/study-cpu -o docs/study")
    r.add_argument("results", help="the study's out_dir (holds result.json files)")
    r.add_argument("-o", "--output", help="output folder (default: RESULTS/report)")
    r.set_defaults(func=cmd_report)

    n = _add(sub, "enhance", "enhance audio files or folders with a trained model",
             "  sekd enhance noisy.wav -o enhanced/     # the best shipped model\n"
             "  sekd enhance --ckpt best.ckpt noisy.wav -o enhanced/\n"
             "  sekd enhance --ckpt pretrained:cpu-student-i2s stereo.wav -o enhanced/ --downmix\n"
             "  sekd enhance --ckpt best.ckpt recordings/ more.flac -o enhanced/\n"
             "  sekd enhance --ckpt l3das23.ckpt L3DAS23_Task1_dev/data -o submission/ --format l3das23-submission")
    n.add_argument("inputs", nargs="+", help="audio files or folders (any sample rate, any length)")
    n.add_argument("--ckpt", help="checkpoint, or pretrained:NAME (sekd models); default: the shipped model of the "
                   "best test PESQ-WB (the best causal one with --stream)")
    n.add_argument("-o", "--output", required=True, help="output folder")
    n.add_argument("--chunk-seconds", type=float, default=10.0, help="process long files in chunks of this length")
    n.add_argument("--format", choices=("wav", "l3das23-submission"), default="wav",
                   help="wav: audio files; l3das23-submission: <id>.npy per clip, mono float32 of the input's length "
                        "(<id>_A/<id>_B files are one clip)")
    n.add_argument("--downmix", action="store_true",
                   help="mix a multi-channel file to mono first (default: a one-channel model enhances each channel "
                        "and keeps them)")
    n.add_argument("--stream", action="store_true",
                   help="causal models: run the streaming engine hop by hop (sekd stream), one thread")
    n.add_argument("--engine", choices=("torch", "onnx"), default="torch", help="with --stream: PyTorch or onnxruntime")
    n.add_argument("--device", default=None, help="run the model on this device: cpu, cuda, cuda:1 (default: cuda "
                   "when a GPU is available, else cpu; --stream runs on the CPU)")
    n.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    n.set_defaults(func=cmd_enhance)

    st = _add(sub, "stream", "enhance a stream hop by hop with a causal model; '-' is raw 16 kHz 16-bit "
                             "little-endian PCM on standard input/output, processed as it arrives",
              "  sekd stream --ckpt causal.ckpt noisy.wav -o enhanced.wav\n"
              "  cat noisy.raw | sekd stream --ckpt causal.ckpt - -o - > enhanced.raw\n"
              "  sekd stream --ckpt causal.ckpt --engine onnx noisy.wav -o enhanced.wav")
    st.add_argument("input", help="audio file (any rate; resampled to 16 kHz) or - for raw PCM on stdin")
    st.add_argument("--ckpt", help="checkpoint of a causal model, or pretrained:NAME (sekd models); default: the "
                    "causal shipped model of the best test PESQ-WB")
    st.add_argument("-o", "--output", required=True, help="WAV file (16 kHz) or - for raw PCM on stdout")
    st.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                    help="run the network in PyTorch or in onnxruntime (exported in memory)")
    st.add_argument("--onnx", help="run this exported model (sekd export) in onnxruntime")
    st.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    st.add_argument("--downmix", action="store_true",
                    help="mix a multi-channel file to mono first (default: a one-channel model streams each channel "
                         "and keeps them)")
    st.set_defaults(func=cmd_stream)

    x = _add(sub, "export", "export a causal model's per-hop network to ONNX, its state as inputs and outputs "
                            "(STFT and iSTFT stay outside)",
             "  sekd export --ckpt causal.ckpt -o model.onnx\n"
             "  sekd export --ckpt causal.ckpt -o model-int8.onnx --quantize int8\n"
             "  sekd export --ckpt gtcrn.ckpt -o model-offline.onnx --offline")
    x.add_argument("--ckpt", required=True, help="checkpoint of a causal model")
    x.add_argument("-o", "--output", required=True, help="ONNX file, written atomically")
    x.add_argument("--quantize", metavar="int8", help="int8: the matrix products' weights as int8 (onnxruntime's "
                   "dynamic quantisation; docs/deployment.md); default float32")
    x.add_argument("--offline", action="store_true", help="the whole-signal network instead of the per-hop one: "
                   "any number of frames per call, a file's STFT at once (GTCRN; sekd.runtime.OnnxEnhancer)")
    x.set_defaults(func=cmd_export)

    f = _add(sub, "profile", "parameters, MACs per second of audio, and real-time factor on this CPU",
             "  sekd profile --model teacher\n  sekd profile --ckpt best.ckpt --json")
    f.add_argument("--model", help="preset name")
    f.add_argument("--ckpt", help="checkpoint, or pretrained:NAME (sekd models)")
    f.add_argument("--in-channels", type=int, default=1, help="microphone channels (with --model)")
    f.add_argument("--causal", action="store_true", help="causal variant (with --model)")
    f.add_argument("--seconds", type=float, default=10.0, help="audio length for the real-time factor")
    f.add_argument("--threads", type=int, default=None, help="torch threads for the real-time factor")
    f.add_argument("--device", default=None, help="run the model on this device: cpu, cuda, cuda:1 "
                   "(default: cuda when a GPU is available, else cpu)")
    f.add_argument("--json", action="store_true", help="print JSON with keys params, macs_per_second, rtf")
    f.set_defaults(func=cmd_profile)
    for reads_checkpoints in (t, d, e, s, r, n, st, x, f):
        reads_checkpoints.add_argument(
            "--trust-class", action="append", default=[], metavar="PKG.MOD:CLASS",
            help="let checkpoints name this network class from outside sekd (repeatable; importing it runs its "
                 "code); also: SEKD_TRUST_CLASSES=a.b:C,d.e:F")
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a handler made once keeps a closed stream otherwise)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = logging.getLogger("sekd")  # our own messages only; Lightning configures its own loggers
    if not log.handlers:
        log.addHandler(_StderrHandler())
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        if getattr(args, "trust_class", None):
            from .models.base import trust_classes
            trust_classes(args.trust_class, "--trust-class")
        return args.func(args)
    except SekdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a write no sekd writer names (they raise WriteFailed): still one line, not a traceback
        from .errors import WRITE_ERRNOS, WriteFailed
        if exc.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {WriteFailed.of(exc.filename or 'a file', exc)}", file=sys.stderr)
        return WriteFailed.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
