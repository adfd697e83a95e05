"""Training: item space, intention pool, the denoising loop with per-epoch validation, early
stopping on validation NDCG@10, and the choice of guidance defaults on validation. Under torchrun
the same loop runs in every process, each on its share of every batch (idream/distributed.py)."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import __version__, distributed, newitems, text
from .device import training_device
from .catalog import embed_sentences, item_embeddings
from .data import PAD, SequenceWindows, chronological_split, cold_items, load_dataset
from .diffusion import Diffusion, DiffusionConfig, training_loss
from .evaluate import evaluate_recommender, generated_intentions
from .intentions import intention_pool
from .model import Denoiser, ItemTable, ModelConfig
from .recommender import Recommender
from .schedule import BudgetSchedule, budget_clock
from .transform import fit_transform

log = logging.getLogger(__name__)

# Knobs that left TrainConfig, with the value the code now always has; an old config.json holds
# them. results/experiments/retired-knobs.patch puts them back.
RETIRED = {"ema": 0.0, "residual_rank": 0, "window_stride": 0, "detach_target": True, "anneal_to_budget": True}


@dataclass
class TrainConfig:
    """Training arguments; saved in config.json under "train"."""

    dataset: str = "ml-100k"
    text_model: str = "minilm"
    descriptions: str = "template"
    transform: str = "whiten"  # chosen on validation (docs/tuning.md)
    history_len: int = 10  # short windows: more updates per epoch, better at equal minutes (docs/tuning.md)
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    p_uncond: float = 0.1  # condition dropout of the history (classifier-free guidance)
    p_intention: float = 0.5  # probability that a training target comes with an intention
    p_t_max: float = 0.8  # share of targets trained at t = T-1, the only step one-step sampling uses
    intention_pool: int = 4  # generated intentions per item for training
    ce_weight: float = 50.0  # auxiliary ranking loss (0: the paper's pure x0 regression)
    tau: float = 10.0
    item_residual: bool = True
    residual_scale: float = 1.0
    text_dims: int = 0  # keep the text's principal directions alone, whitened (0: all, ZCA)
    id_dims: int = 0  # the learned residual in that many directions of its own (0: over the text)
    patience: int = 5  # validation NDCG@10 over a thousand users is noisy from epoch to epoch
    max_minutes: float = 16.0  # training budget; embedding and the final evaluation come on top
    clock: str = "wall"  # what the budget counts: wall seconds or this process's CPU seconds
    seed: int = 0
    threads: int = 0  # 0: torch's default
    device: str = "cpu"  # where the training steps run ("cuda" where a GPU is); evaluation runs on CPU
    width: int = 128
    depth: int = 2
    heads: int = 4
    dropout: float = 0.1
    T: int = 1000
    schedule: str = "linear"
    w_grid: tuple = (0.0, 1.0, 2.0, 3.0, 5.0)
    rho_grid: tuple = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0)  # guidance "learned" only
    guidance: str = "turn"  # ρ turns the oracle toward the intention's text direction (idream.steer);
    # "learned": ρ weighs the learned guidance term alone (the paper's form)
    kappa: float = 0.5  # "turn": the learned term's weight per unit of ρ (results/experiments/text-guidance.md)
    max_train_samples: int = 0  # 0: all (a cap is for quick tests)
    valid_users: int = 0  # validate on a seeded sample of this many users (0: all; for large data)
    cold_frac: float = 0.0  # cold-start protocol: this share of the items never trains (0: none)
    cold_seed: int = 0  # which items: a seeded draw
    item_source: str = "text"  # "id": DreamRec's randomly initialised, jointly trained ID vectors
    id_dim: int = 64  # dimension of the ID vectors when item_source == "id"
    encoder: str = "causal"  # SASRec-style history encoder, every position trained at once;
    # "incontext": every history item a token of the denoiser (the paper's form; results/ablation-training.md)
    encoder_depth: int = 2
    denoiser: str = "tokens"  # "adaln": one x_t token conditioned by adaLN-Zero (idream/model.py)
    seq_batch_size: int = 32  # sequences per step with the causal encoder (each holds up to L targets)
    future_k: int = 5  # causal encoder: the ranking loss targets the next k items of the window,
    future_decay: float = 0.5  # weighted future_decay**j (k = 1: the next item alone, as SASRec).
    # ml-100k rates many items at one timestamp, so the exact next item is partly chance (docs/tuning.md).
    # Targets that come with an intention (written from the next item) rank that item alone.

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From config.json's "train" (the command that wrote it is not a setting). A retired knob
        is dropped where it holds the value the code now always has, refused otherwise."""
        other = {k: d[k] for k in RETIRED.keys() & d.keys() if d[k] != RETIRED[k]
                 and not (k == "window_stride" and d[k] == d.get("history_len", cls.history_len))}
        if other:
            raise ValueError(f"retired train config keys {other}: this version always trains with "
                             f"{ {k: RETIRED[k] for k in other} }; to train with them, apply "
                             "results/experiments/retired-knobs.patch")
        d = {k: v for k, v in d.items() if k not in RETIRED and k != "command"}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown train config keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def build(cfg: TrainConfig, cache_dir=None, progress: bool = True):
    """Dataset, split, item space, intention pool and an untrained Recommender."""
    ds = load_dataset(cfg.dataset)
    cold = cold_items(ds, cfg.cold_frac, cfg.cold_seed) if cfg.cold_frac else np.zeros(0, dtype=np.int64)
    split = chronological_split(ds, cfg.history_len, cold_items=cold)
    split.valid = split.valid.sample(cfg.valid_users, cfg.seed)
    if cfg.item_source not in ("text", "id"):
        raise ValueError(f"unknown item source {cfg.item_source!r}: use text or id")
    by_id = cfg.item_source == "id"
    if by_id:  # DreamRec: no text at all; the item vectors are all learned
        backend, E = None, np.zeros((ds.n_items, cfg.id_dim), dtype=np.float32)
    else:
        backend = text.get_backend(cfg.text_model)
        E = item_embeddings(ds, backend, cfg.descriptions, cache_dir, progress)
    tr = fit_transform(E, "none" if by_id else cfg.transform, text_dims=0 if by_id else cfg.text_dims,
                       id_dims=0 if by_id else cfg.id_dims)
    Z = torch.from_numpy(tr(E))
    N, D = Z.shape
    mcfg = ModelConfig(dim=D, width=cfg.width, depth=cfg.depth, heads=cfg.heads,
                       history_len=cfg.history_len, dropout=cfg.dropout,
                       n_items=N if (cfg.item_residual or by_id) else 0,
                       residual_scale=cfg.residual_scale, encoder=cfg.encoder,
                       encoder_depth=cfg.encoder_depth, id_dims=0 if by_id else cfg.id_dims,
                       denoiser=cfg.denoiser)
    dcfg = DiffusionConfig(T=cfg.T, schedule=cfg.schedule)
    torch.manual_seed(cfg.seed)
    model = Denoiser(mcfg)
    table = ItemTable(Z, mcfg.n_items, mcfg.residual_scale, mcfg.id_dims)
    if by_id:
        torch.nn.init.normal_(table.residual, std=1.0 / mcfg.residual_scale)
    config = {
        "format": "idream-checkpoint-v1",
        "idream_version": __version__,
        "model": mcfg.to_dict(),
        "diffusion": dcfg.to_dict(),
        "transform": cfg.transform,
        "text": {"backend": "none" if by_id else cfg.text_model,
                 "name": "item ids (DreamRec)" if by_id else backend.name, "dim": int(E.shape[1]),
                 "descriptions": cfg.descriptions, "template_version": text.TEMPLATE_VERSION},
        "data": {"dataset": cfg.dataset, "name": ds.name, "n_items": int(N),
                 "history_len": cfg.history_len, "split": "chronological leave-one-out",
                 "item_kind": list(ds.item_kind),
                 **({"cold_items": cold.tolist()} if len(cold) else {})},
        "train": asdict(cfg),
        "guidance": {"w": 0.0, "rho": 1.0},
    }
    if cfg.descriptions == "llm":
        from . import llm
        config["text"]["llm"] = llm.descriptions_model(ds, cache_dir)
        config["text"]["prompt_version"] = llm.PROMPT_VERSION
    if cache_dir:
        config["cache_dir"] = str(cache_dir)
    rec = Recommender(model, Diffusion(dcfg), table, tr, ds, config, backend, embeddings=E)
    if by_id:
        return rec, split, E, torch.zeros(N, 1, D)
    pool = intention_pool(ds.all_item_meta(), cfg.intention_pool, cfg.seed)
    Q = embed_sentences([s for p in pool for s in p], backend, cache_dir,
                        tag=f"{ds.name}-train-intentions-p{cfg.intention_pool}-s{cfg.seed}",
                        progress=progress)
    Q = torch.from_numpy(tr(Q)).view(N, cfg.intention_pool, D)
    return rec, split, E, Q


def train(cfg: TrainConfig, cache_dir=None, progress: bool = True, log_fn=print):
    """Train, keep the best validation epoch, pick guidance defaults; returns (rec, split, E).

    Under torchrun every process calls it and trains its share of each batch; rank 0 validates,
    decides when all stop, picks the guidance and returns the model, the other ranks None."""
    with distributed.process_group(training_device(cfg.device)) as dev:
        return _train(cfg, dev, cache_dir, progress, log_fn)


def _train(cfg: TrainConfig, dev: torch.device, cache_dir, progress: bool, log_fn):
    if not distributed.is_main():  # rank 0 logs and draws the progress bar for every rank
        progress, log_fn = False, (lambda s: None)
    now = budget_clock(cfg.clock)
    t0 = now()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.future_k < 1 or not cfg.future_decay > 0:  # (the in-context form trains on one target each)
        raise ValueError(f"future_k {cfg.future_k} / future_decay {cfg.future_decay}: "
                         "k must be at least 1 and the decay above 0")
    rec, split, E, Q = build(cfg, cache_dir, progress)
    model, table, diffusion = rec.model, rec.items, rec.diffusion
    rng = np.random.default_rng(cfg.seed)  # the same draws on every rank: one data order for all
    torch.manual_seed(cfg.seed + distributed.rank())  # dropout: a stream per rank
    gen = distributed.batch_generator(cfg.seed, dev)  # the batches' draws: one stream for all ranks
    cases = None  # (the draw is made for the causal encoder too: a seed keeps its batches)
    if cfg.max_train_samples and split.n_train > cfg.max_train_samples:
        cases = rng.choice(split.n_train, cfg.max_train_samples, replace=False)
    Q = Q.to(dev)  # the model moves to dev at the start of each epoch
    cold = rec.cold_items
    exclude = None  # cold items are not even negatives of the ranking loss: training never sees them
    if len(cold):
        exclude = torch.zeros(table.z.shape[0], dtype=torch.bool, device=dev)
        exclude[torch.as_tensor(cold)] = True
    params = list(model.parameters()) + list(table.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    causal = cfg.encoder == "causal"
    if causal:  # units of work are sequence windows, each with a target at every position,
        windows = SequenceWindows(split.train_sequences, cfg.history_len)  # built a batch at a time
        if cfg.max_train_samples:  # random windows holding about that many targets
            keep = rng.permutation(len(windows))
            n = int(np.searchsorted(np.cumsum(windows.targets()[keep]), cfg.max_train_samples)) + 1
            windows = windows.subset(keep[:n])
        units, unit = len(windows), "windows"
    else:  # units of work are single targets with their history
        train = split.train if cases is None else split.train.subset(cases)
        hist_t = torch.as_tensor(train.histories).to(dev)
        tgt_t = torch.as_tensor(train.targets).to(dev)
        units, unit = len(train), "cases"
    bs = cfg.seq_batch_size if causal else cfg.batch_size  # the global batch, shared by the ranks
    world = distributed.world_size()
    if world > units:
        raise ValueError(f"fewer training {unit} ({units}) than training processes ({world}): "
                         f"every process needs a share; start at most {units}")
    if world > bs:
        raise ValueError(f"a batch of {bs} {unit} cannot be shared by {world} training processes: "
                         f"raise --{'seq-' if causal else ''}batch-size to {world} or more")
    n_batches = math.ceil(units / bs)
    if 0 < units % bs < world:  # a last batch too small to share joins the one before it
        n_batches -= 1
    schedule = BudgetSchedule(opt, n_batches, cfg.epochs, cfg.max_minutes)
    best, best_state, bad, history = -1.0, None, 0, []
    P, D = Q.shape[1], table.z.shape[1]
    rank = distributed.rank()
    model.to(dev), table.to(dev)  # DDP wraps the model where it trains
    objective = distributed.wrap(Objective(model, table, diffusion, cfg.ce_weight, cfg.tau, exclude), dev)
    for epoch in range(1, cfg.epochs + 1):
        epoch_start_elapsed = now() - t0
        model.to(dev).train(), table.to(dev)
        perm = rng.permutation(units)
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}", disable=not progress, leave=False)
        sums, n_targets, steps_t0 = {}, 0, time.perf_counter()
        for b in bar:
            rows = perm[b * bs:(b + 1) * bs if b + 1 < n_batches else None]  # the global batch
            r = c = None
            if causal:
                h, out = (torch.from_numpy(a).to(dev) for a in windows.take(rows))  # (S, L) each
                r, c = (out != PAD).nonzero(as_tuple=True)  # the positions with a next item
                y, valid = out[r, c], h != PAD
                has_h = torch.ones(len(y), dtype=torch.bool, device=dev)
            else:
                rows = torch.from_numpy(rows).to(dev)
                h, y = hist_t[rows], tgt_t[rows]
                valid = h != PAD
                has_h = valid.any(1)
            B = len(y)
            n_targets += B
            has_h = has_h & (torch.rand(B, device=dev, generator=gen) >= cfg.p_uncond)
            has_q = torch.rand(B, device=dev, generator=gen) < (0.0 if cfg.item_source == "id" else cfg.p_intention)
            q = Q[y, torch.randint(P, (B,), device=dev, generator=gen)]
            y_rank, y_w = y, None  # the ranking targets: the next item alone, or
            if causal and cfg.future_k > 1:  # the next k (an intention describes the next item: its rows rank it alone)
                y_rank, y_w = future_targets(out, r, c, cfg.future_k, cfg.future_decay, alone=has_q)  # (M, k) each
            t = training_timesteps(B, diffusion.T, cfg.p_t_max, dev, gen)
            noise = torch.randn(B, D, device=dev, generator=gen)
            batch = Batch(h, valid, y, y_rank, y_w, t, noise, has_h, q, has_q, r, c).share(rank, world)
            loss, parts = objective(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # under torchrun the gradients are averaged over the ranks here
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            schedule.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * batch.weight
            if b % 20 == 0:
                bar.set_postfix({k: f"{v / (b + 1):.3f}" for k, v in sums.items()})
        steps_s = time.perf_counter() - steps_t0  # the steps alone, without validation
        sums = distributed.mean(sums)  # the losses of the whole global batches
        decision = None  # (stop early, seconds since the start, seconds of this epoch)
        if distributed.is_main():  # rank 0 validates and keeps the best epoch
            model.cpu().eval(), table.cpu()  # evaluation (and the checkpoint) live on the CPU
            rec.invalidate()
            val = evaluate_recommender(rec, split.valid, steps=1, w=0.0, rho=0.0, seed=cfg.seed).metrics
            elapsed = now() - t0
            row = {"epoch": epoch, **{k: round(v / n_batches, 4) for k, v in sums.items()},
                   "valid_NDCG@10": round(val["NDCG@10"], 5), "valid_HR@10": round(val["HR@10"], 5),
                   "minutes": round(elapsed / 60, 2), "targets": n_targets, "steps_s": round(steps_s, 2)}
            history.append(row)
            log_fn(" ".join(f"{k}={v}" for k, v in row.items()))
            if val["NDCG@10"] > best:
                best, bad = val["NDCG@10"], 0
                best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(table.state_dict()), epoch)
            else:
                bad += 1
            decision = (bad >= cfg.patience, elapsed, elapsed - epoch_start_elapsed)
        # every rank stops, and fits its learning-rate decay, by rank 0's validation and clock
        stop_early, elapsed, epoch_s = distributed.from_main(decision)
        if stop_early:
            log_fn(f"early stop: no validation gain for {cfg.patience} epochs")
            break
        note, stop = schedule.end_epoch(epoch, elapsed, epoch_s)
        if note:
            log_fn(note)
        if stop:
            log_fn(stop)
            break
    if not distributed.is_main():
        return None
    model.load_state_dict(best_state[0])
    table.load_state_dict(best_state[1])
    model.eval()
    rec.invalidate()
    choose_guidance(rec, split, cfg, log_fn)
    if len(rec.cold_items) and cfg.item_source != "id":  # how to score residual-free items, on validation
        rule = newitems.pick([newitems.validation_grid(rec, split.valid)])
        rec.config["new_items"] = rule.to_dict()
        rec.invalidate()
        log_fn(f"new items on validation: a={rule.a:g}, b={rule.b:g} ({rule.chosen_on})")
    rec.config["train_log"] = {"epochs_run": len(history), "best_epoch": best_state[2],
                               "lr_decay_epochs": round(schedule.decay_epochs, 2),
                               "best_valid_NDCG@10": round(best, 5), "history": history,
                               "minutes": round((now() - t0) / 60, 2),
                               **({"processes": world} if world > 1 else {})}
    return rec, split, E


@dataclass
class Batch:
    """One step's targets with every random draw made: the noise, the timesteps, the dropped
    histories and the intentions. Under torchrun every rank draws the same global batch and
    trains its share() of it, so N processes take the steps that one process would."""

    h: torch.Tensor  # (S, L) history items, PAD-filled: one row per target, or per window (causal)
    valid: torch.Tensor  # (S, L) bool: a real item in this slot
    y: torch.Tensor  # (M,) target items
    y_rank: torch.Tensor  # (M,) or (M, k): what the ranking loss targets
    y_w: torch.Tensor | None  # (M, k) their weights; None with (M,) targets
    t: torch.Tensor  # (M,) diffusion steps
    noise: torch.Tensor  # (M, D)
    has_h: torch.Tensor  # (M,) bool: the history is kept (not dropped for guidance)
    q: torch.Tensor  # (M, D) intentions
    has_q: torch.Tensor  # (M,) bool
    r: torch.Tensor | None = None  # (M,) causal: the window and
    c: torch.Tensor | None = None  # (M,) position whose next item each target is
    weight: float = 1.0  # this share's targets per target of the global batch, times the ranks

    def share(self, rank: int, world: int) -> "Batch":
        """Rank `rank` of `world`'s part: a contiguous block of rows (windows) with their targets,
        weighted so that DDP's mean of the ranks' losses is the global batch's mean loss."""
        if world == 1:
            return self
        S, M = len(self.h), len(self.y)
        lo, hi = S * rank // world, S * (rank + 1) // world
        first, end = lo, hi  # the targets: one per row, or
        if self.r is not None:  # (causal) those of the windows lo..hi-1, listed window by window
            first, end = torch.searchsorted(self.r, torch.tensor([lo, hi], device=self.r.device)).tolist()

        def cut(v):
            return None if v is None else v[first:end]

        return Batch(self.h[lo:hi], self.valid[lo:hi], cut(self.y), cut(self.y_rank), cut(self.y_w),
                     cut(self.t), cut(self.noise), cut(self.has_h), cut(self.q), cut(self.has_q),
                     None if self.r is None else self.r[first:end] - lo, cut(self.c),
                     weight=(end - first) * world / M)


class Objective(nn.Module):
    """The training loss of a Batch, as one module over the denoiser and the item table: under
    torchrun DistributedDataParallel wraps it, so the gradients of both are averaged."""

    def __init__(self, model: Denoiser, table: ItemTable, diffusion: Diffusion, ce_weight: float,
                 tau: float, exclude: torch.Tensor | None = None):
        super().__init__()
        self.model, self.table, self.diffusion = model, table, diffusion
        self.ce_weight, self.tau, self.exclude = ce_weight, tau, exclude

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        V = self.table.vectors()  # (N, D)
        x0 = V[batch.y].detach()  # a target that pulled the item vectors would let them collapse
        x_t = self.diffusion.q_sample(x0, batch.t, batch.noise)
        history = V[batch.h.clamp(min=0)]  # (S, L, D)
        args = (batch.has_h, batch.q, batch.has_q)
        if batch.r is None:
            pred = self.model(x_t, batch.t, history, batch.valid, *args)
        else:
            pred = self.model.forward_sequence(x_t, batch.t, history, batch.valid, batch.r, batch.c, *args)
        loss, parts = training_loss(pred, x0, batch.y_rank, V, self.ce_weight, self.tau, batch.y_w,
                                    self.exclude)
        return loss * batch.weight, parts


def training_timesteps(B: int, T: int, p_t_max: float = 0.0, device="cpu",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """t ~ U{0..T-1}, with a share p_t_max moved to T-1 (pure noise: what one-step sampling sees).  # (B,)"""
    t = torch.randint(0, T, (B,), device=device, generator=generator)
    t[torch.rand(B, device=device, generator=generator) < p_t_max] = T - 1
    return t


def future_targets(out: torch.Tensor, r: torch.Tensor, c: torch.Tensor, k: int, decay: float,
                   alone: torch.Tensor | None = None):
    """The next k items after each selected window position, weighted decay**j and normalised:
    the targets of the multi-item ranking loss (k = 1: the next item alone; so too rows where
    `alone` (M,) is True).  out (S, L) next items, PAD-filled; r, c (M,) -> (M, k), (M, k)"""
    L = out.shape[1]
    cols = c[:, None] + torch.arange(k, device=out.device)  # (M, k)
    items = out[r[:, None], cols.clamp(max=L - 1)]
    ok = (cols < L) & (items != PAD)  # past the window's end, or padding: no target
    if alone is not None:
        ok &= ~alone[:, None] | (cols == c[:, None])
    w = decay ** torch.arange(k, device=out.device, dtype=torch.float32) * ok
    return items.clamp(min=0), w / w.sum(1, keepdim=True)


TURN_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # ρ for guidance "turn" (1.0: text alone)
MIN_LIFT = 2.0  # "turn": the default ρ keeps at least this HR@10 lift from generated intentions


def choose_guidance(rec, split, cfg: TrainConfig, log_fn=print) -> None:
    """Pick w (unguided, one-step) then ρ (generated intentions) on the validation split.

    learned: ρ with the best NDCG@10. turn: the strongest ρ whose HR@10 with generated
    intentions is still ≥ MIN_LIFT × the unguided one: as far toward what the person says as the
    history's predictive value allows (the best NDCG@10 if no ρ keeps the lift).
    """
    if cfg.guidance not in ("turn", "learned"):
        raise ValueError(f"unknown guidance {cfg.guidance!r}: use turn or learned")
    scores, hits = {}, {}
    for w in cfg.w_grid:
        m = evaluate_recommender(rec, split.valid, 1, w=w, rho=0.0, seed=cfg.seed).metrics
        scores[w], hits[w] = m["NDCG@10"], m["HR@10"]
    w_best = max(scores, key=scores.get)
    if cfg.item_source == "id":  # no text space, no intentions
        rec.config["guidance"] = {"w": float(w_best), "rho": 0.0,
                                  "w_grid": {str(k): round(v, 5) for k, v in scores.items()}}
        return
    q = generated_intentions(rec, split.valid, seed=cfg.seed + 1)
    turn = cfg.guidance == "turn"
    slider_top = rec.config.get("guidance", {}).get("rho_max") if turn else None  # chosen on the dev half
    # the mode first: it decides what ρ means while the grid is measured
    rec.config["guidance"] = {"w": float(w_best), "rho": 0.0,
                              **({"mode": "turn", "kappa": float(cfg.kappa)} if turn else {})}
    rscores, lifts = {}, {}
    for rho in TURN_GRID if turn else cfg.rho_grid:
        m = evaluate_recommender(rec, split.valid, 1, w=w_best, rho=rho, intentions=q, seed=cfg.seed).metrics
        rscores[rho], lifts[rho] = m["NDCG@10"], m["HR@10"] / max(hits[w_best], 1e-12)
    rho_best = max(rscores, key=rscores.get)
    keep = [r for r in rscores if lifts[r] >= MIN_LIFT]
    if turn and keep:
        rho_best = max(keep)
    how = (f"the strongest ρ with HR@10 lift ≥ {MIN_LIFT:g}× from generated intentions" if turn and keep
           else "the best NDCG@10 with generated intentions")
    rec.config["guidance"] = {**rec.config["guidance"], "rho": float(rho_best),
                              "chosen_on": f"validation, one-step: w the best NDCG@10 unguided, ρ {how}",
                              "w_grid": {str(k): round(v, 5) for k, v in scores.items()},
                              "rho_grid": {str(k): round(v, 5) for k, v in rscores.items()},
                              "rho_lift": {str(k): round(v, 3) for k, v in lifts.items()}}
    if slider_top is not None and rho_best <= slider_top:  # the slider's top still holds the default
        rec.config["guidance"]["rho_max"] = slider_top
    log_fn(f"guidance on validation: w={w_best} (NDCG@10 {scores[w_best]:.4f}), rho={rho_best} "
           f"with generated intentions (NDCG@10 {rscores[rho_best]:.4f}, HR@10 lift {lifts[rho_best]:.2f}x)")
