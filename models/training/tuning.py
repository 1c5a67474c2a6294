"""Choose a count model's few settings on the validation split (never on test).

``tune_on_validation(model, ds, {"window": (20, 50, None), ...})`` tries every combination of
the grid (a sequence of such mappings tries the union of their combinations, for settings that
only matter together): the model's frozen ``config`` is replaced, ``model.refit()`` recomputes
what the settings change, and the validation part is ranked over all items with the evaluator's
own masking (models.training.evaluate). The best validation NDCG@10 wins, MRR breaks ties, then
the grid order (the first values are the simplest). The model keeps the chosen config, so the
checkpoint stores the chosen values and a reloaded model scores the same.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..base import Recommender
from ..data.dataset import SeqDataset
from .evaluate import prepare_part, rank_metrics
from .progress import report


def show(value: Any) -> str:
    """A setting's value for the log: ``all``/``none`` for None, numbers without noise."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Tuned:
    chosen: dict[str, Any]                    # the winning values
    ndcg: float                               # their validation NDCG@10
    default_ndcg: float                       # the settings the model came with
    tried: int                                # combinations evaluated
    seconds: float

    def message(self, name: str) -> str:
        vals = ", ".join(f"{k} {show(v)}" for k, v in self.chosen.items())
        return (f"{name} tuned on validation ({self.tried} settings, {self.seconds:.1f}s): "
                f"{vals} (validation NDCG@10 {self.ndcg:.4f}; as configured "
                f"{self.default_ndcg:.4f})")


#: scores (rows x items) per batch while tuning: 32 MB of float32
TUNING_SCORES = 1 << 23

Grid = Mapping[str, tuple[Any, ...]] | Sequence[Mapping[str, tuple[Any, ...]]]


def grid_parts(grid: Grid) -> list[Mapping[str, tuple[Any, ...]]]:
    """The grid as a list of mappings, each tried as the product of its values."""
    return [grid] if isinstance(grid, Mapping) else list(grid)


def grid_keys(grid: Grid) -> list[str]:
    """Every setting a grid names, in order, once."""
    return list(dict.fromkeys(k for part in grid_parts(grid) for k in part))


def grid_points(grid: Grid) -> list[dict[str, Any]]:
    """Every combination the grid tries, in order."""
    return [dict(zip(part, values, strict=True))
            for part in grid_parts(grid) for values in itertools.product(*part.values())]


def tune_on_validation(model: Recommender, ds: SeqDataset, grid: Grid,
                       device: torch.device | str = "cpu") -> Tuned:
    """Set ``model.config`` to the grid point of best validation NDCG@10 (see module doc).
    Each setting measured is reported (models.training.progress)."""
    t0 = time.perf_counter()
    base = model.config
    refit = getattr(model, "refit", lambda: None)
    points = grid_points(grid)
    assert points, "an empty grid"
    # the configured settings are measured first; a grid point equal to them is not again
    same = [cand == {k: getattr(base, k) for k in cand} for cand in points]
    total, done = 1 + len(points) - sum(same), 0
    what = f"choosing the {model.name} settings on validation"
    # the same batches for every setting, as few as fit TUNING_SCORES scores each (count
    # models keep what a batch costs them whatever the settings: one batch, one cost)
    rows = max(256, TUNING_SCORES // (ds.meta.n_items + 1))
    prepared = prepare_part(ds, "valid", batch_size=rows, device=device)

    def measure(config: Any) -> tuple[float, float]:
        nonlocal done
        report(done, total, what)
        done += 1
        model.config = config
        refit()
        return rank_metrics(model, ds, prepared, "valid", device)

    default = measure(base)
    best: tuple[tuple[float, float], dict[str, Any]] | None = None
    for cand, now in zip(points, same, strict=True):
        score = default if now else measure(dataclasses.replace(base, **cand))
        if best is None or score > best[0]:
            best = (score, cand)
    model.config = dataclasses.replace(base, **best[1])
    refit()
    return Tuned(best[1], best[0][0], default[0], len(points), time.perf_counter() - t0)
