"""Datasets and their splits, the item matrix built from text, and generated intentions."""
