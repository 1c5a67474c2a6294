"""The explicit model registry: name -> Recommender class, one import per model."""

from __future__ import annotations

from typing import Any

from ..base import DataMeta, Recommender
from .graph import GraphRec
from .gru import GRU4Rec
from .markov import MarkovRec
from .pop import PopRec
from .repeat import RepeatRec
from .sasrec import SASRec
from .st_transformer import STTransformer

BASELINES: dict[str, type[Recommender]] = {"pop": PopRec, "repeat": RepeatRec,
                                           "markov": MarkovRec}
NEURAL: dict[str, type[Recommender]] = {"gru": GRU4Rec, "sasrec": SASRec,
                                        "st-transformer": STTransformer, "graph": GraphRec}
MODELS: dict[str, type[Recommender]] = {**BASELINES, **NEURAL}


def get_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None


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
