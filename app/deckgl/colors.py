"""Colour scales for deck.gl layers: values -> ``[r, g, b, a]`` lists computed in Python.

Colours are baked into the layer records (``"@@=color"`` accessors) rather than computed in the
browser, so a spec is fully described by its JSON and the same numbers colour the legend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

RGBA = list[int]

#: Sequential ramp for counts (viridis-like, dark purple -> yellow).
SEQUENTIAL: tuple[tuple[int, int, int], ...] = (
    (68, 1, 84),
    (59, 82, 139),
    (33, 145, 140),
    (94, 201, 98),
    (253, 231, 37),
)
#: Diverging ramp for signed values such as attributions: blue (-) -> grey (0) -> red (+).
DIVERGING: tuple[tuple[int, int, int], ...] = (
    (33, 102, 172),
    (146, 197, 222),
    (220, 220, 220),
    (244, 165, 130),
    (178, 24, 43),
)
#: Categorical palette (Tableau 10).
CATEGORICAL: tuple[tuple[int, int, int], ...] = (
    (78, 121, 167),
    (242, 142, 43),
    (225, 87, 89),
    (118, 183, 178),
    (89, 161, 79),
    (237, 201, 72),
    (176, 122, 161),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
)
#: Zone trend colours: emerging green, stable grey, declining red.
TREND_COLORS: dict[str, tuple[int, int, int]] = {
    "emerging": (26, 152, 80),
    "stable": (150, 150, 150),
    "declining": (215, 48, 39),
}


def _interpolate(t: np.ndarray, stops: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Piecewise-linear colour ramp; ``t`` in [0, 1] -> (N, 3) uint8."""
    stops_arr = np.asarray(stops, dtype=float)  # (S, 3)
    pos = np.linspace(0.0, 1.0, len(stops_arr))
    t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0)
    channels = [np.interp(t, pos, stops_arr[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(int)  # (N, 3)


def _with_alpha(rgb: np.ndarray, alpha: int) -> list[RGBA]:
    alpha_col = np.full((len(rgb), 1), int(alpha), dtype=int)
    return np.hstack([rgb, alpha_col]).tolist()


def sequential_colors(values: Sequence[float] | pd.Series, *, log: bool = False,
                      alpha: int = 200) -> list[RGBA]:
    """Colour non-negative magnitudes (counts) on the sequential ramp, min -> max."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if log:
        v = np.log1p(np.clip(v, 0.0, None))
    if len(v) == 0:
        return []
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
    t = (v - lo) / (hi - lo) if hi > lo else np.ones_like(v)
    return _with_alpha(_interpolate(t, SEQUENTIAL), alpha)


def diverging_colors(values: Sequence[float] | pd.Series, *, alpha: int = 220) -> list[RGBA]:
    """Colour signed values symmetrically around zero (0 -> grey, +max -> red, -max -> blue)."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if len(v) == 0:
        return []
    span = np.nanmax(np.abs(v)) if np.isfinite(v).any() else 0.0
    t = 0.5 + 0.5 * v / span if span > 0 else np.full_like(v, 0.5)
    return _with_alpha(_interpolate(t, DIVERGING), alpha)


def categorical_colors(values: Sequence[object] | pd.Series, *,
                       alpha: int = 220) -> tuple[list[RGBA], dict[str, RGBA]]:
    """Colour labels with the categorical palette; returns (colours, legend label -> colour)."""
    labels = pd.Series(values).astype("string").fillna("(missing)")
    legend: dict[str, RGBA] = {}
    for i, label in enumerate(sorted(labels.unique())):
        legend[str(label)] = [*CATEGORICAL[i % len(CATEGORICAL)], int(alpha)]
    return [legend[str(label)] for label in labels], legend


def colors_for(values: pd.Series, *, alpha: int = 220) -> list[RGBA]:
    """Pick a scale from the data: text -> categorical, signed numbers -> diverging,
    non-negative numbers -> sequential."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return categorical_colors(values, alpha=alpha)[0]
    numeric = pd.to_numeric(values, errors="coerce")
    if (numeric < 0).any():
        return diverging_colors(numeric, alpha=alpha)
    return sequential_colors(numeric, alpha=alpha)


def parse_color(color: Sequence[int], *, what: str = "color") -> RGBA:
    """Validate an ``[r, g, b]`` or ``[r, g, b, a]`` colour given by a caller."""
    values = list(color)
    if len(values) not in (3, 4) or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255
                                            for c in values):
        raise ValueError(f"{what} must be [r, g, b] or [r, g, b, a] with integers 0-255, "
                         f"got {color!r}")
    return [int(c) for c in values] + ([255] if len(values) == 3 else [])
