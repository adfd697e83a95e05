"""UMAP maps of the catalog: raw text embeddings E and the model's whitened item vectors z.

The catalog's 2-D coordinates are fitted once (`python -m demo.precompute`) and saved next to
the checkpoint as `umap.safetensors` (no pickle). At start-up they are read back; new points
(intention, oracle, denoising path, new items) are placed by a k-nearest-neighbour average of
those coordinates, so no UMAP is fitted while the app serves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FILE = "umap.safetensors"
FORMAT = "idream-umap-v1"
SPACES = ("raw", "whitened")
PARAMS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "n_components": 2,
          "random_state": 42, "init": "spectral"}
KNN = 10  # neighbours for the fallback placement
KNN_TEMPERATURE = 0.05  # softmax temperature over cosine similarities


def space_vectors(rec) -> dict[str, np.ndarray]:
    """The two item matrices drawn side by side.  {space: (N, D)}"""
    return {"raw": np.asarray(rec.embeddings, dtype=np.float32),
            "whitened": rec.item_vectors().numpy().astype(np.float32)}


def fingerprint(vectors: dict[str, np.ndarray]) -> str:
    """Short hash of the item matrices, so saved coordinates never outlive their checkpoint."""
    h = hashlib.sha256()
    for s in SPACES:
        h.update(np.ascontiguousarray(vectors[s], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def fit_umap(X: np.ndarray, params: dict = PARAMS):
    """A fitted umap.UMAP on X (imported here: umap and numba are slow to import)."""
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and numba notes
        return umap.UMAP(**params).fit(X)


def cache_path(fp: str) -> Path:
    """Where coordinates go when the checkpoint folder is read-only."""
    from idream.text import default_cache_dir

    return default_cache_dir() / "umap" / f"{fp}.safetensors"


def save_coords(path: Path, coords: dict[str, np.ndarray], fp: str, params: dict = PARAMS,
                seconds: float | None = None) -> Path:
    """Write coordinates and the parameters that made them (atomic rename)."""
    from idream.serving.checkpoint import atomic_write
    from safetensors.numpy import save_file

    tensors = {s: np.ascontiguousarray(coords[s], dtype=np.float32) for s in SPACES}
    meta = {"format": FORMAT, "fingerprint": fp, "params": json.dumps(params, sort_keys=True),
            "n_items": str(len(tensors["raw"])), "seconds": f"{seconds or 0:.1f}"}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def load_coords(path: Path, fp: str, params: dict = PARAMS) -> tuple[dict | None, str]:
    """Saved coordinates when they match this checkpoint and these parameters, else (None, why)."""
    from safetensors import safe_open

    if not Path(path).exists():
        return None, "absent"
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            coords = {s: f.get_tensor(s) for s in SPACES}
    except Exception as e:  # a truncated or foreign file raises many kinds of errors
        return None, f"unreadable ({type(e).__name__})"
    if meta.get("format") != FORMAT or meta.get("fingerprint") != fp:
        return None, "made for other item vectors"
    try:
        saved_params = json.loads(meta.get("params", "{}"))
    except ValueError:
        return None, "unreadable (parameters are not JSON)"
    if saved_params != json.loads(json.dumps(params)):
        return None, "made with other UMAP parameters"
    return coords, "ok"


def compute_coords(vectors: dict[str, np.ndarray], params: dict = PARAMS) -> tuple[dict, dict]:
    """Fit both spaces: (coords {space: (N, 2)}, fitted UMAP models {space: UMAP})."""
    models = {s: fit_umap(vectors[s], params) for s in SPACES}
    return {s: models[s].embedding_.astype(np.float32) for s in SPACES}, models


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class Projection:
    """Catalog coordinates per space, and `place` for new points (a k-NN average of the saved
    coordinates: where UMAP.transform would start them, in a millisecond, with no refit)."""

    def __init__(self, vectors: dict[str, np.ndarray], coords: dict[str, np.ndarray],
                 params: dict = PARAMS, source: str = ""):
        self.coords = {s: np.asarray(coords[s], dtype=np.float32) for s in SPACES}  # (N, 2)
        self.params = params
        self.source = source  # where the coordinates came from, for the About tab
        self._unit = {s: _unit(np.asarray(vectors[s], dtype=np.float32)) for s in SPACES}
        self.fit_seconds: float | None = None

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def for_checkpoint(cls, rec, checkpoint: str | Path, background: bool = True) -> "Projection":
        """Saved coordinates, or fit them now and save them (`background` is kept for callers:
        placing new points needs no fitted UMAP any more)."""
        vectors = space_vectors(rec)
        fp = fingerprint(vectors)
        for path in (Path(checkpoint) / FILE, cache_path(fp)):
            coords, why = load_coords(path, fp)
            if coords is not None:
                return cls(vectors, coords, source=str(path))
            if why != "absent":
                log.warning("%s is %s; recomputing the UMAP coordinates", path, why)
        log.warning("no UMAP coordinates for %s yet: fitting them now (once; run "
                    "`python -m demo.precompute --checkpoint %s` to ship them)", checkpoint, checkpoint)
        t0 = time.perf_counter()
        coords, _ = compute_coords(vectors)
        seconds = time.perf_counter() - t0
        path = write_coords(checkpoint, coords, fp, seconds)
        proj = cls(vectors, coords, source=str(path))
        proj.fit_seconds = seconds
        return proj

    @property
    def ready(self) -> bool:
        """Always: new points are placed from the saved coordinates alone."""
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Nothing to wait for (there is no background fit); True, as `ready`."""
        return True

    @property
    def method(self) -> str:
        """How new points are placed, for figure subtitles."""
        return f"new points placed by a {KNN}-NN average of the catalog's map positions"

    # -- placing new points ------------------------------------------------------------------
    def place(self, space: str, points: np.ndarray) -> np.ndarray:
        """2-D positions of new vectors in one space.  (n, D) -> (n, 2)

        A softmax-weighted average of the coordinates of the KNN most cosine-similar catalog
        items: UMAP.transform's own starting point, which its optimisation then moves a little,
        at a third of a second per panel and click on this machine, after a refit that takes both
        cores for minutes on a large catalog (results/page-speed.md)."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, self._unit[space].shape[1])
        if len(points) == 0:
            return np.zeros((0, 2), dtype=np.float32)
        sims = _unit(points) @ self._unit[space].T  # (n, N)
        k = min(KNN, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (n, k)
        s = np.take_along_axis(sims, top, axis=1)
        w = np.exp((s - s.max(axis=1, keepdims=True)) / KNN_TEMPERATURE)
        w /= w.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkc->nc", w, self.coords[space][top]).astype(np.float32)

    knn_place = place  # the name this placement had beside UMAP.transform


def write_coords(checkpoint: str | Path, coords: dict, fp: str, seconds: float | None = None) -> Path:
    """Save next to the checkpoint, or in the user cache when the folder is read-only."""
    target = Path(checkpoint) / FILE
    if os.access(Path(checkpoint), os.W_OK):
        try:
            return save_coords(target, coords, fp, seconds=seconds)
        except OSError as e:
            log.warning("cannot write %s (%s); using the user cache", target, e)
    return save_coords(cache_path(fp), coords, fp, seconds=seconds)
