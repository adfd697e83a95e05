"""The denoiser: a small transformer that predicts the oracle x0 from a noisy target.

A causal transformer reads the history (the items in the transformed text space, as SASRec
does); its state after the latest item, c, conditions the denoiser: a transformer over the
tokens `[c | q | t | x_t]` (the intention or a learned null, the diffusion timestep, the noisy
target). The output at x_t is projected back to the embedding space (DreamRec's x0-parameterisation). Sections
follow facebookresearch/DiT `models.py`: embedders, blocks, final layer, the model, guidance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from idream.core.checks import first, number_problem, string_problem

MAX_DEPTH = 1_000  # a sanity bound on the blocks of a hand-edited config.json


@dataclass
class ModelConfig:
    """Every hyperparameter needed to rebuild the denoiser; saved in config.json."""

    dim: int = 384  # D: dimension of the scoring space (the transformed text, then any ID directions)
    width: int = 128  # transformer width
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    history_len: int = 10  # L
    dropout: float = 0.1
    n_items: int = 0  # rows of the learned item residual (0: pure text vectors, the paper's form)
    residual_scale: float = 1.0  # the residual is stored divided by this (a per-parameter lr knob)
    # "causal": a causal transformer reads the history (as SASRec) and only its last state is a
    # denoiser token, so training can denoise every position of a sequence in one pass (the
    # paper's in-context form, every history item a token: results/experiments/incontext-encoder.patch)
    encoder: str = "causal"
    encoder_depth: int = 2

    def __post_init__(self):
        """Refuse a value that does not describe a denoiser, naming its field (a config.json is
        edited by hand; the encoder's own checks are the Denoiser's)."""
        problem = first(*(number_problem(f"model.{k}", getattr(self, k), lo, hi, integer=True)
                          for k, lo, hi in (("dim", 1, None), ("width", 1, None), ("depth", 1, MAX_DEPTH),
                                            ("heads", 1, None), ("history_len", 1, None),
                                            ("n_items", 0, None), ("encoder_depth", 0, MAX_DEPTH))),
                        number_problem("model.mlp_ratio", self.mlp_ratio, 0),
                        number_problem("model.dropout", self.dropout, 0, 1),
                        number_problem("model.residual_scale", self.residual_scale, 0),
                        string_problem("model.encoder", self.encoder))
        if problem is None:
            problem = first(f"model.width = {self.width} is not a multiple of model.heads = {self.heads}"
                            if self.width % self.heads else None,
                            "model.mlp_ratio = 0: it must be above 0" if self.mlp_ratio == 0 else None,
                            "model.dropout = 1: it must be below 1" if self.dropout == 1 else None)
        if problem:
            raise ValueError(problem)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From config.json's "model": every field given (a default would silently change the
        model), a retired form refused with the patch that brings it back."""
        known = {f.name for f in fields(cls)}
        tried = {k: d[k] for k in RETIRED if k in d and d[k] != RETIRED[k]}
        if tried:  # forms that did not win on validation: results/experiments/adaln-nullspace.patch
            raise ValueError(f"model {tried}: adaLN and the null space left this version "
                             "(results/experiments/adaln-nullspace.patch)")
        if d.get("encoder", "incontext") == "incontext":  # (a config without the key predates the causal one)
            raise ValueError("model: made with the paper's in-context history encoder, which this version no "
                             "longer serves; retrain the model, or apply results/experiments/incontext-encoder.patch")
        unknown = set(d) - known - set(RETIRED)
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        missing = [k for k in known if k not in d]
        if missing:
            raise ValueError(f"model lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in d.items() if k not in RETIRED})

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Embedders
# ---------------------------------------------------------------------------------------------

class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the diffusion step followed by a small MLP (as in DiT)."""

    def __init__(self, width: int, freq_dim: int = 64):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, W)
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class ItemTable(nn.Module):
    """Item vectors z_i = A(e_i) (fixed) plus, optionally, a learned residual r_i (zero-init).

    The residual is the 'beyond the paper' switch: it lets collaborative signal in while the text
    vector stays; items added after training get r = 0, so they need no retraining.
    """

    def __init__(self, z: torch.Tensor, n_residual: int = 0, residual_scale: float = 1.0):
        super().__init__()
        self.register_buffer("z", z.float(), persistent=False)  # (N, D), from the text cache
        self.residual_scale = residual_scale
        self.residual = None
        if n_residual:  # (n_residual, D)
            self.residual = nn.Parameter(torch.zeros(n_residual, z.shape[1]))

    def vectors(self) -> torch.Tensor:  # (N, D)
        if self.residual is None:
            return self.z
        r = self.residual * self.residual_scale
        n = min(r.shape[0], self.z.shape[0])
        return torch.cat([self.z[:n] + r[:n], self.z[n:]], dim=0)


# ---------------------------------------------------------------------------------------------
# Core blocks
# ---------------------------------------------------------------------------------------------

class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x (B, S, W); mask (B, 1, S, S) bool, True where a query may attend to a key
        B, S, W = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, S, W))


class Block(nn.Module):
    """Pre-norm transformer block (nanoGPT style); bidirectional unless given a mask."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class FinalLayer(nn.Module):
    def __init__(self, width: int, dim: int):
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.linear = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W) -> (B, D)
        return self.linear(self.ln(x))


# ---------------------------------------------------------------------------------------------
# The denoiser
# ---------------------------------------------------------------------------------------------

ENCODERS = ("causal",)
# ModelConfig fields of forms that left (the value that meant "off"): adaLN, the null space
RETIRED = {"denoiser": "tokens", "id_dims": 0}


class Denoiser(nn.Module):
    """f(x_t, t, H, q) -> x0, with learned nulls for a dropped/empty history and intention."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"history encoder {cfg.encoder!r}: this version has the causal one alone "
                             "(the paper's in-context form: results/experiments/incontext-encoder.patch)")
        W, L = cfg.width, cfg.history_len
        self.item_proj = nn.Linear(cfg.dim, W)  # history items and the intention share one space
        self.x_proj = nn.Linear(cfg.dim, W)
        self.t_embed = TimestepEmbedder(W)
        self.pos = nn.Parameter(torch.zeros(4, W))  # slot/type embedding of the tokens [c | q | t | x_t]
        self.hist_pos = nn.Parameter(torch.zeros(L, W))  # position in the right-aligned history
        self.encoder = nn.ModuleList(
            Block(W, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.encoder_depth))
        self.encoder_ln = nn.LayerNorm(W)
        self.pad_token = nn.Parameter(torch.zeros(W))  # a short history's empty slots
        self.null_history = nn.Parameter(torch.zeros(W))  # H = ∅ (dropped or empty)
        self.null_intention = nn.Parameter(torch.zeros(W))  # q = ∅
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(W, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.final = FinalLayer(W, cfg.dim)
        self.initialize_weights()

    def initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.pos, self.pad_token, self.null_history, self.null_intention):
            nn.init.normal_(p, std=0.02)
        nn.init.normal_(self.hist_pos, std=0.02)
        # DiT zero-inits its output layer: the first prediction is x0 = 0, the data mean
        nn.init.zeros_(self.final.linear.weight)

    def forward(
        self,
        x_t: torch.Tensor,  # (B, D)
        t: torch.Tensor,  # (B,) int
        history: torch.Tensor,  # (B, L, D) item vectors (anything in PAD slots)
        history_valid: torch.Tensor,  # (B, L) bool: real item in this slot
        has_history: torch.Tensor,  # (B,) bool: False -> the whole history is the null token
        intention: torch.Tensor,  # (B, D)
        has_intention: torch.Tensor,  # (B,) bool: False -> null intention
    ) -> torch.Tensor:  # (B, D) predicted x0
        h = self.history_tokens(history, history_valid)
        return self.denoise(x_t, t, h, has_history, intention, has_intention)

    def history_tokens(self, history: torch.Tensor, history_valid: torch.Tensor) -> torch.Tensor:
        """The denoiser's history token, the encoder's state after the latest item; it does not
        depend on x_t or t, so a sampler computes it once per request.  (B, L, D) -> (B, 1, W)"""
        return self.encode(history, history_valid)[:, -1:]

    def encode(self, history: torch.Tensor, history_valid: torch.Tensor) -> torch.Tensor:
        """Causal states of a right-aligned history: state s has read items ≤ s.  (B, S, D) -> (B, S, W)"""
        S = history.shape[1]
        h = self.item_proj(history)
        h = torch.where(history_valid[..., None], h, self.pad_token)
        x = self.drop(h + self.hist_pos[-S:])
        eye = torch.eye(S, dtype=torch.bool, device=h.device)
        # a query attends to earlier real items and itself (so padded rows never see nothing)
        mask = (torch.tril(torch.ones(S, S, dtype=torch.bool, device=h.device)) & history_valid[:, None, :]) | eye
        mask = mask[:, None]  # (B, 1, S, S)
        for block in self.encoder:
            x = block(x, mask)
        return self.encoder_ln(x)

    def denoise(self, x_t, t, h, has_history, intention, has_intention) -> torch.Tensor:
        """The denoiser over [c | q | t | x_t]; h (B, 1, W) the history token c.  -> (B, D)"""
        h = torch.where(has_history[:, None, None], h, self.null_history)
        q = torch.where(has_intention[:, None], self.item_proj(intention), self.null_intention)
        tokens = torch.cat([h, q[:, None], self.t_embed(t)[:, None], self.x_proj(x_t)[:, None]], 1)
        x = self.drop(tokens + self.pos)  # (B, 4, W)
        for block in self.blocks:
            x = block(x)
        return self.final(x[:, -1])

    def forward_sequence(
        self,
        x_t: torch.Tensor,  # (M, D): noisy targets of the M selected positions
        t: torch.Tensor,  # (M,)
        seq: torch.Tensor,  # (B, S, D) item vectors of B right-aligned sequences
        seq_valid: torch.Tensor,  # (B, S)
        rows: torch.Tensor,  # (M,) and
        cols: torch.Tensor,  # (M,): the sequence and position whose next item each target is
        has_history: torch.Tensor,  # (M,)
        intention: torch.Tensor,  # (M, D)
        has_intention: torch.Tensor,  # (M,)
    ) -> torch.Tensor:  # (M, D)
        """One encoder pass, then denoise the next item at every position (training)."""
        c = self.encode(seq, seq_valid)[rows, cols]  # (M, W)
        return self.denoise(x_t, t, c[:, None], has_history, intention, has_intention)

    def guided(
        self,
        x_t: torch.Tensor,  # (B, D)
        t: torch.Tensor,  # (B,)
        history: torch.Tensor,  # (B, L, D)
        history_valid: torch.Tensor,  # (B, L)
        intention: torch.Tensor,  # (B, D)
        has_intention: torch.Tensor,  # (B,)
        w: torch.Tensor,  # (B,) history guidance weight
        rho: torch.Tensor,  # (B,) intention strength
        tokens: torch.Tensor | None = None,  # history_tokens(history, history_valid), if at hand
    ) -> torch.Tensor:  # (B, D)
        """Classifier-free guidance, the three passes in one batched forward call:

        x̂0 = u + (1 + w)(c_h − u) + ρ(c_hq − c_h), with u = f(x,t,∅,∅), c_h = f(x,t,H,∅),
        c_hq = f(x,t,H,q). Rows without an intention (or with ρ = 0) use c_hq = c_h.
        """
        B = x_t.shape[0]
        has_h = history_valid.any(dim=1)
        need_q = has_intention & (rho != 0)
        qi = need_q.nonzero().squeeze(1)
        no = torch.zeros(B, dtype=torch.bool, device=x_t.device)
        yes = torch.ones(B, dtype=torch.bool, device=x_t.device)
        h = self.history_tokens(history, history_valid) if tokens is None else tokens
        out = self.denoise(
            torch.cat([x_t, x_t, x_t[qi]]),
            torch.cat([t, t, t[qi]]),
            torch.cat([h, h, h[qi]]),
            torch.cat([no, has_h, has_h[qi]]),
            torch.cat([intention, intention, intention[qi]]),
            torch.cat([no, no, yes[: len(qi)]]),
        )
        u, c_h = out[:B], out[B: 2 * B]
        c_hq = c_h.clone()
        c_hq[qi] = out[2 * B:]
        return u + (1 + w[:, None]) * (c_h - u) + rho[:, None] * (c_hq - c_h)
