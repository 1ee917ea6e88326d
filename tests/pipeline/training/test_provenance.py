"""What a run records on its card: the lineage carried on by --init."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_config, write_msd_dataset

from atriumseg.models.checkpoint import load_card
from atriumseg.models.lineage import stage
from atriumseg.pipeline.training.trainer import train


@pytest.mark.slow
def test_an_init_run_records_the_earlier_stages_and_its_own(tmp_path: Path, synthetic_dataset: Path) -> None:
    first = train(tiny_config(synthetic_dataset, tmp_path / "first", epochs=1, steps_per_epoch=2),
                  show_progress=False)
    more = write_msd_dataset(tmp_path / "more", [200, 201, 202], name="More")
    second_config = tiny_config(more, tmp_path / "second", epochs=2, steps_per_epoch=3, val_cases=("case_202",),
                                val_every=2, init=first.last)
    train(second_config, show_progress=False)
    earlier, card = load_card(first.last), load_card(tmp_path / "second" / "best")
    lineage = card.provenance["lineage"]
    assert lineage[0] == earlier.provenance["lineage"][0] == stage(earlier.provenance)
    assert lineage[0]["started_from"] is None and lineage[0]["steps"] == 2
    assert lineage[0]["data"] == {"Synthetic": {"train": 3, "validation": 1}}
    assert lineage[1]["started_from"] == str(first.last) and lineage[1]["run"] == str(tmp_path / "second")
    assert (lineage[1]["epochs"], lineage[1]["steps"]) == (2, 6)
    assert lineage[1]["data"] == {"More": {"train": 2, "validation": 1}}
    assert len(lineage) == 2 and all(s["minutes"] >= 0 for s in lineage)
