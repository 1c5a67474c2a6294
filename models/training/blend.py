"""Weigh a model's score parts (sequence encoder, count-based parts) on held-out data.

The ST-Transformer's score is ``w_0 * encoder + w_1 * transition prior + w_2 * history``: a
sequence encoder trained by gradient descent, the first-order Markov model's log-probability
and the repeat model's (log) score, both with settings tuned on validation. Which to trust is a
property of the data: on Foursquare NYC the encoder adds to the user's history, on the planted
set of PEERS.md (a pure first-order process) the encoder can only re-learn the transitions from
fewer examples, on the Taobao sample people mostly return to items they just viewed.

``choose_weights`` picks the weights after training by the ranking metric itself: every
weighting of a coarse grid (each part alone, every pair, all three, in ratios 1/4, 1, 4) is
scored by validation NDCG@10 over all items with the evaluator's masking, then a greedy search
halves, doubles, drops or brings in single weights (ratios 1/16..16) while NDCG@10 improves;
the best wins, the validation log-loss breaks ties. Each part alone is a candidate, so on
validation the blend is never worse than its best part; and a mix is kept over the best single
part only when it wins by more than ``NOISE_SE`` standard errors of the paired per-target
difference (dozens of weightings are tried, so on a small validation set, such as the Taobao
sample's, the best of them wins by luck and lost to that part on test). Ranking, not
log-loss, decides: a weighting with the better log-loss can rank worse (on the planted set the
log-loss optimum put weight 0.03 on the encoder and still ranked below the Markov model it
contains).

``fit_weights`` is the log-loss fit: the validation scores are computed once and kept (at most
``budget`` floats; a fixed random subset of the examples beyond that), then Newton's method
finds the non-negative minimum, as temperature scaling does (Guo et al. 2017).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..base import Recommender
from ..data.dataset import SeqDataset
from .evaluate import autocast
from .progress import report

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

    def gains(self, weights: tuple[float, ...], k: int = 10, chunk: int = 2048) -> torch.Tensor:
        """NDCG@k of each target under the blend (pessimistic ties, as the evaluator)."""
        out = []
        for s in range(0, len(self.target), chunk):
            e = s + chunk
            logits = torch.zeros_like(self.scores[0][s:e])
            for w, p in zip(weights, self.scores, strict=True):
                if w != 0:
                    logits.add_(p[s:e], alpha=w)
            logits.masked_fill_(self.mask[s:e], float("-inf"))
            rank = (logits >= logits.gather(1, self.target[s:e, None])).sum(1).double()
            out.append(torch.where(rank <= k, 1.0 / torch.log2(rank + 1.0),
                                   torch.zeros_like(rank)))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def ndcg(self, weights: tuple[float, ...], k: int = 10, chunk: int = 2048) -> float:
        """Mean NDCG@k of the targets under the blend."""
        return float(self.gains(weights, k, chunk).sum()) / max(len(self.target), 1)

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
    """Non-negative weights of least validation log-loss for ``model.score_parts``
    (``loss_optimum``); None without data."""
    parts = validation_parts(model, ds, part, device)
    if parts is None:
        return None
    K = len(parts.scores)
    nll, w = loss_optimum(parts)
    names = names or tuple(f"part {k}" for k in range(K))
    return BlendFit(w, names, nll, parts.nll((1.0,) + (0.0,) * (K - 1)),
                    parts.nll((1.0,) * K), len(parts.target))


def loss_optimum(parts: Parts) -> tuple[float, tuple[float, ...]]:
    """(log-loss, weights) of the non-negative weights of least log-loss: Newton's method on
    every subset of the parts (K is 2 or 3 here), keeping the best result that stays positive
    (the log-loss is convex, so the constrained minimum is an unconstrained one on the right
    support)."""
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
    return best


#: relative weights for every part after the first one kept (0 = dropped): all of them, and
#: the coarse start of the search
RATIOS = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0)
COARSE = (0.0, 1 / 4, 1.0, 4.0)
TIE = 1e-4  # validation NDCG@10 differences below this are ties (log-loss decides)
#: A mix is kept over its best single part only when its validation NDCG@10 is higher by more
#: than this many standard errors of the paired per-target difference: the search tries
#: dozens of weightings, so on a small validation set the best of them wins by chance.
NOISE_SE = 2.0


def candidate_weights(k: int, ratios: tuple[float, ...] = RATIOS) -> list[tuple[float, ...]]:
    """Weight vectors of ``k`` parts up to scale (ranking ignores a common factor): the first
    non-zero weight is 1, the later ones take every ratio; each part alone is among them."""
    out = []
    for lead in range(k):
        for rest in itertools.product(ratios, repeat=k - lead - 1):
            out.append((0.0,) * lead + (1.0,) + tuple(rest))
    return out


def show_weights(names: tuple[str, ...], weights: tuple[float, ...]) -> str:
    kept = [f"{n} {w:.3g}" for n, w in zip(names, weights, strict=True) if w != 0]
    return " + ".join(kept) if kept else "nothing"


@dataclass(frozen=True)
class BlendChoice:
    weights: tuple[float, ...]    # one per part, the encoder's first
    names: tuple[str, ...]
    ndcg: float                   # validation NDCG@10 at ``weights``
    nll: float                    # validation log-loss at ``weights``
    alone: tuple[float, ...]      # validation NDCG@10 of each part alone
    without: tuple[float, ...]    # best validation NDCG@10 without part k (with it if dropped)
    tried: int
    n: int                        # validation targets used
    seconds: float
    #: when the best mix did not beat the best single part by more than noise: that mix,
    #: its NDCG@10 gain and the standard error of the gain (the part alone is kept)
    rejected: tuple[tuple[float, ...], float, float] | None = None

    def message(self) -> str:
        notes = []
        for name, w, other in zip(self.names, self.weights, self.without, strict=True):
            if w == 0:
                notes.append(f"{name} dropped: {other:.4f} at best with it")
            else:
                notes.append(f"without {name} {other:.4f}")
        alone = ", ".join(f"{n} {v:.4f}" for n, v in zip(self.names, self.alone, strict=True))
        if self.rejected is not None:
            w, gain, se = self.rejected
            notes.append(f"the mix {show_weights(self.names, w)} was {gain:+.4f} better, within "
                         f"noise ({NOISE_SE:g} x standard error {se:.4f}): not kept")
        return (f"blend kept: {show_weights(self.names, self.weights)} (validation NDCG@10 "
                f"{self.ndcg:.4f} on {self.n} targets, log-loss {self.nll:.4f}; "
                f"{'; '.join(notes)}; parts alone: {alone}; {self.tried} weightings tried in "
                f"{self.seconds:.1f}s)")


def neighbours(w: tuple[float, ...], lo: float = 1 / 16,
               hi: float = 16.0) -> list[tuple[float, ...]]:
    """Weightings next to ``w``: each weight after the first non-zero one halved, doubled
    (within ``lo``..``hi``), dropped, or, when 0, brought in at ``lo * 2``."""
    lead = next(i for i, x in enumerate(w) if x != 0)
    out = []
    for k in range(lead + 1, len(w)):
        steps = [lo * 2] if w[k] == 0 else [x for x in (w[k] / 2, w[k] * 2, 0.0)
                                            if x == 0 or lo <= x <= hi]
        out += [w[:k] + (x,) + w[k + 1:] for x in steps]
    return out


def choose_weights(model: Recommender, ds: SeqDataset, part: str = "valid",
                   device: torch.device | str = "cpu", names: tuple[str, ...] | None = None,
                   ratios: tuple[float, ...] = COARSE, rounds: int = 8) -> BlendChoice | None:
    """The weights of best validation NDCG@10: every weighting of ``candidate_weights`` with
    the coarse ``ratios`` (each part alone, every pair, all), then a greedy search from the
    best among its ``neighbours`` (ratios 1/16..16); the log-loss breaks ties (within
    ``TIE``). None without validation data."""
    t0 = time.perf_counter()
    what = "weighing the score parts on validation"
    report(0, 1, f"{what}: scoring each part")
    parts = validation_parts(model, ds, part, device)
    if parts is None:
        return None
    K = len(parts.scores)
    names = names or tuple(f"part {k}" for k in range(K))
    ndcg: dict[tuple[float, ...], float] = {}
    coarse = candidate_weights(K, ratios)
    for i, w in enumerate(coarse):
        report(i, len(coarse), f"{what}: coarse grid")
        ndcg[w] = parts.ndcg(w)
    here = max(ndcg, key=lambda w: ndcg[w])
    for r in range(rounds):
        report(r, rounds, f"{what}: refining")
        for w in neighbours(here):
            if w not in ndcg:
                ndcg[w] = parts.ndcg(w)
        step = max(ndcg, key=lambda w: ndcg[w])
        if ndcg[step] <= ndcg[here]:
            break
        here = step
    top = max(ndcg.values())
    tied = [w for w, v in ndcg.items() if v >= top - TIE]
    losses = {w: parts.nll(w) for w in tied}
    best = min(tied, key=lambda w: (losses[w], -ndcg[w]))
    singles = [tuple(float(i == k) for i in range(K)) for k in range(K)]
    alone = tuple(ndcg[w] for w in singles)
    rejected = None
    if best not in singles:
        single = max(singles, key=lambda w: ndcg[w])
        diff = parts.gains(best) - parts.gains(single)
        n = len(diff)
        gain = float(diff.mean()) if n else 0.0
        se = float(diff.std() / n ** 0.5) if n > 1 else float("inf")
        if not gain > NOISE_SE * se:
            rejected = (best, gain, se)
            best = single
            losses.setdefault(best, parts.nll(best))
    without = []
    for k in range(K):
        pool = [v for w, v in ndcg.items() if (w[k] != 0) == (best[k] == 0)]
        without.append(max(pool) if pool else float("nan"))
    return BlendChoice(best, names, ndcg[best], losses[best], alone, tuple(without),
                       len(ndcg), len(parts.target), time.perf_counter() - t0, rejected)
