"""Distillation methods: one interface, one registry, one file per method in ``methods/``.

See :mod:`sekd.distill.base` for the interface and method.md §3–4 for the methods.
"""

from .base import DistillMethod, TapInfo
from .registry import build_method, get_method, list_methods, register

__all__ = ["DistillMethod", "TapInfo", "build_method", "get_method", "list_methods", "register"]
