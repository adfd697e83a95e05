"""The evaluation protocol: full-ranking metrics and evaluation of recommenders on a split."""
