"""Feature helpers shared by the data pipeline and the models: local time, pairwise matrices.

Everything here is vectorised (numpy or torch broadcasting); no Python loops over events.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...analytics.spacetime import solar_offset_min

EARTH_RADIUS_KM = 6371.0088
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def estimate_offset_min(lon: np.ndarray) -> np.ndarray:
    """Solar-time UTC offset in minutes from longitude (15 degrees per hour), 0 where unknown.

    Used only when an event has no ``tz_offset_min``: for a city dataset it lands within an
    hour of the civil time (New York: -300 vs -240/-300), far better than reading UTC hours.
    The rule is ``analytics.spacetime.solar_offset_min``.
    """
    lon = np.nan_to_num(np.asarray(lon, dtype=np.float64), nan=0.0)
    return np.asarray(solar_offset_min(lon), dtype=np.float64).astype(np.int64)


def local_hour_weekday(ts_seconds: np.ndarray, offset_min: np.ndarray) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """Local hour (0..23) and weekday (0..6, Monday = 0) of unix seconds + an offset."""
    local = np.floor(np.asarray(ts_seconds, dtype=np.float64)
                     + np.asarray(offset_min, dtype=np.float64) * 60.0).astype(np.int64)
    hour = (local // 3600) % 24
    weekday = (local // 86400 + _EPOCH_WEEKDAY) % 7
    return hour, weekday


def haversine_km(lat1: torch.Tensor, lon1: torch.Tensor,
                 lat2: torch.Tensor, lon2: torch.Tensor) -> torch.Tensor:
    """Great-circle distance in km; all arguments broadcast against each other."""
    p1, p2 = torch.deg2rad(lat1), torch.deg2rad(lat2)
    dphi = p2 - p1
    dlmb = torch.deg2rad(lon2) - torch.deg2rad(lon1)
    a = torch.sin(dphi / 2) ** 2 + torch.cos(p1) * torch.cos(p2) * torch.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * torch.asin(torch.sqrt(a.clamp(0.0, 1.0)))


def distance_matrix(lat: torch.Tensor, lon: torch.Tensor, mask: torch.Tensor | None = None,
                    fill: float = 0.0) -> torch.Tensor:
    """Pairwise haversine distances (B, L, L) in km between the events of each sequence.

    ``mask`` (B, L) marks events that have coordinates (``geo_mask``); pairs where either
    side lacks them get ``fill``. Computed in float64 then cast to float32, so two events a
    few metres apart do not round to the same value as identical ones.
    """
    lat64, lon64 = lat.double(), lon.double()
    d = haversine_km(lat64.unsqueeze(-1), lon64.unsqueeze(-1),       # (B, L, 1)
                     lat64.unsqueeze(-2), lon64.unsqueeze(-2))       # (B, 1, L) -> (B, L, L)
    if mask is not None:
        pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)               # (B, L, L)
        d = d.masked_fill(~pair, fill)
    return d.float()


def time_interval_matrix(time_seq: torch.Tensor, clip: float = 30 * 86400.0,
                         buckets: int = 64) -> torch.Tensor:
    """TiSASRec-style pairwise time gaps as bucket indices (B, L, L), 0 = padding.

    ``|t_i - t_j|`` in seconds is clipped to ``clip`` and bucketed on a log scale into
    ``1..buckets`` (gaps span seconds to months; a linear scale would waste almost every
    bucket on the long tail). Padding positions are those with ``time_seq == 0``.
    """
    if buckets < 2:
        raise ValueError(f"buckets must be >= 2, got {buckets}")
    t = time_seq.double()
    gap = (t.unsqueeze(-1) - t.unsqueeze(-2)).abs().clamp(max=clip)   # (B, L, L)
    scaled = torch.log1p(gap) / math.log1p(clip)                        # 0..1
    idx = (scaled * (buckets - 1)).floor().long() + 1                   # 1..buckets
    real = time_seq != 0
    pair = real.unsqueeze(-1) & real.unsqueeze(-2)
    return idx.masked_fill(~pair, 0)
