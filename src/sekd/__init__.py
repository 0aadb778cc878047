"""sekd: knowledge distillation for small, fast speech enhancement."""

__version__ = "0.1.0"
