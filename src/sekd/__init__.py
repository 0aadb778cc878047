"""sekd: knowledge distillation for small, fast speech enhancement.

The Python API mirrors the ``sekd`` command (imports are lazy, so ``import sekd`` is cheap)::

    import sekd
    sekd.build_corpus("data/builtin")                                   # sekd data build
    best = sekd.train(sekd.load_config("configs/cpu-teacher.yaml"))     # sekd train
    sekd.evaluate_many({"teacher": best}, "data/builtin")               # sekd evaluate
    model = sekd.load_enhancer(best)                                    # or "pretrained:cpu-teacher"
    sekd.list_models(); sekd.best_model()                               # sekd models (shipped models)
    sekd.enhance_files(model, ["noisy.wav"], "enhanced/")               # sekd enhance
    sekd.profile_model(sekd.build_enhancer("teacher"))                  # sekd profile
    streamer = sekd.load_streamer("causal.ckpt")                        # sekd stream (push/flush)
    sekd.export_step(sekd.load_enhancer("causal.ckpt"), "step.onnx")    # sekd export
    sekd.study("configs/study/cpu.yaml")                                # sekd study
    sekd.write_report("results/study-cpu")                              # sekd report
"""

__version__ = "0.1.0"

_API = {
    "build_corpus": "sekd.data.build",
    "build_l3das23": "sekd.data.l3das23",
    "list_pairs": "sekd.data.datasets",
    "check_corpus": "sekd.data.layouts",
    "load_config": "sekd.config",
    "train": "sekd.engine.train",
    "evaluate": "sekd.evaluate",
    "evaluate_many": "sekd.evaluate",
    "load_enhancer": "sekd.checkpoint",
    "trust_classes": "sekd.models.base",
    "resolve_checkpoint": "sekd.checkpoint",
    "list_models": "sekd.pretrained",
    "model_info": "sekd.pretrained",
    "best_model": "sekd.pretrained",
    "build_enhancer": "sekd.models",
    "enhance_files": "sekd.enhance",
    "enhance_array": "sekd.enhance",
    "profile_model": "sekd.profile",
    "StreamingEnhancer": "sekd.streaming",
    "load_streamer": "sekd.streaming",
    "export_step": "sekd.export",
    "study": "sekd.study",
    "write_report": "sekd.report",
    "build_peer": "sekd.peers",
}

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'sekd' has no attribute {name!r}")
