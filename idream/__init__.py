"""iDream: text-guided diffusion for sequential recommendation (iDreamRec, arXiv 2410.13428)."""

__version__ = "0.1.0"
