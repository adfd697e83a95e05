"""Where an iDream training step's time goes on ML-1M (one thread): torch's profiler over 20
steps, self CPU time grouped into the matrix products, the optimizer, dropout and the rest. An
argument is JSON of TrainConfig fields (e.g. '{"precision": "bf16", "negatives": 512}').

    python results/experiments/step-profile.py '{"precision": "bf16", "negatives": 512}'
"""
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
torch.set_num_threads(1)
from benchmarks.epoch import _idream_stepper  # noqa: E402
from idream.training.train import TrainConfig  # noqa: E402

GROUPS = {"matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
          "dropout draws": ("aten::bernoulli_",)}
STEPS = 20

over = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
cfg = TrainConfig(dataset=str(Path(__file__).resolve().parents[3] / "shared/data/ml-1m"), **over)
step, *_ = _idream_stepper(cfg)
for _ in range(5):
    step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(STEPS):
        step()
events = prof.key_averages()
total = sum(e.self_cpu_time_total for e in events) / 1e3 / STEPS  # ms per step
opt = next((e.cpu_time_total for e in events if e.key.startswith("Optimizer.step")), 0) / 1e3 / STEPS
shares = {g: sum(e.self_cpu_time_total for e in events if e.key in ops) / 1e3 / STEPS for g, ops in GROUPS.items()}
shares["optimizer step (AdamW, all its ops)"] = opt
shares["everything else (casts, copies, elementwise, indexing, autograd)"] = total - sum(shares.values())
print(f"# {json.dumps(over)}: {total:.1f} ms per step under the profiler")
for g, ms in shares.items():
    print(f"{g}: {ms:.1f} ms ({ms / total:.0%})")
