"""sekd: knowledge distillation for small, fast speech enhancement.

The Python API mirrors the ``sekd`` command (imports are lazy, so ``import sekd`` is cheap)::

    import sekd
    sekd.build_corpus("data/builtin")                                   # sekd data build
    best = sekd.train(sekd.load_config("configs/cpu-teacher.yaml"))     # sekd train
    sekd.evaluate_many({"teacher": best}, "data/builtin")               # sekd evaluate
    model = sekd.load_enhancer(best)
    sekd.enhance_files(model, ["noisy.wav"], "enhanced/")               # sekd enhance
    sekd.profile_model(sekd.build_enhancer("teacher"))                  # sekd profile
"""

__version__ = "0.1.0"

_API = {
    "build_corpus": "sekd.data.build",
    "load_config": "sekd.config",
    "train": "sekd.engine.train",
    "evaluate": "sekd.evaluate",
    "evaluate_many": "sekd.evaluate",
    "load_enhancer": "sekd.checkpoint",
    "build_enhancer": "sekd.models",
    "enhance_files": "sekd.enhance",
    "enhance_array": "sekd.enhance",
    "profile_model": "sekd.profile",
}

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'sekd' has no attribute {name!r}")
