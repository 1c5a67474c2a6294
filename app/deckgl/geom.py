"""Geometry helpers for deck.gl layer records: polygons and lines -> rounded lon/lat lists."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.number))


def _polygons(geom: Any) -> list[list[list[list[float]]]]:
    """A geometry -> list of polygons, each a list of rings of ``[lon, lat]``.

    Accepts shapely (Multi)Polygons, anything with ``__geo_interface__``, a ring
    ``[[lon, lat], ...]``, a polygon ``[ring, hole, ...]`` or a list of polygons."""
    if hasattr(geom, "__geo_interface__"):
        gi = geom.__geo_interface__
        if gi["type"] == "Polygon":
            return [_round_rings(gi["coordinates"])]
        if gi["type"] == "MultiPolygon":
            return [_round_rings(p) for p in gi["coordinates"]]
        raise ValueError(f"expected a Polygon or MultiPolygon geometry, got {gi['type']}")
    seq = np.asarray(geom, dtype=object).tolist() if isinstance(geom, np.ndarray) else geom
    if not isinstance(seq, (list, tuple)) or not seq:
        raise ValueError(f"expected polygon coordinates, got {geom!r:.80}")
    if _is_number(seq[0][0]):
        return [_round_rings([seq])]
    if _is_number(seq[0][0][0]):
        return [_round_rings(seq)]
    return [_round_rings(p) for p in seq]


def _round_rings(rings: Any) -> list[list[list[float]]]:
    return [np.round(np.asarray(r, dtype=float)[:, :2], 6).tolist() for r in rings]


def explode_polygons(df: pd.DataFrame, polygon: str,
                      layer: str) -> tuple[list[list], list[int]]:
    """One entry per polygon part, with the source row index of each part."""
    polys: list[list] = []
    rows: list[int] = []
    for i, geom in enumerate(df[polygon].tolist()):
        try:
            parts = _polygons(geom)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ValueError(f"{layer}: row {i} of column {polygon!r} is not a polygon "
                             f"({exc}); give shapely polygons or [[lon, lat], ...] rings") from exc
        polys.extend(parts)
        rows.extend([i] * len(parts))
    return polys, rows



def line_coords(df: pd.DataFrame, path: str, layer: str) -> list[list[list[float]]]:
    out = []
    for i, p in enumerate(df[path].tolist()):
        if hasattr(p, "__geo_interface__"):
            p = p.__geo_interface__["coordinates"]
        arr = np.asarray(p, dtype=float) if p is not None else np.zeros((0, 2))
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(f"{layer}: row {i} of {path!r} is not a list of [lon, lat] "
                             f"points (shape {arr.shape})")
        out.append(np.round(arr[:, :2], 6).tolist())
    return out


