"""`python -m idream new-items`: a and b of the new-item rule, chosen on cold-start checkpoints."""

from __future__ import annotations

from pathlib import Path

from idream.cli.common import CLIError


def add_parser(sub) -> None:
    """The new-items subcommand."""
    ni = sub.add_parser("new-items", help="choose how items without a learned residual are scored, "
                                          "on the validation of cold-start checkpoints",
                        description="Choose a and b of the new-item rule (idream/core/newitems.py: an item "
                                    "added without retraining scores as high as its text is close to "
                                    "the history) on the validation split of checkpoints trained with "
                                    "--cold-frac, and write it into a checkpoint's config.json and model "
                                    "card. Its c (how much a new item's closeness to the intention adds) "
                                    "is chosen on the dev half of hand-written cases: "
                                    "`python -m benchmarks newitems --set-c`.")
    ni.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint folder to update")
    ni.add_argument("--from", dest="sources", nargs="+", default=None, metavar="DIR",
                    help="cold-start checkpoints (same dataset) to choose on, pooled (default: the "
                         "checkpoint itself, which must hold cold items); sets c back to 0")
    ni.add_argument("--off", action="store_true", help="switch the rule off instead")
    ni.add_argument("--threads", type=int, default=0, metavar="N",
                    help="torch threads (0: torch's default; 1 when other work shares the CPU)")


def run(a) -> int:
    """Choose (or switch off) the rule, write it into config.json and the model card."""
    from idream.core.newitems import NewItemRule
    from idream.evaluation.card import write_model_card
    from idream.serving.checkpoint import write_json
    from idream.serving.recommender import Recommender

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    rec = Recommender.load(a.checkpoint)
    rule = NewItemRule() if a.off else _choose(rec, a)
    rec.config["new_items"] = rule.to_dict()
    write_json(Path(a.checkpoint) / "config.json", rec.config)
    if (Path(a.checkpoint) / "README.md").exists():  # the model card says how new items score
        write_model_card(Path(a.checkpoint))
    print(f"{a.checkpoint}: new items " + (f"a = {rule.a:g}, b = {rule.b:g} ({rule.chosen_on})" if rule.on else "off"))
    return 0


def _choose(rec, a):
    """a and b from the validation grids of the cold-start checkpoints, pooled."""
    from idream.evaluation.new_item_choice import pick, validation_grid
    from idream.data.datasets import chronological_split
    from idream.serving.recommender import Recommender

    grids, seeds, fracs = [], [], set()
    for src in a.sources or [a.checkpoint]:
        other = rec if src == a.checkpoint else Recommender.load(src)
        if other.dataset.name != rec.dataset.name:
            raise CLIError(f"{src} was trained on {other.dataset.name}, {a.checkpoint} on {rec.dataset.name}")
        if not len(other.cold_items):
            raise CLIError(f"{src} holds no cold items: train it with --cold-frac")
        split = chronological_split(other.dataset, other.history_len, cold_items=other.cold_items)
        grids.append(validation_grid(other, split.valid))
        seeds.append(str(other.config["train"].get("seed", "?")))
        fracs.add(f"{other.config['train'].get('cold_frac', '?')}")
    return pick(grids, f"validation of {len(grids)} cold-start checkpoint(s) ({rec.dataset.name}, "
                       f"--cold-frac {'/'.join(sorted(fracs))}, seeds {', '.join(seeds)})")
