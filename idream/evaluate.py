"""Evaluation under the protocol of DESIGN.md: chronological leave-one-out, full ranking over every
item, the user's earlier items masked, HR@K and NDCG@K for K in {5, 10, 20}."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .catalog import embed_sentences
from .data import Samples
from .intentions import generate_intention
from .metrics import KS, mask_seen, metrics_from_ranks, target_ranks, top_k
from .text import text_fingerprint

DUMP_TOP = 50


@dataclass
class EvalResult:
    metrics: dict
    ranks: np.ndarray  # (M,) 0-based rank of each target
    top: list | None = None  # per case, up to DUMP_TOP item indices, best first
    extra: dict = field(default_factory=dict)


def rank_all(score_fn, samples: Samples, batch_size: int = 512, dump_top: int = 0,
             ks=KS) -> EvalResult:
    """Score every item for every case, mask earlier items, rank the target.

    score_fn(rows: np.ndarray of case indices) -> (B, N) scores.
    """
    ranks, tops = [], []
    with torch.no_grad():
        for s in range(0, len(samples), batch_size):
            rows = np.arange(s, min(s + batch_size, len(samples)))
            scores = score_fn(rows).float().clone()
            if samples.seen is not None:
                mask_seen(scores, [samples.seen[i] for i in rows])
            targets = torch.as_tensor(samples.targets[rows])
            ranks.append(target_ranks(scores, targets).numpy())
            if dump_top:
                top = top_k(scores, dump_top)
                finite = torch.isfinite(scores.gather(1, top))  # masked items are never listed
                tops.extend(t[f].numpy() for t, f in zip(top, finite))
    ranks = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    return EvalResult(metrics_from_ranks(ranks, ks), ranks, tops if dump_top else None)


def intention_seed(seed: int, user) -> int:
    """A per-case seed, stable across runs and Python processes."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(user).encode())) % (2**31)


def generated_intentions(rec, samples: Samples, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """One generated intention per case, from its target's metadata (never its title).  # (M, D)"""
    ds = rec.dataset
    sentences = [generate_intention(ds.item_meta(t), intention_seed(seed, u))
                 for u, t in zip(samples.users, samples.targets)]
    # the texts' hash in the name: valid and test sets of equal size must not evict each other
    tag = f"{ds.name}-eval-intentions-{len(sentences)}-s{seed}-{text_fingerprint(sentences)[:8]}"
    E = embed_sentences(sentences, rec.backend, rec.config.get("cache_dir"), tag=tag, progress=progress)
    return torch.from_numpy(rec.transform(E))


def evaluate_recommender(rec, samples: Samples, steps: int = 1, w=None, rho=None,
                         intentions: torch.Tensor | None = None, seed: int = 0,
                         dump_top: int = 0, batch_size: int = 512) -> EvalResult:
    """iDream's metrics for a set of cases, optionally guided by per-case intentions (M, D)."""

    def score(rows):
        q = None if intentions is None else intentions[rows]
        x0 = rec.oracle(samples.histories[rows], q, steps=steps, w=w, rho=rho,
                        seed=seed + int(rows[0]))
        return rec.scores(x0)

    return rank_all(score, samples, batch_size, dump_top)


def dump_rankings(path: Path, ds, samples: Samples, result: EvalResult) -> None:
    """Per case: user id, target item id and the top-50 item ids in order (CSV or JSONL)."""
    path = Path(path)
    ids = ds.items["item_id"].tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        jsonl = path.suffix.lower() in (".jsonl", ".json")
        if not jsonl:
            f.write("user_id,target_item_id,top_item_ids\n")
        for u, t, top in zip(samples.users, samples.targets, result.top):
            top_ids = [_plain(ids[i]) for i in top]
            if jsonl:
                f.write(json.dumps({"user_id": _plain(u), "target_item_id": _plain(ids[t]),
                                    "top_item_ids": top_ids}) + "\n")
            else:
                f.write(f"{_plain(u)},{_plain(ids[t])},{' '.join(str(i) for i in top_ids)}\n")


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v
