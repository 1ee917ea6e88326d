"""Evaluation of any model against reference labels: pairing images with labels, segmenting them as users do,
and the per-case table (CSV and printed summary). The metrics themselves live in ``pipeline.analysis.metrics``."""
