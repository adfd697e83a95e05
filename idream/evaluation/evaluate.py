"""Evaluation under the protocol of docs/method.md: chronological leave-one-out, full ranking over every
item, the user's earlier items masked, HR@K and NDCG@K for K in {5, 10, 20}."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from idream.data.catalog import embed_sentences
from idream.data.datasets import Samples
from idream.data.intentions import generate_intention
from idream.ranking import (KS, MASKED, expected_ranks, mask_seen, metrics_from_counts, rank_counts,
                      top_k_random_ties)
from idream.text.cache import text_fingerprint



class NonFiniteScores(ValueError):
    """A model gave NaN or infinite scores: its metrics would count those cases as misses."""


@dataclass
class EvalResult:
    metrics: dict
    ranks: np.ndarray  # (M,) 0-based rank of each target, in expectation over random tie-breaking
    top: list | None = None  # per case, up to `dump_top` item indices, best first
    extra: dict = field(default_factory=dict)
    nonfinite_rows: int = 0  # cases where an unmasked item got a NaN or infinite score

    def require_finite(self, what: str = "the model") -> "EvalResult":
        """Raise NonFiniteScores when any case had a non-finite score; else return self."""
        if self.nonfinite_rows:
            raise NonFiniteScores(
                f"{what} gave NaN or infinite scores in {self.nonfinite_rows} of {len(self.ranks)} "
                "cases (counted as misses): the weights or the inputs are broken")
        return self


def rank_all(score_fn, samples: Samples, batch_size: int = 512, dump_top: int = 0,
             ks=KS, seed: int = 0) -> EvalResult:
    """Score every item for every case, mask earlier items and their twins (Samples.masked), rank
    the target (metrics.py says how ties and non-finite scores count). Dumped top-K lists break
    ties with a random order drawn from `seed`, so they agree with the metrics.

    score_fn(rows: np.ndarray of case indices) -> (B, N) scores.
    """
    ahead, ties, tops, nonfinite = [], [], [], 0
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for s in range(0, len(samples), batch_size):
            rows = np.arange(s, min(s + batch_size, len(samples)))
            scores = score_fn(rows).float().clone()
            nonfinite += int((~torch.isfinite(scores)).any(1).sum())  # before the -inf mask
            if samples.seen is not None:  # earlier items and their twins
                mask_seen(scores, [samples.masked(i) for i in rows])
            a, e = rank_counts(scores, torch.as_tensor(samples.targets[rows]))
            ahead.append(a.numpy())
            ties.append(e.numpy())
            if dump_top:
                scores = torch.nan_to_num(scores, nan=MASKED, posinf=MASKED, neginf=MASKED)
                top = top_k_random_ties(scores, dump_top, gen)
                finite = torch.isfinite(scores.gather(1, top))  # masked or broken items are never listed
                tops.extend(t[f].numpy() for t, f in zip(top, finite))
    ahead = np.concatenate(ahead) if ahead else np.zeros(0, dtype=np.int64)
    ties = np.concatenate(ties) if ties else np.zeros(0, dtype=np.int64)
    return EvalResult(metrics_from_counts(ahead, ties, ks), expected_ranks(ahead, ties),
                      tops if dump_top else None, nonfinite_rows=nonfinite)


def intention_seed(seed: int, user) -> int:
    """A per-case seed, stable across runs and Python processes."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(user).encode())) % (2**31)


def intention_sentences(ds, samples: Samples, seed: int = 0) -> list[str]:
    """One intention sentence per case, generated from its target's metadata (never its title)."""
    return [generate_intention(ds.item_meta(t), intention_seed(seed, u), ds.item_kind)
            for u, t in zip(samples.users, samples.targets)]


def intention_vectors(ds, samples: Samples, backend, cache_dir=None, seed: int = 0,
                      progress: bool = False) -> np.ndarray:
    """The text model's raw vectors of intention_sentences (cached on disk).  # (M, D_text)"""
    sentences = intention_sentences(ds, samples, seed)
    # the texts' hash in the name: valid and test sets of equal size must not evict each other
    tag = f"{ds.name}-eval-intentions-{len(sentences)}-s{seed}-{text_fingerprint(sentences)[:8]}"
    return embed_sentences(sentences, backend, cache_dir, tag=tag, progress=progress)


def generated_intentions(rec, samples: Samples, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """One generated intention per case, from its target's metadata (never its title).  # (M, D)"""
    E = intention_vectors(rec.dataset, samples, rec.backend, rec.config.get("cache_dir"), seed, progress)
    return torch.from_numpy(rec.transform(E))


def evaluate_recommender(rec, samples: Samples, steps: int = 1, w=None, rho=None,
                         intentions: torch.Tensor | None = None, seed: int = 0,
                         dump_top: int = 0, batch_size: int = 512) -> EvalResult:
    """iDream's metrics for a set of cases, optionally guided by per-case intentions (M, D)."""

    def score(rows):
        q = None if intentions is None else intentions[rows]
        x0 = rec.oracle(samples.histories[rows], q, steps=steps, w=w, rho=rho,
                        seed=seed + int(rows[0]))
        return rec.scores(x0, samples.histories[rows])

    return rank_all(score, samples, batch_size, dump_top, seed=seed)


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
