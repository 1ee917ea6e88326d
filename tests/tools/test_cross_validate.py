"""``tools/cross_validate.py``: a folder of figures with ``--tta`` is marked so, and never mixed with one without."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import load_tool, standin_folds

from atriumseg.pipeline.training.validation import TTA_MARKER, scored_with_tta


@pytest.fixture(scope="module")
def cross_validate() -> ModuleType:
    return load_tool("cross_validate")


def _run(cross_validate: ModuleType, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["cross_validate.py", *args])
    cross_validate.main()


@pytest.mark.parametrize("tta", [False, True])
def test_a_folder_of_the_other_kind_is_refused_before_scoring(
    cross_validate: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tta: bool
) -> None:
    (tmp_path / "LGE.csv").write_text("case,dice\n")
    if not tta:
        (tmp_path / TTA_MARKER).write_text("scored with --tta\n")
    kind = "without" if tta else "with"
    with pytest.raises(SystemExit, match=f"holds figures {kind} --tta; write these to another folder"):
        _run(cross_validate, monkeypatch, str(tmp_path / "no-such-model"), "-o", str(tmp_path), *["--tta"] * tta)


def test_a_tta_cross_validation_is_marked_and_kept_apart(
    cross_validate: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synthetic_dataset: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folds, out = [str(f) for f in standin_folds(tmp_path, synthetic_dataset)], tmp_path / "cv"
    _run(cross_validate, monkeypatch, *folds, "-o", str(out), "--tta")
    assert scored_with_tta(out) and sorted(p.name for p in out.glob("*.csv")) == ["Synthetic.csv"]
    assert len((out / "Synthetic.csv").read_text().splitlines()) == 1 + 4  # every case once
    printed = capsys.readouterr().out
    assert "with --tta: the figures of `segment --tta`" in printed and "ship with" not in printed
    with pytest.raises(SystemExit, match="holds figures with --tta"):
        _run(cross_validate, monkeypatch, *folds, "-o", str(out))
