"""Training: item space, intention pool, the denoising loop with per-epoch validation, early
stopping on validation NDCG@10, and the choice of guidance defaults on validation. Under torchrun
the same loop runs in every process, each on its share of every batch (idream/training/distributed.py)."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from idream import __version__, text
from idream.evaluation import new_item_choice
from idream.training import distributed
from idream.training import state as train_state
from idream.serving.checkpoint import items_fingerprint
from idream.serving.checkpoint_config import FORMAT
from idream.training.device import training_device
from idream.data.catalog import DESCRIPTION_SOURCES, embed_sentences, item_embeddings
from idream.data.datasets import PAD, SequenceWindows, chronological_split, cold_items, load_dataset
from idream.core.diffusion import SCHEDULES, Diffusion, DiffusionConfig, training_loss
from idream.evaluation.evaluate import evaluate_recommender, generated_intentions
from idream.data.intentions import intention_pool
from idream.core.model import Denoiser, ItemTable, ModelConfig
from idream.serving.recommender import Recommender
from idream.training.schedule import BudgetSchedule, budget_clock
from idream.core.transform import KINDS as TRANSFORMS
from idream.core.transform import fit_transform
from idream.errors import InputError

log = logging.getLogger(__name__)

# Knobs that left TrainConfig, with the value the code now always has; an old config.json holds
# them. results/experiments/retired-knobs.patch puts them back.
RETIRED = {"ema": 0.0, "residual_rank": 0, "window_stride": 0, "detach_target": True, "anneal_to_budget": True,
           "guidance": "turn", "encoder": "causal", "denoiser": "tokens", "text_dims": 0, "id_dims": 0}
# the patch that brings a knob back (else retired-knobs.patch)
RETIRED_BY = {"guidance": "learned-guidance.patch", "encoder": "incontext-encoder.patch",
              **dict.fromkeys(("denoiser", "text_dims", "id_dims"), "adaln-nullspace.patch")}
IGNORED = {"rho_grid", "batch_size", "id_dim"}  # read by retired modes alone, or by a peer's own config


def opt(default, help: str):
    """A TrainConfig field with the words `train --help` shows beside its flag."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Training arguments; saved in config.json under "train"."""

    dataset: str = opt("ml-100k", "ml-100k or a dataset folder")
    text_model: str = opt("minilm", "text encoder: minilm, st:FOLDER, openai:MODEL[@DIM], hash:DIM, or none:DIM "
                                    "(no text: items are learned ID vectors, DreamRec's)")
    descriptions: str = opt("template", "item texts to embed: template (from metadata) or llm (`describe`)")
    # chosen on validation (docs/tuning.md)
    transform: str = opt("whiten", "map of the text vectors: none, scale or whiten")
    # short windows: more updates per epoch, better at equal minutes (docs/tuning.md)
    history_len: int = opt(10, "how many recent items the model reads per prediction")
    epochs: int = opt(30, "at most this many passes over the training data")
    lr: float = opt(1e-3, "learning rate of AdamW")
    weight_decay: float = opt(0.0, "weight decay of AdamW")
    # condition dropout of the history (classifier-free guidance)
    p_uncond: float = opt(0.1, "share of targets trained without history (for history guidance w)")
    p_intention: float = opt(0.5, "share of targets trained with an intention sentence")
    # share of targets trained at t = T-1, the only step one-step sampling uses
    p_t_max: float = opt(0.8, "share of targets trained at the last step, the one 1-step sampling uses")
    intention_pool: int = opt(4, "generated intention sentences per item for training")
    ce_weight: float = opt(50.0, "weight of the auxiliary ranking loss (0: the paper's x0 regression only)")
    tau: float = opt(10.0, "temperature of the ranking loss's softmax over items")
    item_residual: bool = opt(True, "pure text item vectors, the paper's form (default: a learned residual too)")
    residual_scale: float = opt(1.0, "multiplier of the learned per-item residual")
    # validation NDCG@10 over a thousand users is noisy from epoch to epoch
    patience: int = opt(5, "stop after this many epochs without a validation NDCG@10 gain")
    max_minutes: float = opt(16.0, "training budget in minutes (embedding and evaluation come on top)")
    clock: str = opt("wall", "what the budget counts: wall seconds or cpu (this process's) seconds")
    seed: int = opt(0, "random seed of initialisation, batches and noise")
    threads: int = opt(0, "torch CPU threads (0: torch's default)")
    device: str = opt("cpu", "where the training steps run: cpu or cuda (evaluation runs on cpu)")
    # bf16: results/experiments/bf16-training.md (the steps' arithmetic only; weights stay fp32)
    precision: str = opt("fp32", "arithmetic of the training steps: fp32, or bf16 (autocast: faster on "
                                 "CPUs with AVX-512 BF16 or AMX, and on GPUs)")
    width: int = opt(128, "hidden width of the transformer blocks")
    depth: int = opt(2, "transformer blocks of the denoiser")
    heads: int = opt(4, "attention heads per block")
    dropout: float = opt(0.1, "dropout inside the blocks")
    T: int = opt(1000, "diffusion steps of the noise schedule")
    schedule: str = opt("linear", "noise schedule: linear or cosine")
    w_grid: tuple = opt((0.0, 1.0, 2.0, 3.0, 5.0), "history guidance weights w tried on validation after training")
    # ρ ∈ [0, 1] turns the oracle toward the intention's text direction (idream.core.steer); κ chosen in
    # results/experiments/text-guidance.md
    kappa: float = opt(0.5,
                       "weight of the learned guidance term per unit of rho (rho turns toward the intention's text)")
    max_train_samples: int = opt(0, "train on about this many targets at random (0: all; for quick tests)")
    valid_users: int = opt(0, "validate on a seeded sample of this many users (0: all; for large data)")
    cold_frac: float = opt(0.0, "share of the catalog held out of training, the cold-start protocol (0: none)")
    cold_seed: int = opt(0, "seed of the draw of held-out items (with --cold-frac)")
    encoder_depth: int = opt(2, "transformer blocks of the causal history encoder (SASRec-style)")
    seq_batch_size: int = opt(32, "history windows per step (each: many targets)")
    # k > 1: ml-100k rates many items at one timestamp, so the exact next item is partly chance
    # (docs/tuning.md); targets that come with an intention (written from the next item) rank it alone
    future_k: int = opt(5, "the ranking loss targets the next k items")
    future_decay: float = opt(0.5, "weight of the j-th next item is decay**j")

    def __post_init__(self):
        """Refuse a wrong value where the config is made (a flag, --train-overrides, config.json),
        before any data is loaded or any minute of the budget is spent."""
        bad = _wrong_types(self) or _wrong_values(self)
        if bad:
            raise InputError(f"train config: {bad}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From config.json's "train" (the command that wrote it is not a setting). A retired knob
        is dropped where it holds the value the code now always has, refused otherwise."""
        other = {k: d[k] for k in RETIRED.keys() & d.keys() if d[k] != RETIRED[k]
                 and not (k == "window_stride" and d[k] == d.get("history_len", cls.history_len))}
        if other:
            raise InputError(f"retired train config keys {other}: this version always trains with "
                             f"{ {k: RETIRED[k] for k in other} }; to train with them, apply "
                             + " and ".join(sorted({f"results/experiments/{RETIRED_BY.get(k, 'retired-knobs.patch')}"
                                                    for k in other})))
        if d.get("item_source") == "id":  # DreamRec before it was a text model of its own: the same run
            d = {**d, "text_model": f"none:{d.get('id_dim', 64)}", "transform": "none", "p_intention": 0.0}
        d = {k: v for k, v in d.items() if k not in RETIRED.keys() | IGNORED | {"command", "item_source"}}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown train config keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PRECISIONS = ("fp32", "bf16")  # the training steps' arithmetic (Objective)
CHOICES = {"descriptions": DESCRIPTION_SOURCES, "transform": TRANSFORMS, "schedule": SCHEDULES,
           "clock": ("wall", "cpu"), "precision": PRECISIONS}
AT_LEAST_ONE = ("history_len", "epochs", "seq_batch_size", "width", "depth", "heads", "T",
                "encoder_depth", "future_k", "patience")
AT_LEAST_ZERO = ("weight_decay", "intention_pool", "ce_weight", "residual_scale",
                 "max_minutes", "threads", "max_train_samples", "valid_users", "kappa")
SHARES = ("p_uncond", "p_intention", "p_t_max", "dropout")  # in [0, 1]


def _wrong_types(cfg: TrainConfig) -> str | None:
    """The first field whose value is not of its default's type (an int passes for a float)."""
    for f in fields(cfg):
        v, want = getattr(cfg, f.name), type(f.default)
        ok = isinstance(v, want) and not (want is int and isinstance(v, bool)) \
            or (want is float and isinstance(v, int) and not isinstance(v, bool)) \
            or (want is tuple and isinstance(v, list))
        if not ok:
            return f"{f.name} must be {want.__name__}, got {v!r}"
    return None


def _wrong_values(cfg: TrainConfig) -> str | None:
    """The first value outside its field's range or choices, or a pair that cannot go together."""
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            return f"{name} {getattr(cfg, name)!r}: use one of {', '.join(allowed)}"
    checks = [(n, getattr(cfg, n) >= 1, "at least 1") for n in AT_LEAST_ONE]
    checks += [(n, getattr(cfg, n) >= 0, "0 or more") for n in AT_LEAST_ZERO]
    checks += [(n, 0 <= getattr(cfg, n) <= 1, "between 0 and 1") for n in SHARES]
    checks += [("lr", cfg.lr > 0, "above 0"), ("tau", cfg.tau > 0, "above 0"),
               ("future_decay", cfg.future_decay > 0, "above 0"),
               ("cold_frac", 0 <= cfg.cold_frac < 1, "in [0, 1)"),
               ("width", cfg.width % cfg.heads == 0, f"a multiple of heads ({cfg.heads})"),
               ("device", str(cfg.device).split(":")[0] in ("cpu", "cuda"), "cpu or cuda")]
    for name, ok, want in checks:
        if not ok:
            return f"{name} {getattr(cfg, name)!r}: must be {want}"
    return None


def build(cfg: TrainConfig, cache_dir=None, progress: bool = True):
    """Dataset, split, item space, intention pool and an untrained Recommender."""
    ds = load_dataset(cfg.dataset)
    cold = cold_items(ds, cfg.cold_frac, cfg.cold_seed) if cfg.cold_frac else np.zeros(0, dtype=np.int64)
    split = chronological_split(ds, cfg.history_len, cold_items=cold)
    split.valid = split.valid.sample(cfg.valid_users, cfg.seed)
    backend = text.get_backend(cfg.text_model)
    E = item_embeddings(ds, backend, cfg.descriptions, cache_dir, progress)
    text_free = not E.any()  # (the `none:DIM` text model: items are their learned ID vectors alone)
    tr = fit_transform(E, cfg.transform)
    Z = torch.from_numpy(tr(E))
    N, D = Z.shape
    mcfg = ModelConfig(dim=D, width=cfg.width, depth=cfg.depth, heads=cfg.heads,
                       history_len=cfg.history_len, dropout=cfg.dropout,
                       n_items=N if (cfg.item_residual or text_free) else 0,
                       residual_scale=cfg.residual_scale,
                       encoder_depth=cfg.encoder_depth)
    dcfg = DiffusionConfig(T=cfg.T, schedule=cfg.schedule)
    torch.manual_seed(cfg.seed)
    model = Denoiser(mcfg)
    table = ItemTable(Z, mcfg.n_items, mcfg.residual_scale)
    if text_free:  # no text to start from: ID vectors drawn at random (DreamRec), not all alike at zero
        torch.nn.init.normal_(table.residual, std=1.0 / mcfg.residual_scale)
    config = _checkpoint_config(cfg, ds, mcfg, dcfg, backend, E.shape[1], cold, cache_dir)
    rec = Recommender(model, Diffusion(dcfg), table, tr, ds, config, backend, embeddings=E)
    if text_free:  # no text, no intentions to embed
        return rec, split, E, torch.zeros(N, 1, D)
    pool = intention_pool(ds.all_item_meta(), cfg.intention_pool, cfg.seed, ds.item_kind)
    Q = embed_sentences([s for p in pool for s in p], backend, cache_dir,
                        tag=f"{ds.name}-train-intentions-p{cfg.intention_pool}-s{cfg.seed}",
                        progress=progress)
    Q = torch.from_numpy(tr(Q)).view(N, cfg.intention_pool, D)
    return rec, split, E, Q


def _checkpoint_config(cfg: TrainConfig, ds, mcfg: ModelConfig, dcfg: DiffusionConfig, backend,
                       text_dim: int, cold: np.ndarray, cache_dir) -> dict:
    """config.json of a model about to train: what rebuilds it, what it was trained on and how."""
    config = {
        "format": FORMAT,
        "idream_version": __version__,
        "model": mcfg.to_dict(),
        "diffusion": dcfg.to_dict(),
        "transform": cfg.transform,
        "text": {"backend": cfg.text_model, "name": backend.name, "dim": int(text_dim),
                 "descriptions": cfg.descriptions, "template_version": text.TEMPLATE_VERSION},
        "data": {"dataset": cfg.dataset, "name": ds.name, "n_items": int(ds.n_items),
                 "history_len": cfg.history_len, "split": "chronological leave-one-out",
                 "item_kind": list(ds.item_kind),
                 **({"cold_items": cold.tolist()} if len(cold) else {})},
        "train": asdict(cfg),
        "guidance": {"w": 0.0, "rho": 0.0, "mode": "turn", "kappa": cfg.kappa},
    }
    if cfg.descriptions == "llm":
        from idream.text import llm
        config["text"]["llm"] = llm.descriptions_model(ds, cache_dir)
        config["text"]["prompt_version"] = llm.prompt_version(ds.item_kind)
    if cache_dir:
        config["cache_dir"] = str(cache_dir)
    return config


def train(cfg: TrainConfig, cache_dir=None, progress: bool = True, log_fn=print,
          state_dir=None, resume: bool = False):
    """Train, keep the best validation epoch, pick guidance defaults; returns (rec, split, E).

    Under torchrun every process calls it and trains its share of each batch; rank 0 validates,
    decides when all stop, picks the guidance and returns the model, the other ranks None.
    state_dir: where the training state is written after every epoch (idream.training.state; a
    single process only); resume: continue from the state there instead of from the start."""
    with distributed.process_group(training_device(cfg.device)) as dev:
        return _train(cfg, dev, cache_dir, progress, log_fn, state_dir, resume)


def _train(cfg: TrainConfig, dev: torch.device, cache_dir, progress: bool, log_fn,
           state_dir=None, resume: bool = False):
    if not distributed.is_main():  # rank 0 logs and draws the progress bar for every rank
        progress, log_fn = False, (lambda s: None)
    saved = _saved_state(cfg, state_dir, resume, log_fn)  # before the set-up: a refusal costs nothing
    run = _setup(cfg, dev, cache_dir, progress)
    early = EarlyStop(cfg.patience)
    epoch, stop = 1, None
    if saved is not None:
        epoch, stop = _restore(run, early, *saved, log_fn)
    while stop is None and epoch <= cfg.epochs:
        epoch_start = run.elapsed()
        sums, n_targets, steps_s = _epoch(run, epoch, progress)
        decision = None  # (stop early, seconds since the start, seconds of this epoch)
        if distributed.is_main():  # rank 0 validates and keeps the best epoch
            decision = _validate(run, early, epoch, sums, n_targets, steps_s, epoch_start, log_fn)
        stop = _end_epoch(run, epoch, decision, log_fn)
        if state_dir is not None and not distributed.is_distributed():
            train_state.save(state_dir, epoch, *_snapshot(run, early, epoch, stop))
        epoch += 1
    if not distributed.is_main():
        return None
    return _finalize(run, early, log_fn)


@dataclass
class Run:
    """What a training run holds from one step to the next."""

    cfg: TrainConfig
    dev: torch.device
    rec: Recommender
    split: object
    E: np.ndarray
    batches: "Batches"
    opt: torch.optim.Optimizer
    schedule: BudgetSchedule
    params: list
    objective: nn.Module
    rng: np.random.Generator  # the data order, the same on every rank
    gen: torch.Generator | None  # the batches' draws (None: torch's default stream)
    now: object  # the budget's clock
    t0: float

    def elapsed(self) -> float:
        return self.now() - self.t0


def _setup(cfg: TrainConfig, dev: torch.device, cache_dir, progress: bool) -> Run:
    """The untrained model, its data, optimizer and schedule, and the seeded random streams."""
    now = budget_clock(cfg.clock)
    t0 = now()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rec, split, E, Q = build(cfg, cache_dir, progress)
    model, table, diffusion = rec.model, rec.table, rec.diffusion
    rng = np.random.default_rng(cfg.seed)  # the same draws on every rank: one data order for all
    torch.manual_seed(cfg.seed + distributed.rank())  # dropout: a stream per rank
    gen = distributed.batch_generator(cfg.seed, dev)  # the batches' draws: one stream for all ranks
    batches = Batches(cfg, split, Q.to(dev), diffusion.T, rng, gen, dev)
    cold = rec.cold_items
    exclude = None  # cold items are not even negatives of the ranking loss: training never sees them
    if len(cold):
        exclude = torch.zeros(table.z.shape[0], dtype=torch.bool, device=dev)
        exclude[torch.as_tensor(cold)] = True
    params = list(model.parameters()) + list(table.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = BudgetSchedule(opt, batches.n_batches, cfg.epochs, cfg.max_minutes)
    model.to(dev), table.to(dev)  # DDP wraps the model where it trains
    objective = distributed.wrap(Objective(model, table, diffusion, cfg.ce_weight, cfg.tau, exclude,
                                           cfg.precision), dev)
    return Run(cfg, dev, rec, split, E, batches, opt, schedule, params, objective, rng, gen, now, t0)


class Batches:
    """The units of training, history windows with a target at every position, and the draw of one
    step's Batch from some of them."""

    def __init__(self, cfg: TrainConfig, split, Q: torch.Tensor, T: int, rng: np.random.Generator,
                 gen: torch.Generator | None, dev: torch.device):
        self.cfg, self.Q, self.T, self.gen, self.dev = cfg, Q, T, gen, dev  # Q (N, P, D)
        self.windows = SequenceWindows(split.train_sequences, cfg.history_len)  # built a batch at a time
        if cfg.max_train_samples:  # random windows holding about that many targets
            keep = rng.permutation(len(self.windows))
            n = int(np.searchsorted(np.cumsum(self.windows.targets()[keep]), cfg.max_train_samples)) + 1
            self.windows = self.windows.subset(keep[:n])
        self.units = len(self.windows)
        self.size = bs = cfg.seq_batch_size  # the global batch
        world = distributed.world_size()
        if world > self.units:
            raise InputError(f"fewer training windows ({self.units}) than training processes ({world}): "
                             f"every process needs a share; start at most {self.units}")
        if world > bs:
            raise InputError(f"a batch of {bs} windows cannot be shared by {world} training processes: "
                             f"raise --seq-batch-size to {world} or more")
        self.n_batches = math.ceil(self.units / bs)
        if 0 < self.units % bs < world:  # a last batch too small to share joins the one before it
            self.n_batches -= 1

    def rows(self, perm: np.ndarray, b: int) -> np.ndarray:
        """The units of global batch b of an epoch's order `perm`."""
        return perm[b * self.size:(b + 1) * self.size if b + 1 < self.n_batches else None]

    def draw(self, rows: np.ndarray) -> "Batch":
        """The global batch of these units, with every random draw made."""
        cfg, dev, gen = self.cfg, self.dev, self.gen
        h, out = (torch.from_numpy(a).to(dev) for a in self.windows.take(rows))  # (S, L) each
        r, c = (out != PAD).nonzero(as_tuple=True)  # the positions with a next item
        y, valid = out[r, c], h != PAD
        has_h = torch.ones(len(y), dtype=torch.bool, device=dev)
        B, (P, D) = len(y), self.Q.shape[1:]
        has_h = has_h & (torch.rand(B, device=dev, generator=gen) >= cfg.p_uncond)
        has_q = torch.rand(B, device=dev, generator=gen) < cfg.p_intention
        q = self.Q[y, torch.randint(P, (B,), device=dev, generator=gen)]
        y_rank, y_w = y, None  # the ranking targets: the next item alone, or the next k
        if cfg.future_k > 1:  # (an intention describes the next item: its rows rank it alone)
            y_rank, y_w = future_targets(out, r, c, cfg.future_k, cfg.future_decay, alone=has_q)  # (M, k) each
        t = training_timesteps(B, self.T, cfg.p_t_max, dev, gen)
        noise = torch.randn(B, D, device=dev, generator=gen)
        return Batch(h, valid, y, y_rank, y_w, t, noise, has_h, q, has_q, r, c)


def _epoch(run: Run, epoch: int, progress: bool) -> tuple[dict, int, float]:
    """One pass over the units in a fresh order: (loss sums over the ranks, targets, seconds)."""
    run.rec.model.to(run.dev).train(), run.rec.table.to(run.dev)
    batches = run.batches
    perm = run.rng.permutation(batches.units)
    bar = tqdm(range(batches.n_batches), desc=f"epoch {epoch}", disable=not progress, leave=False)
    sums, n_targets, steps_t0 = {}, 0, time.perf_counter()
    for b in bar:
        batch = batches.draw(batches.rows(perm, b))
        n_targets += len(batch.y)
        batch = batch.share(distributed.rank(), distributed.world_size())
        for k, v in _step(run, batch).items():
            sums[k] = sums.get(k, 0.0) + v * batch.weight
        if b % 20 == 0:
            bar.set_postfix({k: f"{v / (b + 1):.3f}" for k, v in sums.items()})
    steps_s = time.perf_counter() - steps_t0  # the steps alone, without validation
    return distributed.mean(sums), n_targets, steps_s  # the losses of the whole global batches


def _step(run: Run, batch: "Batch") -> dict:
    """One optimizer step on this rank's share of a batch; returns the loss's parts."""
    loss, parts = run.objective(batch)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()  # under torchrun the gradients are averaged over the ranks here
    torch.nn.utils.clip_grad_norm_(run.params, 1.0)
    run.opt.step()
    run.schedule.step()
    return parts


@dataclass
class EarlyStop:
    """The best validation epoch so far (its weights kept) and the epochs since it improved."""

    patience: int
    best: float = -1.0
    best_epoch: int = 0
    best_state: tuple | None = None  # (model state_dict, item table state_dict)
    bad: int = 0
    history: list = field(default_factory=list)

    def update(self, score: float, model: nn.Module, table: nn.Module, epoch: int) -> bool:
        """Record an epoch's score; True when training should stop (no gain for `patience`)."""
        if score > self.best:
            self.best, self.bad, self.best_epoch = score, 0, epoch
            self.best_state = (copy.deepcopy(model.state_dict()), copy.deepcopy(table.state_dict()))
        else:
            self.bad += 1
        return self.bad >= self.patience


def _validate(run: Run, early: EarlyStop, epoch: int, sums: dict, n_targets: int, steps_s: float,
              epoch_start: float, log_fn) -> tuple[bool, float, float]:
    """Rank 0: validation NDCG@10 on the CPU, the epoch's log row, early stopping; returns
    (stop early, seconds since the start, seconds of this epoch) for every rank."""
    cfg, rec = run.cfg, run.rec
    rec.model.cpu().eval(), rec.table.cpu()  # evaluation (and the checkpoint) live on the CPU
    val = evaluate_recommender(rec, run.split.valid, steps=1, w=0.0, rho=0.0, seed=cfg.seed).metrics
    elapsed = run.elapsed()
    row = {"epoch": epoch, **{k: round(v / run.batches.n_batches, 4) for k, v in sums.items()},
           "valid_NDCG@10": round(val["NDCG@10"], 5), "valid_HR@10": round(val["HR@10"], 5),
           "minutes": round(elapsed / 60, 2), "targets": n_targets, "steps_s": round(steps_s, 2)}
    early.history.append(row)
    log_fn(" ".join(f"{k}={v}" for k, v in row.items()))
    stop = early.update(val["NDCG@10"], rec.model, rec.table, epoch)
    return stop, elapsed, elapsed - epoch_start


def _end_epoch(run: Run, epoch: int, decision, log_fn) -> str | None:
    """Every rank stops, and fits its learning-rate decay, by rank 0's validation and clock;
    returns why training stops now (None: it goes on)."""
    stop_early, elapsed, epoch_s = distributed.from_main(decision)
    if stop_early:
        stop = f"early stop: no validation gain for {run.cfg.patience} epochs"
        log_fn(stop)
        return stop
    note, stop = run.schedule.end_epoch(epoch, elapsed, epoch_s)
    if note:
        log_fn(note)
    if stop:
        log_fn(stop)
    return stop


def _finalize(run: Run, early: EarlyStop, log_fn):
    """The best epoch's weights, the guidance and new-item rules chosen on validation, the log."""
    cfg, rec, split = run.cfg, run.rec, run.split
    rec.model.load_state_dict(early.best_state[0])
    rec.table.load_state_dict(early.best_state[1])
    rec.model.eval()
    choose_guidance(rec, split, cfg, log_fn)
    if len(rec.cold_items) and rec.embeddings.any():  # how to score residual-free items (by text), on validation
        rule = new_item_choice.pick([new_item_choice.validation_grid(rec, split.valid)])
        rec.config["new_items"] = rule.to_dict()
        log_fn(f"new items on validation: a={rule.a:g}, b={rule.b:g} ({rule.chosen_on})")
    world = distributed.world_size()
    rec.config["train_log"] = {"epochs_run": len(early.history), "best_epoch": early.best_epoch,
                               "lr_decay_epochs": round(run.schedule.decay_epochs, 2),
                               "best_valid_NDCG@10": round(early.best, 5), "history": early.history,
                               "minutes": round(run.elapsed() / 60, 2),
                               **({"processes": world} if world > 1 else {})}
    return rec, split, run.E


# --- the training state, for --resume (idream.training.state writes and reads it) --------------------

def _snapshot(run: Run, early: EarlyStop, epoch: int, stop: str | None) -> tuple[dict, dict]:
    """The state after `epoch` (on rank 0, weights on the CPU): tensors by file, and the rest."""
    model, table = run.rec.model, run.rec.table
    opt = run.opt.state_dict()
    rng = {"torch": torch.get_rng_state(),
           **({"generator": run.gen.get_state()} if run.gen is not None else {}),
           **({"cuda": torch.cuda.get_rng_state(run.dev)} if run.dev.type == "cuda" else {})}
    tensors = {"weights": _weights(model.state_dict(), table.state_dict()),
               "optimizer": {f"{i}.{k}": v for i, s in opt["state"].items() for k, v in s.items()},
               "rng": rng}
    if early.best_epoch != epoch:  # else the best weights are the weights
        tensors["best"] = _weights(*early.best_state)
    sched = {k: v for k, v in run.schedule.sched.state_dict().items() if k != "lr_lambdas"}
    meta = {"stopped": stop, "train": train_state.plain(asdict(run.cfg)),
            "items_fingerprint": items_fingerprint(run.rec.dataset),
            "elapsed_s": run.elapsed(), "clock": run.cfg.clock,
            "numpy_rng": run.rng.bit_generator.state,
            "optimizer": {"param_groups": opt["param_groups"]},
            "schedule": {"horizon": run.schedule.horizon, "lr_scheduler": sched},
            "early_stop": {"best": early.best, "best_epoch": early.best_epoch, "bad": early.bad,
                           "history": early.history}}
    return tensors, meta


def _weights(model_state: dict, table_state: dict) -> dict:
    return {**{f"model.{k}": v for k, v in model_state.items()},
            **{f"table.{k}": v for k, v in table_state.items()}}


def _split_weights(flat: dict) -> tuple[dict, dict]:
    return ({k[6:]: v for k, v in flat.items() if k.startswith("model.")},
            {k[6:]: v for k, v in flat.items() if k.startswith("table.")})


def _saved_state(cfg: TrainConfig, state_dir, resume: bool, log_fn):
    """(state.json, its folder) to resume from; None to start from the start, after removing a
    state left by an earlier run. TrainStateError where --resume finds nothing usable."""
    if state_dir is None:
        if resume:
            raise train_state.TrainStateError("--resume needs a folder (--out) that holds a training state")
        return None
    root = Path(state_dir)
    if distributed.is_distributed():
        if resume:
            raise train_state.TrainStateError("--resume continues single-process runs; under torchrun "
                                              "the state is not written")
        return None
    if not resume:
        if (root / "state.json").exists():
            log_fn(f"note: {root} held an unfinished run; starting from the start (--resume continues one)")
        train_state.remove(root)
        return None
    meta = train_state.read_meta(root, root.parent)
    train_state.check_settings(meta, train_state.plain(asdict(cfg)), root)
    train_state.clean(root, keep=meta.get("folder"))  # an epoch folder the kill left half written
    return meta, root


def _restore(run: Run, early: EarlyStop, meta: dict, root: Path, log_fn) -> tuple[int, str | None]:
    """Put the saved state back; returns (the next epoch, why training had stopped or None)."""
    if meta.get("items_fingerprint") != items_fingerprint(run.rec.dataset):
        raise train_state.TrainStateError(f"{root} was made on another catalog than {run.cfg.dataset!r}: "
                                          "train without --resume to start over")
    t = train_state.read_tensors(root, meta)
    model, table = run.rec.model, run.rec.table
    try:
        for module, state in zip((model, table), _split_weights(t["weights"])):
            module.load_state_dict(state)
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
                  for g in meta["optimizer"]["param_groups"]]
        state = {}
        for name, v in t["optimizer"].items():
            i, k = name.split(".", 1)
            state.setdefault(int(i), {})[k] = v
        run.opt.load_state_dict({"state": state, "param_groups": groups})
        n = len(run.opt.param_groups)
        run.schedule.sched.load_state_dict({**meta["schedule"]["lr_scheduler"], "lr_lambdas": [None] * n})
        run.schedule.horizon = meta["schedule"]["horizon"]
        run.rng.bit_generator.state = meta["numpy_rng"]
        torch.set_rng_state(t["rng"]["torch"])
        if run.gen is not None:
            run.gen.set_state(t["rng"]["generator"])
        if run.dev.type == "cuda" and "cuda" in t["rng"]:
            torch.cuda.set_rng_state(t["rng"]["cuda"], run.dev)
        e = meta["early_stop"]
        early.best, early.best_epoch, early.bad, early.history = e["best"], e["best_epoch"], e["bad"], e["history"]
        best = _split_weights(t["best"]) if "best" in t else (model.state_dict(), table.state_dict())
        early.best_state = tuple(copy.deepcopy(s) for s in best)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise train_state.TrainStateError(f"{root} does not fit this run ({first}); remove it and train "
                                          "without --resume") from None
    run.t0 = run.now() - float(meta["elapsed_s"])  # the budget goes on from the saved seconds
    log_fn(f"resuming after epoch {meta['epoch']} from {root}"
           + (f" (it had stopped: {meta['stopped']})" if meta.get("stopped") else ""))
    return meta["epoch"] + 1, meta.get("stopped")


@dataclass
class Batch:
    """One step's targets with every random draw made: the noise, the timesteps, the dropped
    histories and the intentions. Under torchrun every rank draws the same global batch and
    trains its share() of it, so N processes take the steps that one process would."""

    h: torch.Tensor  # (S, L) history windows' items, PAD-filled
    valid: torch.Tensor  # (S, L) bool: a real item in this slot
    y: torch.Tensor  # (M,) target items
    y_rank: torch.Tensor  # (M,) or (M, k): what the ranking loss targets
    y_w: torch.Tensor | None  # (M, k) their weights; None with (M,) targets
    t: torch.Tensor  # (M,) diffusion steps
    noise: torch.Tensor  # (M, D)
    has_h: torch.Tensor  # (M,) bool: the history is kept (not dropped for guidance)
    q: torch.Tensor  # (M, D) intentions
    has_q: torch.Tensor  # (M,) bool
    r: torch.Tensor  # (M,) the window and
    c: torch.Tensor  # (M,) position whose next item each target is
    weight: float = 1.0  # this share's targets per target of the global batch, times the ranks

    def share(self, rank: int, world: int) -> "Batch":
        """Rank `rank` of `world`'s part: a contiguous block of rows (windows) with their targets,
        weighted so that DDP's mean of the ranks' losses is the global batch's mean loss."""
        if world == 1:
            return self
        S, M = len(self.h), len(self.y)
        lo, hi = S * rank // world, S * (rank + 1) // world
        # the targets of the windows lo..hi-1, listed window by window
        first, end = torch.searchsorted(self.r, torch.tensor([lo, hi], device=self.r.device)).tolist()

        def cut(v):
            return None if v is None else v[first:end]

        return Batch(self.h[lo:hi], self.valid[lo:hi], cut(self.y), cut(self.y_rank), cut(self.y_w),
                     cut(self.t), cut(self.noise), cut(self.has_h), cut(self.q), cut(self.has_q),
                     self.r[first:end] - lo, cut(self.c),
                     weight=(end - first) * world / M)


class Objective(nn.Module):
    """The training loss of a Batch, as one module over the denoiser and the item table: under
    torchrun DistributedDataParallel wraps it, so the gradients of both are averaged."""

    def __init__(self, model: Denoiser, table: ItemTable, diffusion: Diffusion, ce_weight: float,
                 tau: float, exclude: torch.Tensor | None = None, precision: str = "fp32"):
        super().__init__()
        self.model, self.table, self.diffusion = model, table, diffusion
        self.ce_weight, self.tau, self.exclude, self.precision = ce_weight, tau, exclude, precision

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        """The loss (scaled by the batch's share) and its parts; under bf16 the matrix products run
        in bfloat16 (autocast keeps the softmax and the sums in fp32), the weights stay fp32."""
        device = self.table.z.device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self._loss(batch)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        V = self.table.vectors()  # (N, D)
        x0 = V[batch.y].detach()  # a target that pulled the item vectors would let them collapse
        x_t = self.diffusion.q_sample(x0, batch.t, batch.noise)
        history = V[batch.h.clamp(min=0)]  # (S, L, D)
        args = (batch.has_h, batch.q, batch.has_q)
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


TURN_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # ρ tried on validation (1.0: the text alone)
MIN_LIFT = 2.0  # "turn": the default ρ keeps at least this HR@10 lift from generated intentions


def choose_guidance(rec, split, cfg: TrainConfig, log_fn=print) -> None:
    """Pick w (unguided, one-step) then ρ (generated intentions) on the validation split: the
    strongest ρ whose HR@10 with generated intentions is still ≥ MIN_LIFT × the unguided one, as far
    toward what the person says as the history's predictive value allows (the best NDCG@10 if no ρ
    keeps the lift)."""
    scores, hits = {}, {}
    for w in cfg.w_grid:
        m = evaluate_recommender(rec, split.valid, 1, w=w, rho=0.0, seed=cfg.seed).metrics
        scores[w], hits[w] = m["NDCG@10"], m["HR@10"]
    w_best = max(scores, key=scores.get)
    if not rec.embeddings.any():  # no text (`none:DIM`): no intention to turn toward
        rec.config["guidance"] = {"w": float(w_best), "rho": 0.0,
                                  "w_grid": {str(k): round(v, 5) for k, v in scores.items()}}
        return
    q = generated_intentions(rec, split.valid, seed=cfg.seed + 1)
    slider_top = rec.config.get("guidance", {}).get("rho_max")  # chosen on the dev half
    # κ first: the grid is measured with it
    rec.config["guidance"] = {"w": float(w_best), "rho": 0.0, "mode": "turn", "kappa": float(cfg.kappa)}
    rscores, lifts = {}, {}
    for rho in TURN_GRID:
        m = evaluate_recommender(rec, split.valid, 1, w=w_best, rho=rho, intentions=q, seed=cfg.seed).metrics
        rscores[rho], lifts[rho] = m["NDCG@10"], m["HR@10"] / max(hits[w_best], 1e-12)
    rho_best = max(rscores, key=rscores.get)
    keep = [r for r in rscores if lifts[r] >= MIN_LIFT]
    if keep:
        rho_best = max(keep)
    how = (f"the strongest ρ with HR@10 lift ≥ {MIN_LIFT:g}× from generated intentions" if keep
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
