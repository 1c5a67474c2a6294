"""The explicit model registry: name -> Recommender class.

Baselines are always present. The neural models live in their own modules (written
separately); each is imported explicitly and skipped, with the reason kept in ``MISSING``,
only when its module does not exist yet.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.base import REGISTRY, DataMeta, Recommender
from models.markov import MarkovRec
from models.pop import PopRec
from models.repeat import RepeatRec

BASELINES: dict[str, type[Recommender]] = {"pop": PopRec, "repeat": RepeatRec,
                                           "markov": MarkovRec}

#: registry name -> (module, class name) of the neural models.
NEURAL: dict[str, tuple[str, str]] = {
    "gru": ("models.gru", "GRU4Rec"),
    "sasrec": ("models.sasrec", "SASRec"),
    "st-transformer": ("models.st_transformer", "STTransformer"),
    "graph": ("models.graph", "GraphRec"),
}

#: registry name -> why it is unavailable (module not written yet).
MISSING: dict[str, str] = {}


def _load_neural() -> dict[str, type[Recommender]]:
    found: dict[str, type[Recommender]] = {}
    for name, (module, cls_name) in NEURAL.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:   # the module exists but one of ITS imports failed
                raise
            MISSING[name] = f"{module} does not exist"
            continue
        found[name] = getattr(mod, cls_name)
    return found


MODELS: dict[str, type[Recommender]] = {**BASELINES, **_load_neural()}
REGISTRY.update(MODELS)


def get_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        why = f" ({MISSING[name]})" if name in MISSING else ""
        raise KeyError(f"unknown model {name!r}{why}; available: {', '.join(MODELS)}") from None


def make_config(cls: type[Recommender], overrides: dict[str, Any] | None = None) -> Any:
    """``cls.Config(**overrides)`` with an error naming the valid fields on a typo."""
    overrides = overrides or {}
    try:
        return cls.Config(**overrides)
    except TypeError as exc:
        import dataclasses

        fields = [f.name for f in dataclasses.fields(cls.Config)]
        raise ValueError(f"bad settings for model {cls.name!r}: {exc}; valid settings: "
                         f"{', '.join(fields)}") from None


def build_model(name: str, meta: DataMeta, **overrides: Any) -> Recommender:
    cls = get_class(name)
    return cls(meta, make_config(cls, overrides))
