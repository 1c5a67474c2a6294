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
(at most ``budget`` floats; a fixed random subset of the examples beyond that), then Newton's
method finds the non-negative minimum (``fit_weights``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ..base import Recommender
from ..data.dataset import SeqDataset
from .evaluate import autocast

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

    def nll_grad_hess(self, weights: tuple[float, ...], chunk: int = 2048,
                      ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Mean log-loss, its gradient (K,) and Hessian (K, K) in the weights.

        With ``p`` the softmax over candidates: gradient ``E_p[part_k] - part_k[target]``,
        Hessian ``Cov_p(part_k, part_l)``, averaged over the targets.
        """
        K = len(self.scores)
        f = 0.0
        g = torch.zeros(K, dtype=torch.float64)
        h = torch.zeros(K, K, dtype=torch.float64)
        for s in range(0, len(self.target), chunk):
            ps = [p[s:s + chunk] for p in self.scores]
            logits = sum(w * p for w, p in zip(weights, ps, strict=True))
            logits = logits.masked_fill(self.mask[s:s + chunk], float("-inf"))
            t = self.target[s:s + chunk, None]
            lse = torch.logsumexp(logits, dim=1)
            f += float((lse - logits.gather(1, t)[:, 0]).sum())
            prob = torch.exp(logits - lse[:, None])                      # (n, n_items + 1)
            mean = [(prob * p).sum(1) for p in ps]                       # E_p[part_k], (n,)
            for k in range(K):
                g[k] += float((mean[k] - ps[k].gather(1, t)[:, 0]).sum())
                for m in range(k, K):
                    cov = (prob * ps[k] * ps[m]).sum(1) - mean[k] * mean[m]
                    h[k, m] += float(cov.sum())
                    h[m, k] = h[k, m]
        n = max(len(self.target), 1)
        return f / n, g / n, h / n

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
    first = ds.batch(ex.subset(np.arange(1))).to(device, non_blocking=True)
    n_parts = len(model.score_parts(first))
    cap = max(1, budget // (n_parts * (ds.meta.n_items + 1)))
    rows = np.arange(len(ex))
    if len(ex) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(len(ex), cap, replace=False))
    scores: list[list[torch.Tensor]] = [[] for _ in range(n_parts)]
    masks, targets = [], []
    for s in range(0, len(rows), batch_size):
        sub = ex.subset(rows[s:s + batch_size])
        batch = ds.batch(sub).to(device, non_blocking=True)
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
        targets.append(batch.target)
    model.train(was_training)
    return Parts([torch.cat(x) for x in scores], torch.cat(masks), torch.cat(targets))


def _newton(parts: Parts, support: list[int], iters: int = 30,
            cap: float = 50.0) -> tuple[float, ...] | None:
    """Unconstrained damped Newton on the weights in ``support`` (the others 0); None when
    it leaves the positive orthant (the optimum then lies on a smaller support)."""
    K = len(parts.scores)
    w = torch.zeros(K, dtype=torch.float64)
    w[support] = 1.0
    f, g, h = parts.nll_grad_hess(tuple(w.tolist()))
    for _ in range(iters):
        gs, hs = g[support], h[np.ix_(support, support)]
        step = torch.linalg.solve(hs + 1e-9 * torch.eye(len(support), dtype=hs.dtype), gs)
        t = 1.0
        while t > 1e-6:
            trial = w.clone()
            trial[support] = w[support] - t * step
            if (trial[support].abs() <= cap).all():
                f2 = parts.nll(tuple(trial.tolist()))
                if f2 <= f - 1e-4 * t * float(gs @ step):
                    break
            t /= 2
        else:
            break
        moved = float((t * step).abs().max())
        w = trial
        f, g, h = parts.nll_grad_hess(tuple(w.tolist()))
        if moved < 1e-5:
            break
    if (w[support] <= 0).any():
        return None
    return tuple(float(x) for x in w)


def fit_weights(model: Recommender, ds: SeqDataset, part: str = "valid",
                device: torch.device | str = "cpu",
                names: tuple[str, ...] | None = None) -> BlendFit | None:
    """Non-negative weights of least validation log-loss for ``model.score_parts``.

    The log-loss is convex in the weights, so the constrained minimum is the unconstrained
    minimum over the right set of non-zero weights: Newton's method on every subset of the
    parts (K is 2 or 3 here), keeping the best result that stays positive. None without data.
    """
    parts = validation_parts(model, ds, part, device)
    if parts is None:
        return None
    K = len(parts.scores)
    best: tuple[float, tuple[float, ...]] | None = None
    for size in range(1, K + 1):
        for support in itertools.combinations(range(K), size):
            w = _newton(parts, list(support))
            if w is not None:
                f = parts.nll(w)
                if best is None or f < best[0]:
                    best = (f, w)
    assert best is not None  # a single part always has a positive optimum or hits the cap
    names = names or tuple(f"part {k}" for k in range(K))
    return BlendFit(best[1], names, best[0], parts.nll((1.0,) + (0.0,) * (K - 1)),
                    parts.nll((1.0,) * K), len(parts.target))
