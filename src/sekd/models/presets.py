"""Named model sizes: DPDCRN (method.md §2 and CPU sizes) and the ultra-light GTCRN family."""

from __future__ import annotations

from ..errors import SekdError

DPDCRN_CLASS = "sekd.models.dpdcrn:DPDCRN"
GTCRN_CLASS = "sekd.models.gtcrn:GTCRN"

# DPDCRN arguments; the first three are method.md §2.
PRESETS: dict[str, dict] = {
    "teacher": dict(channels=128, layers=4),     # as released: 3,218,118 params, 13.6 GMAC/s
    "student-l": dict(channels=96, layers=3),    # the abstract's "47 % less computation"
    "student-m": dict(channels=64, layers=1),    # released student "Stu_M": 595,494 params
    "cpu-teacher": dict(channels=32, layers=1),  # trains in minutes on 2 CPU cores (L 2 trained worse in 300 steps)
    "cpu-student": dict(channels=16, layers=1),
    "tiny": dict(channels=8, layers=1),          # unit tests
}

# GTCRN arguments (always causal).
GTCRN_PRESETS: dict[str, dict] = {
    "gtcrn": dict(channels=16, layers=2),        # the paper's size
    "gtcrn-l": dict(channels=24, layers=2),      # 1.5x wider, still under NSNet2's MACs
}


def preset_spec(name: str) -> dict:
    """``{"class": ..., "args": {...}}`` of a preset."""
    for cls, presets in ((DPDCRN_CLASS, PRESETS), (GTCRN_CLASS, GTCRN_PRESETS)):
        if name in presets:
            return {"class": cls, "args": dict(presets[name])}
    raise SekdError(f"unknown model preset {name!r}; choose one of: {', '.join([*PRESETS, *GTCRN_PRESETS])}")


def preset_args(name: str) -> dict:
    return preset_spec(name)["args"]
