"""Helpers shared by the app tests and the speed script: a tiny checkpoint, a served app."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

TINY_TRAIN_ARGS = ["--epochs", "1", "--max-train-samples", "3000", "--width", "32", "--depth", "1",
                   "--no-eval", "--quiet"]
_SERVED: dict[str, tuple] = {}


def tiny_checkpoint(folder: str | Path, dataset: str = "ml-100k") -> Path:
    """Train a small checkpoint into folder once (seconds: 1 epoch on 3,000 samples, width 32)."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        cmd = [sys.executable, "-m", "idream", "train", "--dataset", dataset, "--out", str(folder),
               *TINY_TRAIN_ARGS]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(checkpoint: str | Path, background_umap: bool = True) -> tuple:
    """Build and launch the app on 127.0.0.1 on a free port, once per process: (blocks, url)."""
    key = str(Path(checkpoint).resolve())
    if key not in _SERVED:
        import torch

        from .app import build_app, launch_kwargs
        from .service import blas_threads, set_blas_threads

        threads, blas = torch.get_num_threads(), blas_threads()
        demo = build_app(str(checkpoint), background_umap=background_umap)
        torch.set_num_threads(threads)  # leave the rest of a test session as it was
        set_blas_threads(blas)
        opts = dict(launch_kwargs(), server_name="127.0.0.1", server_port=free_port(),
                    prevent_thread_lock=True, quiet=True, ssr_mode=False)
        _, url, _ = demo.launch(**opts)
        _SERVED[key] = (demo, url.rstrip("/") + "/")
    return _SERVED[key]
