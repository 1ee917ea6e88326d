"""Read-ahead: cases claimed in order, at most ``depth`` reading, settled ones handed back, locks given up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from helpers import write_nifti

from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.locks import LOCKS, lock_case
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.plan import PlannedCase, case_outputs
from atriumseg.pipeline.batch.readahead import ReadAhead


def _todo(tmp_path: Path, names: list[str]) -> list[PlannedCase]:
    (tmp_path / "in").mkdir(parents=True)
    planned = []
    for i, name in enumerate(names):
        source = write_nifti(tmp_path / "in" / f"{name}.nii.gz", np.full((20, 20, 18), i, np.float32), np.eye(4))
        case = InputCase(name, source)
        planned.append(PlannedCase(case, case_outputs(case, tmp_path / "out")))
    return planned


def test_cases_are_read_ahead_in_order_up_to_the_depth(tmp_path: Path) -> None:
    options = BatchOptions(output=tmp_path / "out")
    with ThreadPoolExecutor(2) as readers:
        ahead = ReadAhead(_todo(tmp_path, ["a", "b", "c", "d"]), options, readers, depth=2)
        assert ahead.refill(lambda: False) == [] and ahead.not_started == 4
        assert sorted(p.name for p in (tmp_path / "out" / LOCKS).iterdir()) == ["a.lock", "b.lock"]
        order = []
        while ahead:
            reading = ahead.next()
            ahead.refill(lambda: False)
            order.append((reading.planned.case.name, float(reading.volume.result().tensor.max())))
            reading.lock.release()
        assert order == [("a", 0.0), ("b", 1.0), ("c", 2.0), ("d", 3.0)] and ahead.not_started == 0


def test_a_busy_case_is_handed_back_settled_and_a_stop_ends_claiming(tmp_path: Path) -> None:
    options = BatchOptions(output=tmp_path / "out")
    held = lock_case(tmp_path / "out", "b")
    try:
        with ThreadPoolExecutor(1) as readers:
            ahead = ReadAhead(_todo(tmp_path, ["a", "b", "c"]), options, readers, depth=5)
            settled = ahead.refill(lambda: False)
            assert [(s.result.case, s.result.status, s.record) for s in settled] == [("b", "skipped", False)]
            assert ahead.not_started == 2
            ahead.cancel()
    finally:
        held.release()
    assert list((tmp_path / "out" / LOCKS).iterdir()) == []
    with ThreadPoolExecutor(1) as readers:
        stopped = ReadAhead(_todo(tmp_path / "again", ["x"]), options, readers, depth=5)
        assert stopped.refill(lambda: True) == [] and not stopped and stopped.not_started == 1
