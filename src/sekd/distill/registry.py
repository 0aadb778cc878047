"""The one registry of distillation methods (style.md §3).

Every module in :mod:`sekd.distill.methods` defines one method class decorated with
:func:`register`; the module's file name is the registry key. Adding a method means adding
one file there.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from ..errors import SekdError
from .base import DistillMethod, TapInfo

_METHODS: dict[str, type[DistillMethod]] = {}
_loaded = False


def register(cls: type[DistillMethod]) -> type[DistillMethod]:
    """Class decorator: registers ``cls`` under its module's file name (``methods/at.py`` -> ``"at"``)."""
    name = cls.__module__.rsplit(".", 1)[-1]
    if not cls.description:
        raise TypeError(f"distillation method {cls.__qualname__} needs a one-line description")
    if _METHODS.get(name, cls) is not cls:
        raise TypeError(f"two distillation methods named {name!r}")
    cls.name = name
    _METHODS[name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        from . import methods
        for module in pkgutil.iter_modules(methods.__path__):
            importlib.import_module(f"{methods.__name__}.{module.name}")
        _loaded = True


def get_method(name: str) -> type[DistillMethod]:
    _load()
    try:
        return _METHODS[name]
    except KeyError:
        raise SekdError(f"unknown distillation method {name!r}; choose one of: {', '.join(sorted(_METHODS))}") from None


def list_methods() -> list[tuple[str, str]]:
    """``(name, description)`` of every registered method, sorted by name."""
    _load()
    return [(name, _METHODS[name].description) for name in sorted(_METHODS)]


def build_method(name: str, student: TapInfo, teacher: TapInfo, options: Mapping[str, object] | None = None
                 ) -> DistillMethod:
    """The method ``name`` built for these taps with ``options`` (validated against its Options dataclass)."""
    return get_method(name)(student, teacher, **dict(options or {}))
