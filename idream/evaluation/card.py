"""A checkpoint's model card (README.md), generated from its config.json and metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from idream.evaluation.report import bars_markdown, quality_checks, results_table
from idream.serving.checkpoint import atomic_write, read_config
from idream.serving.guidance import Guidance

LIMITS = ["## Limits", "",
          "- MovieLens ratings are used as implicit interactions; template descriptions carry "
          "little collaborative signal, which is why the learned residual and ranking loss exist.",
          "- Generated intentions are built from the target's own metadata, so guided numbers "
          "measure how well the model follows an intention, not how well it reads minds.",
          "- Data: MovieLens © GroupLens (F. M. Harper and J. A. Konstan, 2015, \"The MovieLens "
          "Datasets: History and Context\", ACM TiiS 5(4)); not redistributed here.", ""]


def write_model_card(ckpt: Path) -> Path:
    """README.md of a checkpoint, generated from config.json and metrics.json (never typed in)."""
    ckpt = Path(ckpt)
    cfg = read_config(ckpt).to_dict()  # the card reads the JSON as written, records included
    mpath = ckpt / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.exists() else {}
    notes = ckpt / "NOTES.md"
    lines = [*_how_it_was_made(ckpt, cfg), *_results(cfg, metrics), *_training_curve(cfg.get("train_log", {})),
             *_cold_start(metrics.get("cold_start")),
             *([notes.read_text().strip(), ""] if notes.exists() else []), *LIMITS]
    path = ckpt / "README.md"
    text = "\n".join(lines)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _how_it_was_made(ckpt: Path, cfg: dict) -> list[str]:
    """The title, the command that made the checkpoint, and one line per part of the model."""
    tr, m = cfg.get("train", {}), cfg["model"]
    size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
    return [
        f"# iDream checkpoint: {cfg['data']['name']}",
        "",
        "A text-guided diffusion recommender (iDreamRec, arXiv 2410.13428) trained on "
        f"**{cfg['data']['name']}** ({cfg['data']['n_items']} items).",
        "",
        "## How it was made",
        "",
        f"```\n{tr.get('command', 'python -m idream train ...')}\n```",
        "",
        f"- Descriptions: {cfg['text']['descriptions']} ({cfg['text'].get('template_version', '')}); "
        f"text model: `{cfg['text']['name']}` ({cfg['text']['dim']}-d, fixed).",
        f"- Transform: `{cfg['transform']}`. Item vectors: text vector"
        + (" + learned residual (zero for items unseen in training)" if m.get("n_items")
           else " only (the paper's form)")
        + ".",
        "- History encoder: causal self-attention over the history (as SASRec), depth "
        f"{m.get('encoder_depth')}; its last state is one token of the denoiser.",
        f"- Denoiser: width {m['width']}, depth {m['depth']}, heads {m['heads']}, history length "
        f"{m['history_len']}, dropout {m['dropout']}; T={cfg['diffusion']['T']} "
        f"({cfg['diffusion']['schedule']} β).",
        _training_line(tr, cfg.get("train_log", {})),
        _guidance_line(ckpt, cfg.get("guidance", {})),
        _new_items_line(cfg.get("new_items", {})),
        f"- Weights and vectors: {size / 1e6:.1f} MB of safetensors.",
        "",
    ]


def _training_line(tr: dict, tl: dict) -> str:
    """The training settings and how the run ended."""
    k = tr.get("future_k", 1)
    targets = (f"the next {k} items (weights {tr.get('future_decay')}^j; the next alone with an intention)"
               if k > 1 else "the next item")
    return (f"- Training: lr {tr.get('lr')}, batch {tr.get('batch_size')}, condition dropout "
            f"{tr.get('p_uncond')}, intention probability {tr.get('p_intention')}, ranking-loss weight "
            f"{tr.get('ce_weight')} (τ={tr.get('tau')}), ranking targets: {targets}, "
            f"share of targets at t=T−1 {tr.get('p_t_max', 0.0)}, seed {tr.get('seed')}; "
            f"{tl.get('epochs_run', '?')} epochs run, best epoch {tl.get('best_epoch', '?')} "
            f"(validation NDCG@10 {tl.get('best_valid_NDCG@10', '?')}), {tl.get('minutes', '?')} minutes.")


def _guidance_line(ckpt: Path, g: dict) -> str:
    """The default w and ρ, what ρ means, and how they were chosen."""
    line = (f"- Guidance defaults chosen on validation: w = {g.get('w')}, ρ = {g.get('rho')} "
            f"(w grid {g.get('w_grid')}, ρ grid {g.get('rho_grid')}"
            + (f", HR@10 lift per ρ {g.get('rho_lift')}" if g.get("rho_lift") else "") + ").")
    if g.get("mode") != "turn":
        return line
    line += (f" Text-steered (`idream.core.steer`): ρ ∈ [0, 1] turns the oracle toward the intention's text "
             f"direction, the learned term at κρ, κ = {g.get('kappa')}; "
             f"ρ is {g.get('chosen_on', '').split('ρ ', 1)[-1]}; "
             f"re-chosen without retraining by `python -m idream guidance --checkpoint {ckpt}`.")
    if "rho_max" in g:
        line += (f" The slider offers ρ up to {g['rho_max']:g}, the best free-phrased precision on the dev "
                 "half (`python -m benchmarks text --set-slider`).")
    return line


def _new_items_line(n: dict) -> str:
    """How items without a learned residual score."""
    if not n.get("a"):
        return "- New items (no learned residual) rank by their own score alone."
    line = (f"- New items (no learned residual; `idream/core/newitems.py`): score max(own, mean + spread·"
            f"(a·z + b)), z their text closeness to the history; a = {n['a']:g}, b = {n['b']:g}, chosen on "
            f"{n['chosen_on'].split(': ', 1)[0]}; set by `python -m idream new-items`.")
    if n.get("c_chosen_on"):
        line += (f" With an intention, + c·(ρ/ρ₀)·z_q, z_q their text closeness to it; c = {n['c']:g}, chosen "
                 f"on the {n['c_chosen_on'].split(': ', 1)[0]}; set by `python -m benchmarks newitems --set-c`.")
    return line


def _results(cfg: dict, metrics: dict) -> list[str]:
    """Test and validation tables, the commands that wrote their rows, and the shipping bars."""
    lines = ["## Results", "",
             f"Protocol: {metrics.get('protocol', '')}. Machine: {metrics.get('machine', '')}.", "",
             "Test split (read once, to report):", "",
             results_table(metrics) if metrics else "_not evaluated yet_", "",
             "Validation split (what the choices and the shipping bars read):", "",
             results_table(metrics, "valid") if metrics else "_not evaluated yet_", ""]
    cmds = sorted({e["command"] for e in metrics.get("results", {}).values() if e.get("command")})
    if cmds:
        lines += ["Rows written by:", "", "```", *cmds, "```", ""]
    g = Guidance.of(cfg)
    checks = quality_checks(metrics, g.w, g.rho, int(cfg.get("train", {}).get("seed", 0))) if metrics else []
    if checks:
        lines += ["### Shipping bars (validation split, same run)", "", bars_markdown(checks), ""]
    return lines


def _training_curve(tl: dict) -> list[str]:
    """Validation per epoch, as the training log holds it."""
    hist = tl.get("history", [])
    if not hist:
        return []
    lines = ["## Training curve (validation, one-step, unguided, w = 0)", "",
             "| epoch | train MSE | train CE | valid NDCG@10 | valid HR@10 | minutes |",
             "|---|---|---|---|---|---|"]
    for r in hist:
        lines.append(f"| {r['epoch']} | {r.get('mse', '')} | {r.get('ce', '')} | "
                     f"{r['valid_NDCG@10']} | {r['valid_HR@10']} | {r['minutes']} |")
    return lines + [""]


def _cold_start(cs: dict | None) -> list[str]:
    """The cold-start timing, where `python -m benchmarks coldstart` measured it."""
    if not cs:
        return []
    return ["## Cold start", "",
            f"Loading this checkpoint and answering one recommendation from a cold process: "
            f"median {cs['median_s']:.2f} s over {cs['repeats']} runs (max {cs['max_s']:.2f} s) "
            f"on {cs['machine']}, measured by `{cs['command']}`.", ""]
