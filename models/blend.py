"""Weigh a model's learned part against its count-based part on held-out data.

A model whose score is ``encoder + prior`` (the ST-Transformer with its transition prior)
trains the encoder on the very sequences it is scored on, so on its own training data the
encoder always looks useful; on data the sequences carry nothing beyond the last item (the
planted set of PEERS.md) it only adds noise to a prior that was fitted leave-one-out. After
training, ``fit_weight`` chooses ``w`` in ``score = w * encoder + prior`` by the log-loss of
the validation targets: one number fitted on data no weight was trained on, as temperature
scaling does (Guo et al. 2017), and the same masking as the evaluator (already-seen items
out when ``ds.exclude_seen``). Log-loss rather than NDCG@10: it is smooth in ``w`` and uses
every target's probability, not only whether it made the top 10, so it is far less noisy on
a few thousand validation users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.base import Recommender
from models.data import SeqDataset
from models.evaluate import autocast, to_device

GRID = tuple(np.round(np.linspace(0.0, 2.0, 21), 2))  # candidate weights, 0.1 apart


@dataclass(frozen=True)
class BlendFit:
    weight: float
    nll: dict[float, float]   # mean validation log-loss per candidate weight
    n: int                    # validation targets used

    def message(self) -> str:
        at_one = self.nll.get(1.0, float("nan"))
        return (f"encoder weight {self.weight:.1f} fitted on {self.n} validation targets "
                f"(log-loss {self.nll[self.weight]:.4f}; {at_one:.4f} at weight 1.0)")


@torch.no_grad()
def fit_weight(model: Recommender, ds: SeqDataset, part: str = "valid",
               device: torch.device | str = "cpu", batch_size: int = 256,
               grid: tuple[float, ...] = GRID) -> BlendFit | None:
    """Mean log-loss of ``part``'s targets for each weight in ``grid``; the best weight.

    ``model.score_parts(batch)`` gives the (B, n_items + 1) encoder and prior parts. Returns
    None when the part has no examples.
    """
    device = torch.device(device)
    ex = ds.parts[part]
    if len(ex) == 0:
        return None
    was_training = model.training
    model.eval()
    total = torch.zeros(len(grid), dtype=torch.float64, device=device)
    for s in range(0, len(ex), batch_size):
        sub = ex.subset(np.arange(s, min(s + batch_size, len(ex))))
        batch = to_device(ds.batch(sub), device)
        with autocast(device):
            enc, prior = model.score_parts(batch)
        enc, prior = enc.float(), prior.float()
        mask = torch.zeros_like(enc, dtype=torch.bool)
        mask[:, 0] = True
        if ds.exclude_seen:
            rows, items = ds.history_items(sub)
            mask[torch.from_numpy(rows).to(device), torch.from_numpy(items).to(device)] = True
        prior = prior.masked_fill(mask, float("-inf"))
        enc = enc.masked_fill(mask, 0.0)  # a weight of 0 must not meet -inf (NaN)
        target = batch["target"][:, None]
        for i, g in enumerate(grid):  # one (B, n_items + 1) logit matrix at a time
            logits = torch.addcmul(prior, enc, torch.tensor(g, device=device))
            total[i] += float((torch.logsumexp(logits, dim=1) - logits.gather(1, target)[:, 0])
                              .sum())
    model.train(was_training)
    nll = {float(g): float(v) / len(ex) for g, v in zip(grid, total.cpu(), strict=True)}
    best = min(nll, key=lambda g: (nll[g], abs(g - 1.0)))  # ties: the trained weight
    return BlendFit(best, nll, len(ex))
