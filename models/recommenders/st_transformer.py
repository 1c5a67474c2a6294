"""ST-Transformer: the flagship spatio-temporal next-item model.

Causal self-attention over the user's recent events in which attention knows
  (a) the pairwise time gaps between events (log-bucketed, TiSASRec-style),
  (b) the pairwise haversine distances between events (bucketed the same way; an "unknown"
      bucket where an event has no coordinates),
as a learned scalar bias per head and layer (fused attention) or as relation key/value
embeddings (``relation="kv"``). Each event's input adds hour, weekday, category and
behaviour embeddings to the item embedding. The output at each position is conditioned on
the target slot (time gap, hour and weekday of the event to predict) so the model answers
"what next at time T"; the score may add a learned bias over all candidates from their
distance to the user's last known position, which matters a lot on check-in data.

The score blends the encoder with two count parts, the baselines themselves: the first-order
Markov model (log-probability; same smoothing and nearby-popular fallback) and the repeat
model (log score; same window and half-life). Their settings are chosen on validation as the
baselines' are, then the weights by validation NDCG@10 (models.training.blend), so the
blend can fall back to its best part.

``pretrain_loss`` is masked-event modelling (mask ~20% of events, predict their item and
category with bidirectional attention) for a pre-training phase before fine-tuning with
``loss``. Item-text embeddings (e.g. from models/text.py) can be fused into the item
embeddings through a learned projection. Every part has a config flag for ablations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base import (
    Batch,
    DataMeta,
    EmbeddingInput,
    ExplainLayers,
    ItemLookup,
    Recommender,
    ScorePart,
)
from ..data.dataset import SeqDataset
from ..data.text import item_text_matrix
from ..nn.layers import (
    MLP,
    Block,
    ItemLoss,
    attention_mask,
    init_weights,
    mask_to_bias,
    positions,
    score_all,
)
from ..nn.st_features import (
    CandidateDistance,
    RelationBias,
    relation_ids,
    target_gap_buckets,
    target_slot,
)
from ..training.blend import choose_weights
from .markov import MarkovRec
from .pop import transitions
from .repeat import RepeatRec


class STTransformer(Recommender):
    name = "st-transformer"

    @dataclass(frozen=True)
    class Config:
        hidden: int = 64
        n_layers: int = 2
        n_heads: int = 2
        dropout: float = 0.2
        mlp_ratio: int = 4
        relation: str = "bias"          # "bias": per-head scalars (fused); "kv": TiSASRec tables
        use_time: bool = True           # pairwise time-gap relations in attention
        use_distance: bool = True       # pairwise distance relations in attention
        use_context: bool = True        # hour/weekday/category/behaviour input embeddings
        use_target_time: bool = True    # condition on the target slot's gap/hour/weekday
        use_candidate_distance: bool = True  # distance-to-candidate bias in the scores
        use_transitions: bool = True    # the first-order Markov model as a score part
        prior_min_transitions: float = 5.0  # its fallback pseudo-count (markov min_transitions)
        prior_bandwidth_km: float = 1.0     # its nearby-popular fallback (markov bandwidth_km)
        prior_link_share: float = 0.0       # its links + popularity reading (markov link_share)
        prior_link_count: float = 10.0      # (markov link_count)
        use_history: bool = True        # the repeat model (the user's own items) as a part
        history_window: int | None = 50          # its events used (repeat window; None: all)
        history_half_life_hours: float | None = 168.0  # its recency half-life (None: counts)
        tune_parts: bool = True         # choose the two parts' settings on validation
        blend: bool = True              # weigh the score parts on validation (else: sum them)
        use_positions: bool = True
        pretrain: bool = False          # run pretrain_loss first (off: on NYC it slowed learning)
        mask_prob: float = 0.2          # share of events masked in pre-training
        use_text: bool = True           # fuse text embeddings when some are given
        text_embeddings: str | None = None  # "category", or .npy (n_items + 1, d_text), row 0 pad
        text_dim: int = 0               # set automatically when text embeddings are given
        n_time_buckets: int = 32
        time_min_s: float = 60.0        # gaps under a minute share the first bucket
        time_max_s: float = 180 * 86400.0
        n_dist_buckets: int = 24
        dist_min_km: float = 0.05       # 50 m
        dist_max_km: float = 100.0
        softmax: str = "auto"         # training loss: "full", "sampled" or "auto" (see below)
        sampled_above: int = 50_000   # "auto": sampled softmax above this many items, else full
        negatives: int = 2048         # sampled softmax: items drawn per step, shared by the batch

    def __init__(self, meta: DataMeta, config: STTransformer.Config | None = None,
                 text_embeddings: torch.Tensor | np.ndarray | None = None) -> None:
        config = config or self.Config()
        text = self._load_text(meta, config, text_embeddings)
        if text is not None:
            config = dataclasses.replace(config, text_dim=int(text.shape[1]))
        super().__init__(meta, config)
        c, d = config, config.hidden
        self.mask_item = meta.n_items + 1  # extra embedding row used only in pre-training
        self.mask_cat = meta.n_categories + 1
        self.item_emb = nn.Embedding(meta.n_items + 2, d, padding_idx=0)
        self.pos_emb = nn.Embedding(meta.max_len + 1, d, padding_idx=0)
        self.hour_emb = nn.Embedding(25, d, padding_idx=0)
        self.wday_emb = nn.Embedding(8, d, padding_idx=0)
        self.cat_emb = nn.Embedding(meta.n_categories + 2, d, padding_idx=0)
        self.beh_emb = nn.Embedding(meta.n_behaviors + 1, d, padding_idx=0)
        self.item_scale = d**0.5
        self.drop = nn.Dropout(c.dropout)
        self.relations = RelationBias(c.n_layers, c.n_heads, d, c.relation, c.use_time,
                                      c.use_distance, c.n_time_buckets, c.n_dist_buckets)
        self.blocks = nn.ModuleList(
            Block(d, c.n_heads, c.dropout, c.mlp_ratio) for _ in range(c.n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        # query-side conditioning on the target slot
        self.gap_emb = nn.Embedding(c.n_time_buckets + 2, d, padding_idx=0)
        self.next_hour_emb = nn.Embedding(25, d, padding_idx=0)
        self.next_wday_emb = nn.Embedding(8, d, padding_idx=0)
        self.ln_t = nn.LayerNorm(d)
        self.head = MLP(d, 2, c.dropout)
        self.ln_out = nn.LayerNorm(d)
        self.cat_head = nn.Linear(d, meta.n_categories + 1)  # pre-training only
        if c.text_dim:
            buf = text if text is not None else torch.zeros(meta.n_items + 1, c.text_dim)
            self.register_buffer("text", buf)  # (n_items + 1, d_text), kept in checkpoints
            self.text_proj = nn.Linear(c.text_dim, d, bias=False)  # row 0 stays zero
        self.item_loss = ItemLoss.from_config(meta, c)  # full or sampled softmax
        init_weights(self)
        self.candidate = None
        if c.use_candidate_distance and meta.has_coordinates:
            self.candidate = CandidateDistance(meta.item_coords(), c.n_dist_buckets,
                                               c.dist_min_km, c.dist_max_km, c.n_time_buckets)
        # the count parts are the baselines themselves, with the same smoothing, fallback,
        # window and half-life (chosen on validation as theirs are)
        self.prior = None
        if c.use_transitions:
            self.prior = MarkovRec(meta, MarkovRec.Config(
                c.prior_min_transitions, c.prior_bandwidth_km, tune=c.tune_parts,
                link_share=c.prior_link_share, link_count=c.prior_link_count))
        self.recent = None
        if c.use_history:
            self.recent = RepeatRec(meta, RepeatRec.Config(
                c.history_half_life_hours, c.history_window, tune=c.tune_parts))
        # score = sum of part weight x part: the encoder (with the distance bias), the
        # Markov model's log-probability, the repeat model's log score; the encoder alone
        # while it trains, then weighed on validation by calibrate()
        self.parts: tuple[ScorePart, ...] = (
            ScorePart.ENCODER,
            *((ScorePart.TRANSITIONS,) if self.prior is not None else ()),
            *((ScorePart.HISTORY,) if self.recent is not None else ()))
        weights = torch.zeros(len(self.parts))
        weights[0] = 1.0
        self.register_buffer("blend_weights", weights)

    @staticmethod
    def _load_text(meta: DataMeta, config: Config, given) -> torch.Tensor | None:
        if given is None and config.text_embeddings == "category":
            if config.text_dim:  # rebuilt from a checkpoint: the buffer is in its weights
                return None
            given = item_text_matrix(meta)  # each item's category name, encoded
        if given is None and config.text_embeddings:
            path = Path(config.text_embeddings)
            if not path.is_file():
                if config.text_dim:  # rebuilt from a checkpoint: the buffer is in its weights
                    return None
                raise FileNotFoundError(
                    f"text embeddings file {path} not found: save the array of "
                    "models.text.item_text_embeddings with numpy.save, or set text_embeddings=None"
                )
            given = np.load(path)
        if given is None:
            return None
        text = torch.as_tensor(np.asarray(given, dtype=np.float32))
        if text.dim() != 2 or text.shape[0] != meta.n_items + 1:
            raise ValueError(
                f"text embeddings must have shape (n_items + 1, d) = ({meta.n_items + 1}, d) "
                f"with row 0 for padding, got {tuple(text.shape)}: build one row per item index"
            )
        return text

    # ------------------------------------------------------------------ embeddings and encoder

    def item_table(self) -> torch.Tensor:
        """(n_items + 2, D) item embeddings, text projection fused in when configured."""
        w = self.item_emb.weight
        if self.config.text_dim and self.config.use_text:
            t = self.text_proj(self.text.to(w.dtype))  # (n_items + 1, D)
            w = w + F.pad(t, (0, 0, 0, 1))  # the mask-token row gets no text
        return w

    def encode(self, batch: Batch, items: torch.Tensor, cats: torch.Tensor,
               geo_mask: torch.Tensor, causal: bool, table: torch.Tensor) -> torch.Tensor:
        """(B, L, D) contextual representation of every event."""
        c = self.config
        valid = batch.item_seq > 0  # (B, L)
        # sqrt(d) scaling as in SASRec keeps the item identity dominant over the added
        # context; without it the model learns repeats and transitions markedly slower
        x = F.embedding(items, table) * self.item_scale  # (B, L, D)
        if c.use_positions:
            x = x + self.pos_emb(positions(batch.item_seq))
        if c.use_context:
            x = x + self.hour_emb(batch.hour_seq) + self.wday_emb(batch.weekday_seq)
            x = x + self.cat_emb(cats) + self.beh_emb(batch.beh_seq)
        x = self.drop(x) * valid[..., None]  # padding stays exactly zero
        mask_bias = mask_to_bias(attention_mask(valid, causal))  # (B, 1, L, L)
        mask_bias = mask_bias.expand(-1, c.n_heads, -1, -1)  # (B, H, L, L)
        ids = relation_ids(batch, valid, geo_mask, c.use_time, c.use_distance, c)
        for block, (bias, rel) in zip(self.blocks, self.relations(ids, mask_bias), strict=True):
            x = block(x, bias, rel)
        return self.ln_f(x)

    def condition(self, batch: Batch, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the target slot (gap, hour, weekday of the event to predict) to each position.

        Returns the conditioned (B, L, D) states and the target-gap bucket ids (B, L).
        """
        c = self.config
        valid = batch.item_seq > 0
        if not c.use_target_time:
            unknown = torch.full_like(batch.item_seq, c.n_time_buckets + 1) * valid
            return self.ln_out(h + self.head(self.ln_t(h))), unknown
        next_t, next_h, next_w = target_slot(batch)
        gap = target_gap_buckets(batch, next_t, valid, c.n_time_buckets, c.time_min_s,
                                 c.time_max_s)  # (B, L)
        slot = self.gap_emb(gap) + self.next_hour_emb(next_h) + self.next_wday_emb(next_w)
        z = h + slot  # (B, L, D)
        # a residual MLP lets the slot interact with the history, not just shift the scores
        return self.ln_out(z + self.head(self.ln_t(z))), gap

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        table = self.item_table()
        h = self.encode(batch, batch.item_seq, batch.cat_seq, batch.geo_mask,
                        causal=True, table=table)
        h, gap = self.condition(batch, h)
        return h, gap, table

    # ------------------------------------------------------------------ contract

    def fit_counts(self, batches: Iterable[Batch]) -> None:
        """Count the training transitions and popularity of the count parts (vectorised:
        one ``torch.unique`` over the transitions), from one pass over ``batches`` (an
        iterator is enough: no list of every training batch is needed). They are never
        trained with the encoder (whose loss does not see them), so that the parts are
        weighed on validation data that none of them was fitted to (``calibrate``)."""
        parts = [p for p in (self.prior, self.recent) if p is not None]
        if parts:
            seen = transitions(batches)
            for part in parts:
                part.fit_transitions(*seen)

    def calibrate(self, ds: SeqDataset, device: torch.device | str = "cpu") -> str | None:
        """Tune the count parts on validation as the baselines are, then weigh the parts
        by validation NDCG@10 (models.training.blend.choose_weights)."""
        notes = []
        if self.recent is not None:
            notes.append(self.recent.calibrate(ds, device))  # also keeps the user histories
            rc = self.recent.config
            self.config = dataclasses.replace(self.config, history_window=rc.window,
                                              history_half_life_hours=rc.half_life_hours)
        if self.prior is not None:
            notes.append(self.prior.calibrate(ds, device))
            pc = self.prior.config
            self.config = dataclasses.replace(self.config,
                                              prior_min_transitions=pc.min_transitions,
                                              prior_bandwidth_km=pc.bandwidth_km,
                                              prior_link_share=pc.link_share,
                                              prior_link_count=pc.link_count)
        notes = [f"{self.name} part {n}" for n in notes if n]
        if len(self.parts) > 1 and not self.config.blend:
            self.blend_weights.fill_(1.0)
            notes.append(f"blend off: {', '.join(self.parts)} summed")
        elif len(self.parts) > 1:
            choice = choose_weights(self, ds, "valid", device=device, names=self.parts)
            if choice is not None:
                self.blend_weights.copy_(torch.tensor(choice.weights))
                notes.append(choice.message())
        return "\n".join(notes) or None

    def chosen_settings(self) -> dict[str, object]:
        """The count parts' settings and the blend weights chosen on validation."""
        c = self.config
        out: dict[str, object] = {}
        if self.recent is not None:
            out.update(history_window=c.history_window,
                       history_half_life_hours=c.history_half_life_hours)
        if self.prior is not None:
            out.update(prior_min_transitions=c.prior_min_transitions,
                       prior_bandwidth_km=c.prior_bandwidth_km,
                       prior_link_share=c.prior_link_share,
                       prior_link_count=c.prior_link_count)
        if len(self.parts) > 1:
            out["blend"] = {str(p): self.part_weight(p) for p in self.parts}
        return out

    def part_weight(self, part: ScorePart) -> float:
        """The blend weight of score part ``part`` (0 for a part the model does not have)."""
        if part not in self.parts:
            return 0.0
        return float(self.blend_weights[self.parts.index(part)])

    def explain_layers(self) -> ExplainLayers:
        """Integrated Gradients attribute the encoder's inputs: the context embeddings, the
        item lookup where it enters the encoder (``item_table()`` is indexed, not called, so
        the sum going into ``drop`` is tapped), the pairwise attention biases and the
        distance-to-candidate bias; the attention shown is that of every block."""
        c = self.config
        emb = []
        if c.use_context:
            emb += [EmbeddingInput("hour", "time", self.hour_emb),
                    EmbeddingInput("weekday", "time", self.wday_emb)]
        if c.use_target_time:
            emb.append(EmbeddingInput("gap", "time", self.gap_emb))
        if c.use_context:
            emb.append(EmbeddingInput("category", "category", self.cat_emb))
        groups = self.relations.explained_groups()
        return ExplainLayers(
            embeddings=tuple(emb),
            item_lookup=ItemLookup(self.item_table, self.item_scale, self.drop),
            relations=self.relations if groups else None, relation_groups=groups,
            candidate=self.candidate,
            attention=tuple(b.attn for b in self.blocks),
            transition_counts=self.prior.observed if self.prior is not None else None)

    def hidden(self, batch: Batch) -> torch.Tensor:
        """(B, L, D) target-conditioned state at every position (before the distance bias)."""
        return self._forward(batch.crop(self.meta.max_len))[0]

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = batch.crop(self.meta.max_len)
        h, gap, table = self._forward(batch)
        bias_fn = None
        if self.candidate is not None:
            xyz, known = self.candidate.last_known(batch.lat_seq, batch.lon_seq,
                                                   batch.geo_mask)  # (B, L, 3), (B, L)

            def bias_fn(rows: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
                b, pos = rows[:, 0], rows[:, 1]
                return self.candidate(xyz[b, pos], known[b, pos], gap[b, pos], items)

        return self.item_loss(h, batch.target_seq, table, n_items=self.meta.n_items,
                              bias_fn=bias_fn)

    def score_parts(self, batch: Batch, need: tuple[bool, ...] | None = None,
                    ) -> tuple[torch.Tensor, ...]:
        """(B, n_items + 1) score of each of ``parts``: the encoder (with the distance
        bias), the transition prior, the history. ``need[k]`` False skips part k (zeros);
        ``score`` is their sum weighted by ``blend_weights``."""
        need = need or (True,) * len(self.parts)
        batch = batch.crop(self.meta.max_len)
        h, gap, table = self._forward(batch)
        scores = score_all(h[:, -1], table, self.meta.n_items)  # (B, n_items + 1)
        if self.candidate is not None:
            xyz, known = self.candidate.last_known(batch.lat_seq, batch.lon_seq, batch.geo_mask)
            scores[:, 1:] += self.candidate(xyz[:, -1], known[:, -1], gap[:, -1]).float()
        parts = [scores]
        for part, want in zip(self.parts[1:], need[1:], strict=True):
            if not want:
                parts.append(torch.zeros_like(scores))
                continue
            if part is ScorePart.TRANSITIONS:   # log P(item | last item), Markov model
                p = self.prior.score(batch).float().clamp(min=1e-12).log()
            elif part is ScorePart.HISTORY:     # log(1 + repeat score): the same ranking
                p = torch.log1p(self.recent.score(batch).float().clamp(min=0.0))
            else:
                raise ValueError(f"{self.name} has no score part {part!r}")
            p[:, 0] = 0.0
            parts.append(p.to(scores.dtype))
        return tuple(parts)

    def score(self, batch: Batch) -> torch.Tensor:
        w = self.blend_weights.tolist()
        parts = self.score_parts(batch, need=tuple(x != 0 for x in w))
        if len(parts) == 1:
            return parts[0]
        total = torch.zeros_like(parts[0])
        for x, p in zip(w, parts, strict=True):
            if x != 0:  # a skipped part is zeros, and 0 x -inf (padding) would be NaN
                total += x * p
        return self.mask_padding(total)

    # ------------------------------------------------------------------ pre-training

    def pretrain_loss(self, batch: Batch) -> torch.Tensor:
        """Masked-event modelling: hide ~``mask_prob`` of the events (item, category and
        coordinates) and predict their item (``item_loss``) and category, attending both ways.
        """
        batch = batch.crop(self.meta.max_len)
        items, cats = batch.item_seq, batch.cat_seq
        real = items > 0
        masked = (torch.rand(items.shape, device=items.device) < self.config.mask_prob) & real
        # every sequence with events gets at least its most recent one masked
        masked[:, -1] |= real[:, -1] & ~masked.any(dim=1)
        table = self.item_table()
        h = self.encode(
            batch,
            torch.where(masked, torch.full_like(items, self.mask_item), items),
            torch.where(masked, torch.full_like(cats, self.mask_cat), cats),
            batch.geo_mask & ~masked,  # a masked event's place would give its item away
            causal=False,
            table=table,
        )  # (B, L, D)
        loss = self.item_loss(h, torch.where(masked, items, 0), table, n_items=self.meta.n_items)
        has_cat = masked & (cats > 0)
        if has_cat.any():
            logits = self.cat_head(h[has_cat]).float()  # (N, n_categories + 1)
            loss = loss + F.cross_entropy(logits, cats[has_cat])
        return loss

    @property
    def wants_pretraining(self) -> bool:
        return bool(self.config.pretrain)

