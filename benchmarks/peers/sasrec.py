"""SASRec (Kang & McAuley 2018) in its strong modern form, as a peer in the benchmarks.

Causal self-attention over ID embeddings with padded positions masked as keys, trained with
full-softmax cross-entropy over all items on every prefix of the training sequences (as RecBole
does) or on windows with a target at every position; the same learning-rate schedule, fitted to
the same time budget, as iDream; early stopping on validation NDCG@10.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from idream.data.datasets import PAD, Samples, Split, sequence_windows
from idream.training.device import training_device
from idream.evaluation.evaluate import rank_all
from idream.training.schedule import BudgetSchedule, budget_clock


@dataclass
class SASRecConfig:
    # max_len, hidden, dropout, lr and train_on: the best of the validation grid (results/tuning-sasrec.md)
    max_len: int = 20
    hidden: int = 64
    depth: int = 2
    heads: int = 2
    dropout: float = 0.5
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128  # sequences (prefixes or windows) per step
    train_on: str = "windows"  # "prefixes": every prefix predicts its next item (RecBole);
    # "windows": non-overlapping windows of max_len, a target at every position
    epochs: int = 200
    patience: int = 10  # evaluations without a validation gain before stopping
    eval_every: int = 1
    seed: int = 0
    max_minutes: float = 0.0  # training budget (0: none; early stopping ends it)
    clock: str = "wall"  # what the budget counts: wall seconds or this process's CPU seconds
    device: str = "cpu"  # where the training steps run; evaluation runs on CPU

    def __post_init__(self):
        if self.train_on not in ("prefixes", "windows"):
            raise ValueError(f"train_on {self.train_on!r}: use prefixes or windows")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")


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

    def attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """True where attention is blocked: later positions and padding keys. Each position still
        sees itself, so a padded query has a key and stays finite.  (B, S) -> (B·heads, S, S)"""
        S = seq.shape[1]
        later = torch.triu(torch.ones(S, S, dtype=torch.bool, device=seq.device), 1)
        blocked = later[None] | (seq == self.pad)[:, None, :]  # (B, S, S)
        blocked &= ~torch.eye(S, dtype=torch.bool, device=seq.device)[None]
        return blocked.repeat_interleave(self.cfg.heads, dim=0)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:  # (B, S) item ids, pad on the left
        S = seq.shape[1]
        x = self.item(seq) * math.sqrt(self.cfg.hidden) + self.pos(torch.arange(S, device=seq.device))[None]
        h = self.encoder(self.drop(x), mask=self.attention_mask(seq))
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


class Prefixes:
    """Every prefix of the training sequences with its next item, cut to the last L items and
    built per batch (one (start, end) pair per target, not an (P, L) array)."""

    def __init__(self, sequences, L: int, pad: int):
        seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
        self.flat = torch.from_numpy(np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64))
        starts = np.cumsum([0] + [len(s) for s in seqs[:-1]])
        ends = [st + np.arange(1, len(s)) for st, s in zip(starts, seqs) if len(s) > 1]
        if not ends:
            raise ValueError("no training sequence has two items")
        self.end = torch.from_numpy(np.concatenate(ends))  # (P,) position of each target in flat
        self.start = torch.from_numpy(np.concatenate(
            [np.full(len(s) - 1, st) for st, s in zip(starts, seqs) if len(s) > 1]))
        self.L, self.pad = L, pad

    def __len__(self) -> int:
        return len(self.end)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, L), left-padded, and targets (B,)."""
        end, start = self.end[rows], self.start[rows]
        idx = end[:, None] - self.L + torch.arange(self.L)  # (B, L)
        inp = torch.where(idx >= start[:, None], self.flat[idx.clamp(min=0)], self.pad)
        return inp, self.flat[end]


def train_sasrec(split: Split, n_items: int, cfg: SASRecConfig, progress: bool = True,
                 log_fn=print):
    """Train on every (prefix, next item) pair of the training sequences (or on windows); keep
    the epoch with the best validation NDCG@10; stop early or at the budget."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = training_device(cfg.device)
    model = SASRec(n_items, cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.train_on == "prefixes":
        data = Prefixes(split.train_sequences, cfg.max_len, n_items)
        n, n_targets = len(data), len(data)
    else:
        ins, outs = sequence_windows(split.train_sequences, cfg.max_len)  # (W, L) each, PAD-filled
        inp_all = torch.from_numpy(np.where(ins == PAD, n_items, ins)).to(dev)
        tgt_all = torch.from_numpy(np.where(outs == PAD, -100, outs)).to(dev)
        n, n_targets = len(inp_all), int((tgt_all != -100).sum())
    steps = math.ceil(n / cfg.batch_size)
    schedule = BudgetSchedule(opt, steps, cfg.epochs, cfg.max_minutes)
    now = budget_clock(cfg.clock)
    best, best_state, bad, t0, history = -1.0, None, 0, now(), []
    for epoch in range(1, cfg.epochs + 1):
        epoch_t = now()
        model.to(dev).train()
        perm = torch.from_numpy(rng.permutation(n))
        for b in range(0, n, cfg.batch_size):
            rows = perm[b:b + cfg.batch_size]
            if cfg.train_on == "prefixes":
                inp, tgt = data.batch(rows)
                logits = model.logits(model(inp.to(dev))[:, -1])  # (B, N): the last position only
                loss = F.cross_entropy(logits, tgt.to(dev))
            else:
                rows = rows.to(dev)
                logits = model.logits(model(inp_all[rows]))  # (B, L, N)
                loss = F.cross_entropy(logits.flatten(0, 1), tgt_all[rows].flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        elapsed = now() - t0
        _, stop = schedule.end_epoch(epoch, elapsed, now() - epoch_t)
        if epoch % cfg.eval_every and not stop:
            continue
        val = evaluate_sasrec(model.cpu(), split.valid).metrics["NDCG@10"]
        history.append({"epoch": epoch, "loss": round(loss.item(), 4), "valid_NDCG@10": round(val, 5),
                        "minutes": round(elapsed / 60, 2)})
        if progress:
            log_fn(f"sasrec epoch={epoch} loss={loss.item():.3f} valid_NDCG@10={val:.5f}")
        if val > best:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
        if stop:
            log_fn(f"sasrec: {stop}")
            break
    model.cpu().load_state_dict(best_state)
    model.eval()
    best_epoch = max(history, key=lambda r: r["valid_NDCG@10"])["epoch"]
    return model, {"best_valid_NDCG@10": best, "epochs_run": epoch, "best_epoch": best_epoch,
                   "targets_per_epoch": n_targets, "lr_decay_epochs": round(schedule.decay_epochs, 2),
                   "minutes": round((now() - t0) / 60, 2), "history": history,
                   "config": asdict(cfg)}


def sasrec_scorer(model: SASRec, samples: Samples):
    """Scores for each case: the full sequence before the target (up to max_len)."""
    seqs = [samples.seen[i] for i in range(len(samples))]
    inp = torch.from_numpy(_left_pad(seqs, model.cfg.max_len, model.pad))

    def score(rows):
        with torch.no_grad():
            return model.logits(model(inp[rows])[:, -1])

    return score


def evaluate_sasrec(model: SASRec, samples: Samples, dump_top: int = 0):
    model.eval()
    return rank_all(sasrec_scorer(model, samples), samples, dump_top=dump_top)
