"""Building blocks shared by the neural next-item models (SASRec, ST-Transformer, GRU, graph).

Conventions (models/base.py): sequences are left-padded, position ``L-1`` is the most recent
event and index 0 is padding everywhere, in items, categories, hours and relation buckets.

What lives here and why:

* bucketing of time gaps and haversine distances (log-scaled, clipped, padding bucket 0 and a
  dedicated "unknown" bucket), built with broadcasting, never a Python loop over positions;
* ``Attention``: multi-head self-attention taking an additive float bias of shape
  (B, H, L, L) so that masks and per-head relation biases go through torch's fused
  ``scaled_dot_product_attention``; optionally TiSASRec-style relation key/value embeddings
  computed per bucket (B, H, L, n_buckets) instead of materialising (B, L, L, D);
* ``Block`` (pre-LayerNorm transformer block, as in nanoGPT);
* the next-item loss over every position: the full softmax over all items, or, for large
  catalogues, a sampled softmax (``ItemLoss`` chooses from a model's settings);
  and the scoring helpers (always over every item).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..base import Batch, Recommender

EARTH_RADIUS_KM = 6371.0088

# ----------------------------------------------------------------------------- batch helpers


def positions(item_seq: torch.Tensor) -> torch.Tensor:
    """Forward positions 1..n from each user's first event in the window, 0 on padding.

    Counting from the first real event (not from the array start) makes the positions, and
    so every output, invariant to extra left padding.
    """
    real = (item_seq > 0).long()
    return real.cumsum(dim=1) * real  # (B, L)


def attention_mask(valid: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean (B, 1, L, L) "may attend" mask: real keys, causal if asked, diagonal always.

    The diagonal is always allowed so that padding queries attend to themselves instead of
    to nothing (a row of -inf would give NaN); their outputs are ignored downstream.
    """
    L = valid.shape[1]
    allowed = valid[:, None, None, :]  # (B, 1, 1, L) keys that are real events
    if causal:
        tri = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
        allowed = allowed & tri  # (B, 1, L, L)
    eye = torch.eye(L, dtype=torch.bool, device=valid.device)
    return allowed | eye  # (B, 1, L, L)


def mask_to_bias(allowed: torch.Tensor) -> torch.Tensor:
    """Boolean mask -> additive float bias (0 where allowed, -inf elsewhere)."""
    zero = torch.zeros((), device=allowed.device)
    return torch.where(allowed, zero, torch.tensor(float("-inf"), device=allowed.device))


def ffill_last_known(values: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For each position the value at the most recent position <= it where ``known`` is True.

    values (B, L, C), known (B, L) -> (filled (B, L, C), any_known (B, L) bool).
    Done with a cumulative max over indices instead of a loop over positions.
    """
    B, L = known.shape
    idx = torch.arange(L, device=known.device).expand(B, L)
    last = torch.where(known, idx, torch.full_like(idx, -1)).cummax(dim=1).values  # (B, L)
    filled = values.gather(1, last.clamp(min=0)[..., None].expand(-1, -1, values.shape[-1]))
    return filled, last >= 0


# ----------------------------------------------------------------------------- bucketing


def log_buckets(
    x: torch.Tensor, n_buckets: int, lo: float, hi: float, unknown: torch.Tensor | None = None
) -> torch.Tensor:
    """Non-negative values -> bucket ids 1..n_buckets on a log scale, clipped at ``lo``/``hi``.

    0 is left for padding (the caller zeroes it); ``n_buckets + 1`` is the "unknown" bucket
    (used where ``unknown`` is True). Log scale because a 5-minute and a 10-minute gap differ
    as much, behaviourally, as a 5-hour and a 10-hour one.
    """
    x = x.double().clamp(min=lo, max=hi)
    frac = (x.log() - math.log(lo)) / (math.log(hi) - math.log(lo))  # 0..1
    ids = (frac * (n_buckets - 1)).round().long() + 1  # 1..n_buckets
    if unknown is not None:
        ids = torch.where(unknown, torch.full_like(ids, n_buckets + 1), ids)
    return ids


def unit_vectors(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
    """Degrees -> points on the unit sphere (..., 3); chord length is monotone in distance."""
    la, lo = torch.deg2rad(lat.double()), torch.deg2rad(lon.double())
    return torch.stack((la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()), dim=-1)


def chord_to_km(chord: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between unit vectors -> great-circle distance in km (exact)."""
    return 2.0 * EARTH_RADIUS_KM * torch.asin((chord / 2.0).clamp(max=1.0))


def haversine_km(lat1: torch.Tensor, lon1: torch.Tensor, lat2: torch.Tensor,
                 lon2: torch.Tensor) -> torch.Tensor:
    """Great-circle distance in km between broadcastable degree tensors (float64)."""
    p1, p2 = torch.deg2rad(lat1.double()), torch.deg2rad(lat2.double())
    dlat = p2 - p1
    dlon = torch.deg2rad(lon2.double() - lon1.double())
    a = (dlat / 2).sin() ** 2 + p1.cos() * p2.cos() * (dlon / 2).sin() ** 2
    return 2.0 * EARTH_RADIUS_KM * torch.asin(a.clamp(0.0, 1.0).sqrt())


def time_gap_buckets(time_seq: torch.Tensor, valid: torch.Tensor, n_buckets: int,
                     lo: float, hi: float) -> torch.Tensor:
    """Pairwise |t_i - t_j| bucket ids (B, L, L); 0 where either event is padding."""
    gaps = (time_seq[:, :, None] - time_seq[:, None, :]).abs()  # (B, L, L) seconds
    ids = log_buckets(gaps, n_buckets, lo, hi)
    pair = valid[:, :, None] & valid[:, None, :]  # (B, L, L)
    return ids * pair


def distance_buckets(lat_seq: torch.Tensor, lon_seq: torch.Tensor, geo_mask: torch.Tensor,
                     valid: torch.Tensor, n_buckets: int, lo: float, hi: float) -> torch.Tensor:
    """Pairwise haversine bucket ids (B, L, L); unknown bucket where a position has no coords."""
    dist = haversine_km(lat_seq[:, :, None], lon_seq[:, :, None],
                        lat_seq[:, None, :], lon_seq[:, None, :])  # (B, L, L) km
    known = geo_mask[:, :, None] & geo_mask[:, None, :]  # (B, L, L)
    ids = log_buckets(dist, n_buckets, lo, hi, unknown=~known)
    pair = valid[:, :, None] & valid[:, None, :]
    return ids * pair


# ----------------------------------------------------------------------------- blocks


class Attention(nn.Module):
    """Multi-head self-attention with an additive bias and optional relation key/values.

    ``bias`` (B, H, L, L) carries the mask (-inf) and any per-head relation bias; it goes
    straight into the fused ``scaled_dot_product_attention``. ``rel`` is an optional list of
    (bucket ids (B, L, L), key table (n, H, hd), value table (n, H, hd)) for TiSASRec-style
    relation embeddings; those force the explicit (unfused) path, but still never build a
    (B, L, L, D) tensor: q . r_K[b_ij] is a gather from q @ r_K^T (B, H, L, n), and
    sum_j a_ij r_V[b_ij] is a scatter-add of a into (B, H, L, n) followed by @ r_V.
    """

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        assert d % n_heads == 0, f"hidden size {d} must be divisible by n_heads {n_heads}"
        self.n_heads, self.head_dim = n_heads, d // n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor,
                rel: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
                ) -> torch.Tensor:
        B, L, D = x.shape
        H, hd = self.n_heads, self.head_dim
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, L, D)
        q = q.view(B, L, H, hd).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, H, hd).transpose(1, 2)  # (B, H, L, hd)
        v = v.view(B, L, H, hd).transpose(1, 2)  # (B, H, L, hd)
        bias = bias.to(q.dtype)  # autocast: the float mask must match the query dtype
        p = self.dropout if self.training else 0.0
        if not rel:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        else:
            y = self._relational(q, k, v, bias, rel, p)
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return self.resid_drop(self.proj(y))

    @staticmethod
    def _logits(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor,
                rel: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None,
                ) -> torch.Tensor:
        """(B, H, L, L) attention logits: q k^T / sqrt(hd) + bias [+ relation key terms]."""
        B, H, L, hd = q.shape
        scale = 1.0 / math.sqrt(hd)
        att = (q @ k.transpose(-2, -1)) * scale + bias  # (B, H, L, L)
        for ids, key_table, _ in rel or ():
            qr = torch.einsum("bhld,nhd->bhln", q, key_table.to(q.dtype))  # (B, H, L, n)
            idx = ids[:, None].expand(B, H, L, L)  # (B, H, L, L)
            att = att + qr.gather(-1, idx) * scale
        return att

    def probabilities(self, x: torch.Tensor, bias: torch.Tensor,
                      rel: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
                      ) -> torch.Tensor:
        """(B, H, L, L) attention probabilities for input x (B, L, D), exactly as ``forward``
        computes them without dropout; the fused kernel never materialises them, so
        explanations recompute them from the inputs they capture."""
        B, L, D = x.shape
        H, hd = self.n_heads, self.head_dim
        q, k, _ = self.qkv(x).split(D, dim=2)
        q = q.view(B, L, H, hd).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, H, hd).transpose(1, 2)  # (B, H, L, hd)
        return self._logits(q, k, bias.to(q.dtype), rel).softmax(dim=-1)

    def _relational(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                    rel: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                    p: float) -> torch.Tensor:
        B, H, L, hd = q.shape
        att = F.dropout(self._logits(q, k, bias, rel).softmax(dim=-1), p=p,
                        training=p > 0)  # (B, H, L, L)
        y = att @ v  # (B, H, L, hd)
        for ids, _, value_table in rel:
            n = value_table.shape[0]
            idx = ids[:, None].expand(B, H, L, L)
            per_bucket = att.new_zeros(B, H, L, n).scatter_add(-1, idx, att)  # (B, H, L, n)
            y = y + torch.einsum("bhln,nhd->bhld", per_bucket, value_table.to(att.dtype))
        return y


class MLP(nn.Module):
    def __init__(self, d: int, ratio: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d, ratio * d)
        self.out = nn.Linear(ratio * d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.out(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (nanoGPT): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d: int, n_heads: int, dropout: float, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MLP(d, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor,
                rel: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
                ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), bias, rel)
        return x + self.mlp(self.ln2(x))


# ----------------------------------------------------------------------------- loss / score

#: above this many logits per batch the loss is computed in checkpointed chunks so that
#: the (N, n_items) logit matrix never has to be held in memory for the backward pass
LOSS_CHUNK_LOGITS = 2**25


def _chunked_sum(fn: Callable[..., torch.Tensor], step: int,
                 *args: torch.Tensor | None) -> torch.Tensor:
    """``fn(*args)`` summed over chunks of ``step`` rows, each chunk checkpointed so that its
    logits are recomputed in the backward pass instead of kept; one call when the rows fit
    in one chunk or no gradient is needed."""
    N = args[0].shape[0]
    if N <= step or not torch.is_grad_enabled():
        return fn(*args)
    total = args[0].new_zeros((), dtype=torch.float32)
    for s in range(0, N, step):
        total = total + checkpoint(fn, *(a[s:s + step] if a is not None else None
                                         for a in args), use_reentrant=False)
    return total


def _every_position(h: torch.Tensor, targets: torch.Tensor, with_rows: bool,
                    ) -> tuple[torch.Tensor, ...]:
    """Every position, the padding ones weighed 0: (N, D) states, (N,) targets, (N,) float
    weights, their count (at least 1) and, if asked, (N, targets.dim()) index rows. No
    boolean indexing, whose data-dependent size would make a CUDA step wait for the device."""
    y = targets.reshape(-1)  # (N,) items 1..n, 0 = no target
    keep = (y > 0).float()
    rows = (torch.stack(torch.unravel_index(torch.arange(len(y), device=y.device),
                                            targets.shape), dim=1) if with_rows else None)
    return h.reshape(len(y), -1), y, keep, keep.sum().clamp(min=1.0), rows


def full_softmax_loss(
    h: torch.Tensor,
    targets: torch.Tensor,
    item_weight: torch.Tensor,
    n_items: int | None = None,
    bias_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    compact: bool | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the next item over ALL items, at every non-padding target.

    h (B, L, D) or (N, D), targets (same leading shape) with 0 = no target, item_weight
    (n_items + 1 [+ extra rows such as a mask token], D) whose row 0 is padding; candidates
    are rows 1..n_items (``n_items`` defaults to all rows but the first). Full softmax
    (not sampled negatives) is the strongest objective for SASRec-type models (Klenitskiy &
    Vasilev 2023). ``bias_fn(rows) -> (len(rows), n_items)`` adds a per-row candidate bias
    (distance-to-candidate) computed chunk by chunk; ``rows`` are the (b, l) index pairs.
    ``compact`` (default: off a CUDA device) scores only the positions that have a target;
    otherwise every position is scored and the padding ones weighed 0 (``_every_position``),
    the same loss without a host-device sync.
    """
    n_items = n_items or item_weight.shape[0] - 1
    w = item_weight[1 : n_items + 1]  # (n_items, D)
    step = max(1, LOSS_CHUNK_LOGITS // max(n_items, 1))
    if not (h.device.type != "cuda" if compact is None else compact):
        h, y, keep, count, rows = _every_position(h, targets, bias_fn is not None)

        def weighed(hc: torch.Tensor, yc: torch.Tensor, kc: torch.Tensor,
                    rc: torch.Tensor | None) -> torch.Tensor:
            logits = hc @ w.T  # (n, n_items)
            if bias_fn is not None:
                logits.add_(bias_fn(rc))
            ce = F.cross_entropy(logits.float(), (yc - 1).clamp(min=0), reduction="none")
            return (ce * kc).sum()

        return _chunked_sum(weighed, step, h, y, keep, rows) / count
    keep = targets > 0
    h = h[keep]  # (N, D) only the positions that have a next item
    y = targets[keep] - 1  # (N,) candidates are items 1..n, so shift by one
    if h.shape[0] == 0:
        return h.sum() * 0.0
    rows = torch.nonzero(keep, as_tuple=False) if bias_fn is not None else None

    def chunk_loss(hc: torch.Tensor, yc: torch.Tensor, rc: torch.Tensor | None) -> torch.Tensor:
        logits = hc @ w.T  # (n, n_items); the bias is added in place: no copy
        if bias_fn is not None:
            logits.add_(bias_fn(rc))
        return F.cross_entropy(logits.float(), yc, reduction="sum")

    return _chunked_sum(chunk_loss, step, h, y, rows) / h.shape[0]


#: the softmax settings every neural model's Config carries (``ItemLoss.from_config``)
SOFTMAX_MODES = ("auto", "full", "sampled")
#: "auto" trains catalogues with more items than this with the sampled softmax
SAMPLED_ABOVE = 50_000


def sampled_softmax_loss(
    h: torch.Tensor,
    targets: torch.Tensor,
    item_weight: torch.Tensor,
    negatives: torch.Tensor,
    log_kq: torch.Tensor,
    bias_fn: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean sampled-softmax cross-entropy of the next item at every non-padding target.

    Each target is scored against itself and ``negatives`` (K,) item indices (1..n_items)
    drawn with replacement from a proposal Q, shared by the whole batch; ``log_kq`` (K,) is
    log(K Q(j)) of each. The target's logit enters as it is, each negative's as
    ``o_j - log(K Q(j))`` and a negative equal to the target is dropped, so
    ``exp(o_t) + sum_k exp(o_jk) / (K Q(jk))`` is an unbiased estimate of the full softmax's
    normaliser: E[exp(loss)] = exp(full loss) row by row, and the loss and its gradient tend
    to the full softmax's as K grows (Bengio & Senecal 2008; the logQ correction of Yi et al.
    2019). Cost per target: K + 1 dot products instead of n_items.

    ``bias_fn(rows, items)`` adds a per-row candidate bias as in ``full_softmax_loss``:
    ``items`` (K,) 0-based item positions give (len(rows), K); (len(rows), 1) gives one per row.
    """
    h, y, keep, count, rows = _every_position(h, targets, bias_fn is not None)
    w_neg = item_weight[negatives]  # (K, D)
    log_kq = log_kq.float()
    K = int(negatives.shape[0])

    def chunk_loss(hc: torch.Tensor, yc: torch.Tensor, kc: torch.Tensor,
                   rc: torch.Tensor | None) -> torch.Tensor:
        pos = (hc * item_weight[yc]).sum(-1, keepdim=True)  # (n, 1) the target's own logit
        neg = hc @ w_neg.T  # (n, K)
        if bias_fn is not None:
            pos = pos + bias_fn(rc, (yc - 1).clamp(min=0)[:, None])
            neg = neg + bias_fn(rc, negatives - 1)
        neg = (neg.float() - log_kq).masked_fill(negatives[None, :] == yc[:, None],
                                                 float("-inf"))
        logits = torch.cat((pos.float(), neg), dim=1)  # (n, K + 1), the target first
        return ((torch.logsumexp(logits, dim=1) - logits[:, 0]) * kc).sum()

    step = max(1, LOSS_CHUNK_LOGITS // (K + 1))
    return _chunked_sum(chunk_loss, step, h, y, keep, rows) / count


class NegativeSampler:
    """Draws the sampled softmax's shared negatives from items 1..n_items.

    The proposal is half popularity (the training counts), half uniform: popular items,
    which hold most of a trained model's softmax mass, are drawn often, and every item keeps
    a chance of at least 1 / (2 n_items), which bounds each negative's correction weight
    1 / (K Q(j)) by 2 n_items / K. Draws use torch's generator on the device of the model
    (seeded by the training run): a binary search of K uniform numbers in the cumulative
    proposal, no copy to or from the host.
    """

    def __init__(self, popularity: Sequence[int] | np.ndarray, n_items: int) -> None:
        pop = np.asarray(popularity, dtype=np.float64)
        if pop.shape != (n_items,) or pop.sum() <= 0:
            pop = np.ones(n_items)
        q = 0.5 * pop / pop.sum() + 0.5 / n_items  # (n_items,)
        self.q = torch.as_tensor(q)  # float64, item index - 1
        self._cdf: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cdf:
            cdf = torch.cumsum(self.q, 0)
            cdf = (cdf / cdf[-1]).to(device)
            self._cdf[device] = (cdf, self.q.log().float().to(device))
        return self._cdf[device]

    def draw(self, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) item indices 1..n_items and (K,) log(K Q) of each."""
        cdf, log_q = self._tables(device)
        u = torch.rand(k, dtype=cdf.dtype, device=device)
        idx = torch.searchsorted(cdf, u).clamp_(max=len(cdf) - 1)  # (K,) 0-based
        return idx + 1, log_q[idx] + math.log(k)


@dataclass(frozen=True)
class ItemLoss:
    """A model's next-item training loss: the full softmax or the sampled one.

    ``mode`` is the model's ``softmax`` setting: "full", "sampled", or "auto" (sampled when
    the catalogue has more than ``above`` items: the full softmax's (positions x n_items)
    logits dominate a step there, e.g. 133 s per SASRec step over 397k items on 2 cores).
    The sampled loss is a training estimator only: with gradients off (validation, a
    held-out loss) the full softmax is computed, and scores always rank every item.
    """

    sampled: bool
    negatives: int
    sampler: NegativeSampler | None

    @classmethod
    def from_config(cls, meta, config) -> ItemLoss:
        """From a Config with ``softmax``, ``sampled_above`` and ``negatives`` settings."""
        mode = config.softmax
        if mode not in SOFTMAX_MODES:
            raise ValueError(f"softmax must be one of {', '.join(SOFTMAX_MODES)}; "
                             f"got {mode!r}")
        if config.negatives < 1:
            raise ValueError(f"negatives must be at least 1, got {config.negatives}")
        sampled = mode == "sampled" or (mode == "auto" and meta.n_items > config.sampled_above)
        sampler = NegativeSampler(meta.item_popularity, meta.n_items) if sampled else None
        return cls(sampled, int(config.negatives), sampler)

    def __call__(self, h: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor,
                 n_items: int | None = None,
                 bias_fn: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """The loss of ``full_softmax_loss``'s arguments; ``bias_fn(rows, items=None)``."""
        if self.sampler is None or not torch.is_grad_enabled():
            full_bias = (lambda rows: bias_fn(rows, None)) if bias_fn is not None else None
            return full_softmax_loss(h, targets, item_weight, n_items, full_bias)
        neg, log_kq = self.sampler.draw(self.negatives, h.device)
        return sampled_softmax_loss(h, targets, item_weight, neg, log_kq, bias_fn)


def score_all(h_last: torch.Tensor, item_weight: torch.Tensor, n_items: int) -> torch.Tensor:
    """(B, D) user states -> (B, n_items + 1) float scores, column 0 = -inf (padding)."""
    scores = (h_last @ item_weight[: n_items + 1].T).float()  # (B, n_items + 1)
    scores[:, 0] = float("-inf")
    return scores


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2 style init: small normal weights, zero biases, padding rows zero."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


class EncoderRecommender(Recommender):
    """A model whose ``encode(batch) -> (B, L, D)`` states are scored against ``item_emb``.

    GRU4Rec and SASRec differ only in the encoder; training (the softmax over every
    position, full or sampled: ``item_loss``, from the Config's ``softmax`` settings) and
    scoring (the state after the most recent event, over every item) are shared here.
    """

    item_emb: nn.Embedding
    item_loss: ItemLoss

    def encode(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def hidden(self, batch: Batch) -> torch.Tensor:
        """(B, L, D) state at every position, the one scored against the items."""
        return self.encode(batch.crop(self.meta.max_len))

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = batch.crop(self.meta.max_len)
        return self.item_loss(self.encode(batch), batch.target_seq, self.item_emb.weight)

    def score(self, batch: Batch) -> torch.Tensor:
        batch = batch.crop(self.meta.max_len)
        h = self.encode(batch)[:, -1]  # (B, D) state after the most recent event
        return score_all(h, self.item_emb.weight, self.meta.n_items)
