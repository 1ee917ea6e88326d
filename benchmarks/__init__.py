"""Benchmarks of issue 6: inference, training and batch throughput against baselines measured in the same run.

Run each from the repository root with ``python -m benchmarks.NAME`` (``--quick`` for a smoke run);
they print a table and write ``benchmarks/results/NAME.json``. Never collected as tests.
"""
