"""Answering requests from a checkpoint: the recommender, request checks, the index, batching,
ranks of given items, and checkpoint folders (local or on the Hub)."""
