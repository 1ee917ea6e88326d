"""Moved to :mod:`atriumseg.pipeline.evaluation`; these names stay importable until the trainer and the CLI
import them from there."""

from atriumseg.pipeline.evaluation.evaluate import evaluate
from atriumseg.pipeline.evaluation.pairs import pair_cases
from atriumseg.pipeline.evaluation.table import write_metrics_csv

__all__ = ["evaluate", "pair_cases", "write_metrics_csv"]
