"""SASRec (Kang & McAuley 2018) in its strong modern form, as a peer in the benchmarks.

Causal self-attention over ID embeddings, trained with full-softmax cross-entropy over all items
at every position of the training sequences; evaluated on the same split as iDream.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import PAD, Split, sequence_windows
from .device import training_device
from .evaluate import rank_all


@dataclass
class SASRecConfig:
    max_len: int = 50
    hidden: int = 64
    depth: int = 2
    heads: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    eval_every: int = 2
    seed: int = 0
    max_minutes: float = 0.0  # training budget (0: none; early stopping ends it)
    device: str = "cpu"  # where the training steps run; evaluation runs on CPU


class SASRec(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.pad = n_items  # index of the padding embedding
        self.item = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=n_items)
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
        layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, 4 * cfg.hidden, cfg.dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:  # (B, S) item ids, pad on the left
        S = seq.shape[1]
        x = self.item(seq) * math.sqrt(self.cfg.hidden) + self.pos(torch.arange(S, device=seq.device))[None]
        causal = torch.triu(torch.ones(S, S, dtype=torch.bool, device=seq.device), 1)
        h = self.encoder(self.drop(x), mask=causal, src_key_padding_mask=None)
        return self.ln(h)  # (B, S, H)

    def logits(self, h: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., N)
        return h @ self.item.weight[:-1].T


def _left_pad(seqs, L: int, pad: int) -> np.ndarray:
    out = np.full((len(seqs), L), pad, dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-L:]
        if len(s):
            out[i, L - len(s):] = s
    return out


def train_sasrec(split: Split, n_items: int, cfg: SASRecConfig, progress: bool = True,
                 log_fn=print):
    """Train on every (item, next item) pair of the training sequences, cut into windows of
    max_len as the diffusion models are; early stop on validation NDCG@10."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = training_device(cfg.device)
    model = SASRec(n_items, cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ins, outs = sequence_windows(split.train_sequences, cfg.max_len)  # (W, L) each, PAD-filled
    inp = torch.from_numpy(np.where(ins == PAD, n_items, ins)).to(dev)
    tgt = torch.from_numpy(np.where(outs == PAD, -100, outs)).to(dev)
    best, best_state, bad, t0 = -1.0, None, 0, time.time()
    for epoch in range(1, cfg.epochs + 1):
        model.to(dev).train()
        perm = torch.from_numpy(rng.permutation(len(inp))).to(dev)
        for b in range(0, len(inp), cfg.batch_size):
            rows = perm[b:b + cfg.batch_size]
            h = model(inp[rows])
            loss = F.cross_entropy(model.logits(h).flatten(0, 1), tgt[rows].flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        over = cfg.max_minutes and time.time() - t0 > cfg.max_minutes * 60
        if epoch % cfg.eval_every and not over:
            continue
        val = evaluate_sasrec(model.cpu(), split, "valid").metrics["NDCG@10"]
        if progress:
            log_fn(f"sasrec dropout={cfg.dropout} epoch={epoch} loss={loss.item():.3f} "
                   f"valid_NDCG@10={val:.5f}")
        if val > best:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
        if over:
            log_fn(f"sasrec: stopping at the {cfg.max_minutes}-minute budget")
            break
    model.cpu().load_state_dict(best_state)
    model.eval()
    return model, {"best_valid_NDCG@10": best, "epochs_run": epoch,
                   "targets_per_epoch": int((tgt != -100).sum()),
                   "minutes": round((time.time() - t0) / 60, 2), "config": asdict(cfg)}


def tune_sasrec(split: Split, n_items: int, cfg: SASRecConfig, dropouts=(0.2, 0.5),
                progress: bool = True, log_fn=print):
    """One SASRec per dropout rate; keep the one with the best validation NDCG@10."""
    best = None
    grid = {}
    for p in dropouts:
        model, info = train_sasrec(split, n_items, replace(cfg, dropout=float(p)), progress, log_fn)
        grid[str(p)] = round(info["best_valid_NDCG@10"], 5)
        if best is None or info["best_valid_NDCG@10"] > best[1]["best_valid_NDCG@10"]:
            best = (model, info)
    best[1]["dropout_grid"] = grid
    return best


def sasrec_scorer(model: SASRec, split: Split, split_name: str):
    """Scores for each case: the full sequence before the target (up to max_len)."""
    samples = getattr(split, split_name)
    seqs = [samples.seen[i] for i in range(len(samples))]
    inp = torch.from_numpy(_left_pad(seqs, model.cfg.max_len, model.pad))

    def score(rows):
        with torch.no_grad():
            return model.logits(model(inp[rows])[:, -1])

    return score


def evaluate_sasrec(model: SASRec, split: Split, split_name: str, dump_top: int = 0):
    model.eval()
    return rank_all(sasrec_scorer(model, split, split_name), getattr(split, split_name),
                    dump_top=dump_top)
