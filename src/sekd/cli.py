"""The ``sekd`` command. Every subcommand is a thin layer over a documented library function.

``main(argv)`` is callable from tests; user errors (:class:`SekdError`) print one line and
exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import SekdError


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add(sub, name: str, help: str, examples: str):
    return sub.add_parser(name, help=help, description=help, epilog="examples:\n" + examples,
                          formatter_class=_formatter)


def cmd_data_build(args) -> int:
    from .data.build import build_corpus
    manifest = build_corpus(args.out, seed=args.seed, small=args.small, workers=args.workers,
                            progress=not args.quiet)
    print(f"corpus manifest: {manifest}")
    return 0


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
    from .evaluate import evaluate_many, format_table
    summary = evaluate_many(_named_checkpoints(args.ckpt), args.data, split=args.split, json_out=args.json,
                            csv_out=args.csv, workers=args.workers, limit=args.limit, dnsmos=not args.no_dnsmos,
                            progress=not args.quiet)
    print(format_table(summary))
    return 0


def cmd_enhance(args) -> int:
    from .checkpoint import load_enhancer
    from .enhance import enhance_files
    model = load_enhancer(args.ckpt)
    errors = enhance_files(model, args.inputs, args.output, progress=not args.quiet,
                           chunk_seconds=args.chunk_seconds)
    return 1 if errors else 0


def cmd_profile(args) -> int:
    from .checkpoint import load_enhancer
    from .models import build_enhancer
    from .profile import format_profile, profile_model
    if (args.model is None) == (args.ckpt is None):
        raise SekdError("give exactly one of --model PRESET or --ckpt CKPT")
    model = load_enhancer(args.ckpt) if args.ckpt else build_enhancer(args.model, in_channels=args.in_channels,
                                                                      causal=args.causal)
    result = profile_model(model, seconds=args.seconds, rtf_threads=args.threads)
    print(json.dumps(result) if args.json else format_profile(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sekd", description="Knowledge distillation for small, fast speech enhancement.",
                                formatter_class=_formatter,
                                epilog="run 'sekd COMMAND --help' for the options and examples of each command")
    p.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="build or inspect corpora").add_subparsers(dest="data_command", required=True,
                                                                               metavar="ACTION")
    b = _add(data, "build", "build the built-in corpus from Debian packages (no downloads beyond the registries)",
             "  sekd data build data/builtin\n  sekd data build /tmp/tiny --small --seed 1")
    b.add_argument("out", help="output folder")
    b.add_argument("--small", action="store_true", help="a tiny corpus for tests and smoke runs")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_data_build)

    t = _add(sub, "train", "train a model (Lightning; resumes from the run's last checkpoint)",
             "  sekd train configs/cpu-teacher.yaml\n"
             "  sekd train configs/teacher.yaml train.devices=4 train.strategy=ddp data.train=/data/dns")
    t.add_argument("config", help="YAML config (sections data, model, signal, loss, train)")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100 model.preset=tiny")
    t.set_defaults(func=cmd_fit)

    d = _add(sub, "distill", "distil a student from a frozen teacher: L_SE + λ·L_KD with a method from 'sekd methods'",
             "  sekd distill configs/cpu-distill.yaml distill.teacher=runs/cpu-teacher/checkpoints/best.ckpt\n"
             "  sekd distill configs/cpu-distill.yaml distill.method=pkt distill.weight=0.5")
    d.add_argument("config", help="YAML config (train's sections plus distill: teacher, method, weight, options)")
    d.add_argument("overrides", nargs="*", help="dotted overrides, e.g. distill.method=at distill.options.mode=paper")
    d.set_defaults(func=cmd_fit)

    m = _add(sub, "methods", "list the distillation methods", "  sekd methods")
    m.set_defaults(func=cmd_methods)

    e = _add(sub, "evaluate", "score models and the unprocessed input: PESQ, STOI, ESTOI, SI-SDR, DNSMOS",
             "  sekd evaluate --ckpt runs/teacher/checkpoints/best.ckpt --data data/builtin\n"
             "  sekd evaluate --ckpt teacher=t.ckpt --ckpt student=s.ckpt --data vb_test/ --json scores.json")
    e.add_argument("--ckpt", action="append", default=[], metavar="[NAME=]CKPT",
                   help="checkpoint to score (repeatable); without it only the input is scored")
    e.add_argument("--data", required=True, help="corpus folder, manifest CSV, or paired folder (noisy/, clean/)")
    e.add_argument("--split", default="test", help="manifest split (default: test)")
    e.add_argument("--json", help="write the summary as JSON here")
    e.add_argument("--csv", help="write per-file scores here")
    e.add_argument("--workers", type=int, default=None, help="metric processes (default: all cores)")
    e.add_argument("--limit", type=int, default=None, help="score only the first N files")
    e.add_argument("--no-dnsmos", action="store_true", help="skip DNSMOS")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_evaluate)

    n = _add(sub, "enhance", "enhance audio files or folders with a trained model",
             "  sekd enhance --ckpt best.ckpt noisy.wav -o enhanced/\n"
             "  sekd enhance --ckpt best.ckpt recordings/ more.flac -o enhanced/")
    n.add_argument("inputs", nargs="+", help="audio files or folders (any sample rate, any length)")
    n.add_argument("--ckpt", required=True)
    n.add_argument("-o", "--output", required=True, help="output folder")
    n.add_argument("--chunk-seconds", type=float, default=10.0, help="process long files in chunks of this length")
    n.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    n.set_defaults(func=cmd_enhance)

    f = _add(sub, "profile", "parameters, MACs per second of audio, and real-time factor on this CPU",
             "  sekd profile --model teacher\n  sekd profile --ckpt best.ckpt --json")
    f.add_argument("--model", help="preset name")
    f.add_argument("--ckpt", help="checkpoint")
    f.add_argument("--in-channels", type=int, default=1, help="microphone channels (with --model)")
    f.add_argument("--causal", action="store_true", help="causal variant (with --model)")
    f.add_argument("--seconds", type=float, default=10.0, help="audio length for the real-time factor")
    f.add_argument("--threads", type=int, default=None, help="torch threads for the real-time factor")
    f.add_argument("--json", action="store_true", help="print JSON with keys params, macs_per_second, rtf")
    f.set_defaults(func=cmd_profile)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = logging.getLogger("sekd")  # our own messages only; Lightning configures its own loggers
    if not log.handlers:
        log.addHandler(logging.StreamHandler())
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except SekdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
