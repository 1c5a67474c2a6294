"""What a training run is asked for (``TrainSettings``) and what it reports (``TrainEvent``).

``TrainSettings`` holds how a model is trained: the data window, the optimiser, stopping and
the device; what the model is (hidden size, ablation switches) is its own ``Config``
(models.recommenders). The CLI's ``--set KEY=VALUE`` and the dashboard's training form give
both kinds of names in one mapping; :func:`resolve` splits it, and names every valid setting
when one is misspelt.

``TrainEvent`` is one progress report of models.training.loop.train; ``to_dict`` gives the
plain dict the dashboard's job runner stores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..data.dataset import ExcludeSeen
from ..recommenders.registry import get_class, make_config


@dataclass(frozen=True)
class TrainSettings:
    """How one model is trained; every field documented on the line of its default."""

    split: str = "leave-last"          # "leave-last" or "temporal" (models.data.splits)
    epochs: int = 20                   # most training epochs; early stopping may end sooner
    device: str = "auto"               # "auto" (CUDA when available), "cpu" or "cuda"
    batch_size: int = 128              # training windows per optimiser step
    lr: float = 3e-3                   # AdamW learning rate
    weight_decay: float = 0.0          # AdamW weight decay
    seed: int = 0                      # seeds Python, NumPy and torch: same seed, same metrics
    max_len: int = 50                  # most recent events a model sees per sequence
    patience: int = 3                  # epochs without a validation NDCG@10 gain before stopping
    pretrain_epochs: int = 2           # epochs of pretrain_loss first, for models that ask
    init_from: str = ""                # weights file to start from (models.training.transfer)
    init_ids: bool = False             # with init_from: also copy rows of shared item ids
    resume: bool = True                # continue an interrupted run with the same settings
    min_user: int = 5                  # users with fewer events are left out
    min_item: int = 5                  # items with fewer events are left out
    exclude_seen: ExcludeSeen = "auto"  # rank only unseen items; "auto": decided by the data

    def data_params(self) -> dict[str, Any]:
        """The settings that shape the dataset (stored in checkpoints to rebuild it)."""
        return {"max_len": self.max_len, "min_user": self.min_user, "min_item": self.min_item,
                "exclude_seen": self.exclude_seen}


def field_names(cls: type) -> tuple[str, ...]:
    """Field names of a dataclass (TrainSettings or a model's Config), in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def resolve(model: str, values: Mapping[str, Any],
            settings: TrainSettings | None = None) -> tuple[TrainSettings, Any]:
    """Split ``values`` into training settings (over ``settings``) and the model's Config.

    Raises ValueError naming the unknown keys and every valid setting on a typo.
    """
    cls = get_class(model)
    train_names, model_names = field_names(TrainSettings), field_names(cls.Config)
    unknown = [k for k in values if k not in train_names and k not in model_names]
    if unknown:
        raise ValueError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for model {model!r}; valid settings: {', '.join(model_names)} (model), "
            f"{', '.join(train_names)} (training)")
    settings = dataclasses.replace(settings or TrainSettings(),
                                   **{k: v for k, v in values.items() if k in train_names})
    config = make_config(cls, {k: v for k, v in values.items() if k in model_names})
    return settings, config


class Phase(StrEnum):
    """Where a training run is."""

    DATA = "data"            # the dataset is built (its report in ``messages``); before that,
    #                          its step ``step`` of ``steps`` (``detail``) is under way
    PRETRAIN = "pretrain"    # a step of pre-training
    TRAIN = "train"          # a step of training
    VALID = "valid"          # an epoch ended and was validated (``loss``, ``valid``); before
    #                          that, ``step`` of its ``steps`` validation batches are ranked
    EVALUATE = "evaluate"    # the best epoch: the count parts tuned and the blend weighed on
    #                          validation, then validation and test ranked (``detail``)
    DONE = "done"            # the model was evaluated and saved (``model_id``)


@dataclass(frozen=True)
class TrainEvent:
    """One progress report of a training run."""

    phase: Phase
    epoch: int = 0
    step: int = 0                     # steps done in this epoch (0 outside steps)
    steps: int = 0                    # steps per epoch (0 outside steps)
    loss: float | None = None         # this step's loss, or the epoch's mean at VALID
    valid: float | None = None        # validation NDCG@10 (VALID, DONE)
    model_id: str | None = None       # the saved checkpoint (DONE)
    messages: tuple[str, ...] = ()    # the dataset report (DATA)
    detail: str = ""                  # what a DATA / VALID / EVALUATE step is doing, for users

    def to_dict(self) -> dict[str, Any]:
        """Plain dict: phase, epoch, step, steps, loss, valid; plus ``detail`` when there is
        one, ``messages`` for DATA and ``model_id`` for DONE."""
        out: dict[str, Any] = {"phase": self.phase.value, "epoch": self.epoch,
                               "step": self.step, "steps": self.steps, "loss": self.loss,
                               "valid": self.valid}
        if self.detail:
            out["detail"] = self.detail
        if self.phase is Phase.DATA:
            out["messages"] = list(self.messages)
        if self.phase is Phase.DONE:
            out["model_id"] = self.model_id
        return out
