"""Batch applications: input discovery, the runner, per-case records and reports, QC pictures."""
