"""``tools/pilot_table.py``: designs set beside a pilot on the pilot's cases only, a left-out case, a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_tool

from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.evaluation.table import write_metrics_csv


def _scores(path: Path, dice: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_metrics_csv([(case, CaseMetrics(d, 3.0, 1.0, 95.0, 100.0, -5.0, 5.0)) for case, d in dice.items()], path)


def test_the_other_designs_are_read_on_the_pilots_cases_only(tmp_path: Path) -> None:
    pilot_table = load_tool("pilot_table")
    _scores(tmp_path / "pilot" / "LA2018_LGE.partial.csv", {"a": 0.90, "dark": 0.50})
    _scores(tmp_path / "full" / "LA2018_LGE.csv", {"a": 0.92, "dark": 0.40, "other_fold": 0.10})
    text = pilot_table.table([("pilot", tmp_path / "pilot"), ("full", tmp_path / "full")], without=("dark",))
    rows = {line.split(" | ")[1]: line for line in text.splitlines()[2:]}
    assert set(rows) == {"pilot", "full"} and "LeftAtrium" not in text  # a dataset the pilot lacks is no row
    assert "| 0.7000 | 0.9000 | 0.500 (dark) |" in rows["pilot"]
    assert "| 0.6600 | 0.9200 | 0.400 (dark) |" in rows["full"]  # the other fold's case is not read
    assert rows["full"].endswith("| 1 of 2 |")


def test_a_design_without_one_of_the_pilots_cases_is_refused_by_name(tmp_path: Path) -> None:
    pilot_table = load_tool("pilot_table")
    _scores(tmp_path / "pilot" / "LeftAtrium.partial.csv", {"la_003": 0.9, "la_004": 0.9})
    _scores(tmp_path / "other" / "LeftAtrium.csv", {"la_003": 0.9})
    with pytest.raises(ValueError, match="design 'other' has no LeftAtrium figures for la_004"):
        pilot_table.table([("pilot", tmp_path / "pilot"), ("other", tmp_path / "other")])
