"""Start a model from another run's weights: transfer across datasets.

``load_matching(net, source)`` copies into ``net`` every tensor of ``source`` (a checkpoint
file, a file of ``{"state_dict", "meta"}`` or a state dict) whose name and shape match, except
those tied to the source's data:
  - rows indexed by the data's vocabularies (items, categories, behaviours; ``INDEXED``) stay
    fresh: the same index means another item in another dataset. With ``map_ids=True`` and the
    source's DataMeta, the rows of the ids both datasets share (external item ids, category
    and behaviour names) are copied row by row, with the padding row and the trailing special
    rows (the mask token of pre-training);
  - data statistics and choices made on validation (``DATA``: the count parts, the blend
    weights, the item-text buffer) are never copied: the run fits and chooses its own.
So the sequence encoder (attention blocks, time/distance relations, target-slot conditioning,
norms, the candidate-distance table) and the text projection transfer; with text on, items
reach the new dataset through their text. ``TransferReport`` says what was copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: state-dict tensors whose rows follow a data vocabulary: name -> vocabulary
INDEXED = {"item_emb.weight": "item", "cat_emb.weight": "category",
           "cat_head.weight": "category", "cat_head.bias": "category",
           "beh_emb.weight": "behavior"}
#: tensors that are the data's own (statistics, texts, validation choices): never copied
DATA = ("prior.", "recent.", "blend_weights", "text", "geo_edges", "transition_edges")


@dataclass
class TransferReport:
    """What ``load_matching`` did: copied names, rows mapped by id, tensors left fresh."""

    copied: list[str] = field(default_factory=list)
    mapped: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (rows, of)
    fresh: dict[str, str] = field(default_factory=dict)               # name -> why

    def summary(self) -> str:
        mapped = "; ".join(f"{k} {a} of {b} rows by id" for k, a, b in
                           ((k, *v) for k, v in self.mapped.items()))
        fresh = ", ".join(sorted(self.fresh))
        return (f"transferred {len(self.copied)} tensors"
                + (f"; {mapped}" if mapped else "")
                + (f"; fresh: {fresh}" if fresh else ""))


def read_source(source: str | Path | Mapping[str, Any]
                ) -> tuple[Mapping[str, torch.Tensor], Mapping[str, Any] | None]:
    """(state dict, DataMeta as a dict or None) of a checkpoint, ``{"state_dict", "meta"}``
    file or mapping, or a plain state dict."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"init_from: no weights file {path}; give a checkpoint "
                                    "(.pt) or a file saved with torch.save({'state_dict': ...})")
        source = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in source:
        return source["state_dict"], source.get("meta")
    return source, None


def vocabulary(meta: Any, kind: str) -> Sequence[str]:
    """The external ids of index 1..n of ``kind`` (item, category, behavior) in a DataMeta
    (object or dict)."""
    get = meta.get if isinstance(meta, Mapping) else lambda k: getattr(meta, k)
    if kind == "item":
        return tuple(get("item_ids") or ())
    return tuple((get("extra") or {}).get(f"{kind}_names") or ())


def _map_rows(dst: torch.Tensor, src: torch.Tensor, src_ids: Sequence[str],
              dst_ids: Sequence[str]) -> int:
    """Copy the rows of shared ids (row i + 1 is id i), row 0 and equal trailing rows; the
    number of id rows copied."""
    where = {v: i + 1 for i, v in enumerate(src_ids)}
    pairs = [(j + 1, where[v]) for j, v in enumerate(dst_ids) if v in where]
    rows = [(0, 0)] + pairs
    extra_dst, extra_src = dst.shape[0] - 1 - len(dst_ids), src.shape[0] - 1 - len(src_ids)
    if extra_dst == extra_src and extra_dst > 0:  # special rows after the ids (mask token)
        rows += [(dst.shape[0] - k, src.shape[0] - k) for k in range(1, extra_dst + 1)]
    d, s = zip(*rows, strict=True)
    dst[list(d)] = src[list(s)].to(dst.dtype)
    return len(pairs)


def load_matching(net: nn.Module, source: str | Path | Mapping[str, Any],
                  map_ids: bool = False) -> TransferReport:
    """Copy ``source``'s transferable tensors into ``net`` in place (module docstring)."""
    src_state, src_meta = read_source(source)
    report = TransferReport()
    own = net.state_dict()
    with torch.no_grad():
        for name, dst in own.items():
            src = src_state.get(name)
            if name.startswith(DATA):
                report.fresh[name] = "the data's own"
            elif src is None:
                report.fresh[name] = "not in the source"
            elif name in INDEXED:
                kind = INDEXED[name]
                if not map_ids or src_meta is None or dst.shape[1:] != src.shape[1:]:
                    report.fresh[name] = f"{kind} rows"
                    continue
                src_ids = vocabulary(src_meta, kind)
                dst_ids = vocabulary(getattr(net, "meta", {}), kind)
                n = _map_rows(dst, src, src_ids, dst_ids)
                report.mapped[name] = (n, len(dst_ids))
            elif src.shape != dst.shape:
                report.fresh[name] = f"shape {tuple(src.shape)} vs {tuple(dst.shape)}"
            else:
                dst.copy_(src.to(dst.dtype))
                report.copied.append(name)
    return report
