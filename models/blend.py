"""Weigh a model's sequence encoder against its count-based prior on held-out data.

The ST-Transformer's score is ``a * encoder + b * prior``: a sequence encoder trained by
gradient descent, and a first-order transition prior fitted on its own (models.transitions,
leave-one-out). Which of the two to trust is a property of the data: on Foursquare NYC the
encoder already knows everything the last item says, on the planted set of PEERS.md (a pure
first-order process) the encoder can only re-learn the transitions from fewer examples, and
adds noise to a prior that is close to the best possible ranking. Trained jointly, the two
co-adapt to the training sequences, which no held-out check then undoes.

``fit_weights`` picks ``(a, b)`` after training by the log-loss of the validation targets:
two numbers fitted on data neither part was trained on, as temperature scaling does (Guo et
al. 2017), with the evaluator's masking (already-seen items out when ``ds.exclude_seen``).
Log-loss rather than NDCG@10: it is smooth and convex in ``(a, b)`` and uses every target's
probability, not only whether it made the top 10, so it is much less noisy on a few thousand
validation users. The validation scores are computed once and kept (at most ``budget``
floats; a fixed random subset of the validation examples beyond that), then a coarse grid
and a finer one around its best point are searched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.base import Recommender
from models.data import SeqDataset
from models.evaluate import autocast, to_device

COARSE = tuple(np.round(np.arange(0.0, 4.01, 0.25), 2))  # 0, 0.25, ..., 4
FINE_STEP = 0.05
BUDGET = 1 << 25  # floats kept per part (128 MB each for the encoder and the prior)


@dataclass(frozen=True)
class BlendFit:
    encoder: float            # a
    prior: float              # b
    nll: float                # mean validation log-loss at (a, b)
    nll_encoder: float        # ... with the encoder alone (1, 0)
    nll_sum: float            # ... with the plain sum (1, 1)
    n: int                    # validation targets used

    def message(self) -> str:
        return (f"blend fitted on {self.n} validation targets: encoder weight "
                f"{self.encoder:.2f}, prior weight {self.prior:.2f} (log-loss {self.nll:.4f}; "
                f"encoder alone {self.nll_encoder:.4f}, plain sum {self.nll_sum:.4f})")


@torch.no_grad()
def validation_parts(model: Recommender, ds: SeqDataset, part: str = "valid",
                     device: torch.device | str = "cpu", batch_size: int = 256,
                     budget: int = BUDGET, seed: int = 0,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(encoder, prior, target) of ``part``'s examples; masked candidates have prior -inf."""
    device = torch.device(device)
    ex = ds.parts[part]
    if len(ex) == 0:
        return None
    cap = max(1, budget // (ds.meta.n_items + 1))
    rows = np.arange(len(ex))
    if len(ex) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(len(ex), cap, replace=False))
    was_training = model.training
    model.eval()
    enc_all, prior_all, target_all = [], [], []
    for s in range(0, len(rows), batch_size):
        sub = ex.subset(rows[s:s + batch_size])
        batch = to_device(ds.batch(sub), device)
        with autocast(device):
            enc, prior = model.score_parts(batch)
        enc, prior = enc.float(), prior.float()
        mask = torch.zeros_like(enc, dtype=torch.bool)
        mask[:, 0] = True
        if ds.exclude_seen:
            r, items = ds.history_items(sub)
            mask[torch.from_numpy(r).to(device), torch.from_numpy(items).to(device)] = True
        enc_all.append(enc.masked_fill(mask, 0.0))  # a weight of 0 must not meet -inf (NaN)
        prior_all.append(prior.masked_fill(mask, float("-inf")))
        target_all.append(batch["target"])
    model.train(was_training)
    return torch.cat(enc_all), torch.cat(prior_all), torch.cat(target_all)


def mean_nll(enc: torch.Tensor, prior: torch.Tensor, target: torch.Tensor, a: float,
             b: float, chunk: int = 4096) -> float:
    """Mean log-loss of ``target`` under ``softmax(a * enc + b * prior)`` (-inf stays out)."""
    total = 0.0
    for s in range(0, len(target), chunk):
        e, p, t = enc[s:s + chunk], prior[s:s + chunk], target[s:s + chunk, None]
        masked = torch.isneginf(p)
        logits = (a * e + b * p.masked_fill(masked, 0.0)).masked_fill(masked, float("-inf"))
        total += float((torch.logsumexp(logits, dim=1) - logits.gather(1, t)[:, 0]).sum())
    return total / max(len(target), 1)


def fit_weights(model: Recommender, ds: SeqDataset, part: str = "valid",
                device: torch.device | str = "cpu") -> BlendFit | None:
    """The ``(a, b)`` of least validation log-loss; None when ``part`` has no examples."""
    parts = validation_parts(model, ds, part, device)
    if parts is None:
        return None
    seen: dict[tuple[float, float], float] = {}

    def nll(a: float, b: float) -> float:
        key = (round(a, 4), round(b, 4))
        if key not in seen:
            seen[key] = mean_nll(*parts, *key)
        return seen[key]

    coarse = [(a, b) for a in COARSE for b in COARSE if a or b]
    a0, b0 = min(coarse, key=lambda k: (nll(*k), abs(k[0] - 1) + abs(k[1] - 1)))
    offsets = FINE_STEP * np.arange(-4, 5)
    fine = [(a, b) for a in np.clip(a0 + offsets, 0, None) for b in np.clip(b0 + offsets, 0, None)
            if a or b]
    a, b = min(fine, key=lambda k: nll(*k))
    return BlendFit(float(round(a, 4)), float(round(b, 4)), nll(a, b), nll(1.0, 0.0),
                    nll(1.0, 1.0), len(parts[2]))
