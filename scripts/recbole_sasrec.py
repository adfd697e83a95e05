"""Cross-check: RecBole 1.2.1's SASRec on exactly our ml-100k sequences and split.

    python scripts/recbole_sasrec.py --venv-python /work/recbole-venv/bin/python [--out results]

RecBole 1.2.1 needs numpy<2, so it runs in a virtual environment of its own (outside the repo):

    python -m venv /work/recbole-venv
    /work/recbole-venv/bin/pip install recbole==1.2.1 "numpy<2" "setuptools<81" torch==2.13.0 \
        "pandas<2.2" "scipy<1.14" "scikit-learn<1.6"

What it does:
1. With the project's Python: loads ml-100k with `idream.data.datasets.load_dataset` (all 100,000 ratings
   as implicit interactions, each user's items in time order, ties in file order, repeats
   dropped) and writes them as a RecBole atomic file `idream-ml-100k.inter` (user_id, item_id,
   timestamp) in a temp folder (not `ml-100k.inter`: for that name RecBole 1.2.1 reads its own
   bundled copy whatever data_path says). The timestamp is the item's position in the user's ordered
   sequence, so RecBole's time ordering (`order: TO`) reproduces our order exactly, ties included.
2. Runs itself (`--run-recbole`) under the venv's Python with one torch thread: RecBole builds
   its chronological leave-one-out split (`split: {LS: valid_and_test}`: last item test,
   second last valid), trains SASRec with full-softmax CE, early-stops on validation NDCG@10 and
   evaluates on test with full ranking over all items. It checks that RecBole saw the same
   users, items, interactions, per-user sequences and valid/test targets as our loader.
3. Writes results/recbole-sasrec-ml-100k.json and .md (`--render` rewrites the .md from the .json,
   e.g. after adding a "timing_note" to the JSON).

Our protocol masks every earlier item of the user when ranking (idream.ranking.mask_seen), but
RecBole 1.2.1 masks nothing for sequential models (its FullSortEvalDataLoader passes no history
for them). So the trainer here is RecBole's own `Trainer` with one change: full-sort scores get
the user's earlier items set to -inf, for validation (early stopping) and test alike. RecBole's
unmasked test figures for the same checkpoint are reported beside them.

Our SASRec evaluates every 2 epochs and stops after 10 evaluations without a strictly better
validation NDCG@10; RecBole stops after `stopping_step` + 1 evaluations without a result >= the
best, so this uses eval_step 2 and stopping_step 9 (the same 20-epoch patience).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET = "ml-100k"
# RecBole 1.2.1 ignores data_path for a dataset named "ml-100k" (it reads its bundled copy, with the
# original timestamps, and adds its ml-100k property file), so our export gets a name of its own.
RB_DATASET = "idream-ml-100k"
RESULT_NAME = "recbole-sasrec-ml-100k"
METRIC_KEYS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")
VENV_HELP = ('python -m venv /work/recbole-venv && /work/recbole-venv/bin/pip install recbole==1.2.1 '
             '"numpy<2" "setuptools<81" torch==2.13.0 "pandas<2.2" "scipy<1.14" "scikit-learn<1.6"')

# Everything RecBole is told; the rest are RecBole 1.2.1's defaults (the full resolved config is
# saved in the JSON). Values match benchmarks.peers.sasrec.SASRecConfig where ours has an equivalent.
RECBOLE_CONFIG = {
    # data: exactly the interactions in the atomic file, nothing filtered, nothing downloaded
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "TIME_FIELD": "timestamp",
    "RATING_FIELD": None,
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "rm_dup_inter": None,
    "val_interval": None,
    "filter_inter_by_user_or_item": False,
    "user_inter_num_interval": "[0,inf)",
    "item_inter_num_interval": "[0,inf)",
    "normalize_all": False,
    "MAX_ITEM_LIST_LENGTH": 50,
    # protocol
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                  "group_by": "user"},
    "repeatable": True,
    "metrics": ["Hit", "NDCG"],
    "topk": [5, 10, 20],
    "valid_metric": "NDCG@10",
    "valid_metric_bigger": True,
    "metric_decimal_place": 6,
    "eval_batch_size": 4096,
    # model (RecBole's SASRec: post-LN transformer, GELU, learned positions)
    "hidden_size": 64,
    "inner_size": 256,
    "n_layers": 2,
    "n_heads": 2,
    "hidden_dropout_prob": 0.2,
    "attn_dropout_prob": 0.2,
    "loss_type": "CE",
    "train_neg_sample_args": None,
    # training
    "learner": "adam",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "train_batch_size": 128,
    "epochs": 200,
    "eval_step": 2,
    "stopping_step": 9,
    "seed": 0,
    "reproducibility": True,
    # environment
    "use_gpu": False,
    "worker": 0,
    "show_progress": False,
    "state": "WARNING",
    "save_dataset": False,
    "save_dataloaders": False,
    "log_wandb": False,
}


# -- part 1: the project's Python ---------------------------------------------------------------

def export_atomic(folder: Path) -> dict:
    """Write our ml-100k sequences as folder/idream-ml-100k/idream-ml-100k.inter; our counts."""
    sys.path.insert(0, str(ROOT))
    from idream.data.datasets import chronological_split, load_dataset, test_cases

    ds = load_dataset(DATASET)
    split = chronological_split(ds, 10)
    item_ids = ds.items["item_id"].tolist()
    d = folder / RB_DATASET
    d.mkdir(parents=True)
    n = 0
    with open(d / f"{RB_DATASET}.inter", "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, seq in ds.sequences.items():
            for pos, i in enumerate(seq.tolist()):
                f.write(f"{u}\t{item_ids[i]}\t{pos}\n")
                n += 1
    interacted = {int(i) for s in ds.sequences.values() for i in s.tolist()}
    return {
        "users": len(ds.sequences),
        "items": ds.n_items,
        "items_with_interactions": len(interacted),
        "interactions": n,
        "valid_cases": len(split.valid),
        "test_cases": len(test_cases(ds, 10)),
        "source": ds.source,
    }


def git_info() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "data_py_modified": bool(git("status", "--porcelain", "--", "idream/data/datasets.py"))}


def venv_ok(python: str) -> bool:
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return False
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('recbole') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv-python", default="/work/recbole-venv/bin/python",
                    help="python of the virtual environment that has recbole==1.2.1")
    ap.add_argument("--out", default=str(ROOT / "results"), help="folder for the results files")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp folder (logs, checkpoint)")
    ap.add_argument("--epochs", type=int, default=RECBOLE_CONFIG["epochs"],
                    help="most training epochs (lower it only for a smoke test)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the .md from the .json in --out")
    ap.add_argument("--run-recbole", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_recbole:
        return run_recbole(Path(args.data_dir), Path(args.result), args.epochs)
    if args.render:
        out = Path(args.out)
        report = json.loads((out / f"{RESULT_NAME}.json").read_text(encoding="utf-8"))
        (out / f"{RESULT_NAME}.md").write_text(render_md(report), encoding="utf-8")
        return 0

    if not venv_ok(args.venv_python):
        print(f"error: no python with recbole==1.2.1 at {args.venv_python}; create it with: "
              f"{VENV_HELP}", file=sys.stderr)
        return 2

    t_wall = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="recbole-sasrec-"))
    ours = export_atomic(tmp / "data")
    print(f"exported {ours['interactions']} interactions of {ours['users']} users to {tmp}",
          flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    result_path = tmp / "recbole-result.json"
    # cwd = tmp: RecBole writes its log/ and log_tensorboard/ folders into the working directory
    rc = subprocess.run([args.venv_python, str(Path(__file__).resolve()), "--run-recbole",
                         "--data-dir", str(tmp / "data"), "--result", str(result_path),
                         "--epochs", str(args.epochs)],
                        cwd=tmp, env=env).returncode
    if rc != 0 or not result_path.exists():
        print(f"error: the RecBole run failed (exit {rc}); its files are in {tmp}", file=sys.stderr)
        return 1
    rb = json.loads(result_path.read_text())

    sys.path.insert(0, str(ROOT))
    from benchmarks.results import machine

    seen = rb["counts"]
    checks = {
        "users_equal": seen["users"] == ours["users"],
        "items_equal": seen["items"] == ours["items"],
        "interactions_equal": seen["interactions"] == ours["interactions"],
        "test_cases_equal": seen["test_cases"] == ours["test_cases"],
        "valid_cases_equal": seen["valid_cases"] == ours["valid_cases"],
        **rb["checks"],
    }
    report = {
        "what": "RecBole 1.2.1 SASRec on our ml-100k sequences and chronological leave-one-out "
                "split; full ranking over all items, the user's earlier items masked",
        "command": "python scripts/recbole_sasrec.py --venv-python " + args.venv_python,
        "test": rb["test"],
        "test_recbole_native_unmasked": rb["test_unmasked"],
        "best_valid_NDCG@10": rb["best_valid_NDCG@10"],
        "best_epoch": rb["best_epoch"],
        "epochs_run": rb["epochs_run"],
        "train_seconds": rb["train_seconds"],
        "train_cpu_seconds": rb.get("train_cpu_seconds"),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "wall_seconds": round(time.time() - t_wall, 1),
        "torch_threads": rb["torch_threads"],
        "counts_ours": ours,
        "counts_recbole": seen,
        "checks": checks,
        "all_checks_pass": all(checks.values()),
        "recbole_config": dict(RECBOLE_CONFIG, epochs=args.epochs),
        "recbole_config_resolved": rb["config_resolved"],
        "valid_curve": rb["valid_curve"],
        "versions": rb["versions"],
        "machine": machine(),
        "git": git_info(),
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{RESULT_NAME}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / f"{RESULT_NAME}.md").write_text(render_md(report), encoding="utf-8")
    if not args.keep_tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    t = report["test"]
    print(f"test HR@10={t['HR@10']:.4f} NDCG@10={t['NDCG@10']:.4f}; checks "
          f"{'pass' if report['all_checks_pass'] else 'FAIL'}; wrote {out / RESULT_NAME}.json/.md")
    return 0 if report["all_checks_pass"] else 1


def render_md(r: dict) -> str:
    t, u, c = r["test"], r["test_recbole_native_unmasked"], r["counts_recbole"]
    cfg = r["recbole_config"]
    head = "| | " + " | ".join(METRIC_KEYS) + " |\n|---|" + "---|" * len(METRIC_KEYS) + "\n"

    def row(name, m):
        return f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRIC_KEYS) + " |\n"
    checks = "all equal to ours" if r["all_checks_pass"] else "MISMATCH: see the JSON checks"
    cpu = (f" ({r['train_cpu_seconds'] / 60:.1f} min CPU)" if r.get("train_cpu_seconds") else "")
    note = f" {r['timing_note']}" if r.get("timing_note") else ""
    return (
        "RecBole 1.2.1's SASRec, trained and tested on exactly our ml-100k sequences and split "
        f"({c['users']} users, {c['items']} items, {c['interactions']:,} interactions, "
        f"per-user sequences and valid/test targets {checks}): chronological leave-one-out, "
        "full ranking over all items with the user's earlier items masked (RecBole masks none "
        "for sequential models; its own unmasked figures for the same checkpoint are in the "
        f"second row). Config: max length {cfg['MAX_ITEM_LIST_LENGTH']}, hidden "
        f"{cfg['hidden_size']}, {cfg['n_layers']} blocks, {cfg['n_heads']} heads, dropout "
        f"{cfg['hidden_dropout_prob']}, Adam lr {cfg['learning_rate']:g}, batch "
        f"{cfg['train_batch_size']}, full-softmax CE, validation every {cfg['eval_step']} epochs, "
        f"early stop on validation NDCG@10 after {cfg['stopping_step'] + 1} evaluations without "
        f"improvement, seed {cfg['seed']}. Best validation NDCG@10 {r['best_valid_NDCG@10']:.4f} "
        f"at epoch {r['best_epoch']} of {r['epochs_run']}; training {r['train_seconds'] / 60:.1f} "
        f"min wall{cpu} on {r['machine']} with {r['torch_threads']} torch thread; commit "
        f"`{r['git']['commit'][:7]}`, {r['date']}.{note}\n\n"
        + head + row("RecBole SASRec, test (our protocol: earlier items masked)", t)
        + row("RecBole SASRec, test (RecBole native: nothing masked)", u)
        + f"\nCommand: `{r['command']}`\n"
    )


# -- part 2: the venv's Python ------------------------------------------------------------------

def run_recbole(data_dir: Path, result_path: Path, epochs: int) -> int:
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value pairs from the command line
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    cfg = dict(RECBOLE_CONFIG, epochs=epochs, data_path=str(data_dir),
               checkpoint_dir=str(data_dir.parent / "saved"))
    config = Config(model="SASRec", dataset=RB_DATASET, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    uid_f, iid_f, time_f = dataset.uid_field, dataset.iid_field, dataset.time_field

    # our sequences, from the file we wrote (already in order), in RecBole's internal ids
    raw = pd.read_csv(data_dir / RB_DATASET / f"{RB_DATASET}.inter", sep="\t", dtype=str)
    raw.columns = [c.split(":")[0] for c in raw.columns]
    raw["u"] = dataset.token2id(uid_f, raw["user_id"].tolist())
    raw["i"] = dataset.token2id(iid_f, raw["item_id"].tolist())
    ours = {int(u): g["i"].to_numpy(np.int64) for u, g in raw.groupby("u", sort=False)}
    position = {u: {int(i): p for p, i in enumerate(s)} for u, s in ours.items()}

    # what RecBole holds, ordered by its time field
    feat = dataset.inter_feat
    df = pd.DataFrame({"u": np.asarray(feat[uid_f]), "i": np.asarray(feat[iid_f]),
                       "t": np.asarray(feat[time_f])})  # a DataFrame until data_preparation
    df = df.sort_values(["u", "t"], kind="stable")
    theirs = {int(u): g["i"].to_numpy(np.int64) for u, g in df.groupby("u", sort=False)}
    same_sequences = ours.keys() == theirs.keys() and all(
        np.array_equal(ours[u], theirs[u]) for u in ours)
    # timestamps are positions: 0..len-1 per user, so RecBole read our file and nothing else
    read_ours = bool(np.array_equal(
        df["t"].to_numpy(), np.concatenate([np.arange(len(theirs[u])) for u in theirs])))
    counts = {"users": dataset.user_num - 1,  # RecBole's id 0 is padding
              "items": dataset.item_num - 1,
              "interactions": dataset.inter_num}

    train_data, valid_data, test_data = data_preparation(config, dataset)

    def targets(loader) -> dict:
        f = loader._dataset.inter_feat
        return dict(zip(f[uid_f].tolist(), f[iid_f].tolist()))

    valid_t, test_t = targets(valid_data), targets(test_data)
    eligible = [u for u, s in ours.items() if len(s) >= 3]
    checks = {
        "recbole_read_our_file": read_ours and os.path.samefile(config["data_path"],
                                                                data_dir / RB_DATASET),
        "sequences_identical": bool(same_sequences),
        "test_targets_are_last_items": test_t == {u: int(ours[u][-1]) for u in eligible},
        "valid_targets_are_second_last_items": valid_t == {u: int(ours[u][-2]) for u in eligible},
    }

    class MaskedTrainer(Trainer):
        """RecBole's Trainer; full-sort scores of the user's earlier items set to -inf."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.mask_history = True
            self.epochs_run = 0
            self.valid_curve = []

        def _train_epoch(self, *a, **k):
            self.epochs_run += 1
            return super()._train_epoch(*a, **k)

        def _valid_epoch(self, *a, **k):
            score, result = super()._valid_epoch(*a, **k)
            self.valid_curve.append({"epoch": self.epochs_run, **{k2: float(v) for k2, v in result.items()}})
            print(f"recbole sasrec epoch={self.epochs_run} valid_NDCG@10={score:.5f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
            return score, result

        def _full_sort_batch_eval(self, batched_data):
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
            if self.mask_history:
                rows, cols = [], []
                for r, (u, t) in enumerate(zip(interaction[uid_f].tolist(), interaction[iid_f].tolist())):
                    earlier = ours[u][:position[u][t]]
                    rows.append(np.full(len(earlier), r))
                    cols.append(earlier)
                scores[torch.as_tensor(np.concatenate(rows)), torch.as_tensor(np.concatenate(cols))] = -np.inf
            return interaction, scores, positive_u, positive_i

    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = MaskedTrainer(config, model)
    t0, c0 = time.time(), time.process_time()
    best_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                                verbose=False)
    train_seconds, train_cpu_seconds = time.time() - t0, time.process_time() - c0
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    trainer.mask_history = False
    test_unmasked = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    best = max(trainer.valid_curve, key=lambda e: (e["ndcg@10"], e["epoch"]))  # RecBole keeps ties' later

    def metrics(res) -> dict:
        return {k: round(float(res[k.replace("HR", "hit").lower()]), 5) for k in METRIC_KEYS}

    resolved = {k: v for k, v in config.final_config_dict.items()
                if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
    out = {
        "test": metrics(test),
        "test_unmasked": metrics(test_unmasked),
        "best_valid_NDCG@10": round(float(best_score), 5),
        "best_epoch": best["epoch"],
        "epochs_run": trainer.epochs_run,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),  # differs from wall on a busy machine
        "torch_threads": torch.get_num_threads(),
        "counts": {
            **counts,
            "train_samples": train_data._dataset.inter_num,
            "valid_cases": valid_data._dataset.inter_num,
            "test_cases": test_data._dataset.inter_num,
        },
        "checks": checks,
        "valid_curve": [{"epoch": e["epoch"], "NDCG@10": round(e["ndcg@10"], 5),
                         "HR@10": round(e["hit@10"], 5)} for e in trainer.valid_curve],
        "config_resolved": json.loads(json.dumps(resolved, default=str)),
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "pandas": pd.__version__,
                     "python": sys.version.split()[0]},
    }
    result_path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
