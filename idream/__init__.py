"""iDream: text-guided diffusion for sequential recommendation (iDreamRec, arXiv 2410.13428).

The public API, imported on first use so that `import idream` (and the CLI) stays light:

    from idream import Recommender
    rec = Recommender.load("checkpoints/ml-100k")
    out = rec.recommend(["Toy Story (1995)"], intention="something light and funny")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "Recommender": "serving.recommender",
    "Recommendation": "serving.recommender",
    "UnknownItemError": "serving.recommender",
    "load_checkpoint": "serving.recommender",
    "load_dataset": "data.datasets",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and editors only; at run time the names load lazily
    from idream.data.datasets import load_dataset
    from idream.serving.recommender import Recommendation, Recommender, UnknownItemError, load_checkpoint


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'idream' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
