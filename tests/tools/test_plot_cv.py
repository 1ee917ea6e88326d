"""``tools/plot_cv.py``: a picture of several designs' out-of-fold CSVs, and a clear refusal when one is missing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import matplotlib.image
import pytest
from helpers import load_tool

from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.evaluation.table import write_metrics_csv
from atriumseg.pipeline.training.validation import read_metrics_csv


@pytest.fixture(scope="module")
def plot_cv() -> ModuleType:
    return load_tool("plot_cv")


def _design(folder: Path, datasets: tuple[str, ...], dice: float) -> Path:
    for name in datasets:
        rows = [(f"{name}_{i}", CaseMetrics(dice - i / 10, 3.0, 1.0, 90.0 + i, 100.0, -10.0 + i, 10.0 - i))
                for i in range(3)]
        write_metrics_csv(rows, folder / f"{name}.csv")
    (folder / f"{datasets[0]}.partial.csv").write_text("case,dice\n")  # progress files are not designs' figures
    return folder


def test_plots_every_dataset_of_every_design(plot_cv: ModuleType, tmp_path: Path) -> None:
    both = ("LA2018_LGE", "LeftAtrium")
    designs = [("old", _design(tmp_path / "old", both, 0.9)), ("new", _design(tmp_path / "new", both, 0.95))]
    picture = plot_cv.plot(designs, tmp_path / "out" / "cv.png")
    height, width = matplotlib.image.imread(picture).shape[:2]
    assert 1.2 < width / height < 1.6  # two dataset columns (not the partial file's third), two rows


def test_close_case_labels_go_one_line_lower_each(plot_cv: ModuleType) -> None:
    assert plot_cv.lines_below([0.84, 0.843, 0.70, 0.835, 0.80]) == [1, 0, 0, 2, 0]
    assert plot_cv.lines_below([0.845, 0.840, 0.850]) == [1, 2, 0]  # the highest on top, whatever the rows' order


def test_a_design_missing_a_dataset_is_named(plot_cv: ModuleType, tmp_path: Path) -> None:
    designs = [("old", _design(tmp_path / "old", ("A", "B"), 0.9)), ("new", _design(tmp_path / "new", ("A",), 0.9))]
    with pytest.raises(ValueError, match=r"design 'new': no .*B\.csv"):
        plot_cv.plot(designs, tmp_path / "cv.png")
    assert not (tmp_path / "cv.png").exists()


def test_table_pairs_every_design_with_the_last(plot_cv: ModuleType, tmp_path: Path) -> None:
    old, new = _design(tmp_path / "old", ("LeftAtrium",), 0.9), _design(tmp_path / "new", ("LeftAtrium",), 0.95)
    lines = plot_cv.table([("old", old), ("new", new)]).splitlines()
    # Dice 0.9, 0.8, 0.7 (old) against 0.95, 0.85, 0.75 (new); |volume error| 10, 9, 8 %
    assert lines[2] == "| LeftAtrium (3) | old | 0.8000 | 0.8500 | 0.700 (LeftAtrium_2) | 2 | 9.0% | 0 of 3 | -0.0500 |"
    assert lines[3] == "| LeftAtrium (3) | new | 0.8500 | 0.9000 | 0.750 (LeftAtrium_2) | 1 | 9.0% | 0 of 3 |  |"
    assert plot_cv.table([("new", new), ("old", old)]).splitlines()[2].endswith("| 3 of 3 | +0.0500 |")
    rows = read_metrics_csv(new / "LeftAtrium.csv")
    rows[0] = (rows[0][0], replace(rows[0][1], dice=0.99))  # margins over old: 0.09, 0.05, 0.05
    write_metrics_csv(rows, new / "LeftAtrium.csv")
    assert plot_cv.table([("new", new), ("old", old)]).splitlines()[2].endswith("| 3 of 3 | +0.0900 |")


def test_table_refuses_designs_of_other_cases(plot_cv: ModuleType, tmp_path: Path) -> None:
    old = _design(tmp_path / "old", ("LeftAtrium",), 0.9)
    new = _design(tmp_path / "new", ("LeftAtrium",), 0.9)
    write_metrics_csv(read_metrics_csv(new / "LeftAtrium.csv")[:2], new / "LeftAtrium.csv")
    with pytest.raises(ValueError, match="design 'new' holds other cases than 'old'"):
        plot_cv.table([("new", new), ("old", old)])
