"""Named model sizes. The first three are method.md §2; the rest are for CPU work and tests."""

from __future__ import annotations

from ..errors import SekdError

PRESETS: dict[str, dict] = {
    "teacher": dict(channels=128, layers=4),     # as released: 3,218,118 params, 13.6 GMAC/s
    "student-l": dict(channels=96, layers=3),    # the abstract's "47 % less computation"
    "student-m": dict(channels=64, layers=1),    # released student "Stu_M": 595,494 params
    "cpu-teacher": dict(channels=32, layers=1),  # trains in minutes on 2 CPU cores (L 2 trained worse in 300 steps)
    "cpu-student": dict(channels=16, layers=1),
    "tiny": dict(channels=8, layers=1),          # unit tests
}


def preset_args(name: str) -> dict:
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise SekdError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
