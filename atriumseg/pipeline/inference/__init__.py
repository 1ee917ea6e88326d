"""Inference: the Segmenter and the pieces it orchestrates (device policy, TTA, slice inferers, restoration)."""
