"""Weigh a model's score parts (sequence encoder, count-based priors) on held-out data.

The ST-Transformer's score is ``w_0 * encoder + w_1 * transition prior + w_2 * history``: a
sequence encoder trained by gradient descent, a first-order transition prior fitted on its
own (models.transitions, leave-one-out), and the user's own recency-weighted history. Which
to trust is a property of the data: on Foursquare NYC the encoder already knows what the
others say, on the planted set of PEERS.md (a pure first-order process) it can only re-learn
the transitions from fewer examples, on the Taobao sample people mostly return to items they
just viewed. Trained jointly, encoder and prior co-adapt to the training sequences, which no
held-out check then undoes.

``fit_weights`` picks the weights after training by the log-loss of the validation targets:
a few numbers fitted on data none of the parts was trained on, as temperature scaling does
(Guo et al. 2017), with the evaluator's masking (already-seen items out when
``ds.exclude_seen``). Log-loss rather than NDCG@10: it is smooth and convex in the weights and
uses every target's probability, not only whether it made the top 10, so it is much less
noisy on a few thousand validation users. The validation scores are computed once and kept
(at most ``budget`` floats; a fixed random subset of the examples beyond that); the search is
coordinate descent (each weight on a 0..4 grid, then finer around its best), which finds the
minimum of a smooth convex function.
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
ROUNDS = 4
BUDGET = 1 << 26  # floats kept for all parts together (256 MB)


@dataclass(frozen=True)
class BlendFit:
    weights: tuple[float, ...]    # one per part, the encoder's first
    names: tuple[str, ...]
    nll: float                    # mean validation log-loss at ``weights``
    nll_encoder: float            # ... with the first part alone
    nll_sum: float                # ... with every weight 1
    n: int                        # validation targets used

    def message(self) -> str:
        ws = ", ".join(f"{name} weight {w:.2f}" for name, w in
                       zip(self.names, self.weights, strict=True))
        return (f"blend fitted on {self.n} validation targets: {ws} (log-loss {self.nll:.4f}; "
                f"{self.names[0]} alone {self.nll_encoder:.4f}, plain sum {self.nll_sum:.4f})")


@dataclass
class Parts:
    """Validation scores of each part, masked entries zero, plus the mask and targets."""

    scores: list[torch.Tensor]    # K x (N, n_items + 1)
    mask: torch.Tensor            # (N, n_items + 1) bool: not rankable
    target: torch.Tensor          # (N,)

    def nll(self, weights: tuple[float, ...], chunk: int = 4096) -> float:
        """Mean log-loss of the targets under ``softmax(sum_k w_k * part_k)``."""
        total = 0.0
        for s in range(0, len(self.target), chunk):
            logits = sum(w * p[s:s + chunk] for w, p in zip(weights, self.scores, strict=True))
            logits = logits.masked_fill(self.mask[s:s + chunk], float("-inf"))
            t = self.target[s:s + chunk, None]
            total += float((torch.logsumexp(logits, dim=1) - logits.gather(1, t)[:, 0]).sum())
        return total / max(len(self.target), 1)


@torch.no_grad()
def validation_parts(model: Recommender, ds: SeqDataset, part: str = "valid",
                     device: torch.device | str = "cpu", batch_size: int = 256,
                     budget: int = BUDGET, seed: int = 0) -> Parts | None:
    """``model.score_parts`` on ``part``'s examples, with the evaluator's mask."""
    device = torch.device(device)
    ex = ds.parts[part]
    if len(ex) == 0:
        return None
    was_training = model.training
    model.eval()
    n_parts = len(model.score_parts(to_device(ds.batch(ex.subset(np.arange(1))), device)))
    cap = max(1, budget // (n_parts * (ds.meta.n_items + 1)))
    rows = np.arange(len(ex))
    if len(ex) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(len(ex), cap, replace=False))
    scores: list[list[torch.Tensor]] = [[] for _ in range(n_parts)]
    masks, targets = [], []
    for s in range(0, len(rows), batch_size):
        sub = ex.subset(rows[s:s + batch_size])
        batch = to_device(ds.batch(sub), device)
        with autocast(device):
            parts = [p.float() for p in model.score_parts(batch)]
        mask = ~torch.isfinite(parts[0])
        mask[:, 0] = True
        if ds.exclude_seen:
            r, items = ds.history_items(sub)
            mask[torch.from_numpy(r).to(device), torch.from_numpy(items).to(device)] = True
        for k, p in enumerate(parts):
            scores[k].append(p.masked_fill(mask, 0.0))  # a weight of 0 must not meet -inf
        masks.append(mask)
        targets.append(batch["target"])
    model.train(was_training)
    return Parts([torch.cat(x) for x in scores], torch.cat(masks), torch.cat(targets))


def _line_search(f, weights: list[float], k: int) -> float:
    """The best value of weight ``k`` (others fixed): coarse grid, then finer around it."""
    def at(v: float) -> float:
        w = list(weights)
        w[k] = float(v)
        return f(tuple(w)) if any(w) else float("inf")

    best = min(COARSE, key=lambda v: (at(v), abs(v - weights[k])))
    fine = np.clip(best + FINE_STEP * np.arange(-4, 5), 0.0, None)
    return float(min(fine, key=lambda v: (at(v), abs(v - best))))


def fit_weights(model: Recommender, ds: SeqDataset, part: str = "valid",
                device: torch.device | str = "cpu",
                names: tuple[str, ...] | None = None) -> BlendFit | None:
    """Weights of least validation log-loss for ``model.score_parts``; None without data."""
    parts = validation_parts(model, ds, part, device)
    if parts is None:
        return None
    seen: dict[tuple[float, ...], float] = {}

    def f(w: tuple[float, ...]) -> float:
        key = tuple(round(x, 4) for x in w)
        if key not in seen:
            seen[key] = parts.nll(key)
        return seen[key]

    K = len(parts.scores)
    weights = [1.0] + [0.0] * (K - 1)  # start from the encoder alone
    for _ in range(ROUNDS):
        before = list(weights)
        for k in range(K):
            weights[k] = _line_search(f, weights, k)
        if weights == before:
            break
    w = tuple(round(x, 4) for x in weights)
    names = names or tuple(f"part {k}" for k in range(K))
    return BlendFit(w, names, f(w), f((1.0,) + (0.0,) * (K - 1)), f((1.0,) * K),
                    len(parts.target))
