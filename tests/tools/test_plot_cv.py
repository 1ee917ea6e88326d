"""``tools/plot_cv.py``: a picture of several designs' out-of-fold CSVs, and a clear refusal when one is missing."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import matplotlib.image
import pytest
from helpers import load_tool

from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.evaluation.table import write_metrics_csv


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


def test_a_design_missing_a_dataset_is_named(plot_cv: ModuleType, tmp_path: Path) -> None:
    designs = [("old", _design(tmp_path / "old", ("A", "B"), 0.9)), ("new", _design(tmp_path / "new", ("A",), 0.9))]
    with pytest.raises(ValueError, match=r"design 'new': no .*B\.csv"):
        plot_cv.plot(designs, tmp_path / "cv.png")
    assert not (tmp_path / "cv.png").exists()
